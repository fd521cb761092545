"""Benchmark the map's projection: 2-D PCA of N vectors read from a memory-mapped vector segment.

Usage: python bench/map_projection.py [--songs 100000] [--dim 2048] [--clusters 40] [--check]

It writes one vector segment straight from arrays (`VectorCodec.write`, what the host's derived index holds), then,
in a fresh process that never held the vectors itself, opens it the way the index does and runs exactly what the
`catalog.refresh_map` task runs over it (`map_refresh._index_chunks` + `projection.project`). It prints the
time, the process's peak anonymous memory (its private copies; the mapped segment is file-backed and shared) against
the size of the vectors, and with --check the agreement with an exact PCA (eigenvectors of the full covariance).
Vectors are clustered unit vectors (songs of similar sound). This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def clustered_units(count: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    scales = np.linspace(3.0, 0.5, dim, dtype=np.float32)  # a few strong directions, as real embeddings have
    vectors = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 20_000):
        n = min(20_000, count - start)
        block = centres[rng.integers(0, clusters, n)] * scales + rng.standard_normal((n, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start : start + n] = block
    return vectors


def write_segment(folder: Path, count: int, dim: int, clusters: int) -> None:
    import django

    django.setup()
    from embeddings.index.segments import VectorCodec

    vectors = clustered_units(count, dim, clusters, seed=1)
    ids = [uuid.UUID(int=i + 1) for i in range(count)]
    started = time.perf_counter()
    VectorCodec("bench", dim).write(folder, [(ids[i], (f"uploads/{i}.mp3", vectors[i])) for i in range(count)])
    print(f"segment of {count:,} x {dim} written in {time.perf_counter() - started:.1f} s (setup, not timed)")


def measure(folder: Path, count: int, dim: int, check: bool) -> None:
    import django

    django.setup()
    from catalog import map_refresh
    from catalog.projection import project
    from derived.segments import Part, Snapshot
    from embeddings.index.local import LocalVectorIndex
    from embeddings.index.segments import VectorCodec

    segment = VectorCodec("bench", dim).open(folder)
    snapshot = Snapshot((Part(name="bench", segment=segment, alive=np.ones(len(segment), dtype=np.bool_)),))
    index = LocalVectorIndex(model="bench", dim=dim)
    index.snapshot = lambda wait=None: snapshot  # type: ignore[method-assign,misc]
    ready = np.asarray(segment.song_ids).copy()  # every row is a ready song
    peak = {"anon": rss_anon()}
    base = peak["anon"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], rss_anon())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    projection = project(map_refresh._index_chunks(index, ready), dim)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    vectors_bytes = count * dim * 4
    print(
        f"projection of {count:,} x {dim}: {seconds:.2f} s; peak private memory +{(peak['anon'] - base) / 1e6:.0f} MB "
        f"(the vectors are {vectors_bytes / 1e6:.0f} MB, read from the mapped segment); "
        f"explained {projection.axes.explained[0]:.4f}, {projection.axes.explained[1]:.4f}"
    )
    if check:
        started = time.perf_counter()
        mean = np.zeros(dim)
        scatter = np.zeros((dim, dim))
        for start in range(0, count, 8192):
            rows = np.asarray(segment.vectors[start : start + 8192], dtype=np.float64)
            mean += rows.sum(axis=0)
            scatter += rows.T @ rows
        mean /= count
        covariance = scatter - count * np.outer(mean, mean)
        values = np.linalg.eigvalsh(covariance)
        order = np.argsort(values)[::-1]
        shares = values[order[:6]] / values.sum()
        ours = projection.axes.components.astype(np.float64)
        captured = sum(float(c @ covariance @ c) for c in ours) / float(values[order[:2]].sum())
        print(
            f"exact PCA (float64 covariance, {time.perf_counter() - started:.1f} s): top shares "
            f"{', '.join(f'{share:.4f}' for share in shares)}; the map's two axes hold {captured:.5f} of the "
            "variance the exact top two hold (near-equal shares make the exact axes themselves arbitrary)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.songs, args.dim, args.check)
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-map-"))
    try:
        folder = scratch / "segment"
        folder.mkdir()
        write_segment(folder, args.songs, args.dim, args.clusters)
        command = [sys.executable, __file__, "--songs", str(args.songs), "--dim", str(args.dim)]
        command += ["--measure", str(folder)]
        subprocess.run(command + (["--check"] if args.check else []), check=True, cwd=ROOT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
