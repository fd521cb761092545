"""The local backend's own machinery: the per-process mirror, its incremental sync, compaction and fast mode.

What every backend must do (order, exclusion, replacement, deletion, model scoping) is in test_index_contract.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embeddings.index import get_vector_index
from embeddings.index.local import LocalVectorIndex, _mirrors, forget_mirrors
from embeddings.index.mirror import Mirror, quantize
from embeddings.index.scan import search_view
from embeddings.models import IndexVersion, StoredVector

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_mirrors(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.VAR_DIR = tmp_path
    forget_mirrors()
    yield
    forget_mirrors()


def _unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _random_units(count: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _mirror(model: str = "test-model", dim: int = 2) -> Mirror:
    return _mirrors[(model, dim)]


def test_a_write_from_another_process_is_seen_by_the_next_search() -> None:
    index = get_vector_index("test-model", 2)
    index.upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))
    assert len(index.search(_unit([1, 0]), limit=5)) == 1

    # Another process writes straight to the database and changes the version.
    StoredVector.objects.create(
        song_id=uuid.uuid4(), file="b.mp3", model="test-model", dim=2, vector=_unit([0, 1]).tobytes()
    )
    assert len(index.search(_unit([1, 0]), limit=5)) == 1  # cached until the version changes
    fresh = uuid.uuid4()
    IndexVersion.objects.filter(model="test-model").update(version=fresh)

    assert len(index.search(_unit([1, 0]), limit=5)) == 2
    assert _mirror().version == fresh


def test_a_new_version_reads_only_the_changed_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    index = get_vector_index("test-model", 2)
    for i in range(5):
        index.upsert(uuid.uuid4(), f"{i}.mp3", _unit([1, i]))
    index.search(_unit([1, 0]), limit=1)
    fetched: list[list[int]] = []
    original = Mirror.fetch
    monkeypatch.setattr(Mirror, "load", None)  # a full reload would fail

    def counting_fetch(self: Mirror, rows: Any, pks: Any) -> None:
        fetched.append(list(pks))
        original(self, rows, pks)

    monkeypatch.setattr(Mirror, "fetch", counting_fetch)

    newcomer = uuid.uuid4()
    index.upsert(newcomer, "new.mp3", _unit([-1, 0]))

    assert index.search(_unit([-1, 0]), limit=1)[0].song_id == newcomer
    assert [len(pks) for pks in fetched if pks] == [1]
    assert _mirror().n == 6


def test_rewriting_an_old_song_is_seen_because_every_write_gets_a_new_pk() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    songs = [uuid.uuid4() for _ in range(150)]  # more than the top pks each sync re-checks
    StoredVector.objects.bulk_create(
        StoredVector(song_id=song, file=f"{i}.mp3", model="test-model", dim=2, vector=_unit([1, 0]).tobytes())
        for i, song in enumerate(songs)
    )
    old_pk = StoredVector.objects.get(song_id=songs[0]).pk
    index.search(_unit([1, 0]), limit=1)

    index.upsert(songs[0], "0.mp3", _unit([0, 1]))

    assert StoredVector.objects.get(song_id=songs[0]).pk > old_pk
    assert [hit.song_id for hit in index.search(_unit([0, 1]), limit=1)] == [songs[0]]
    assert _mirror().live == 150


def test_rows_of_another_size_do_not_upset_the_sync() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    index.upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))
    LocalVectorIndex(model="test-model", dim=3).upsert(uuid.uuid4(), "b.mp3", _unit([1, 0, 0]))
    index.search(_unit([1, 0]), limit=1)
    assert _mirror().foreign[0] == 1
    fetched = len(index.search(_unit([1, 0]), limit=5))
    index.upsert(uuid.uuid4(), "c.mp3", _unit([0, 1]))

    assert len(index.search(_unit([1, 0]), limit=5)) == fetched + 1


def test_deletes_by_another_process_are_noticed_by_count_and_sum() -> None:
    index = get_vector_index("test-model", 2)
    songs = [uuid.uuid4() for _ in range(3)]
    for i, song in enumerate(songs):
        index.upsert(song, f"{i}.mp3", _unit([1, i]))
    index.search(_unit([1, 0]), limit=1)

    StoredVector.objects.filter(song_id=songs[0]).delete()  # no version bump of its own
    IndexVersion.objects.filter(model="test-model").update(version=uuid.uuid4())

    assert {hit.song_id for hit in index.search(_unit([1, 0]), limit=5)} == set(songs[1:])
    assert _mirror().live == 2


def test_replaced_rows_die_and_many_dead_rows_are_compacted_away() -> None:
    index = get_vector_index("test-model", 2)
    song = uuid.uuid4()
    index.upsert(song, "a.mp3", _unit([1, 0]))
    index.search(_unit([1, 0]), limit=1)
    index.upsert(song, "a.mp3", _unit([0, 1]))

    hits = index.search(_unit([0, 1]), limit=5)
    assert [(hit.song_id, round(hit.score, 5)) for hit in hits] == [(song, 1.0)]
    assert _mirror().dead == [0]

    mirror = _mirror().compacted(fast=False)
    assert (mirror.n, mirror.dead, mirror.live) == (1, [], 1)
    assert search_view(mirror.view, _unit([0, 1]), 1)[0].song_id == song


def test_a_search_holding_an_older_view_is_not_disturbed_by_writes() -> None:
    index = LocalVectorIndex(model="test-model", dim=2)
    first = uuid.uuid4()
    index.upsert(first, "a.mp3", _unit([1, 0]))
    old_view = index.view()
    for i in range(20):
        index.upsert(uuid.uuid4(), f"{i}.mp3", _unit([1, 0.01 * i]))
    index.search(_unit([1, 0]), limit=1)

    assert [hit.song_id for hit in search_view(old_view, _unit([1, 0]), 5)] == [first]


def test_the_mirror_switches_to_fast_mode_at_the_threshold_and_back(settings: Any) -> None:
    settings.LOCAL_INDEX_FAST_THRESHOLD = 10
    index = LocalVectorIndex(model="test-model", dim=8)
    vectors = _random_units(12, 8)
    songs = [uuid.uuid4() for _ in vectors]
    for i in range(9):
        index.upsert(songs[i], f"{i}.mp3", vectors[i])
    assert not index.view().fast
    for i in range(9, 12):
        index.upsert(songs[i], f"{i}.mp3", vectors[i])
    view = index.view()
    assert view.fast
    assert isinstance(view.exact, np.memmap)
    assert view.codes is not None and view.codes.dtype == np.int8
    assert index.search(vectors[11], limit=1)[0].song_id == songs[11]

    for song in songs[:4]:  # 8 left: below 90 % of the threshold
        index.delete(song)
    assert not index.view().fast
    assert index.search(vectors[11], limit=1)[0].song_id == songs[11]


def test_int8_codes_approximate_the_vectors_closely() -> None:
    vectors = _random_units(50, 64)
    codes, scales = quantize(vectors)

    assert codes.dtype == np.int8
    np.testing.assert_allclose(codes * scales[:, None], vectors, atol=float(scales.max()) / 2 + 1e-7)


def test_fast_mode_keeps_a_quarter_of_float32_in_ram(settings: Any) -> None:
    vectors = _random_units(2000, 64)
    ids = [uuid.uuid4() for _ in vectors]
    mirror = Mirror.from_arrays(vectors, ids, [f"{i}.mp3" for i in range(len(ids))], fast=True)

    assert mirror.codes is not None and mirror.scales is not None
    in_ram = mirror.codes[: mirror.n].nbytes + mirror.scales[: mirror.n].nbytes
    assert in_ram / mirror.n == 64 + 4
    assert not isinstance(mirror.codes, np.memmap)
    np.testing.assert_array_equal(mirror.exact[: mirror.n], vectors)  # the memory map holds the exact values
