from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from catalog.models import SongStatus
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.index.local import LocalVectorIndex
from embeddings.registry import model_dim
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def _song(direction: int, **fields):
    song = SongFactory.create(**{"status": SongStatus.READY, "embedding_model": "features", **fields})
    dim = model_dim("features")
    vector = np.zeros(dim, dtype=np.float32)
    vector[direction] = 1.0
    get_vector_index("features", dim).upsert(song.id, song.object_key, vector)
    return song


def test_map_lists_every_ready_song_with_coordinates_and_groups(api: APIClient) -> None:
    chord = _song(0, title="Chord", artist="Tones", album="Harmony")
    drums = _song(1, title="<script>alert(1)</script>", album="Beats")
    _song(2, title="Plain")
    SongTagFactory.create(song=chord, label="Music", score=0.9)
    SongFactory.create(status=SongStatus.FAILED, title="Broken")

    response = api.get("/api/map/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "colour_by", "explained_variance", "groups", "points"}
    assert body["model"] == "features"
    assert body["colour_by"] == "album"
    assert len(body["explained_variance"]) == 2
    assert all(0.0 <= share <= 1.0 for share in body["explained_variance"])
    assert body["groups"] == ["Beats", "Harmony", "Unknown"]
    assert len(body["points"]) == 3
    points = {point["id"]: point for point in body["points"]}
    assert points[str(chord.id)] == {
        "id": str(chord.id),
        "title": "Chord",
        "artist": "Tones",
        "album": "Harmony",
        "top_tag": "Music",
        "x": points[str(chord.id)]["x"],
        "y": points[str(chord.id)]["y"],
        "group": "Harmony",
    }
    assert points[str(drums.id)]["title"] == "<script>alert(1)</script>"
    for point in body["points"]:
        assert -1.0 <= point["x"] <= 1.0 and -1.0 <= point["y"] <= 1.0

    by_tag = api.get("/api/map/", {"colour_by": "tag"}).json()
    assert by_tag["colour_by"] == "tag"
    assert by_tag["groups"] == ["Music", "Unknown"]
    assert {p["id"]: (p["x"], p["y"]) for p in by_tag["points"]} == {p["id"]: (p["x"], p["y"]) for p in body["points"]}


def test_an_empty_catalog_gives_an_empty_map(api: APIClient) -> None:
    body = api.get("/api/map/").json()

    assert body == {
        "model": "features",
        "colour_by": "album",
        "explained_variance": [0.0, 0.0],
        "groups": [],
        "points": [],
    }


def test_an_unknown_colouring_is_refused(api: APIClient) -> None:
    response = api.get("/api/map/", {"colour_by": "genre"})

    assert response.status_code == 400
    assert "colour_by" in response.json()


def test_an_unreachable_index_answers_503(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    _song(0)

    def down(self):
        raise IndexUnavailable("connection refused")

    monkeypatch.setattr(LocalVectorIndex, "export", down)
    response = api.get("/api/map/")

    assert response.status_code == 503
    assert "connection refused" in response.json()["detail"]


def test_the_map_follows_the_browsing_permission(api: APIClient, settings) -> None:
    settings.PUBLIC_CATALOG = False

    assert api.get("/api/map/").status_code == 403


def test_the_map_is_in_the_schema(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/map/"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {"colour_by"}
    assert {"200", "400", "403", "503"} <= set(operation["responses"])


# The /map/ page that draws this endpoint (its behaviour in a browser: tests/frontend/test_map_browser.py).


def _map_config(html: str) -> dict:
    match = re.search(r'<script id="map-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no map-config"
    return json.loads(match.group(1))


def test_the_map_page_links_its_api_without_inline_script_or_style(client, settings) -> None:
    html = client.get("/map/?colour_by=tag").content.decode()

    assert "style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for script in re.findall(r"<script[^>]*>", html):
        assert 'type="application/json"' in script or ("src=" in script and 'type="module"' in script), script
    config = _map_config(html)
    assert config["colourBy"] == "tag"
    assert config["urls"]["map"] == "/api/map/"
    assert 'id="colour-tag" name="colour_by" value="tag" checked' in html
    assert 'href="/map/" aria-current="page">Map<' in html
    assert _map_config(client.get("/map/?colour_by=genre").content.decode())["colourBy"] == "album"

    settings.PUBLIC_CATALOG = False
    response = client.get("/map/")
    assert response.status_code == 302
    assert "next=/map/" in response["Location"]
