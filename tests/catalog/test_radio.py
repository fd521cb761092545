"""Radio from seeds and paths between two songs, on songs with known vectors."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from catalog import radio
from catalog.models import Recording, RecordingLink, Song, SongStatus
from embeddings.index import get_vector_index
from embeddings.index.local import LocalVectorIndex
from embeddings.registry import model_dim
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db

DIM = model_dim("features")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _vector(song_id: Any) -> np.ndarray:
    vector = get_vector_index("features", DIM).get(song_id)
    assert vector is not None
    return vector


def _add(vector: np.ndarray, **fields: Any) -> Song:
    song = SongFactory.create(embedding_model="features", **fields)
    get_vector_index("features", DIM).upsert(song.pk, song.object_key, _unit(vector))
    return song


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


@pytest.fixture
def clusters(rng: np.random.Generator) -> dict[str, list[Song]]:
    """Three sound families of 12 songs, each family by 4 artists (3 songs each) on 6 albums."""
    centres = {name: rng.standard_normal(DIM) for name in ("warm", "bright", "noisy")}
    made: dict[str, list[Song]] = {}
    for name, centre in centres.items():
        made[name] = [
            _add(
                centre + 0.45 * np.linalg.norm(centre) / np.sqrt(DIM) * rng.standard_normal(DIM) * 4,
                title=f"{name} {i}",
                artist=f"{name} artist {i % 4}",
                album=f"{name} album {i % 6}",
            )
            for i in range(12)
        ]
    return made


def test_radio_from_two_seeds_has_the_length_asked_no_repeats_no_seeds_and_the_artist_cap(
    clusters: dict[str, list[Song]], settings: Any
) -> None:
    settings.RADIO_MAX_PER_ARTIST = 2
    settings.RADIO_MAX_PER_ALBUM = 2
    seeds = [clusters["warm"][0].pk, clusters["warm"][1].pk]

    picks = radio.radio(seeds, length=15)

    ids = [pick.song.pk for pick in picks]
    assert len(ids) == 15
    assert len(set(ids)) == 15
    assert not set(ids) & set(seeds)
    artists = [pick.song.artist for pick in picks]
    assert max(artists.count(artist) for artist in artists) <= 2
    albums = [pick.song.album for pick in picks]
    assert max(albums.count(album) for album in albums) <= 2
    # It starts near the seeds: the first songs are of the seeds' family.
    assert all(pick.song.title.startswith("warm") for pick in picks[:4])


def test_radio_stops_short_rather_than_break_its_caps(clusters: dict[str, list[Song]], settings: Any) -> None:
    settings.RADIO_MAX_PER_ARTIST = 1
    settings.RADIO_MAX_PER_ALBUM = 50

    picks = radio.radio([clusters["warm"][0].pk], length=40)

    assert len(picks) == 12  # 12 artists in the catalog, one song each
    assert len({pick.song.artist for pick in picks}) == 12


def test_a_skip_steers_the_rest_of_the_radio_away_from_its_sound(
    clusters: dict[str, list[Song]], settings: Any
) -> None:
    settings.RADIO_MAX_PER_ARTIST = 10
    settings.RADIO_MAX_PER_ALBUM = 10
    seed = clusters["warm"][0]
    # A song between the seed's family and the bright one, then bright songs after it.
    bridge = _add(
        _vector(seed.pk) + _vector(clusters["bright"][0].pk),
        title="bridge",
    )
    first = radio.radio([seed.pk], length=30, relevance=0.5)
    played = [pick.song.pk for pick in first[:3]]
    assert bridge.pk in {pick.song.pk for pick in first}

    kept = radio.radio([seed.pk], length=20, exclude=played, relevance=0.5)
    skipped = radio.radio([seed.pk], length=20, exclude=played, avoid=[bridge.pk], relevance=0.5)

    assert [p.song.pk for p in kept] != [p.song.pk for p in skipped]
    assert bridge.pk not in {pick.song.pk for pick in skipped}
    assert not {pick.song.pk for pick in skipped} & set(played)

    def rank_of_first_bright(picks: list[radio.Pick]) -> int:
        return next((i for i, p in enumerate(picks) if p.song.title.startswith("bright")), len(picks))

    assert rank_of_first_bright(skipped) > rank_of_first_bright(kept)


def test_the_relevance_setting_trades_closeness_for_variety(clusters: dict[str, list[Song]], settings: Any) -> None:
    settings.RADIO_MAX_PER_ARTIST = 50
    settings.RADIO_MAX_PER_ALBUM = 50
    index = get_vector_index("features", DIM)
    seed = clusters["warm"][0].pk

    def spread(picks: list[radio.Pick]) -> float:
        vectors = np.stack([_vector(p.song.pk) for p in picks])
        similarity = vectors @ vectors.T
        return float(similarity[np.triu_indices(len(picks), 1)].mean())

    close = radio.radio([seed], length=8, relevance=1.0)
    varied = radio.radio([seed], length=8, relevance=0.2)

    nearest = index.search(_vector(seed), 2)[1].song_id
    assert close[0].song.pk == nearest
    to_seed = [float(np.mean([_vector(p.song.pk) @ _vector(seed) for p in picks])) for picks in (close, varied)]
    assert to_seed[0] > to_seed[1]
    assert spread(varied) < spread(close)


def test_radio_keeps_one_copy_of_a_recording_unless_asked(clusters: dict[str, list[Song]], settings: Any) -> None:
    settings.RADIO_MAX_PER_ARTIST = 50
    settings.RADIO_MAX_PER_ALBUM = 50
    original = clusters["warm"][2]
    copy = _add(_vector(original.pk), title="copy")
    recording = Recording.objects.create()
    RecordingLink.objects.create(song=original, recording=recording)
    RecordingLink.objects.create(song=copy, recording=recording)
    seed = clusters["warm"][0].pk

    collapsed = {p.song.pk for p in radio.radio([seed], length=13, relevance=1.0)}
    everything = {p.song.pk for p in radio.radio([seed], length=13, relevance=1.0, duplicates=True)}

    assert len(collapsed & {original.pk, copy.pk}) == 1
    assert {original.pk, copy.pk} <= everything
    # A seed's own copies never come back either.
    assert copy.pk not in {p.song.pk for p in radio.radio([original.pk], length=30)}


def test_radio_asks_the_index_for_neighbours_and_never_reads_every_vector(
    clusters: dict[str, list[Song]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    search = LocalVectorIndex.search

    def counted(self: LocalVectorIndex, vector: Any, limit: int, exclude_file: str | None = None) -> Any:
        calls.append(limit)
        return search(self, vector, limit, exclude_file)

    def refuse(self: LocalVectorIndex) -> Any:
        raise AssertionError("radio must not export the index")

    monkeypatch.setattr(LocalVectorIndex, "search", counted)
    monkeypatch.setattr(LocalVectorIndex, "export", refuse)

    radio.radio([clusters["warm"][0].pk, clusters["noisy"][0].pk], length=10)

    assert 1 <= len(calls) <= 2 + 10 // radio.REFRESH_EVERY + radio.MAX_WIDEN


def test_slerp_stays_on_the_sphere_and_moves_evenly(rng: np.random.Generator) -> None:
    a, b = _unit(rng.standard_normal(DIM)), _unit(rng.standard_normal(DIM))
    points = [radio.slerp(a, b, t) for t in np.linspace(0, 1, 6)]

    assert np.allclose([np.linalg.norm(p) for p in points], 1.0, atol=1e-5)
    assert np.allclose(points[0], a, atol=1e-5) and np.allclose(points[-1], b, atol=1e-5)
    steps = [float(np.arccos(np.clip(points[i] @ points[i + 1], -1, 1))) for i in range(5)]
    assert max(steps) - min(steps) < 1e-4


@pytest.fixture
def arc(rng: np.random.Generator) -> tuple[Song, Song, list[Song]]:
    """Two songs and 30 others scattered along the great circle between them."""
    a, b = _unit(rng.standard_normal(DIM)), _unit(rng.standard_normal(DIM))
    start, end = _add(a, title="start"), _add(b, title="end")
    others = [
        _add(radio.slerp(a, b, t) + 0.02 * rng.standard_normal(DIM).astype(np.float32), title=f"on the way {t:.2f}")
        for t in rng.uniform(0, 1, 30)
    ]
    return start, end, others


def test_a_path_starts_next_to_from_ends_next_to_to_and_uses_no_song_twice(arc: tuple[Song, Song, list[Song]]) -> None:
    start, end, _ = arc
    a, b = _vector(start.pk), _vector(end.pk)

    path = radio.song_path(start.pk, end.pk, steps=8)

    ids = [p.song.pk for p in path]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert not {start.pk, end.pk} & set(ids)
    to_start = [float(_vector(i) @ a) for i in ids]
    to_end = [float(_vector(i) @ b) for i in ids]
    assert to_start[0] > to_end[0] and to_end[-1] > to_start[-1]
    # It moves: closeness to the end grows along the way.
    assert np.corrcoef(np.arange(8), to_end)[0, 1] > 0.9


def test_a_path_skips_copies_of_a_recording_already_on_it(arc: tuple[Song, Song, list[Song]]) -> None:
    start, end, _ = arc
    path = radio.song_path(start.pk, end.pk, steps=6)
    copy = _add(_vector(path[2].song.pk), title="copy")
    recording = Recording.objects.create()
    RecordingLink.objects.create(song=path[2].song, recording=recording)
    RecordingLink.objects.create(song=copy, recording=recording)

    # 31 songs lie between the ends, two of them one recording.
    collapsed = [p.song.pk for p in radio.song_path(start.pk, end.pk, steps=31)]
    everything = [p.song.pk for p in radio.song_path(start.pk, end.pk, steps=31, duplicates=True)]

    assert len(collapsed) == 30 and len(set(collapsed) & {path[2].song.pk, copy.pk}) == 1
    assert len(everything) == 31 and {path[2].song.pk, copy.pk} <= set(everything)


def test_the_radio_api_plays_what_it_returns_and_refuses_bad_input(clusters: dict[str, list[Song]], api) -> None:
    seeds = [str(clusters["warm"][0].pk), str(clusters["bright"][0].pk)]
    played = [str(clusters["warm"][1].pk)]

    answer = api.post("/api/radio/", {"seeds": seeds, "played": played, "length": 5}, format="json")

    assert answer.status_code == 200, answer.json()
    results = answer.json()["results"]
    assert len(results) == 5
    assert all(r["song"]["playback_url"] for r in results)
    assert not {r["song"]["id"] for r in results} & {*seeds, *played}
    assert api.post("/api/radio/", {"seeds": []}, format="json").status_code == 400
    assert api.post("/api/radio/", {"seeds": seeds, "length": 0}, format="json").status_code == 400
    assert api.post("/api/radio/", {"seeds": [str(uuid.uuid4())]}, format="json").status_code == 404
    pending = SongFactory.create(status=SongStatus.PROCESSING)
    refused = api.post("/api/radio/", {"seeds": [str(pending.pk)]}, format="json")
    assert refused.status_code == 409 and "not ready" in refused.json()["detail"].lower()


def test_the_path_api_answers_the_path_and_refuses_bad_input(arc: tuple[Song, Song, list[Song]], api) -> None:
    start, end, _ = arc

    answer = api.get(f"/api/path/?from={start.pk}&to={end.pk}&steps=5")

    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["start"]["id"] == str(start.pk) and body["end"]["id"] == str(end.pk)
    assert len(body["results"]) == 5
    assert api.get(f"/api/path/?from={start.pk}").status_code == 400
    assert api.get(f"/api/path/?from={start.pk}&to={start.pk}").status_code == 409
    assert api.get(f"/api/path/?from={start.pk}&to={uuid.uuid4()}").status_code == 404
