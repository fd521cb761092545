"""Uploads, searches and churn together against the real stack on loopback, then an audit of every song.

Usage: python bench/load.py [--duration 60] [--uploads-per-minute 30] [--search-clients 2] [--seed-songs 20]
                            [--track-seconds 20] [--web-workers 2] [--churn-per-minute 60 | --no-churn]

Starts, in a throwaway folder: redis-server (append-only), gunicorn with production settings (DEBUG off), and one
Celery worker (the `features` model), with SQLite and local storage. It uploads `--seed-songs` songs first, exactly
as a browser does (ask for a URL, PUT the file, confirm), waits for them, then for `--duration` seconds runs an
uploader at a fixed rate beside `--search-clients` threads that each ask for "more like this" of a random seed song
as fast as answers come, and (unless `--no-churn`) a staff client doing churn at `--churn-per-minute` (bench/churn.py):
deletes through the staff API (often of a song still being ingested), re-uploads of the bytes of live and of deleted
songs, uploads that cannot be ingested and retries of them, and title edits through the admin's change form.
Afterwards it waits for every live song to finish and audits database, storage folder, vector and fingerprint tables
against what the product answered: each live song is one row, one stored object, one vector and one fingerprint set
(a file that fails: row and object only) with the last title an edit saved, each deleted song has none of them, and
`check_consistency` must find nothing. Prints searches per second with latency percentiles, uploads per minute,
ingest latency, the churn done and the audit. This prints figures; it is not a test.
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.churn import Churn, Ledger, Staff, audit, shared_bytes, upload
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


def statuses(database: Path, song_ids: list[str]) -> dict[str, str]:
    """Status by song id (hex, as SQLite holds it) of those of `song_ids` that have a row."""
    with sqlite3.connect(database, timeout=30) as connection:
        rows = connection.execute("SELECT id, status FROM catalog_song").fetchall()
    wanted = set(song_ids)
    return {row[0]: row[1] for row in rows if row[0] in wanted}


def wait_finished(database: Path, song_ids: list[str], seconds: float) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while True:
        found = statuses(database, song_ids)
        if len(found) == len(song_ids) and all(s in {"ready", "failed"} for s in found.values()):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


STAFF_SCRIPT = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
user = User.objects.create_superuser("bench", "", "{password}")
print(Token.objects.create(user=user).key)
"""
KEYS_SCRIPT = "from catalog.storage import get_storage\nfor key in get_storage().list_keys('uploads/'): print(key)"


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--uploads-per-minute", type=float, default=30.0)
    parser.add_argument("--search-clients", type=int, default=2)
    parser.add_argument("--seed-songs", type=int, default=20)
    parser.add_argument("--track-seconds", type=float, default=20.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--churn", action=argparse.BooleanOptionalAction, default=True, help="on by default")
    parser.add_argument("--churn-per-minute", type=float, default=60.0)
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
    manage(env, "migrate", "-v", "0")
    manage(env, "collectstatic", "--no-input", "-v", "0")  # the admin's pages need the manifest with DEBUG off
    password = uuid.uuid4().hex
    token = manage(env, "shell", "-c", STAFF_SCRIPT.format(password=password)).strip().splitlines()[-1]
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
    ledger = Ledger()
    try:
        wait_for_port(port, 60)
        session = requests.Session()
        for path in tracks[: args.seed_songs]:
            ledger.add(upload(session, base, path.name, path.read_bytes()), path, seed=True)
        seeds = list(ledger.sources)
        seeded = wait_finished(database, seeds, 300)
        ready = [song_id for song_id in seeds if seeded.get(song_id) == "ready"]
        if not ready:
            raise SystemExit("no seed song became ready; see " + str(scratch / "worker.log"))
        stop = threading.Event()

        def search_client(seed: int) -> None:
            client = requests.Session()
            pick = random.Random(seed)
            while not stop.is_set():
                song_id = uuid.UUID(pick.choice(ready))
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
                    song_id = upload(client, base, path.name, path.read_bytes())
                    ledger.add(song_id, path)
                    with results.lock:
                        results.uploaded[song_id] = time.monotonic()
                except requests.RequestException as exc:
                    with results.lock:
                        results.upload_errors.append(str(exc))

        threads = [threading.Thread(target=search_client, args=(i,)) for i in range(args.search_clients)]
        threads.append(threading.Thread(target=uploader))
        if args.churn:
            churn = Churn(Staff(base, "bench", password, token), ledger, base, args.churn_per_minute, seed=7)
            threads.append(threading.Thread(target=churn.run, args=(stop,)))
        began = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        stop.set()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - began

        drain_started = time.monotonic()
        live = ledger.live()
        finished = wait_finished(database, live, 600)
        drained = time.monotonic() - drain_started
        check = subprocess.run(
            [sys.executable, "manage.py", "check_consistency"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        stored_keys = [
            line for line in manage(env, "shell", "-c", KEYS_SCRIPT).splitlines() if line.startswith("uploads/")
        ]
        problems = audit(database, stored_keys, ledger)

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
            f"the last song finished {drained:.1f} s after the load stopped"
        )
        if args.churn:
            print(f"churn: {sum(ledger.outcomes.values())} actions")
            for outcome, times in sorted(ledger.outcomes.items()):
                print(f"  {outcome}: {times}")
        print(
            f"audit: {len(ledger.sources)} songs made ({len(seeds)} seed), {len(ledger.deleted)} deleted, "
            f"{len(live)} live: {sum(s == 'ready' for s in finished.values())} ready, "
            f"{sum(s == 'failed' for s in finished.values())} failed, "
            f"{len(ledger.titles)} with an edited title, {shared_bytes(database)} sharing their bytes with another; "
            f"{len(stored_keys)} stored objects"
        )
        print("lost, duplicated, orphaned or resurrected: " + ("; ".join(problems[:20]) if problems else "none"))
        print("check_consistency: " + (check.stdout.strip().splitlines()[-1] if check.stdout else check.stderr))
        print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    finally:
        stop_worker(worker)
        web.terminate()
        web.wait(30)
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
