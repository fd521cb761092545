from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache

from catalog import map_refresh, maps
from catalog.errors import ServiceUnavailable
from catalog.models import MapProjection, Song, SongStatus
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.index.local import LocalVectorIndex
from embeddings.registry import model_dim
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db

DIM = model_dim("features")


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _vector(direction: int, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[direction] = 1.0
    vector += rng.normal(0, noise, DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _song(vector: np.ndarray, **fields: Any) -> Song:
    song = SongFactory.create(**{"status": SongStatus.READY, "embedding_model": "features", **fields})
    get_vector_index("features", DIM).upsert(song.id, song.object_key, vector)
    return song


def _families(rng: np.random.Generator, per_family: int = 4) -> tuple[list[Song], list[Song]]:
    first = [_song(_vector(0, rng), title=f"Chord {i}", album="Chords") for i in range(per_family)]
    second = [_song(_vector(5, rng), title=f"Drum {i}", album="Drums") for i in range(per_family)]
    return first, second


def _xs(result: maps.CatalogMap) -> dict[str, float]:
    return {point.title: point.x for point in result.points}


def test_two_families_land_on_opposite_sides_along_x_in_the_unit_square() -> None:
    rng = np.random.default_rng(1)
    _families(rng)

    result = maps.catalog_map(colour_by="album")

    assert result.model == "features"
    assert len(result.points) == 8
    for point in result.points:
        assert -1.0 <= point.x <= 1.0 and -1.0 <= point.y <= 1.0
    assert max(abs(p.x) for p in result.points) == pytest.approx(1.0)
    assert max(abs(p.y) for p in result.points) == pytest.approx(1.0)
    chords = {np.sign(p.x) for p in result.points if p.group == "Chords"}
    drums = {np.sign(p.x) for p in result.points if p.group == "Drums"}
    assert len(chords) == 1 and len(drums) == 1 and chords != drums
    # Most of the spread is the split between the families.
    first, second = result.explained_variance
    assert first > 0.5 and 0 < second < first
    assert first + second <= 1.0


def test_the_projection_is_deterministic_including_signs() -> None:
    rng = np.random.default_rng(2)
    _families(rng)
    first = maps.catalog_map(colour_by="album")
    cache.clear()

    again = maps.catalog_map(colour_by="album")

    assert [(p.song_id, p.x, p.y) for p in first.points] == [(p.song_id, p.x, p.y) for p in again.points]


def test_pca_matches_numpy_svd_and_fixes_the_sign_of_each_component() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(40, 12)).astype(np.float32) * np.linspace(3, 0.5, 12, dtype=np.float32)

    coords, explained = map_refresh.pca_2d(matrix)
    flipped, _ = map_refresh.pca_2d(-matrix)  # the same cloud, mirrored: the same picture, mirrored

    centred = matrix.astype(np.float64) - matrix.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    assert explained == pytest.approx(tuple(singular[:2] ** 2 / (singular**2).sum()), rel=1e-4)
    for axis in range(2):
        component = vt[axis] * np.sign(vt[axis][np.argmax(np.abs(vt[axis]))])
        expected = centred @ component
        assert coords[:, axis] == pytest.approx(expected / np.abs(expected).max(), abs=1e-4)
    np.testing.assert_allclose(flipped, -coords, atol=1e-4)
    # More rows than dimensions takes the covariance route; it agrees with the SVD.
    tall = rng.normal(size=(300, 6)).astype(np.float32) * np.array([4, 2, 1, 1, 0.5, 0.2], dtype=np.float32)
    coords_tall, explained_tall = map_refresh.pca_2d(tall)
    centred = tall.astype(np.float64) - tall.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    assert explained_tall == pytest.approx(tuple(singular[:2] ** 2 / (singular**2).sum()), rel=1e-4)
    component = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    expected = centred @ component
    assert coords_tall[:, 0] == pytest.approx(expected / np.abs(expected).max(), abs=1e-4)


def test_no_songs_make_an_empty_map() -> None:
    SongFactory.create(status=SongStatus.PROCESSING)

    result = maps.catalog_map(colour_by="album")

    assert result.points == []
    assert result.groups == []
    assert result.explained_variance == (0.0, 0.0)


def test_one_song_sits_at_the_origin() -> None:
    _song(_vector(0, np.random.default_rng(4)), title="Alone")

    result = maps.catalog_map(colour_by="tag")

    [point] = result.points
    assert (point.x, point.y) == (0.0, 0.0)
    assert point.group == "Unknown"
    assert result.explained_variance == (0.0, 0.0)


def test_two_songs_lie_on_a_line() -> None:
    rng = np.random.default_rng(5)
    left = _song(_vector(0, rng), title="Left")
    right = _song(_vector(3, rng), title="Right")

    result = maps.catalog_map(colour_by="album")

    by_id = {point.song_id: point for point in result.points}
    # The two ends of the line, up to the float32 rounding of the host's BLAS.
    assert sorted([by_id[left.id].x, by_id[right.id].x]) == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert [by_id[left.id].y, by_id[right.id].y] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert result.explained_variance == pytest.approx((1.0, 0.0))


def test_only_ready_songs_of_the_active_model_with_a_vector_are_mapped() -> None:
    rng = np.random.default_rng(6)
    ready = [_song(_vector(i, rng), title=f"Ready {i}") for i in range(3)]
    deleting = _song(_vector(4, rng), title="Going")
    Song.objects.filter(pk=deleting.pk).update(status=SongStatus.DELETING)
    SongFactory.create(status=SongStatus.READY, embedding_model="panns-cnn14", title="Other model")
    SongFactory.create(status=SongStatus.READY, embedding_model="features", title="No vector yet")

    result = maps.catalog_map(colour_by="album")

    assert {point.song_id for point in result.points} == {song.id for song in ready}


def test_a_small_catalog_is_projected_again_only_when_its_songs_change(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    _families(rng, per_family=2)
    runs: list[int] = []
    original = map_refresh.project

    def counting_project(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(map_refresh, "project", counting_project)

    first = maps.catalog_map(colour_by="album")
    second = maps.catalog_map(colour_by="tag")  # the colouring is not part of the projection
    assert len(runs) == 1
    assert [(p.song_id, p.x, p.y) for p in first.points] == [(p.song_id, p.x, p.y) for p in second.points]
    assert MapProjection.objects.get().song_count == 4

    # Details that do not move songs are read fresh, without a new projection.
    song = Song.objects.get(title="Chord 0")
    Song.objects.filter(pk=song.pk).update(title="Renamed")
    assert "Renamed" in {point.title for point in maps.catalog_map(colour_by="album").points}
    assert len(runs) == 1

    added = _song(_vector(9, rng), title="Newcomer")
    result = maps.catalog_map(colour_by="album")
    assert len(runs) == 2
    assert added.id in {point.song_id for point in result.points}
    maps.catalog_map(colour_by="album")
    assert len(runs) == 2
    assert MapProjection.objects.count() == 1  # only the latest is kept

    # One song leaving while another arrives keeps the count, and `QuerySet.update` leaves updated_at alone.
    leaving = Song.objects.get(title="Drum 0")
    arriving = SongFactory.create(status=SongStatus.PROCESSING, embedding_model="features", title="Late")
    get_vector_index("features", DIM).upsert(arriving.id, arriving.object_key, _vector(7, rng))
    Song.objects.filter(pk=leaving.pk).update(status=SongStatus.DELETING)
    Song.objects.filter(pk=arriving.pk).update(status=SongStatus.READY)
    result = maps.catalog_map(colour_by="album")
    assert len(runs) == 3
    assert arriving.id in {point.song_id for point in result.points}
    assert leaving.id not in {point.song_id for point in result.points}


def test_colour_groups_by_album_and_by_top_tag() -> None:
    rng = np.random.default_rng(8)
    chord = _song(_vector(0, rng), title="Chord", album="Harmony")
    drums = _song(_vector(1, rng), title="Drums", album="Beats")
    plain = _song(_vector(2, rng), title="Plain", album="")
    SongTagFactory.create(song=chord, label="Music", score=0.4)
    SongTagFactory.create(song=chord, label="Guitar", score=0.9)
    SongTagFactory.create(song=drums, label="Drum", score=0.7)

    by_album = maps.catalog_map(colour_by="album")
    by_tag = maps.catalog_map(colour_by="tag")

    assert by_album.groups == ["Beats", "Harmony", "Unknown"]
    assert {p.title: p.group for p in by_album.points} == {"Chord": "Harmony", "Drums": "Beats", "Plain": "Unknown"}
    assert by_tag.groups == ["Drum", "Guitar", "Unknown"]
    assert {p.title: p.group for p in by_tag.points} == {"Chord": "Guitar", "Drums": "Drum", "Plain": "Unknown"}
    assert plain.id in {p.song_id for p in by_tag.points}


def test_titles_come_back_as_plain_strings_and_untitled_songs_show_their_file_name() -> None:
    rng = np.random.default_rng(9)
    _song(_vector(0, rng), title="<script>alert('x')</script>", artist="Tom & <b>Jerry</b>")
    _song(_vector(1, rng), title="", original_file_name="untitled take.mp3")

    result = maps.catalog_map(colour_by="album")

    assert {p.title for p in result.points} == {"<script>alert('x')</script>", "untitled take.mp3"}
    assert "Tom & <b>Jerry</b>" in {p.artist for p in result.points}


def test_unknown_colouring_and_an_unreachable_index_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="colour_by"):
        maps.catalog_map(colour_by="genre")  # type: ignore[arg-type]

    _song(_vector(0, np.random.default_rng(10)))

    def down(self: LocalVectorIndex) -> Any:
        raise IndexUnavailable("connection refused")

    monkeypatch.setattr(LocalVectorIndex, "snapshot", down)
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        maps.catalog_map(colour_by="album")


def test_the_projection_waits_for_songs_to_settle_but_never_longer_than_the_refresh_interval() -> None:
    delay = map_refresh.next_run_delay
    # Quiet for long enough: project now.
    assert delay(now=100.0, first_change=60.0, last_change=60.0, settle=30.0, refresh=300.0) == 0.0
    # Songs still arriving and the oldest change recent: wait until they settle...
    assert delay(now=100.0, first_change=50.0, last_change=95.0, settle=30.0, refresh=300.0) == pytest.approx(25.0)
    # ...but not past the refresh interval while they keep coming.
    assert delay(now=340.0, first_change=50.0, last_change=339.0, settle=30.0, refresh=300.0) == pytest.approx(10.0)
    assert delay(now=350.0, first_change=50.0, last_change=349.0, settle=30.0, refresh=300.0) == 0.0


def test_a_stream_of_songs_is_projected_at_most_once_per_interval_and_once_after_it_stops(
    settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    settings.MAP_SETTLE_SECONDS = 30.0
    settings.MAP_REFRESH_SECONDS = 300.0
    settings.MAP_CHECK_SECONDS = 30.0
    start = 1_000_000.0
    clock = {"now": start}
    queued: list[float] = []
    monkeypatch.setattr(map_refresh, "_clock", lambda: clock["now"])
    monkeypatch.setattr(map_refresh, "_queue_refresh", lambda: queued.append(clock["now"]))
    monkeypatch.setattr(map_refresh, "timezone", _FrozenTimezone(clock))
    runs: list[float] = []
    original = map_refresh.store_projection

    def recording_store(model: str | None = None) -> MapProjection:
        runs.append(clock["now"])
        return original(model)

    monkeypatch.setattr(map_refresh, "store_projection", recording_store)
    rng = np.random.default_rng(11)

    # A song every 10 s for 10 minutes, beat's check every 30 s; a queued run starts 1 s later (a worker picks it up).
    for second in range(0, 900, 5):
        clock["now"] = start + second
        while queued and queued[0] + 1 <= clock["now"]:
            queued.pop(0)
            map_refresh.refresh_projection()
        if second < 600 and second % 10 == 0:
            _song(_vector(second % 7, rng))
            with django_capture_on_commit_callbacks(execute=True):
                map_refresh.note_catalog_change()
        if second % 30 == 15:
            map_refresh.refresh_if_stale()

    # Due 300 s after the first song (noted by the song at 300 s), then by beat's check once the rest settled.
    assert [round(t - start) for t in runs] == [305, 620]
    assert MapProjection.objects.get().song_count == 60


def test_a_check_after_a_lost_note_queues_the_projection_once_and_not_again_while_it_runs(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[str] = []
    monkeypatch.setattr(map_refresh, "_queue_refresh", lambda: queued.append("run"))
    _song(_vector(0, np.random.default_rng(3)))  # ready, but nobody noted the change

    assert map_refresh.refresh_if_stale() is True
    assert map_refresh.refresh_if_stale() is False  # one queued: the next check does not queue a second
    map_refresh.refresh_projection()
    assert map_refresh.refresh_if_stale() is False  # covered now
    assert queued == ["run"] and MapProjection.objects.get().song_count == 1


class _FrozenTimezone:
    def __init__(self, clock: dict[str, float]) -> None:
        self.clock = clock

    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.clock["now"], tz=UTC)
