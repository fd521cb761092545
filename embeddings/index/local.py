"""The local vector index: vectors kept in the database, searched from this host's shared derived index.

The table `StoredVector` is the durable copy. Every write also records an `IndexChange`, which the host's derived
index (`derived.store.SegmentStore` with `segments.VectorCodec`: memory-mapped segment files in DERIVED_INDEX_DIR)
follows, so every process on the host searches one copy on disk and sees other processes' writes at its next search.

Two search modes, chosen by the number of live vectors of the model:
* exact, below `LOCAL_INDEX_FAST_THRESHOLD`: one float32 matrix-vector product per segment;
* fast, from the threshold on: an int8 scan per segment (a quarter of the bytes) picks candidates, which are then
  scored exactly from the float32 rows; only the choice of candidates is approximate.
"""

from __future__ import annotations

import re
from uuid import UUID

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from derived.segments import Snapshot
from derived.services import record_change
from derived.store import SegmentStore, StoreBusy
from embeddings.base import FloatArray
from embeddings.index import Hit, IndexUnavailable, VectorIndexError, checked_vector
from embeddings.index.scan import search_snapshot
from embeddings.index.segments import Payload, VectorCodec, VectorSegment
from embeddings.models import StoredVector


def wants_fast(rows: int) -> bool:
    threshold: int = settings.LOCAL_INDEX_FAST_THRESHOLD
    return 0 < threshold <= rows


class LocalVectorIndex:
    def __init__(self, *, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim
        self.kind = f"vectors:{model}"
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)
        self.store: SegmentStore[VectorSegment, Payload] = SegmentStore(
            f"vectors-{safe}-{dim}", self.kind, VectorCodec(model, dim)
        )

    def _check(self, vector: FloatArray) -> FloatArray:
        return checked_vector(vector, model=self.model, dim=self.dim)

    def upsert(self, song_id: UUID, file: str, vector: FloatArray) -> None:
        blob = self._check(vector).astype("<f4").tobytes()
        for attempt in range(2):
            try:
                with transaction.atomic():
                    StoredVector.objects.update_or_create(
                        song_id=song_id, model=self.model, defaults={"file": file, "dim": self.dim, "vector": blob}
                    )
                    record_change(self.kind, song_id)
                return
            except IntegrityError:  # the same song upserted concurrently: the other write won; write again
                if attempt:
                    raise

    def wait_searchable(self, song_id: UUID, vector: FloatArray, *, timeout: float) -> None:
        # The committed row is searchable once this host's derived index has applied it.
        self.snapshot(wait=timeout)

    def delete(self, song_id: UUID) -> None:
        with transaction.atomic():
            deleted, _ = StoredVector.objects.filter(song_id=song_id, model=self.model).delete()
            if deleted:
                record_change(self.kind, song_id)

    def get(self, song_id: UUID) -> FloatArray | None:
        row = StoredVector.objects.filter(song_id=song_id, model=self.model).values_list("vector", flat=True).first()
        return None if row is None else np.frombuffer(bytes(row), dtype="<f4").astype(np.float32)

    def export(self) -> tuple[list[UUID], FloatArray]:
        rows = list(self._rows().filter(dim=self.dim).order_by("song_id").values_list("song_id", "vector"))
        matrix = np.empty((len(rows), self.dim), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            matrix[i] = np.frombuffer(bytes(blob), dtype="<f4")
        return [song_id for song_id, _ in rows], matrix

    def song_ids(self) -> list[UUID]:
        return list(self._rows().filter(dim=self.dim).values_list("song_id", flat=True))

    def _rows(self) -> QuerySet[StoredVector]:
        return StoredVector.objects.filter(model=self.model)

    def snapshot(self, *, wait: float | None = None) -> Snapshot[VectorSegment]:
        try:
            return self.store.snapshot() if wait is None else self.store.sync(wait=wait).snapshot
        except StoreBusy as exc:
            raise IndexUnavailable(str(exc)) from exc

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        query = self._check(vector)
        if limit < 1:
            raise VectorIndexError("limit must be at least 1")
        snapshot = self.snapshot()
        return search_snapshot(snapshot, query, limit, exclude_file, fast=wants_fast(snapshot.live_rows))
