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
    seed = _song_with_vector([1.0, 0.0, 0.0], title="Seed")
    _song_with_vector([0.9, 0.1, 0.0], title="Neighbour")
    for url in ("/", "/similar/", f"/songs/{song.id}/", f"/songs/{seed.id}/"):
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


def test_header_navigation_marks_the_current_page(client: Client) -> None:
    song = SongFactory()
    pages = {"/": "Catalog", "/similar/": "Find similar", "/identify/": "Identify", f"/songs/{song.id}/": None}
    for url, current in pages.items():
        html = client.get(url).content.decode()
        nav = re.search(r'<nav class="site-nav" aria-label="Main">(.*?)</nav>', html, re.S)
        assert nav, url
        hrefs = re.findall(r'<a class="site-nav__link" href="([^"]+)"', nav.group(1))
        assert hrefs == ["/", "/similar/", "/identify/", "/map/"]
        marked = re.findall(r'aria-current="page">([^<]+)<', nav.group(1))
        assert marked == ([current] if current else []), url


def test_every_page_has_live_regions_for_toasts(client: Client) -> None:
    song = SongFactory()
    for url in ("/", "/similar/", f"/songs/{song.id}/"):
        html = client.get(url).content.decode()
        assert '<div id="toasts-status" class="toasts__region" role="status" aria-live="polite"></div>' in html
        assert '<div id="toasts-alert" class="toasts__region" role="alert" aria-live="assertive"></div>' in html
        assert re.search(r'id="toasts" class="toasts" data-success-ms="\d+" data-error-ms="\d+"', html)


def test_home_offers_search_status_tag_and_sort_with_labels(client: Client) -> None:
    html = client.get("/").content.decode()

    for control in ("search-input", "status-select", "tag-select", "sort-select"):
        assert f'<label class="field__label" for="{control}">' in html
    statuses = re.findall(r'<option value="([a-z_]*)">', html.split('id="status-select"')[1].split("</select>")[0])
    assert statuses == ["", *SongStatus.values]
    assert 'id="shared-player"' in html
    config = _json_script(html, "resonance-config")
    assert config["urls"]["songs"] == "/api/songs/"
    assert config["urls"]["tags"] == "/api/tags/"


def test_similar_page_renders_the_clip_zone_and_its_config(client: Client) -> None:
    response = client.get("/similar/")

    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    html = response.content.decode()
    assert re.search(r'<div id="clip-zone" class="[^"]*" role="button" tabindex="0"', html)
    assert '<input id="clip-input" type="file" hidden' in html
    assert 'id="similar-error" class="alert alert--error" role="alert" hidden' in html
    config = _json_script(html, "similar-config")
    assert config["urls"]["similar"] == "/api/search/similar/"
    assert config["maxClipMb"] > 0
    assert "audio/mpeg" in config["acceptedContentTypes"]
    song_id = str(uuid.uuid4())
    assert config["urls"]["songDetail"].replace(config["songIdPlaceholder"], song_id) == f"/api/songs/{song_id}/"
    # Nothing to compare with yet: the page says so before anyone drops a clip.
    assert 'data-testid="similar-empty-catalog"' in html


def test_similar_page_has_no_empty_catalog_note_once_a_song_is_ready(client: Client) -> None:
    SongFactory(status=SongStatus.PROCESSING)
    assert 'data-testid="similar-empty-catalog"' in client.get("/similar/").content.decode()
    SongFactory(status=SongStatus.READY)
    assert 'data-testid="similar-empty-catalog"' not in client.get("/similar/").content.decode()


def test_similar_page_only_answers_safe_methods(client: Client) -> None:
    assert client.post("/similar/").status_code == 405


def test_song_page_has_a_labelled_waveform_and_play_buttons_on_neighbours(client: Client) -> None:
    song = _song_with_vector([1.0, 0.0, 0.0], title="Seed")
    close = _song_with_vector([0.9, 0.1, 0.0], title="Close <one>")

    html = client.get(f"/songs/{song.id}/").content.decode()

    canvas = re.search(r"<canvas[^>]*>", html)
    assert canvas
    assert 'role="slider"' in canvas.group(0)
    assert 'tabindex="0"' in canvas.group(0)
    assert 'aria-label="Waveform of Seed: click or use the arrow keys to seek"' in canvas.group(0)
    button = re.search(rf'<button type="button" class="play-button" data-song-id="{close.id}"[^>]*>', html)
    assert button
    assert 'aria-label="Play Close &lt;one&gt;"' in button.group(0)
    assert re.search(r'data-play-src="/storage/media/[^"]+"', button.group(0))
    assert 'id="shared-player"' in html


def test_song_page_without_audio_has_no_waveform_or_shared_player(client: Client) -> None:
    song = SongFactory(status=SongStatus.PENDING_UPLOAD)

    html = client.get(f"/songs/{song.id}/").content.decode()

    assert "<canvas" not in html
    assert 'id="shared-player"' not in html


def test_pages_ask_visitors_to_log_in_when_the_catalog_is_private(client: Client, settings) -> None:
    settings.PUBLIC_CATALOG = False
    song = SongFactory.create()

    for url in ["/", "/similar/", f"/songs/{song.pk}/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")
