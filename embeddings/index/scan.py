"""Searching vector segments: one exact float32 product each, or (fast mode) an int8 scan re-scored exactly."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from derived.segments import Snapshot, song_id_at
from embeddings.base import FloatArray
from embeddings.index import Hit
from embeddings.index.segments import Int8Array, VectorSegment

logger = logging.getLogger(__name__)

# The fast path re-scores this many candidates per requested hit, and at least MIN_CANDIDATES.
CANDIDATES_PER_HIT = 10
MIN_CANDIDATES = 100
# Scans of at least this many rows are split across threads (the kernel releases the GIL).
_ROWS_PER_THREAD = 50_000


def _scan_rows(codes: Any, query: Any, out: Any, start: int, stop: int) -> None:  # pragma: no cover
    """out[i] = codes[i] . query for start <= i < stop, in int32; compiled by numba (see `scan_kernel`)."""
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


def scan_kernel() -> Any:
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
            codes = np.zeros((1, 1), dtype=np.int8)
            codes.setflags(write=False)  # segments are mapped read-only: compile for that type up front
            kernel(codes, np.zeros(1, dtype=np.int8), np.empty(1, dtype=np.int32), 0, 1)
            _kernel = kernel
            logger.info("vector scan kernel ready in %.2f s", time.perf_counter() - started)
        return _kernel


def scan_threads() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _scan_pool() -> ThreadPoolExecutor:
    global _pool
    with _kernel_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=scan_threads(), thread_name_prefix="vector-scan"))
        return _pool[1]


def approximate_scores(codes: Int8Array, scales: FloatArray, query: FloatArray, n: int) -> FloatArray:
    """Approximate dot products of `query` with rows below `n`, from the int8 copy (one pass over it)."""
    kernel = scan_kernel()
    peak = float(np.abs(query).max())
    query_codes = np.rint(query * (127 / peak) if peak > 0 else query).astype(np.int8)
    dots = np.empty(n, dtype=np.int32)
    parts = min(scan_threads(), max(1, n // _ROWS_PER_THREAD))
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


def search_snapshot(
    snapshot: Snapshot[VectorSegment], query: FloatArray, limit: int, exclude_file: str | None, *, fast: bool
) -> list[Hit]:
    """The `limit` best live rows of every segment for `query`, best first, never rows of `exclude_file`.

    Exact: one float32 product per segment. Fast: an int8 scan per segment picks max(10 x limit, 100) candidates,
    which are then scored exactly from the float32 rows, so returned scores are always exact.
    """
    found_scores: list[FloatArray] = []
    found_rows: list[tuple[int, npt.NDArray[np.intp]]] = []
    for number, part in enumerate(snapshot.parts):
        segment = part.segment
        n = len(segment)
        if n == 0:
            continue
        allowed = part.alive
        if exclude_file is not None:
            excluded = segment.rows_named(exclude_file)
            if excluded.size:
                allowed = allowed.copy()
                allowed[excluded] = False
        if fast:
            approx = approximate_scores(segment.codes, segment.scales, query, n)
            approx[~allowed] = -np.inf
            count = min(n, max(limit * CANDIDATES_PER_HIT, MIN_CANDIDATES))
            rows = np.argpartition(approx, n - count)[n - count :] if count < n else np.arange(n)
            rows = np.sort(rows[np.isfinite(approx[rows])])  # in file order: fewer page faults on the memory map
            scores = segment.vectors[rows] @ query
        else:
            scores = segment.vectors @ query
            scores[~allowed] = -np.inf
            rows = np.arange(n)
        k = min(limit, rows.size)
        if k == 0:
            continue
        top = np.argpartition(-scores, k - 1)[:k] if k < rows.size else np.arange(rows.size)
        top = top[np.isfinite(scores[top])]
        found_scores.append(scores[top])
        found_rows.append((number, rows[top]))
    if not found_scores:
        return []
    scores = np.concatenate(found_scores)
    owners = np.concatenate([np.full(rows.size, number) for number, rows in found_rows])
    rows = np.concatenate([rows for _, rows in found_rows])
    best = np.argsort(-scores, kind="stable")[:limit]
    hits = []
    for i in best:
        segment = snapshot.parts[int(owners[i])].segment
        row = int(rows[i])
        hits.append(Hit(song_id=song_id_at(segment.song_ids, row), file=segment.name_at(row), score=float(scores[i])))
    return hits
