from __future__ import annotations

import uuid

import numpy as np
import pytest

from embeddings.index import VectorIndexError, get_vector_index
from embeddings.index.local import _snapshots
from embeddings.models import IndexVersion, StoredVector

pytestmark = pytest.mark.django_db


def _unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_it_returns_nearest_vectors_best_first_and_excludes_a_file() -> None:
    index = get_vector_index("test-model", 3)
    ids = [uuid.uuid4() for _ in range(3)]
    index.upsert(ids[0], "a.mp3", _unit([1, 0, 0]))
    index.upsert(ids[1], "b.mp3", _unit([0.9, 0.1, 0]))
    index.upsert(ids[2], "c.mp3", _unit([0, 0, 1]))

    hits = index.search(_unit([1, 0, 0]), limit=3)
    assert [hit.song_id for hit in hits] == ids
    assert hits[0].score == pytest.approx(1.0)

    hits = index.search(_unit([1, 0, 0]), limit=2, exclude_file="a.mp3")
    assert [hit.file for hit in hits] == ["b.mp3", "c.mp3"]


def test_upsert_replaces_and_delete_removes() -> None:
    index = get_vector_index("test-model", 2)
    song = uuid.uuid4()
    index.upsert(song, "a.mp3", _unit([1, 0]))
    index.upsert(song, "a.mp3", _unit([0, 1]))

    assert StoredVector.objects.count() == 1
    assert index.search(_unit([0, 1]), limit=1)[0].score == pytest.approx(1.0)

    index.delete(song)
    index.delete(song)
    assert index.search(_unit([0, 1]), limit=5) == []
    assert index.get(song) is None


def test_models_never_mix() -> None:
    get_vector_index("model-a", 2).upsert(uuid.uuid4(), "a.mp3", _unit([1, 0]))

    assert get_vector_index("model-b", 2).search(_unit([1, 0]), limit=5) == []


@pytest.mark.parametrize("vector", [np.ones(3, dtype=np.float32), np.array([np.nan, 1.0], dtype=np.float32)])
def test_it_refuses_vectors_of_the_wrong_size_or_with_nan(vector) -> None:
    index = get_vector_index("test-model", 2)

    with pytest.raises(VectorIndexError, match=r"2-d|NaN"):
        index.upsert(uuid.uuid4(), "a.mp3", vector)
    with pytest.raises(VectorIndexError):
        index.search(vector, limit=1)


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
    assert _snapshots["test-model"].version == fresh
