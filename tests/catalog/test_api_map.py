from __future__ import annotations

import json
import re
import uuid

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from catalog import map_refresh, maps
from catalog.api.serializers import CatalogMapSerializer
from catalog.models import MapProjection, SongStatus
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.index.local import LocalVectorIndex
from embeddings.registry import model_dim
from tests import audio
from tests.factories import SongFactory, SongTagFactory
from tests.map_answer import map_points

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
    assert set(body) == {
        "model",
        "colour_by",
        "explained_variance",
        "groups",
        "count",
        "ids",
        "x",
        "y",
        "group",
        "titles",
        "artists",
        "computed_at",
        "age_seconds",
        "projected_songs",
        "placed_since",
        "pending",
    }
    assert (body["projected_songs"], body["placed_since"], body["pending"]) == (3, 0, 0)
    assert 0 <= body["age_seconds"] < 60
    assert body["model"] == "features"
    assert body["colour_by"] == "album"
    assert len(body["explained_variance"]) == 2
    assert all(0.0 <= share <= 1.0 for share in body["explained_variance"])
    assert body["groups"] == ["Beats", "Harmony", "Unknown"]
    assert body["count"] == 3
    points = {point["id"]: point for point in map_points(body)}
    assert points[str(chord.id)] == {
        "id": str(chord.id),
        "title": "Chord",
        "artist": "Tones",
        "x": points[str(chord.id)]["x"],
        "y": points[str(chord.id)]["y"],
        "group": "Harmony",
    }
    assert points[str(drums.id)]["title"] == "<script>alert(1)</script>"
    for point in map_points(body):
        assert -1.0 <= point["x"] <= 1.0 and -1.0 <= point["y"] <= 1.0

    by_tag = api.get("/api/map/", {"colour_by": "tag"}).json()
    assert by_tag["colour_by"] == "tag"
    assert by_tag["groups"] == ["Music", "Unknown"]
    place = {p["id"]: (p["x"], p["y"]) for p in map_points(body)}
    assert {p["id"]: (p["x"], p["y"]) for p in map_points(by_tag)} == place
    assert {p["id"]: p["group"] for p in map_points(by_tag)}[str(chord.id)] == "Music"


def test_an_empty_catalog_gives_an_empty_map(api: APIClient) -> None:
    body = api.get("/api/map/").json()
    del body["computed_at"], body["age_seconds"]

    assert body == {
        "model": "features",
        "colour_by": "album",
        "explained_variance": [0.0, 0.0],
        "groups": [],
        "count": 0,
        "ids": "",
        "x": "",
        "y": "",
        "group": "",
        "titles": [],
        "artists": [],
        "projected_songs": 0,
        "placed_since": 0,
        "pending": 0,
    }


def test_an_unknown_colouring_is_refused(api: APIClient) -> None:
    response = api.get("/api/map/", {"colour_by": "genre"})

    assert response.status_code == 400
    assert "colour_by" in response.json()


def test_an_unreachable_index_answers_503(api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    _song(0)

    def down(self):
        raise IndexUnavailable("connection refused")

    monkeypatch.setattr(LocalVectorIndex, "snapshot", down)
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


def _no_vector_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args, **kwargs):
        raise AssertionError("the map request read the catalog's vectors")

    monkeypatch.setattr(LocalVectorIndex, "export", refused)
    monkeypatch.setattr(LocalVectorIndex, "snapshot", refused)
    monkeypatch.setattr(map_refresh, "project", refused)


def test_the_map_serves_the_stored_projection_without_reading_vectors_and_places_new_songs(
    api: APIClient, settings, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    settings.MAP_INLINE_MAX_SONGS = 3  # a "large" catalog: the worker's projection is what the API serves
    songs = [_song(direction % 4, title=f"Song {direction}") for direction in range(8)]
    stored = map_refresh.store_projection()  # what the worker task does after ingests settle
    queued: list[str] = []
    monkeypatch.setattr(map_refresh, "_queue_refresh", lambda: queued.append("run"))
    _no_vector_reads(monkeypatch)

    body = api.get("/api/map/").json()

    assert body["projected_songs"] == 8 and body["placed_since"] == 0 and body["pending"] == 0
    assert body["computed_at"] is not None and body["age_seconds"] >= 0
    coords = np.frombuffer(bytes(stored.coords), dtype="<f4").reshape(-1, 2)
    served = {p["id"]: (p["x"], p["y"]) for p in map_points(body)}
    for i in range(8):
        song_id = str(uuid.UUID(bytes=bytes(stored.song_ids)[16 * i : 16 * i + 16]))
        assert served[song_id] == pytest.approx(tuple(float(v) for v in coords[i]), abs=1e-6)
    assert {p["id"] for p in map_points(body)} == {str(song.id) for song in songs}
    assert queued == []  # nothing changed: no projection queued

    # A song ingested after the projection is on the map at once, placed on the stored axes from its own vector.
    newcomer = SongFactory.create(status=SongStatus.READY, embedding_model="features", title="Newcomer")
    vector = np.zeros(model_dim("features"), dtype=np.float32)
    vector[1] = 1.0
    get_vector_index("features", model_dim("features")).upsert(newcomer.id, newcomer.object_key, vector)

    with django_capture_on_commit_callbacks(execute=True):
        body = api.get("/api/map/").json()

    points = {p["id"]: (p["x"], p["y"]) for p in map_points(body)}
    assert body["placed_since"] == 1 and body["projected_songs"] == 8
    same_direction = next(song for song in songs if song.title == "Song 1")
    assert points[str(newcomer.id)] == pytest.approx(points[str(same_direction.id)], abs=1e-5)
    assert queued == []  # the view only notes it; the projection is due once the catalog settles
    clock = map_refresh._clock()
    monkeypatch.setattr(map_refresh, "_clock", lambda: clock + settings.MAP_SETTLE_SECONDS)
    assert map_refresh.queue_if_due() and map_refresh.queue_if_due() is False and queued == ["run"]  # queued once


def test_a_large_catalog_without_a_projection_yet_says_so_and_queues_one(
    api: APIClient, settings, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    settings.MAP_INLINE_MAX_SONGS = 2
    for direction in range(3):
        _song(direction)
    queued: list[str] = []
    monkeypatch.setattr(map_refresh, "_queue_refresh", lambda: queued.append("run"))
    _no_vector_reads(monkeypatch)

    with django_capture_on_commit_callbacks(execute=True):
        body = api.get("/api/map/").json()
        api.get("/api/map/")

    assert map_points(body) == [] and body["pending"] == 3 and body["computed_at"] is None
    assert queued == ["run"]  # at once, and once


def test_an_ingest_queues_a_projection_that_then_covers_the_song(upload, api, settings, tmp_path) -> None:
    settings.MAP_INLINE_MAX_SONGS = 0  # only the worker's projection can put the song on the map
    settings.MAP_SETTLE_SECONDS = 0.0  # due as soon as the ingest is done

    song = upload(audio.write(tmp_path / "chord.mp3", audio.chord([220, 277, 330], 2.0)))

    stored = MapProjection.objects.get(model="features")
    assert stored.song_count == 1 and bytes(stored.song_ids) == song.id.bytes
    assert [p["id"] for p in map_points(api.get("/api/map/").json())] == [str(song.id)]


def test_the_answer_built_directly_matches_the_documented_serializer() -> None:
    song = _song(0, title="Chord", album="Harmony")
    _song(1, title="Drums")
    SongTagFactory.create(song=song, label="Music", score=0.9)
    body = json.loads(json.dumps(maps.as_json(maps.catalog_map(colour_by="tag"))))

    documented = CatalogMapSerializer(data=body)
    assert documented.is_valid(), documented.errors
    assert set(body) == set(documented.fields)


def test_an_unchanged_catalog_is_answered_from_the_cache_and_a_change_is_shown_at_once(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    song = _song(0, title="Before")
    _song(1, title="Other")
    first = api.get("/api/map/").json()
    build = maps.catalog_map

    def refused(**kwargs):
        raise AssertionError("the map was built again for an unchanged catalog")

    monkeypatch.setattr(maps, "catalog_map", refused)
    again = api.get("/api/map/").json()
    assert {key: value for key, value in again.items() if key != "age_seconds"} == {
        key: value for key, value in first.items() if key != "age_seconds"
    }

    monkeypatch.setattr(maps, "catalog_map", build)
    song.title = "After"
    song.save()
    assert sorted(api.get("/api/map/").json()["titles"]) == ["After", "Other"]
    SongTagFactory.create(song=song, label="Guitar", score=0.8)  # a tag alone changes the tag colouring
    assert "Guitar" in api.get("/api/map/", {"colour_by": "tag"}).json()["groups"]
    _song(2, title="Third")
    assert api.get("/api/map/").json()["count"] == 3
