"""The local backend's own machinery: its host-shared segments, following writes, compaction and fast mode.

What every backend must do (order, exclusion, replacement, deletion, model scoping) is in test_index_contract.py;
the segment store itself (processes sharing it, restarts, damage) is in tests/derived/test_store.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from derived.models import IndexChange
from derived.store import forget_held
from embeddings.index import get_vector_index
from embeddings.index.local import LocalVectorIndex, wants_fast
from embeddings.index.segments import quantize
from embeddings.models import StoredVector

pytestmark = pytest.mark.django_db


def _unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _random_units(count: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_write_by_another_index_object_is_seen_by_the_next_search() -> None:
    index = get_vector_index("test-model", 2)
    index.upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))
    assert len(index.search(_unit([1, 0]), limit=5)) == 1

    other = uuid.uuid4()
    LocalVectorIndex(model="test-model", dim=2).upsert(other, "b.mp3", _unit([0, 1]))

    assert {hit.song_id for hit in index.search(_unit([1, 0]), limit=5)} >= {other}


def test_a_sync_reads_only_the_changed_songs(monkeypatch: pytest.MonkeyPatch) -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    for i in range(20):
        index.upsert(uuid.uuid4(), f"{i}.mp3", _unit([1, i]))
    index.search(_unit([1, 0]), limit=1)
    loaded: list[int] = []
    original = index.store.codec.load
    monkeypatch.setattr(index.store.codec, "load_all", None)  # a rebuild would fail

    def counting_load(ids: Any) -> Any:
        loaded.append(len(ids))
        return original(ids)

    monkeypatch.setattr(index.store.codec, "load", counting_load)

    index.upsert(uuid.uuid4(), "new.mp3", _unit([0, 1]))
    index.search(_unit([1, 0]), limit=1)

    assert loaded == [1]


def test_rows_of_another_size_are_not_searched() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    index.upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))
    StoredVector.objects.create(song_id=uuid.uuid4(), file="odd.mp3", model="test-model", dim=3, vector=b"\0" * 12)

    assert [hit.file for hit in index.search(_unit([1, 0]), limit=5)] == ["a.mp3"]


def test_a_replaced_vector_is_found_only_as_it_is_now() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    song = uuid.uuid4()
    index.upsert(song, "a.mp3", _unit([1, 0]))
    index.search(_unit([1, 0]), limit=1)

    index.upsert(song, "a.mp3", _unit([0, 1]))

    hits = index.search(_unit([0, 1]), limit=5)
    assert [(hit.song_id, round(hit.score, 5)) for hit in hits] == [(song, 1.0)]


def test_a_change_committed_late_below_the_highest_applied_is_still_applied() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    index.upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))
    index.search(_unit([1, 0]), limit=1)
    # A transaction that took its change id first but committed after a later one (PostgreSQL allows it).
    late_song = uuid.uuid4()
    top = IndexChange.objects.order_by("-id").first()
    assert top is not None
    later = IndexChange.objects.create(id=top.id + 5, kind=index.kind, song_id=uuid.uuid4())
    index.search(_unit([1, 0]), limit=1)
    StoredVector.objects.create(song_id=late_song, file="late.mp3", model="test-model", dim=2, vector=_unit([0, 1]))
    IndexChange.objects.create(id=later.id - 2, kind=index.kind, song_id=late_song)

    assert index.search(_unit([0, 1]), limit=1)[0].song_id == late_song


def test_many_small_writes_end_in_few_segments_and_dead_rows_are_dropped() -> None:
    index = LocalVectorIndex(model="test-model", dim=8)
    vectors = _random_units(300, 8)
    songs = [uuid.uuid4() for _ in range(300)]
    for song, vector in zip(songs, vectors, strict=True):
        index.upsert(song, f"{song}.mp3", vector)
        index.search(vector, limit=1)  # a sync after every write: one new segment each time
    for song in songs[:200]:
        index.delete(song)
    snapshot = index.snapshot()

    assert len(snapshot.parts) <= 12
    assert snapshot.live_rows == 100
    assert sum(part.alive.size for part in snapshot.parts) < 200  # dead rows were merged away
    assert {hit.song_id for hit in index.search(vectors[250], limit=1)} == {songs[250]}


def test_a_search_holding_an_older_snapshot_is_not_disturbed_by_writes() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    first = uuid.uuid4()
    index.upsert(first, "a.mp3", _unit([1, 0]))
    held = index.snapshot()
    for i in range(50):
        index.upsert(uuid.uuid4(), f"{i}.mp3", _unit([1, i]))
        index.snapshot()
    index.delete(first)
    index.snapshot()

    assert held.live_rows == 1
    assert held.parts[0].segment.vectors[0] @ _unit([1, 0]) == pytest.approx(1.0)


def test_fast_mode_is_chosen_from_the_threshold(settings: Any) -> None:
    settings.LOCAL_INDEX_FAST_THRESHOLD = 100
    assert not wants_fast(99)
    assert wants_fast(100)
    settings.LOCAL_INDEX_FAST_THRESHOLD = 0
    assert not wants_fast(10**9)


def test_int8_codes_approximate_the_vectors_closely() -> None:
    vectors = _random_units(50, 64)
    codes, scales = quantize(vectors)
    restored = codes.astype(np.float32) * scales[:, None]
    assert np.abs(restored - vectors).max() <= scales.max() / 2 + 1e-7
    cosine = np.sum(restored * vectors, axis=1) / np.linalg.norm(restored, axis=1)
    assert (cosine > 0.999).all()


def test_a_fresh_process_searches_the_segments_already_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    song = uuid.uuid4()
    index.upsert(song, "a.mp3", _unit([1, 0]))
    index.search(_unit([1, 0]), limit=1)
    forget_held()
    fresh = LocalVectorIndex(model="test-model", dim=2)
    monkeypatch.setattr(fresh.store.codec, "load_all", None)

    assert fresh.search(_unit([1, 0]), limit=1)[0].song_id == song
