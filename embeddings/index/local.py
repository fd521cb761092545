"""Search over vectors kept in the database and mirrored in memory, one mirror per process, model and size.

The database table `StoredVector` is the durable copy; each process mirrors it in memory. Every write changes the
model's `IndexVersion`; a search that sees a new version applies only what changed: every write inserts a row with a
new pk, so changes are the rows above the highest pk held, and a count and sum of pks catch deletions (see
`_Mirror.sync`). The file (in VAR_DIR/vector-cache) holding the fast mode's float32 rows is unlinked at once.
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

import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from embeddings.base import FloatArray
from embeddings.index import Hit, VectorIndexError, checked_vector
from embeddings.models import IndexVersion, StoredVector

logger = logging.getLogger(__name__)

# Each sync also re-checks the stamps of this many of the highest pks it holds: a rolled-back transaction that the
# mirror saw (only possible on the writing connection itself, e.g. in tests) can leave SQLite reusing those pks.
RECHECK_TOP_PKS = 100
# Rows read from the database per query while loading.
_CHUNK = 500
# The fast path re-scores this many candidates per requested hit, and at least _MIN_CANDIDATES.
CANDIDATES_PER_HIT = 10
_MIN_CANDIDATES = 100
# Once this share of the rows is dead (deleted or replaced), the mirror is rewritten without them.
_DEAD_SHARE = 0.25
# A fast mirror goes back to exact mode only below this share of the threshold, so it does not flap.
_HYSTERESIS = 0.9
# int32 accumulators hold 127 * 127 * dim; beyond this size the fast path is not used.
_MAX_FAST_DIM = 100_000
# Scans of at least this many rows are split across threads (the kernel releases the GIL).
_ROWS_PER_THREAD = 50_000

IntArray = npt.NDArray[np.intp]
Int8Array = npt.NDArray[np.int8]


@dataclass(frozen=True)
class _View:
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


class _Mirror:
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

    def _publish(self) -> _View:
        self.view = _View(
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

    def compacted(self, *, fast: bool) -> _Mirror:
        """A new mirror with the live rows only, in `fast` mode or not, copied from memory (no database reads)."""
        alive = sorted(self.row_of_pk.values())
        mirror = _Mirror(self.dim, fast=fast, capacity=_capacity_for(len(alive)))
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
    def load(cls, model_rows: QuerySet[StoredVector], dim: int) -> _Mirror:
        """A mirror of every row, streamed from the database in chunks."""
        rows = model_rows.filter(dim=dim)
        expected = rows.count()
        mirror = cls(dim, fast=_wants_fast(expected, dim, currently=False), capacity=_capacity_for(expected))
        mirror._append_records(
            rows.order_by("pk").values_list("pk", "song_id", "file", "vector", "updated_at").iterator(chunk_size=_CHUNK)
        )
        others = model_rows.exclude(dim=dim).aggregate(count=Count("pk"), pk_sum=Sum("pk"))
        mirror.foreign = (others["count"], others["pk_sum"] or 0)
        return mirror

    @classmethod
    def from_arrays(cls, vectors: FloatArray, song_ids: Sequence[UUID], files: Sequence[str], *, fast: bool) -> _Mirror:
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


def _wants_fast(rows: int, dim: int, *, currently: bool) -> bool:
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


# --- the int8 scan -----------------------------------------------------------------------------------------


def _scan_rows(codes: Any, query: Any, out: Any, start: int, stop: int) -> None:  # pragma: no cover
    """out[i] = codes[i] . query for start <= i < stop, in int32; compiled by numba (see `_scan_kernel`)."""
    dim = codes.shape[1]
    for i in range(start, stop):
        acc = np.int32(0)
        for j in range(dim):
            acc += np.int32(codes[i, j]) * np.int32(query[j])
        # An int32 result keeps LLVM's vectorised multiply-add (vpmaddwd); a float epilogue here halves the speed.
        out[i] = acc


_kernel: Any = None
_kernel_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child has no threads of its parent


def _scan_kernel() -> Any:
    """The compiled scan, built on first use (numba is imported only by processes that need the fast path)."""
    global _kernel
    with _kernel_lock:
        if _kernel is None:
            import numba

            started = time.perf_counter()
            try:
                kernel = numba.njit(nogil=True, cache=True)(_scan_rows)
            except RuntimeError:  # no writable folder for numba's cache: compile on each start instead
                kernel = numba.njit(nogil=True)(_scan_rows)
            kernel(np.zeros((1, 1), dtype=np.int8), np.zeros(1, dtype=np.int8), np.empty(1, dtype=np.int32), 0, 1)
            _kernel = kernel
            logger.info("vector scan kernel ready in %.2f s", time.perf_counter() - started)
        return _kernel


def _threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _kernel_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="vector-scan"))
        return _pool[1]


def approximate_scores(codes: Int8Array, scales: FloatArray, query: FloatArray, n: int) -> FloatArray:
    """Approximate dot products of `query` with rows below `n`, from the int8 copy (one pass over it)."""
    kernel = _scan_kernel()
    peak = float(np.abs(query).max())
    query_codes = np.rint(query * (127 / peak) if peak > 0 else query).astype(np.int8)
    dots = np.empty(n, dtype=np.int32)
    parts = min(_threads(), max(1, n // _ROWS_PER_THREAD))
    if parts == 1:
        kernel(codes, query_codes, dots, 0, n)
    else:
        pool = _scan_pool()
        bounds = np.linspace(0, n, parts + 1).astype(int)
        jobs = [pool.submit(kernel, codes, query_codes, dots, int(bounds[i]), int(bounds[i + 1])) for i in range(parts)]
        for job in jobs:
            job.result()
    approx = dots.astype(np.float32)
    approx *= scales[:n]
    return approx


# --- search ------------------------------------------------------------------------------------------------


def search_view(view: _View, query: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
    """The `limit` best rows of a view for `query`, best first, never dead rows nor rows of `exclude_file`."""
    n = view.n
    if n == 0:
        return []
    excluded = [r for r in view.rows_by_file.get(exclude_file, ()) if r < n] if exclude_file is not None else []
    if view.fast and view.codes is not None and view.scales is not None:
        approx = approximate_scores(view.codes, view.scales, query, n)
        approx[view.dead] = -np.inf
        approx[excluded] = -np.inf
        count = min(n, max(limit * CANDIDATES_PER_HIT, _MIN_CANDIDATES))
        rows = np.argpartition(approx, n - count)[n - count :] if count < n else np.arange(n)
        rows = np.sort(rows[np.isfinite(approx[rows])])  # in file order: fewer page faults on the memory map
        scores = view.exact[rows] @ query
    else:
        scores = view.exact[:n] @ query
        scores[view.dead] = -np.inf
        scores[excluded] = -np.inf
        rows = np.arange(n)
    k = min(limit, len(rows))
    if k == 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-scores[top], kind="stable")]
    return [
        Hit(song_id=view.song_ids[rows[i]], file=view.files[rows[i]], score=float(scores[i]))
        for i in top
        if np.isfinite(scores[i])
    ]


# --- the index ---------------------------------------------------------------------------------------------

_mirrors: dict[tuple[str, int], _Mirror] = {}
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

    def _rows(self) -> QuerySet[StoredVector]:
        return StoredVector.objects.filter(model=self.model)

    def view(self) -> _View:
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
                mirror = _Mirror.load(self._rows(), self.dim)
                logger.info(
                    "loaded %d %s vectors in %.2f s (%s mode)",
                    mirror.live,
                    self.model,
                    time.perf_counter() - started,
                    "fast" if mirror.fast else "exact",
                )
            elif changed:
                mirror.sync(self._rows())
            fast = _wants_fast(mirror.live, self.dim, currently=mirror.fast)
            if fast != mirror.fast or len(mirror.dead) > max(1024, mirror.n * _DEAD_SHARE):
                mirror, changed = mirror.compacted(fast=fast), True
            mirror.version = version
            _mirrors[key] = mirror
            return mirror._publish() if changed else mirror.view

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        query = self._check(vector)
        if limit < 1:
            raise VectorIndexError("limit must be at least 1")
        return search_view(self.view(), query, limit, exclude_file)
