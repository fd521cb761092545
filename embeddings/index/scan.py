"""Searching a mirror's view: one exact float32 product, or (fast mode) an int8 scan whose candidates are re-scored."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from embeddings.base import FloatArray
from embeddings.index import Hit
from embeddings.index.mirror import Int8Array, View

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
            kernel(np.zeros((1, 1), dtype=np.int8), np.zeros(1, dtype=np.int8), np.empty(1, dtype=np.int32), 0, 1)
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


def search_view(view: View, query: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
    """The `limit` best rows of a view for `query`, best first, never dead rows nor rows of `exclude_file`."""
    n = view.n
    if n == 0:
        return []
    excluded = [r for r in view.rows_by_file.get(exclude_file, ()) if r < n] if exclude_file is not None else []
    if view.fast and view.codes is not None and view.scales is not None:
        approx = approximate_scores(view.codes, view.scales, query, n)
        approx[view.dead] = -np.inf
        approx[excluded] = -np.inf
        count = min(n, max(limit * CANDIDATES_PER_HIT, MIN_CANDIDATES))
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
