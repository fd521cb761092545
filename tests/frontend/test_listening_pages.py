"""The radio and path pages, and the song page's radio button, as served (no browser)."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.test import Client

from catalog.models import SongStatus
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db


def _config(html: str) -> dict:
    match = re.search(r'<script id="queue-config" type="application/json">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def test_the_radio_page_names_its_seeds_escaped_and_ignores_unknown_ids(client: Client) -> None:
    seed = SongFactory.create(title="<b>Seed</b>")

    html = client.get(f"/radio/?seed={seed.pk}&seed={uuid.uuid4()}&seed=not-an-id").content.decode()

    assert "&lt;b&gt;Seed&lt;/b&gt;" in html and "<b>Seed</b>" not in html
    assert _config(html)["seeds"] == [str(seed.pk)]
    assert "Pick one or more songs" in client.get("/radio/").content.decode()


def test_the_path_page_passes_both_ends_and_bounded_steps(client: Client, settings) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()

    config = _config(client.get(f"/path/?from={a}&to={b}&steps=5000").content.decode())

    assert (config["from"], config["to"]) == (str(a), str(b))
    assert config["steps"] == settings.RADIO_MAX_LENGTH
    assert _config(client.get("/path/?from=x").content.decode())["from"] == ""


def test_only_a_ready_song_page_offers_a_radio(client: Client) -> None:
    ready = SongFactory.create(status=SongStatus.READY)
    pending = SongFactory.create(status=SongStatus.PROCESSING)

    assert 'id="start-radio"' in client.get(f"/songs/{ready.pk}/").content.decode()
    assert 'id="start-radio"' not in client.get(f"/songs/{pending.pk}/").content.decode()
