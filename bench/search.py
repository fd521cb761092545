"""Benchmark the local vector index: exact versus fast mode, on synthetic unit vectors.

Usage: python bench/search.py [--sizes 10000,100000,300000] [--dim 2048] [--queries 1000] [--db-rows 20000]

For each size it builds the in-memory mirror straight from arrays (`Mirror.from_arrays`, the structure a process
builds from the database, without inserting the rows through the ORM), then runs "more like this" queries: the query
is a catalog vector and its own file is excluded, with limit 15 as the API asks (10 shown + 5 spare). It prints
build time, memory per vector, latency percentiles, and recall@10 of fast mode against exact mode.

With --db-rows N it also measures the database path on a throwaway SQLite file: the first full load of N rows, an
incremental sync after one upsert, and one after a delete by another process.

Vectors are i.i.d. Gaussian, normalised: the hardest case for candidate selection (no clusters, near-equal scores).
This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django


def rss() -> dict[str, int]:
    """Resident memory of this process by kind (bytes): anonymous (heap) and file-backed (memory maps)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 50_000):
        block = rng.standard_normal((min(50_000, count - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start : start + len(block)] = block
    return vectors


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return "p50 {:6.2f} ms  p95 {:6.2f} ms  p99 {:6.2f} ms".format(*np.percentile(ms, [50, 95, 99]))


def run_size(count: int, dim: int, queries: int, limit: int) -> None:
    from embeddings.index import mirror as mirror_module
    from embeddings.index import scan

    print(f"\n== {count:,} vectors x {dim} (float32 would be {count * dim * 4 / 1e9:.2f} GB) ==")
    vectors = unit_vectors(count, dim, seed=count)
    song_ids = [uuid.UUID(int=i + 1) for i in range(count)]
    files = [f"uploads/{i}/song.mp3" for i in range(count)]
    picks = np.random.default_rng(1).choice(count, size=min(queries, count), replace=False)
    float32_bytes = dim * 4
    results: dict[str, list[list[uuid.UUID]]] = {}

    for mode in ("exact", "fast"):
        gc.collect()
        before = rss()
        started = time.perf_counter()
        mirror = mirror_module.Mirror.from_arrays(vectors, song_ids, files, fast=mode == "fast")
        built = time.perf_counter() - started
        after = rss()
        view = mirror.view
        if mode == "fast":
            scan.scan_kernel()  # compiled (or loaded from numba's cache) once per process
        if view.codes is not None and view.scales is not None:
            arrays = view.codes[:count].nbytes + view.scales[:count].nbytes
        else:
            arrays = view.exact[:count].nbytes
        anon = after["RssAnon"] - before["RssAnon"]
        mapped = after["RssFile"] + after.get("RssShmem", 0) - before["RssFile"] - before.get("RssShmem", 0)
        print(
            f"{mode:5}  build {built:6.2f} s   RAM for vectors {arrays / count:7.0f} B/vector "
            f"({arrays / count / float32_bytes:.2f}x float32, {arrays / 1e9:.2f} GB)   "
            f"RSS: anonymous +{anon / count:7.0f} B/vector, file-backed +{mapped / count:6.0f} B/vector"
        )
        if mode == "fast":
            print(
                f"       anonymous RSS beyond the arrays (bookkeeping: ids, file names, lookups; approximate, the "
                f"allocator reuses memory freed by the exact run): ~{(anon - arrays) / count:.0f} B/vector; "
                "the float32 rows live in a reclaimable memory map"
            )
        timings: list[float] = []
        found: list[list[uuid.UUID]] = []
        for warm in picks[:5]:
            scan.search_view(view, vectors[warm], limit, files[warm])
        for i in picks:
            started = time.perf_counter()
            hits = scan.search_view(view, vectors[i], limit, files[i])
            timings.append(time.perf_counter() - started)
            found.append([hit.song_id for hit in hits])
            assert song_ids[i] not in found[-1]
        results[mode] = found
        print(f"       more like this, limit {limit}: {percentiles(timings)}   ({len(picks)} queries)")
        del mirror, view
    recall = statistics.fmean(
        len(set(fast[:10]) & set(exact[:10])) / 10
        for fast, exact in zip(results["fast"], results["exact"], strict=True)
    )
    print(f"       recall@10 of fast vs exact: {recall:.4f}")
    del vectors


def run_database(rows: int, dim: int) -> None:
    """Full load, then incremental syncs, through the ORM on a throwaway SQLite database."""
    from django.core.management import call_command

    from embeddings.index.local import LocalVectorIndex, forget_mirrors
    from embeddings.index.scan import scan_kernel
    from embeddings.models import IndexVersion, StoredVector

    call_command("migrate", "embeddings", verbosity=0)
    print(f"\n== database path: {rows:,} rows x {dim} in SQLite ==")
    vectors = unit_vectors(rows, dim, seed=7)
    started = time.perf_counter()
    for start in range(0, rows, 2000):
        StoredVector.objects.bulk_create(
            StoredVector(
                song_id=uuid.uuid4(), file=f"uploads/{i}.mp3", model="bench", dim=dim, vector=vectors[i].tobytes()
            )
            for i in range(start, min(rows, start + 2000))
        )
    IndexVersion.objects.create(model="bench")
    print(f"insert (bulk, not timed as part of the index): {time.perf_counter() - started:.1f} s")
    index = LocalVectorIndex(model="bench", dim=dim)
    forget_mirrors()
    started = time.perf_counter()
    view = index.view()
    print(f"first full load: {time.perf_counter() - started:6.2f} s ({'fast' if view.fast else 'exact'} mode)")
    started = time.perf_counter()
    index.upsert(uuid.uuid4(), "uploads/new.mp3", vectors[0])
    upserted = time.perf_counter() - started
    started = time.perf_counter()
    index.view()
    synced = time.perf_counter() - started
    print(f"upsert: {upserted * 1000:.1f} ms; the next search's incremental sync: {synced * 1000:.1f} ms")
    StoredVector.objects.filter(pk=StoredVector.objects.filter(model="bench").order_by("pk").values("pk")[:1]).delete()
    IndexVersion.objects.filter(model="bench").update(version=uuid.uuid4())
    started = time.perf_counter()
    index.view()
    synced = time.perf_counter() - started
    print(f"sync after a delete by another process (count + sum, then all pks): {synced * 1000:.1f} ms")
    scan_kernel()
    started = time.perf_counter()
    index.search(vectors[1], 15, exclude_file="uploads/1.mp3")
    print(f"one search including the version check query: {(time.perf_counter() - started) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,300000", help="comma-separated catalog sizes")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=15, help="hits per query (the API asks for 10 + 5 spare)")
    parser.add_argument(
        "--db-rows", type=int, default=0, help="also time loads and syncs from SQLite with this many rows"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="resonance-bench-"))
    os.environ["VAR_DIR"] = str(scratch)  # the fast mode's memory-mapped file, and the SQLite file
    os.environ.pop("DATABASE_URL", None)
    os.environ["SQLITE_PATH"] = str(scratch / "bench.sqlite3")
    django.setup()

    print(f"CPU: {os.cpu_count()} cores (affinity {len(os.sched_getaffinity(0))}); load average {os.getloadavg()}")
    from embeddings.index import scan

    print(
        f"fast mode: int8 scan, then exact float32 re-score of max({scan.CANDIDATES_PER_HIT} x limit, "
        f"{scan.MIN_CANDIDATES}) candidates; scan threads: {scan.scan_threads()}"
    )
    try:
        for size in (int(s) for s in args.sizes.split(",") if s):
            run_size(size, args.dim, args.queries, args.limit)
        if args.db_rows:
            run_database(args.db_rows, args.dim)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
