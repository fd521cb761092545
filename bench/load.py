"""Uploads and searches together against the real stack on loopback, then a check that no song was lost or doubled.

Usage: python bench/load.py [--duration 60] [--uploads-per-minute 30] [--search-clients 2] [--seed-songs 20]
                            [--track-seconds 20] [--web-workers 2]

Starts, in a throwaway folder: redis-server (append-only), gunicorn with production settings (DEBUG off), and one
Celery worker (the `features` model), with SQLite and local storage. It uploads `--seed-songs` songs first, exactly
as a browser does (ask for a URL, PUT the file, confirm), waits for them, then for `--duration` seconds runs an
uploader at a fixed rate beside `--search-clients` threads that each ask for "more like this" of a random ready
song as fast as answers come. Afterwards it waits for every upload to finish and checks, against the database,
the storage folder and the vector index, that each upload is exactly one song, one stored file and one vector.
Prints searches per second with latency percentiles, uploads per minute, ingest latency, and the check.
This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import production_env
from tests.services import RedisServer, free_port, start_worker, stop_worker, wait_for_port


def write_tracks(folder: Path, count: int, seconds: float, first: int = 0) -> list[Path]:
    """Distinct MP3s (44.1 kHz stereo): chords over a beat, each with its own seed."""
    import soundfile as sf

    rate = 44100
    paths = []
    for number in range(first, first + count):
        rng = np.random.default_rng(number)
        t = np.arange(int(seconds * rate)) / rate
        root = rng.uniform(80, 300)
        mix = sum(np.sin(2 * np.pi * root * ratio * t + rng.uniform(0, 6)) for ratio in (1, 1.25, 1.5, 2))
        beat = np.exp(-20 * ((t * rng.uniform(1.5, 2.5)) % 1.0)) * rng.standard_normal(t.size)
        mono = 0.15 * mix + 0.2 * beat
        stereo = np.stack([mono, np.roll(mono, 200)], axis=1) / np.max(np.abs(mono)) * 0.8
        path = folder / f"load-{number:04d}.mp3"
        sf.write(path, stereo.astype(np.float32), rate, format="MP3")
        paths.append(path)
    return paths


@dataclass
class Results:
    search_seconds: list[float] = field(default_factory=list)
    search_errors: list[str] = field(default_factory=list)
    uploaded: dict[str, float] = field(default_factory=dict)  # song id -> confirmed at (monotonic)
    upload_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def upload(session: requests.Session, base: str, path: Path) -> str:
    body = path.read_bytes()
    ticket = session.post(
        f"{base}/api/uploads/", json={"file_name": path.name, "content_type": "audio/mpeg", "size": len(body)}
    )
    ticket.raise_for_status()
    data = ticket.json()
    target = data["upload"]
    session.put(target["url"], data=body, headers=target["headers"]).raise_for_status()
    session.post(f"{base}/api/songs/{data['song_id']}/uploaded/").raise_for_status()
    return str(data["song_id"])


def statuses(database: Path, song_ids: list[str]) -> dict[str, str]:
    with sqlite3.connect(database, timeout=30) as connection:
        rows = connection.execute("SELECT id, status FROM catalog_song").fetchall()
    wanted = {song_id.replace("-", "") for song_id in song_ids}
    return {row[0]: row[1] for row in rows if row[0].replace("-", "") in wanted}


def wait_finished(database: Path, song_ids: list[str], seconds: float) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while True:
        found = statuses(database, song_ids)
        if len(found) == len(song_ids) and all(s in {"ready", "failed"} for s in found.values()):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--uploads-per-minute", type=float, default=30.0)
    parser.add_argument("--search-clients", type=int, default=2)
    parser.add_argument("--seed-songs", type=int, default=20)
    parser.add_argument("--track-seconds", type=float, default=20.0)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="resonance-load-"))
    database = scratch / "db.sqlite3"  # where production_env puts it
    redis = RedisServer(scratch, durable=True)
    env = production_env(
        scratch, ALLOW_ANONYMOUS_UPLOADS="true", EMBEDDING_MODEL="features", CELERY_BROKER_URL=redis.url
    )
    planned = int(args.duration * args.uploads_per_minute / 60)
    print(f"writing {args.seed_songs + planned} tracks of {args.track_seconds:g} s ...", file=sys.stderr)
    tracks = write_tracks(scratch, args.seed_songs + planned, args.track_seconds)
    redis.start()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"),
            *("--workers", str(args.web_workers), "--timeout", "120", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=env,
    )
    worker = start_worker(scratch / "worker.log", env)
    results = Results()
    try:
        wait_for_port(port, 60)
        session = requests.Session()
        seeds = [upload(session, base, path) for path in tracks[: args.seed_songs]]
        seeded = wait_finished(database, seeds, 300)
        ready = [song_id for song_id in seeds if seeded.get(song_id.replace("-", "")) == "ready"]
        if not ready:
            raise SystemExit("no seed song became ready; see " + str(scratch / "worker.log"))
        ready_lock = threading.Lock()
        stop = threading.Event()

        def search_client(seed: int) -> None:
            client = requests.Session()
            pick = random.Random(seed)
            while not stop.is_set():
                with ready_lock:
                    song_id = pick.choice(ready)
                started = time.perf_counter()
                try:
                    answer = client.get(f"{base}/api/songs/{song_id}/more-like-this/", params={"limit": 10})
                    elapsed = time.perf_counter() - started
                    ok = answer.status_code == 200
                except requests.RequestException as exc:
                    elapsed, ok, answer = time.perf_counter() - started, False, exc  # type: ignore[assignment]
                with results.lock:
                    if ok:
                        results.search_seconds.append(elapsed)
                    else:
                        results.search_errors.append(str(getattr(answer, "status_code", answer)))

        def uploader() -> None:
            client = requests.Session()
            interval = 60.0 / args.uploads_per_minute
            next_at = time.monotonic()
            for path in tracks[args.seed_songs :]:
                if stop.is_set():
                    break
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                try:
                    song_id = upload(client, base, path)
                    with results.lock:
                        results.uploaded[song_id] = time.monotonic()
                except requests.RequestException as exc:
                    with results.lock:
                        results.upload_errors.append(str(exc))

        threads = [threading.Thread(target=search_client, args=(i,)) for i in range(args.search_clients)]
        threads.append(threading.Thread(target=uploader))
        began = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        stop.set()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - began

        drain_started = time.monotonic()
        finished = wait_finished(database, list(results.uploaded), 600)
        drained = time.monotonic() - drain_started
        check = subprocess.run(
            [sys.executable, "manage.py", "check_consistency"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        with sqlite3.connect(database) as connection:
            songs = connection.execute("SELECT COUNT(*) FROM catalog_song").fetchone()[0]
            vectors = connection.execute(
                "SELECT COUNT(*), COUNT(DISTINCT song_id) FROM embeddings_storedvector"
            ).fetchone()
            ready_count = connection.execute("SELECT COUNT(*) FROM catalog_song WHERE status='ready'").fetchone()[0]
        listing = subprocess.run(
            [
                *(sys.executable, "manage.py", "shell", "-c"),
                "from catalog.storage import get_storage; print(sum(1 for _ in get_storage().list_keys('uploads/')))",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        stored = int(listing.stdout.strip().splitlines()[-1])

        ms = np.asarray(results.search_seconds) * 1000
        p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if ms.size else (0, 0, 0)
        sent = len(results.uploaded)
        print(f"duration {wall:.0f} s; {args.search_clients} search clients; web workers {args.web_workers}; 1 worker")
        print(
            f"searches: {len(ms)} ok, {len(results.search_errors)} errors, {len(ms) / wall:.1f}/s sustained; "
            f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms"
        )
        print(
            f"uploads: {sent} confirmed ({sent / wall * 60:.1f}/min), {len(results.upload_errors)} errors; "
            f"after the run {sum(s == 'ready' for s in finished.values())} ready, "
            f"{sum(s == 'failed' for s in finished.values())} failed, "
            f"{sent - len(finished)} missing; the last finished {drained:.1f} s after the uploads stopped"
        )
        print(
            f"check: {songs} songs ({args.seed_songs} seed + {sent}), {ready_count} ready, "
            f"{stored} stored files, {vectors[0]} vectors for {vectors[1]} songs"
        )
        lost = (
            songs != args.seed_songs + sent or stored != songs or vectors[0] != ready_count or vectors[1] != vectors[0]
        )
        print("lost or duplicated: " + ("YES" if lost else "none"))
        print("check_consistency: " + check.stdout.strip().splitlines()[-1] if check.stdout else check.stderr)
        print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    finally:
        stop_worker(worker)
        web.terminate()
        web.wait(30)
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
