"""Search over vectors kept in the database and mirrored in memory, one mirror per process, model and size.

The database table `StoredVector` is the durable copy; `mirror.Mirror` is each process's copy in memory (see there
for its two modes and their memory), and `scan.search_view` searches it. Every write changes the model's
`IndexVersion`, so a search that sees a new version first applies what changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from uuid import UUID

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from embeddings.base import FloatArray
from embeddings.index import Hit, VectorIndexError, checked_vector
from embeddings.index.mirror import DEAD_SHARE, Mirror, View, wants_fast
from embeddings.index.scan import search_view
from embeddings.models import IndexVersion, StoredVector

logger = logging.getLogger(__name__)

_mirrors: dict[tuple[str, int], Mirror] = {}

_lock = threading.Lock()


def forget_mirrors() -> None:
    """Drop every in-memory mirror; the next search of each model loads it again."""
    with _lock:
        _mirrors.clear()


class LocalVectorIndex:
    def __init__(self, *, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim

    def _check(self, vector: FloatArray) -> FloatArray:
        return checked_vector(vector, model=self.model, dim=self.dim)

    def _bump(self) -> None:
        IndexVersion.objects.update_or_create(model=self.model, defaults={"version": uuid.uuid4()})

    def upsert(self, song_id: UUID, file: str, vector: FloatArray) -> None:
        blob = self._check(vector).astype("<f4").tobytes()
        for attempt in range(2):
            try:
                with transaction.atomic():
                    # A new row, not an update: a fresh pk is how other processes' mirrors find changed vectors.
                    StoredVector.objects.filter(song_id=song_id, model=self.model).delete()
                    StoredVector.objects.create(song_id=song_id, model=self.model, file=file, dim=self.dim, vector=blob)
                    self._bump()
                return
            except IntegrityError:  # the same song upserted concurrently: the other write won; write again
                if attempt:
                    raise

    def wait_searchable(self, song_id: UUID, vector: FloatArray, *, timeout: float) -> None:
        # Searches read the database, so a committed upsert is searchable at once.
        return None

    def delete(self, song_id: UUID) -> None:
        with transaction.atomic():
            deleted, _ = StoredVector.objects.filter(song_id=song_id, model=self.model).delete()
            if deleted:
                self._bump()

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

    def view(self) -> View:
        """The current rows: loaded on first use, then brought up to date whenever the version changed."""
        version = IndexVersion.objects.filter(model=self.model).values_list("version", flat=True).first()
        key = (self.model, self.dim)
        with _lock:
            mirror = _mirrors.get(key)
            if mirror is not None and mirror.pid != os.getpid():
                mirror = None
            changed = mirror is None or mirror.version != version
            if mirror is None:
                started = time.perf_counter()
                mirror = Mirror.load(self._rows(), self.dim)
                logger.info(
                    "loaded %d %s vectors in %.2f s (%s mode)",
                    mirror.live,
                    self.model,
                    time.perf_counter() - started,
                    "fast" if mirror.fast else "exact",
                )
            elif changed:
                mirror.sync(self._rows())
            fast = wants_fast(mirror.live, self.dim, currently=mirror.fast)
            if fast != mirror.fast or len(mirror.dead) > max(1024, mirror.n * DEAD_SHARE):
                mirror, changed = mirror.compacted(fast=fast), True
            mirror.version = version
            _mirrors[key] = mirror
            return mirror._publish() if changed else mirror.view

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        query = self._check(vector)
        if limit < 1:
            raise VectorIndexError("limit must be at least 1")
        return search_view(self.view(), query, limit, exclude_file)
