"""The vector index protocol and its `get_vector_index()` factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import numpy as np
from django.conf import settings

from embeddings.base import FloatArray


@dataclass(frozen=True)
class Hit:
    song_id: UUID
    file: str
    score: float


class VectorIndexError(Exception):
    """The index refused a request; the message says why and how to fix it."""


class IndexUnavailable(VectorIndexError):
    """The index cannot be reached right now; retrying later may succeed."""


class VectorIndex(Protocol):
    model: str
    dim: int

    def upsert(self, song_id: UUID, file: str, vector: FloatArray) -> None:
        """Store the song's vector, replacing any earlier one for this model."""
        ...

    def delete(self, song_id: UUID) -> None:
        """Remove the song's vector for this model; a missing vector is not an error."""
        ...

    def wait_searchable(self, song_id: UUID, vector: FloatArray, *, timeout: float) -> None:
        """Return once `search` can find the song just upserted; IndexUnavailable if it cannot within `timeout`."""
        ...

    def get(self, song_id: UUID) -> FloatArray | None: ...

    def export(self) -> tuple[list[UUID], FloatArray]:
        """Every song id with its vector (maps); rows of the matrix follow the ids."""
        ...

    def song_ids(self) -> list[UUID]:
        """Every song with a vector of this model, without reading the vectors (consistency checks)."""
        ...

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        """The `limit` nearest vectors by dot product, best first, never the excluded file."""
        ...


def checked_vector(vector: FloatArray, *, model: str, dim: int) -> FloatArray:
    """The vector as float32 of the index's size, or a clear error (shared by every backend)."""
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise VectorIndexError(
            f"vector of shape {array.shape} does not fit the {model} index, which holds {dim}-d vectors"
        )
    if not np.all(np.isfinite(array)):
        raise VectorIndexError("vector contains NaN or infinite values")
    return array


def get_vector_index(model: str, dim: int) -> VectorIndex:
    """The configured index, scoped to one embedding model so vectors of different models never mix.

    `local` (the default) keeps vectors in the database and searches them in memory; `atlas` uses MongoDB Atlas
    Vector Search (MONGODB_URI). Both return scores on the same scale: the dot product of unit vectors.
    """
    backend = settings.VECTOR_BACKEND
    if backend == "local":
        from embeddings.index.local import LocalVectorIndex

        return LocalVectorIndex(model=model, dim=dim)
    if backend == "atlas":
        from embeddings.index.atlas import AtlasVectorIndex

        return AtlasVectorIndex.from_settings(model=model, dim=dim)
    raise VectorIndexError(f"unknown VECTOR_BACKEND {backend!r}")
