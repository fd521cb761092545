"""One behavioural suite that every vector index backend must pass.

`local` always runs; `atlas` runs when MONGODB_URI names an Atlas cluster or a mongodb/mongodb-atlas-local server
(Atlas applies writes to its search index asynchronously, so its checks are retried for a while).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command

from derived.store import forget_held
from embeddings.index import VectorIndex, VectorIndexError, get_vector_index
from embeddings.index.local import LocalVectorIndex, wants_fast
from embeddings.models import StoredVector
from embeddings.registry import model_dim

pytestmark = pytest.mark.django_db

# The size the `features` model makes, so that `manage.py atlas_index` builds an index these vectors fit.
DIM = model_dim("features")
ATLAS_URI = os.environ.get("MONGODB_URI", "")


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


@dataclass
class Backend:
    name: str
    index: Callable[[str], VectorIndex]
    # Runs a check until it passes; Atlas needs time to index writes, the local index none.
    eventually: Callable[[Callable[[], None]], None]


def _at_once(check: Callable[[], None]) -> None:
    check()


def _within(seconds: float) -> Callable[[Callable[[], None]], None]:
    def retry(check: Callable[[], None]) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                check()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    return retry


@pytest.fixture(scope="module")
def atlas_collection() -> Iterator[str]:
    """A collection of its own with a queryable vector index, created once for the module and dropped after."""
    from django.test import override_settings

    from embeddings.index.atlas import close_clients, mongo_client

    name = f"contract_{uuid.uuid4().hex[:8]}"
    with override_settings(
        VECTOR_BACKEND="atlas", MONGODB_URI=ATLAS_URI, MONGODB_COLLECTION=name, EMBEDDING_MODEL="features"
    ):
        call_command("atlas_index", "--wait", "--timeout", "180")
        try:
            yield name
        finally:
            from django.conf import settings

            mongo_client(ATLAS_URI)[settings.MONGODB_DB].drop_collection(name)
            close_clients()


BACKENDS = [
    "local",
    pytest.param("atlas", marks=[pytest.mark.live, pytest.mark.skipif(not ATLAS_URI, reason="MONGODB_URI is not set")]),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Iterator[Backend]:
    settings.VAR_DIR = tmp_path
    forget_held()
    run = uuid.uuid4().hex[:8]  # model names of their own, so runs sharing a server never see each other's vectors
    if request.param == "local":
        yield Backend("local", lambda model: get_vector_index(f"{model}-{run}", DIM), _at_once)
    else:
        settings.VECTOR_BACKEND = "atlas"
        settings.MONGODB_URI = ATLAS_URI
        settings.MONGODB_COLLECTION = request.getfixturevalue("atlas_collection")
        yield Backend("atlas", lambda model: get_vector_index(f"{model}-{run}", DIM), _within(60))
    forget_held()


def test_hits_come_nearest_first_with_dot_product_scores(backend: Backend) -> None:
    index = backend.index("contract")
    ids = [uuid.uuid4() for _ in range(3)]
    index.upsert(ids[0], "a.mp3", unit(1, 0, 0))
    index.upsert(ids[1], "b.mp3", unit(0.9, 0.1, 0))
    index.upsert(ids[2], "c.mp3", unit(0.5, 0, 1))

    def check() -> None:
        hits = index.search(unit(1, 0, 0), limit=3)
        assert [hit.song_id for hit in hits] == ids
        assert [hit.file for hit in hits] == ["a.mp3", "b.mp3", "c.mp3"]
        expected = [float(unit(1, 0, 0) @ unit(*v)) for v in [(1, 0, 0), (0.9, 0.1, 0), (0.5, 0, 1)]]
        assert [hit.score for hit in hits] == pytest.approx(expected, abs=1e-4)

    backend.eventually(check)
    assert len(index.search(unit(1, 0, 0), limit=2)) == 2


def test_more_like_this_never_returns_the_excluded_file(backend: Backend) -> None:
    index = backend.index("contract")
    song, other = uuid.uuid4(), uuid.uuid4()
    index.upsert(song, "uploads/song.mp3", unit(1, 0))
    index.upsert(other, "uploads/other.mp3", unit(0.6, 0.8))

    def check() -> None:
        vector = index.get(song)
        assert vector is not None
        hits = index.search(vector, limit=5, exclude_file="uploads/song.mp3")
        assert [hit.song_id for hit in hits] == [other]
        assert hits[0].score == pytest.approx(0.6, abs=1e-4)

    backend.eventually(check)


def test_upsert_replaces_the_songs_vector(backend: Backend) -> None:
    index = backend.index("contract")
    song = uuid.uuid4()
    index.upsert(song, "a.mp3", unit(1, 0))
    index.upsert(song, "a.mp3", unit(0, 1))

    stored = index.get(song)
    assert stored is not None
    np.testing.assert_allclose(stored, unit(0, 1))

    def check() -> None:
        hits = index.search(unit(0, 1), limit=5)
        assert [hit.song_id for hit in hits] == [song]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)

    backend.eventually(check)


def test_delete_removes_the_vector_and_tolerates_a_missing_one(backend: Backend) -> None:
    index = backend.index("contract")
    song, kept = uuid.uuid4(), uuid.uuid4()
    index.upsert(song, "a.mp3", unit(1, 0))
    index.upsert(kept, "b.mp3", unit(0, 1))
    backend.eventually(lambda: _assert_found(index, {song, kept}))

    index.delete(song)
    index.delete(song)

    assert index.get(song) is None
    backend.eventually(lambda: _assert_found(index, {kept}))


def _assert_found(index: VectorIndex, songs: set[uuid.UUID]) -> None:
    assert {hit.song_id for hit in index.search(unit(1, 1), limit=10)} == songs


def test_models_never_mix(backend: Backend) -> None:
    first, second = backend.index("model-a"), backend.index("model-b")
    song_a, song_b = uuid.uuid4(), uuid.uuid4()
    first.upsert(song_a, "a.mp3", unit(1, 0))
    second.upsert(song_b, "b.mp3", unit(1, 0))

    backend.eventually(lambda: _assert_model_sees(first, song_a))
    backend.eventually(lambda: _assert_model_sees(second, song_b))
    assert second.get(song_a) is None


def _assert_model_sees(index: VectorIndex, song: uuid.UUID) -> None:
    assert [hit.song_id for hit in index.search(unit(1, 0), limit=5)] == [song]


@pytest.mark.parametrize(
    "vector",
    [np.ones(DIM + 1, dtype=np.float32), np.ones((2, DIM), dtype=np.float32), np.full(DIM, np.nan, dtype=np.float32)],
    ids=["too long", "matrix", "nan"],
)
def test_vectors_of_the_wrong_size_or_with_nan_are_refused(backend: Backend, vector: np.ndarray) -> None:
    index = backend.index("contract")

    with pytest.raises(VectorIndexError, match=rf"{DIM}-d|NaN"):
        index.upsert(uuid.uuid4(), "a.mp3", vector)
    with pytest.raises(VectorIndexError):
        index.search(vector, limit=1)
    with pytest.raises(VectorIndexError, match="limit"):
        index.search(unit(1), limit=0)


# --- the local fast path against exact search ----------------------------------------------------------------


def test_local_fast_path_finds_what_exact_search_finds(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    count, dim, model = 5000, 64, "fast-check"
    vectors = np.random.default_rng(7).standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    songs = [uuid.uuid4() for _ in range(count)]
    StoredVector.objects.bulk_create(
        StoredVector(song_id=song, file=f"uploads/{i}.mp3", model=model, dim=dim, vector=vectors[i].tobytes())
        for i, song in enumerate(songs)
    )
    index = LocalVectorIndex(model=model, dim=dim)

    settings.LOCAL_INDEX_FAST_THRESHOLD = 0  # exact: the reference
    forget_held()
    queries = range(0, count, 100)
    exact = {i: index.search(vectors[i], limit=10, exclude_file=f"uploads/{i}.mp3") for i in queries}
    assert not wants_fast(index.snapshot().live_rows)

    settings.LOCAL_INDEX_FAST_THRESHOLD = 1000
    forget_held()
    assert wants_fast(index.snapshot().live_rows)
    for i in queries:
        fast = index.search(vectors[i], limit=10, exclude_file=f"uploads/{i}.mp3")
        assert [hit.song_id for hit in fast] == [hit.song_id for hit in exact[i]]  # recall@10 == 1, same order
        # Re-scored exactly in float32 (equal up to the summation order of the two products).
        assert [hit.score for hit in fast] == pytest.approx([hit.score for hit in exact[i]], abs=1e-6)
        assert songs[i] not in {hit.song_id for hit in fast}

    # Writes reach the fast mirror incrementally, and are searched exactly.
    newcomer = uuid.uuid4()
    index.upsert(newcomer, "uploads/new.mp3", vectors[0])
    hits = index.search(vectors[0], limit=2, exclude_file="uploads/0.mp3")
    assert hits[0].song_id == newcomer
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    index.delete(newcomer)
    assert newcomer not in {hit.song_id for hit in index.search(vectors[0], limit=5)}
    forget_held()


def test_a_song_is_found_at_once_after_wait_searchable_returns(backend: Backend) -> None:
    index = backend.index("contract")
    song = uuid.uuid4()
    index.upsert(song, "uploads/fresh.mp3", unit(0, 0, 1))

    index.wait_searchable(song, unit(0, 0, 1), timeout=60)

    assert [hit.song_id for hit in index.search(unit(0, 0, 1), limit=1)] == [song]
