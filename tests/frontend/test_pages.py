from __future__ import annotations

import json
import re
import uuid

import numpy as np
import pytest
from django.test import Client

from catalog.models import SongStatus
from embeddings.index import get_vector_index
from embeddings.registry import model_dim
from frontend.views import format_duration
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db


def _json_script(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script {element_id}"
    return json.loads(match.group(1))


def _song_with_vector(vector: list[float], **fields):
    song = SongFactory.create(**{"status": SongStatus.READY, "embedding_model": "features", **fields})
    dim = model_dim("features")
    padded = np.zeros(dim, dtype=np.float32)
    padded[: len(vector)] = vector
    get_vector_index("features", dim).upsert(song.id, song.object_key, padded / np.linalg.norm(padded))
    return song


def test_home_renders_the_upload_zone_the_model_and_a_csrf_cookie(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="dropzone"' in html
    assert 'role="button"' in html
    assert 'tabindex="0"' in html
    assert 'type="file"' in html and "multiple" in html
    assert 'data-testid="embedding-model">features<' in html
    assert "csrftoken" in response.cookies
    config = _json_script(html, "resonance-config")
    assert config["maxUploadMb"] > 0
    assert "audio/mpeg" in config["acceptedContentTypes"]
    assert config["parallelUploads"] == 3
    placeholder = config["songIdPlaceholder"]
    song_id = str(uuid.uuid4())
    assert config["urls"]["songDetail"].replace(placeholder, song_id) == f"/api/songs/{song_id}/"
    assert config["urls"]["songPage"].replace(placeholder, song_id) == f"/songs/{song_id}/"


def test_pages_use_no_inline_script_or_style(client: Client) -> None:
    song = SongFactory(status=SongStatus.PROCESSING)
    for url in ("/", f"/songs/{song.id}/"):
        html = client.get(url).content.decode()
        assert "style=" not in html
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"
        for script in re.findall(r"<script[^>]*>", html):
            assert 'type="application/json"' in script or ("src=" in script and 'type="module"' in script), script


def test_song_page_renders_details_and_escapes_what_users_provided(client: Client) -> None:
    song = SongFactory(
        title="<script>alert('t')</script>",
        artist="Tom & <b>Jerry</b>",
        album="Cats",
        duration_seconds=185.4,
        ingest_note="Only the first 15 minutes were analysed.",
        status=SongStatus.READY,
        embedding_model="features",
    )

    response = client.get(f"/songs/{song.id}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;" in html
    assert "Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;" in html
    assert "<b>Jerry</b>" not in html
    assert "3:05" in html
    assert "Only the first 15 minutes were analysed." in html
    assert re.search(r'<audio[^>]*\bcontrols\b[^>]*src="/storage/media/[^"]+"', html)
    assert "csrftoken" in response.cookies


def test_unknown_song_is_a_404(client: Client) -> None:
    assert client.get(f"/songs/{uuid.uuid4()}/").status_code == 404
    assert client.get("/songs/not-a-uuid/").status_code == 404


def test_song_page_lists_neighbours_with_scores_and_links(client: Client) -> None:
    song = _song_with_vector([1.0, 0.0, 0.0], title="Seed")
    close = _song_with_vector([0.9, 0.1, 0.0], title="Close <one>", artist="Near")
    far = _song_with_vector([0.0, 0.0, 1.0], title="Far one")
    _song_with_vector([1.0, 0.05, 0.0], title="Hidden", status=SongStatus.PROCESSING)

    response = client.get(f"/songs/{song.id}/")

    html = response.content.decode()
    assert response.context["neighbours_error"] == ""
    assert [n["song"].id for n in response.context["neighbours"]] == [close.id, far.id]
    assert f'href="/songs/{close.id}/"' in html
    assert f'href="/songs/{far.id}/"' in html
    assert "Close &lt;one&gt;" in html
    assert "Hidden" not in html
    assert html.index("Close &lt;one&gt;") < html.index("Far one")
    expected = 0.9 / np.linalg.norm([0.9, 0.1])
    assert f'<span class="score__value">{expected:.3f}</span>' in html


def test_song_page_explains_why_there_are_no_neighbours(client: Client) -> None:
    song = SongFactory(status=SongStatus.PROCESSING)

    response = client.get(f"/songs/{song.id}/")

    assert response.status_code == 200
    assert "neighbours appear once it is ready" in response.context["neighbours_error"]
    assert 'data-testid="neighbours-error"' in response.content.decode()
    assert _json_script(response.content.decode(), "song-config")["status"] == "processing"


def test_failed_song_shows_its_reason_and_a_retry_button(client: Client) -> None:
    song = SongFactory(status=SongStatus.FAILED, failure_reason="The file could not be decoded <really>.")

    html = client.get(f"/songs/{song.id}/").content.decode()

    assert "The file could not be decoded &lt;really&gt;." in html
    assert 'id="retry-button"' in html


def test_pending_song_has_no_player(client: Client) -> None:
    song = SongFactory(status=SongStatus.PENDING_UPLOAD)

    html = client.get(f"/songs/{song.id}/").content.decode()

    assert "<audio" not in html


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0.4, "0:00"), (59.6, "1:00"), (185.4, "3:05"), (3725, "1:02:05")]
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_song_page_lists_sound_tags_linking_to_the_filtered_catalog(client: Client) -> None:
    song = SongFactory.create(title="Tagged")
    SongTagFactory.create(song=song, label="Acoustic <guitar>", score=0.61)

    html = client.get(f"/songs/{song.pk}/").content.decode()

    assert "Acoustic &lt;guitar&gt;" in html
    assert "?tag=Acoustic%20%3Cguitar%3E" in html
    assert "0.61" in html
