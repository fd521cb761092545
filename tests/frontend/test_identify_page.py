"""The "What song is this?" page: server-rendered shell, and one run in headless Chromium under a strict CSP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from tests import audio
from tests.fingerprints import music


@pytest.mark.django_db
def test_identify_page_renders_its_config_and_no_inline_script(client: Client) -> None:
    response = client.get("/identify/")

    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    html = response.content.decode()
    assert '<input id="clip-input" type="file" hidden' in html
    assert 'id="record-clip"' in html
    assert 'id="identify-error" class="alert alert--error" role="alert" hidden' in html
    assert 'data-testid="identify-empty-catalog"' in html
    match = re.search(r'<script id="identify-config" type="application/json">(.*?)</script>', html, re.S)
    assert match
    config = json.loads(match.group(1))
    assert config["urls"]["identify"] == "/api/identify/"
    assert config["maxClipMb"] > 0
    assert "audio/wav" in config["acceptedContentTypes"] or "audio/x-wav" in config["acceptedContentTypes"]
    # Every script is either JSON data or an external module; no inline code, styles or handlers.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'type="application/json"' in tag or "src=" in tag, tag
    assert not re.search(r"\son[a-z]+=", html)
    assert "<style" not in html and " style=" not in html
    assert client.post("/identify/").status_code == 405


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_dropped_excerpt_names_its_song_and_where_it_starts(
    open_page: Any, live_server: Any, upload: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    cache.clear()
    tracks = {seed: music.song(seed, seconds=20.0) for seed in (11, 12)}
    songs = {}
    for seed, samples in tracks.items():
        path = audio.write(tmp_path / f"track-{seed}.wav", samples)
        song = upload(path, content_type="audio/wav")
        song.refresh_from_db()
        assert song.status == "ready", song.failure_reason
        song.title = f"Track {seed}"
        song.artist = "Synth Band"
        song.save(update_fields=["title", "artist"])
        songs[seed] = song
    clip = audio.write(tmp_path / "clip.wav", music.excerpt(tracks[12], 6.0, 6.0))

    page = open_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/identify/")
    expect(page.get_by_role("link", name="Identify")).to_have_attribute("aria-current", "page")
    page.locator("#clip-input").set_input_files(str(clip))
    result = page.get_by_test_id("identify-match")
    expect(result).to_be_visible()
    expect(result.locator(".song-item__title")).to_have_text("Track 12")
    expect(result).to_contain_text("Synth Band")
    expect(result).to_contain_text("starts at 0:06 in the song")
    expect(result).to_contain_text(re.compile(r"Confidence: \d+%"))
    href = result.locator("a").first.get_attribute("href")
    assert href == f"/songs/{songs[12].id}/"
    expect(page.locator("#identify-error")).to_be_hidden()
