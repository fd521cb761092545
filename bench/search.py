"""Benchmark the local vector index: exact versus fast mode, on synthetic unit vectors.

Usage: python bench/search.py [--sizes 10000,100000,300000] [--dim 2048] [--queries 1000] [--db-rows 20000]

For each size it writes one vector segment straight from arrays (`VectorCodec.write`, what the host's derived index
holds, without inserting the rows through the ORM), then runs "more like this" queries in exact and fast mode: the
query is a catalog vector and its own file is excluded, with limit 15 as the API asks (10 shown + 5 spare). It prints
bytes per vector, latency percentiles, and recall@10 of fast mode against exact mode.

With --db-rows N it also measures the database path on a throwaway SQLite file: the first build of the host's index
from N rows, a new process opening it, and the incremental sync after one upsert and after one delete.

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


def run_size(count: int, dim: int, queries: int, limit: int, scratch: Path) -> None:
    from derived.segments import Part, Snapshot
    from embeddings.index import scan
    from embeddings.index.segments import VectorCodec

    print(f"\n== {count:,} vectors x {dim} (float32 would be {count * dim * 4 / 1e9:.2f} GB) ==")
    vectors = unit_vectors(count, dim, seed=count)
    song_ids = [uuid.UUID(int=i + 1) for i in range(count)]
    files = [f"uploads/{i}/song.mp3" for i in range(count)]
    picks = np.random.default_rng(1).choice(count, size=min(queries, count), replace=False)
    folder = scratch / f"segment-{count}"
    folder.mkdir()
    codec = VectorCodec("bench", dim)
    started = time.perf_counter()
    codec.write(folder, [(song_ids[i], (files[i], vectors[i])) for i in range(count)])
    built = time.perf_counter() - started
    segment = codec.open(folder)
    snapshot = Snapshot((Part(name="bench", segment=segment, alive=np.ones(count, dtype=np.bool_)),))
    print(f"segment written in {built:.1f} s: {segment.nbytes / count:.0f} B/vector on disk, shared by every process")
    scan.scan_kernel()  # compiled (or loaded from numba's cache) once per process
    results: dict[str, list[list[uuid.UUID]]] = {}
    for mode in ("exact", "fast"):
        gc.collect()
        before = rss()
        timings: list[float] = []
        found: list[list[uuid.UUID]] = []
        for warm in picks[:5]:
            scan.search_snapshot(snapshot, vectors[warm], limit, files[warm], fast=mode == "fast")
        for i in picks:
            started = time.perf_counter()
            hits = scan.search_snapshot(snapshot, vectors[i], limit, files[i], fast=mode == "fast")
            timings.append(time.perf_counter() - started)
            found.append([hit.song_id for hit in hits])
            assert song_ids[i] not in found[-1]
        after = rss()
        mapped = after["RssFile"] - before["RssFile"]
        results[mode] = found
        print(
            f"{mode:5}  more like this, limit {limit}: {percentiles(timings)}   ({len(picks)} queries); "
            f"file pages mapped meanwhile +{mapped / count:.0f} B/vector"
        )
    recall = statistics.fmean(
        len(set(fast[:10]) & set(exact[:10])) / 10
        for fast, exact in zip(results["fast"], results["exact"], strict=True)
    )
    print(f"       recall@10 of fast vs exact: {recall:.4f}")
    del vectors, snapshot, segment
    shutil.rmtree(folder, ignore_errors=True)


def run_database(rows: int, dim: int) -> None:
    """A full build from the database, then incremental syncs, through the ORM on a throwaway SQLite database."""
    from django.core.management import call_command

    from derived.store import forget_held
    from embeddings.index.local import LocalVectorIndex
    from embeddings.index.scan import scan_kernel
    from embeddings.models import StoredVector

    call_command("migrate", verbosity=0)
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
    print(f"insert (bulk, not timed as part of the index): {time.perf_counter() - started:.1f} s")
    index = LocalVectorIndex(model="bench", dim=dim)
    started = time.perf_counter()
    index.snapshot()
    print(f"first build of the host's index from the database: {time.perf_counter() - started:6.2f} s")
    forget_held()
    started = time.perf_counter()
    index.snapshot()
    print(f"a new process opening it: {(time.perf_counter() - started) * 1000:.1f} ms")
    started = time.perf_counter()
    song = uuid.uuid4()
    index.upsert(song, "uploads/new.mp3", vectors[0])
    upserted = time.perf_counter() - started
    started = time.perf_counter()
    index.snapshot()
    synced = time.perf_counter() - started
    print(f"upsert: {upserted * 1000:.1f} ms; the next search's incremental sync: {synced * 1000:.1f} ms")
    index.delete(song)
    started = time.perf_counter()
    index.snapshot()
    print(f"sync after a delete: {(time.perf_counter() - started) * 1000:.1f} ms")
    scan_kernel()
    started = time.perf_counter()
    index.search(vectors[1], 15, exclude_file="uploads/1.mp3")
    print(f"one search including the change-log check: {(time.perf_counter() - started) * 1000:.1f} ms")


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
    os.environ["VAR_DIR"] = str(scratch)  # the derived index and the SQLite file
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
            run_size(size, args.dim, args.queries, args.limit, scratch)
        if args.db_rows:
            run_database(args.db_rows, args.dim)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
