"""Time the "more like this" API as a client sees it, over loopback, on a catalog of N songs.

Usage: python bench/search_api.py [--songs 100000] [--dim 2048] [--queries 1000] [--workers 1] [--limit 10]

Builds a throwaway SQLite catalog of N ready songs with synthetic unit vectors (i.i.d. Gaussian, normalised: the
hardest case for candidate selection), starts gunicorn on it with production settings (DEBUG off), loads the
index with one request, then sends `GET /api/songs/<id>/more-like-this/?limit=10` for random songs, one request at
a time, each on a new connection, and prints the latency percentiles measured by the client, plus the server's RSS.
This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import production_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_catalog(songs: int, dim: int) -> list[str]:
    """N ready songs and their vectors, written straight to the tables (not timed)."""
    import django

    django.setup()
    from django.core.management import call_command

    from catalog.models import Song, SongStatus
    from embeddings.models import StoredVector

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(0)
    ids: list[str] = []
    for start in range(0, songs, 5000):
        count = min(5000, songs - start)
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = [uuid.uuid4() for _ in range(count)]
        Song.objects.bulk_create(
            Song(
                id=song_id,
                object_key=f"uploads/{song_id}/track.mp3",
                original_file_name=f"track {start + i}.mp3",
                content_type="audio/mpeg",
                size=1,
                title=f"Track {start + i}",
                status=SongStatus.READY,
                embedding_model="panns-cnn14",
                duration_seconds=180.0,
            )
            for i, song_id in enumerate(batch)
        )
        StoredVector.objects.bulk_create(
            StoredVector(
                song_id=song_id,
                file=f"uploads/{song_id}/track.mp3",
                model="panns-cnn14",
                dim=dim,
                vector=vectors[i].astype("<f4").tobytes(),
            )
            for i, song_id in enumerate(batch)
        )
        ids += [str(song_id) for song_id in batch]
        print(f"  {start + count:,} songs written", file=sys.stderr, end="\r")
    call_command("sync_indexes", verbosity=0)  # the host's derived index, built once from the rows
    print(file=sys.stderr)
    return ids


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            get(port, "/api/system/")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="resonance-bench-api-"))
    env = production_env(scratch, EMBEDDING_MODEL="panns-cnn14", VECTOR_BACKEND="local")
    os.environ.update(env)
    try:
        started = time.perf_counter()
        ids = build_catalog(args.songs, args.dim)
        print(f"catalog of {args.songs:,} songs x {args.dim}-d written in {time.perf_counter() - started:.0f} s")
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--timeout",
                "300",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_for(port, 60)
            rng = np.random.default_rng(1)
            picks = [ids[i] for i in rng.choice(len(ids), size=args.queries + 5 * args.workers, replace=False)]
            started = time.perf_counter()
            for song_id in picks[: args.workers]:  # each worker loads its mirror on its first search
                status, body = get(port, f"/api/songs/{song_id}/more-like-this/?limit={args.limit}")
                if status != 200:
                    raise SystemExit(f"warm-up answered {status}: {body[:300]!r}")
            print(f"first search (loads the index): {time.perf_counter() - started:.1f} s")
            for song_id in picks[args.workers : 5 * args.workers]:
                get(port, f"/api/songs/{song_id}/more-like-this/?limit={args.limit}")
            timings: list[float] = []
            for song_id in picks[5 * args.workers :]:
                started = time.perf_counter()
                status, body = get(port, f"/api/songs/{song_id}/more-like-this/?limit={args.limit}")
                timings.append(time.perf_counter() - started)
                data = json.loads(body)
                if status != 200 or len(data["results"]) != args.limit or not data["complete"]:
                    raise SystemExit(f"bad answer {status}: {body[:300]!r}")
                if song_id in {result["song"]["id"] for result in data["results"]}:
                    raise SystemExit("a song was its own neighbour")
            ms = np.asarray(timings) * 1000
            p50, p95, p99 = np.percentile(ms, [50, 95, 99])
            print(
                f"GET more-like-this, limit {args.limit}, {len(timings)} requests, one at a time, "
                f"new connection each: p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms  "
                f"({len(timings) / (ms.sum() / 1000):.0f} requests/s)"
            )
            children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
            print(f"gunicorn worker RSS: {', '.join(f'{rss_mb(int(pid)):.0f} MB' for pid in children)}")
            print(f"load average: {os.getloadavg()} on {os.cpu_count()} CPUs")
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
