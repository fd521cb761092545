"""The in-memory mirror of one model's stored vectors, as each process holds it.

The database table `StoredVector` is the durable copy; each process mirrors it in memory. Every write changes the
model's `IndexVersion`; a search that sees a new version applies only what changed: every write inserts a row with a
new pk, so changes are the rows above the highest pk held, and a count and sum of pks catch deletions (see
`Mirror.sync`). The file (in VAR_DIR/vector-cache) holding the fast mode's float32 rows is unlinked at once.
A mirror works in one of two modes, chosen by its number of vectors:

* exact, below `LOCAL_INDEX_FAST_THRESHOLD` vectors: one contiguous float32 matrix in RAM; a query is one BLAS
  matrix-vector product and an argpartition. This is the reference the fast mode is measured against.
* fast, from `LOCAL_INDEX_FAST_THRESHOLD` vectors on: RAM holds only an int8 copy of each vector with one float32
  scale per row (dim + 4 bytes, a quarter of float32). A query scans that copy with one int8 matrix-vector product
  (compiled with numba, int32 accumulators) to pick the best `max(10 x limit, 100)` candidates, then scores those
  candidates exactly in float32, reading their rows from a memory map of the float32 matrix. The map's file is
  private to the process and unlinked on creation (it never outlives the process); its pages live in the kernel's
  page cache, which is reclaimed under memory pressure, and a query touches only its candidates' rows. Scores are
  therefore always exact float32 dot products; only the choice of candidates is approximate.

Memory per vector, with d = dim: exact mode 4d bytes in RAM; fast mode d + 4 bytes in RAM plus 4d bytes of
reclaimable file-backed pages; both plus the bookkeeping per row (ids, file names, lookups: a few hundred bytes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from embeddings.base import FloatArray
from embeddings.index import VectorIndexError
from embeddings.models import StoredVector

# Each sync also re-checks the stamps of this many of the highest pks it holds: a rolled-back transaction that the
# mirror saw (only possible on the writing connection itself, e.g. in tests) can leave SQLite reusing those pks.
RECHECK_TOP_PKS = 100
# Rows read from the database per query while loading.
_CHUNK = 500
# Once this share of the rows is dead (deleted or replaced), the mirror is rewritten without them.
DEAD_SHARE = 0.25
# A fast mirror goes back to exact mode only below this share of the threshold, so it does not flap.
_HYSTERESIS = 0.9
# int32 accumulators hold 127 * 127 * dim; beyond this size the fast path is not used.
_MAX_FAST_DIM = 100_000

IntArray = npt.NDArray[np.intp]
Int8Array = npt.NDArray[np.int8]


@dataclass(frozen=True)
class View:
    """What one search reads: a fixed window (rows below `n`) on the mirror's buffers, which only grow past it."""

    n: int
    exact: FloatArray  # (capacity, dim): in RAM in exact mode, a memory map in fast mode
    codes: Int8Array | None  # (capacity, dim) in fast mode
    scales: FloatArray | None  # (capacity,) in fast mode
    song_ids: list[UUID]
    files: list[str]
    rows_by_file: dict[str, list[int]]
    dead: IntArray

    @property
    def fast(self) -> bool:
        return self.codes is not None


class Mirror:
    """The process's copy of one model's vectors of one size, with spare capacity to append to.

    Rows are appended, never rewritten: a vector that changes gets a new row and its old row is marked dead, so a
    search already holding a view never sees a row change under it. Dead rows are dropped by `compacted()`.
    Only one thread changes a mirror at a time (under `_lock`); searches read published views without a lock.
    """

    def __init__(self, dim: int, *, fast: bool, capacity: int) -> None:
        self.dim = dim
        self.fast = fast
        # A forked child must not append to its parent's memory-mapped file: it builds its own mirror.
        self.pid = os.getpid()
        self.version: UUID | None = None
        self.capacity = 0
        self.n = 0
        self.exact: FloatArray = np.empty((0, dim), dtype=np.float32)
        self.codes: Int8Array | None = None
        self.scales: FloatArray | None = None
        self._spill: IO[bytes] | None = None
        self.song_ids: list[UUID] = []
        self.files: list[str] = []
        self.pks: list[int] = []
        self.stamps: list[datetime] = []
        self.rows_by_file: dict[str, list[int]] = {}
        self.row_of_song: dict[UUID, int] = {}
        self.row_of_pk: dict[int, int] = {}
        self.dead: list[int] = []
        self.pk_sum = 0
        self.max_pk = 0
        # Rows of this model with another vector size: not mirrored, but part of the count and sum `sync` checks.
        self.foreign: tuple[int, int] = (0, 0)
        self._reserve(capacity)
        self.view = self._publish()

    # --- buffers -------------------------------------------------------------------------------------------

    def _reserve(self, capacity: int) -> None:
        """Grow the buffers to hold `capacity` rows. Untouched capacity costs address space, not memory."""
        capacity = max(capacity, 1)
        if capacity <= self.capacity:
            return
        n = self.n
        if self.fast:
            if self._spill is None:
                folder = settings.VAR_DIR / "vector-cache"
                folder.mkdir(parents=True, exist_ok=True)
                self._spill = tempfile.TemporaryFile(dir=folder, prefix="vectors-")  # noqa: SIM115 (lives with the mirror)
            # Extending the file keeps the pages already written; older views keep their own, shorter map.
            self._spill.truncate(capacity * self.dim * 4)
            self.exact = np.memmap(self._spill, dtype=np.float32, mode="r+", shape=(capacity, self.dim))
            codes = np.empty((capacity, self.dim), dtype=np.int8)
            scales = np.empty(capacity, dtype=np.float32)
            if self.codes is not None and self.scales is not None:
                codes[:n] = self.codes[:n]
                scales[:n] = self.scales[:n]
            self.codes, self.scales = codes, scales
        else:
            exact = np.empty((capacity, self.dim), dtype=np.float32)
            exact[:n] = self.exact[:n]
            self.exact = exact
        self.capacity = capacity

    def _publish(self) -> View:
        self.view = View(
            n=self.n,
            exact=self.exact,
            codes=self.codes,
            scales=self.scales,
            song_ids=self.song_ids,
            files=self.files,
            rows_by_file=self.rows_by_file,
            dead=np.fromiter(self.dead, dtype=np.intp, count=len(self.dead)),
        )
        return self.view

    # --- rows ------------------------------------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self.row_of_pk)

    def append(self, rows: Sequence[tuple[int, UUID, str, datetime]], vectors: FloatArray) -> None:
        """Add rows (pk, song id, file, updated at) with their vectors; an earlier row of the song or pk dies."""
        count = len(rows)
        if count == 0:
            return
        start = self.n
        if start + count > self.capacity:
            self._reserve(max(start + count, self.capacity + self.capacity // 2 + 1024))
        self.exact[start : start + count] = vectors
        if self.codes is not None and self.scales is not None:
            codes, scales = quantize(vectors)
            self.codes[start : start + count] = codes
            self.scales[start : start + count] = scales
        for offset, (pk, song_id, file, stamp) in enumerate(rows):
            for old in {self.row_of_song.get(song_id), self.row_of_pk.get(pk)}:
                if old is not None:
                    self.kill(old)
            row = start + offset
            self.song_ids.append(song_id)
            self.files.append(file)
            self.pks.append(pk)
            self.stamps.append(stamp)
            self.rows_by_file.setdefault(file, []).append(row)
            self.row_of_song[song_id] = row
            self.row_of_pk[pk] = row
            self.pk_sum += pk
            self.max_pk = max(self.max_pk, pk)
        self.n = start + count

    def kill(self, row: int) -> None:
        pk, song_id = self.pks[row], self.song_ids[row]
        if self.row_of_pk.get(pk) == row:
            del self.row_of_pk[pk]
            self.pk_sum -= pk
        if self.row_of_song.get(song_id) == row:
            del self.row_of_song[song_id]
        self.dead.append(row)

    def holds(self, pk: int, stamp: datetime) -> bool:
        """Whether the mirror has this row as it is now (same pk, same stamp)."""
        row = self.row_of_pk.get(pk)
        return row is not None and self.stamps[row] == stamp

    def compacted(self, *, fast: bool) -> Mirror:
        """A new mirror with the live rows only, in `fast` mode or not, copied from memory (no database reads)."""
        alive = sorted(self.row_of_pk.values())
        mirror = Mirror(self.dim, fast=fast, capacity=_capacity_for(len(alive)))
        for start in range(0, len(alive), 4096):
            rows = alive[start : start + 4096]
            mirror.append(
                [(self.pks[r], self.song_ids[r], self.files[r], self.stamps[r]) for r in rows],
                np.ascontiguousarray(self.exact[rows]),
            )
        mirror.version, mirror.foreign, mirror.max_pk = self.version, self.foreign, max(mirror.max_pk, self.max_pk)
        mirror._publish()
        return mirror

    # --- the database --------------------------------------------------------------------------------------

    def fetch(self, rows: QuerySet[StoredVector], pks: Iterable[int]) -> None:
        """Read these rows' vectors from the database and append them."""
        wanted = list(pks)
        for start in range(0, len(wanted), _CHUNK):
            self._append_records(
                rows.filter(pk__in=wanted[start : start + _CHUNK])
                .order_by("pk")
                .values_list("pk", "song_id", "file", "vector", "updated_at")
            )

    def _append_records(self, records: Iterable[tuple[int, UUID, str, Any, datetime]]) -> None:
        batch: list[tuple[int, UUID, str, datetime]] = []
        blobs: list[bytes] = []
        expected = self.dim * 4
        for pk, song_id, file, blob, stamp in records:
            data = bytes(blob)
            if len(data) != expected:
                raise VectorIndexError(
                    f"the stored vector of song {song_id} has {len(data)} bytes instead of {expected}; "
                    "re-embed it with `python manage.py reindex`"
                )
            batch.append((pk, song_id, file, stamp))
            blobs.append(data)
            if len(batch) == _CHUNK:
                self.append(batch, _decode(blobs, self.dim))
                batch, blobs = [], []
        self.append(batch, _decode(blobs, self.dim))

    def sync(self, model_rows: QuerySet[StoredVector]) -> None:
        """Apply what changed in the database since the last sync, without reading the unchanged rows.

        Every write of `LocalVectorIndex` inserts a row with a new pk (an upsert deletes the song's old row), so new
        and rewritten vectors are the rows above the highest pk the mirror holds. A count and a sum of the model's
        pks (answered from the index on `model`), compared with the mirror's, then reveal deleted rows and rows
        committed late below that pk; only then are all of the model's pks read.
        """
        rows = model_rows.filter(dim=self.dim)
        floor = self.max_pk - RECHECK_TOP_PKS if self.n else 0
        recent = rows.filter(pk__gt=floor).values_list("pk", "updated_at")
        self.fetch(rows, [pk for pk, stamp in recent if not self.holds(pk, stamp)])
        totals = model_rows.aggregate(count=Count("pk"), pk_sum=Sum("pk"))
        if (totals["count"], totals["pk_sum"] or 0) != (self.live + self.foreign[0], self.pk_sum + self.foreign[1]):
            present: set[int] = set()
            foreign_count = foreign_sum = 0
            for pk, dim in model_rows.values_list("pk", "dim"):
                if dim == self.dim:
                    present.add(pk)
                else:
                    foreign_count, foreign_sum = foreign_count + 1, foreign_sum + pk
            self.foreign = (foreign_count, foreign_sum)
            for pk in set(self.row_of_pk) - present:
                self.kill(self.row_of_pk[pk])
            self.fetch(rows, sorted(present - set(self.row_of_pk)))

    @classmethod
    def load(cls, model_rows: QuerySet[StoredVector], dim: int) -> Mirror:
        """A mirror of every row, streamed from the database in chunks."""
        rows = model_rows.filter(dim=dim)
        expected = rows.count()
        mirror = cls(dim, fast=wants_fast(expected, dim, currently=False), capacity=_capacity_for(expected))
        mirror._append_records(
            rows.order_by("pk").values_list("pk", "song_id", "file", "vector", "updated_at").iterator(chunk_size=_CHUNK)
        )
        others = model_rows.exclude(dim=dim).aggregate(count=Count("pk"), pk_sum=Sum("pk"))
        mirror.foreign = (others["count"], others["pk_sum"] or 0)
        return mirror

    @classmethod
    def from_arrays(cls, vectors: FloatArray, song_ids: Sequence[UUID], files: Sequence[str], *, fast: bool) -> Mirror:
        """A mirror built straight from arrays, bypassing the database (for benchmarks and tests)."""
        mirror = cls(vectors.shape[1], fast=fast, capacity=_capacity_for(len(vectors)))
        now = timezone.now()
        for start in range(0, len(vectors), 4096):
            stop = min(start + 4096, len(vectors))
            mirror.append(
                [(i + 1, song_ids[i], files[i], now) for i in range(start, stop)],
                np.ascontiguousarray(vectors[start:stop], dtype=np.float32),
            )
        mirror._publish()
        return mirror


def _decode(blobs: list[bytes], dim: int) -> FloatArray:
    return np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32, copy=False).reshape(len(blobs), dim)


def _capacity_for(rows: int) -> int:
    return rows + rows // 4 + 1024


def wants_fast(rows: int, dim: int, *, currently: bool) -> bool:
    threshold: int = settings.LOCAL_INDEX_FAST_THRESHOLD
    if threshold <= 0 or dim > _MAX_FAST_DIM:
        return False
    return rows >= (threshold * _HYSTERESIS if currently else threshold)


def quantize(vectors: FloatArray) -> tuple[Int8Array, FloatArray]:
    """Symmetric int8 codes per row: row ≈ codes * scale, with scale = max |row| / 127."""
    peak = np.abs(vectors).max(axis=1) if vectors.shape[1] else np.zeros(len(vectors), dtype=np.float32)
    scales = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    codes = np.rint(vectors / scales[:, None]).clip(-127, 127).astype(np.int8)
    return codes, scales
