"""Exact search over vectors kept in the database and mirrored in memory as one float32 matrix."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from django.db import transaction

from embeddings.base import FloatArray
from embeddings.index import Hit, VectorIndexError
from embeddings.models import IndexVersion, StoredVector


@dataclass
class _Snapshot:
    version: UUID | None
    matrix: FloatArray
    song_ids: list[UUID]
    files: list[str]
    rows_by_file: dict[str, list[int]]


_snapshots: dict[str, _Snapshot] = {}
_snapshot_lock = threading.Lock()


class LocalVectorIndex:
    def __init__(self, *, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim

    def _check(self, vector: FloatArray) -> FloatArray:
        array = np.asarray(vector, dtype=np.float32)
        if array.shape != (self.dim,):
            raise VectorIndexError(
                f"vector of shape {array.shape} does not fit the {self.model} index, which holds {self.dim}-d vectors"
            )
        if not np.all(np.isfinite(array)):
            raise VectorIndexError("vector contains NaN or infinite values")
        return array

    def _bump(self) -> None:
        IndexVersion.objects.update_or_create(model=self.model, defaults={"version": uuid.uuid4()})

    def upsert(self, song_id: UUID, file: str, vector: FloatArray) -> None:
        array = self._check(vector)
        with transaction.atomic():
            StoredVector.objects.update_or_create(
                song_id=song_id,
                model=self.model,
                defaults={"file": file, "dim": self.dim, "vector": array.astype("<f4").tobytes()},
            )
            self._bump()

    def delete(self, song_id: UUID) -> None:
        with transaction.atomic():
            deleted, _ = StoredVector.objects.filter(song_id=song_id, model=self.model).delete()
            if deleted:
                self._bump()

    def get(self, song_id: UUID) -> FloatArray | None:
        row = StoredVector.objects.filter(song_id=song_id, model=self.model).values_list("vector", flat=True).first()
        return None if row is None else np.frombuffer(bytes(row), dtype="<f4").astype(np.float32)

    def _snapshot(self) -> _Snapshot:
        version = IndexVersion.objects.filter(model=self.model).values_list("version", flat=True).first()
        with _snapshot_lock:
            cached = _snapshots.get(self.model)
            if cached is not None and cached.version == version:
                return cached
            rows = list(
                StoredVector.objects.filter(model=self.model, dim=self.dim)
                .order_by("song_id")
                .values_list("song_id", "file", "vector")
            )
            matrix = np.empty((len(rows), self.dim), dtype=np.float32)
            for i, (_, _, blob) in enumerate(rows):
                matrix[i] = np.frombuffer(bytes(blob), dtype="<f4")
            rows_by_file: dict[str, list[int]] = {}
            for i, row in enumerate(rows):
                rows_by_file.setdefault(row[1], []).append(i)
            snapshot = _Snapshot(
                version=version,
                matrix=matrix,
                song_ids=[row[0] for row in rows],
                files=[row[1] for row in rows],
                rows_by_file=rows_by_file,
            )
            _snapshots[self.model] = snapshot
            return snapshot

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        query = self._check(vector)
        if limit < 1:
            raise VectorIndexError("limit must be at least 1")
        snapshot = self._snapshot()
        if not snapshot.song_ids:
            return []
        scores = snapshot.matrix @ query
        if exclude_file is not None:
            scores[snapshot.rows_by_file.get(exclude_file, [])] = -np.inf
        k = min(limit, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            Hit(song_id=snapshot.song_ids[i], file=snapshot.files[i], score=float(scores[i]))
            for i in top
            if np.isfinite(scores[i])
        ]
