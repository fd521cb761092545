"""Serve a catalog of N ready songs on one host, as production runs it, and measure every read path.

Usage: python bench/scale.py --songs N [--web-workers 4] [--model features] [--requests 150] [--clip-requests 100]
                             [--real-songs 24] [--corpus /work/corpus] [--scratch-root /tmp] [--keep]
                             [--reuse DIR] [--ingest-trials 3]

In a throwaway folder (production settings, SQLite, local storage, local vector and fingerprint indexes) it builds
the catalog: N synthetic ready songs (and 1% failed ones) written in bulk: titles, artists, albums and sound tags,
clustered unit vectors of the active model, and fingerprints drawn from hash frequencies measured on real songs
(see bench/scale_build.py); then `manage.py sync_indexes --compact`; then `--real-songs` real corpus
songs through `import_audio` (the product's ingest). Then it starts redis-server, gunicorn with
`--web-workers` sync workers and one Celery worker, has every worker serve every endpoint (the others paused with
SIGSTOP so it takes each connection), and prints one table: p50/p95 per endpoint (one request at a time, a new
connection each), each worker's RSS and PSS, what a fifth worker adds, the disk of each folder under VAR_DIR,
the time a restarted worker takes to answer its first searches, the ingest of one more real song at N and in an
empty catalog (`--ingest-trials` times, the song deleted again through the product between trials), and
`check_consistency`. Clips are 10 s MP3s cut from the real songs. This prints figures; it is
not a test. `--keep` leaves the folder in place; `--reuse DIR` serves and measures a kept one again without
building it (a catalog of 100k songs takes most of an hour to build).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scale_build
from bench.scale_serve import (
    Failed,
    Request,
    clip_upload,
    folder_bytes,
    memory_mb,
    only,
    percentiles,
    timed,
    wait_listening,
    wait_new_worker,
    workers,
)
from bench.stack import production_env
from tests.services import RedisServer, free_port, start_worker, stop_worker

PAGE = 25  # API_PAGE_SIZE's default
PROFILED = "profiled-songs.json"


def profiled(args: argparse.Namespace) -> set[Path]:
    """The corpus songs whose hash frequencies the synthetic songs were drawn from (recorded by the build)."""
    record = args.scratch / PROFILED
    return {Path(p) for p in json.loads(record.read_text())} if record.exists() else set()


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    wanted = sorted(
        f for f in (flags.group(1).split() if flags else []) if f == "avx2" or f.startswith(("avx512", "amx"))
    )
    return f"{model.group(1) if model else 'unknown CPU'}, {os.cpu_count()} CPUs: {' '.join(wanted) or 'no AVX2'}"


def manage(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done


def cut_clip(path: Path, offset: float, seconds: float = 10.0) -> bytes:
    """`seconds` of a real song from `offset`, as a mono MP3 (what a phone recording sent by the page becomes)."""
    import soundfile as sf
    from django.conf import settings

    from embeddings.audio import decode
    from embeddings.base import SAMPLE_RATE

    audio = decode(path, max_seconds=offset + seconds, min_seconds=settings.MIN_AUDIO_SECONDS)
    out = io.BytesIO()
    sf.write(out, audio.samples[int(offset * SAMPLE_RATE) :], SAMPLE_RATE, format="MP3")
    return out.getvalue()


def build(args: argparse.Namespace, env: dict[str, str], tracks: list[Path]) -> list[str]:
    """The catalog, each step timed; returns the lines to print."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from embeddings.registry import active_model_name, model_dim

    lines = []
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # pages need the manifest with DEBUG off
    model = active_model_name()
    started = time.perf_counter()
    # The profiled songs' own hashes are what the synthetic songs repeat: they are never ingested or queried.
    profiled = tracks[-args.profile_songs :]
    (args.scratch / PROFILED).write_text(json.dumps([str(p) for p in profiled]))
    hashes = scale_build.measure_hashes(profiled)
    lines.append(f"hash model ({time.perf_counter() - started:.1f} s): {hashes.describe()}")
    started = time.perf_counter()
    times = scale_build.build_synthetic(args.songs, model, model_dim(model), hashes, args.build_processes)
    lines.append(
        f"{args.songs:,} synthetic songs ({time.perf_counter() - started:.1f} s): rows {times.songs:.1f} s, "
        f"placeholder files {times.files:.1f} s, tags {times.tags:.1f} s, {model} vectors {times.vectors:.1f} s, "
        f"fingerprints {times.fingerprints:.1f} s waited for and written ({times.landmarks:,} landmarks, "
        f"{times.fingerprint_bytes / 1e9:.2f} GB packed)"
    )
    connections.close_all()
    # Built and merged before serving, as the compaction task would leave them once a bulk load settles.
    seconds, done = manage(env, "sync_indexes", "--compact")
    for line in (done.stdout + done.stderr).strip().splitlines()[-2:]:
        lines.append(f"sync_indexes --compact ({seconds:.1f} s, exit {done.returncode}): {line}")
    # After the bulk load, so that these go through the indexes as every ingest does.
    started = time.perf_counter()
    summary = scale_build.ingest_real(tracks[: args.real_songs])
    lines.append(f"real songs ingested ({time.perf_counter() - started:.1f} s): {summary}")
    connections.close_all()
    return lines


def endpoints(args: argparse.Namespace, tracks: list[Path]) -> tuple[dict[str, list[Request]], dict[str, str]]:
    """Requests per endpoint (one list each, cycled) and, for each identify clip, the song it was cut from."""
    from catalog.models import Song, SongStatus
    from catalog.services import file_sha256

    rng = random.Random(1)
    ready = list(Song.objects.filter(status=SongStatus.READY).values_list("id", flat=True))
    ids = [str(song_id) for song_id in rng.sample(ready, min(len(ready), 500))]
    digests = {path: file_sha256(path) for path in tracks[: args.real_songs] if path not in profiled(args)}
    real = dict(Song.objects.filter(status=SongStatus.READY, sha256__in=digests.values()).values_list("sha256", "id"))
    total = Song.objects.exclude(status=SongStatus.DELETING).count()
    deep = max(1, total // PAGE // 2)
    words = rng.sample(scale_build.WORDS, 40)
    clips: list[tuple[str, bytes]] = []
    for path, digest in digests.items():
        if digest in real and len(clips) < 8:
            clips.append((str(real[digest]), cut_clip(path, offset=rng.uniform(20, 50))))
    if not clips:
        raise SystemExit("no real song became ready; nothing to cut clips from")
    owners: dict[str, str] = {}
    identify = []
    for k, (song_id, clip) in enumerate(clips):
        request = clip_upload(f"identify {k}", "/api/identify/", clip)
        owners[request.name] = song_id
        identify.append(request)
    tags = list(scale_build.GENRES)
    plan = {
        "list, first page": [Request("list", "GET", "/api/songs/")],
        "list, deep page": [Request("deep", "GET", f"/api/songs/?page={deep}")],
        "list, ready by title": [
            Request("title", "GET", f"/api/songs/?status=ready&sort=title&page={p}") for p in (1, 2, 3)
        ],
        "list, tag": [Request("tag", "GET", f"/api/songs/?tag={t.replace(' ', '+')}") for t in tags],
        "text search": [Request("search", "GET", f"/api/songs/?search={w}") for w in words],
        "song page (HTML)": [Request("page", "GET", f"/songs/{i}/") for i in ids],
        "song (API)": [Request("song", "GET", f"/api/songs/{i}/") for i in ids],
        "more-like-this": [Request("mlt", "GET", f"/api/songs/{i}/more-like-this/?limit=10") for i in ids],
        "similar-by-clip": [clip_upload("similar", "/api/search/similar/", c) for _, c in clips],
        "identify": identify,
        "map": [Request("map", "GET", "/api/map/")],
        "tags": [Request("tags", "GET", "/api/tags/")],
        "healthz": [Request("healthz", "GET", "/healthz")],
    }
    return plan, owners


def serve_every_endpoint(port: int, plan: dict[str, list[Request]]) -> dict[str, float]:
    """One request per endpoint; seconds each (the first on a fresh worker loads what it needs)."""
    return {name: timed(port, requests[:1])[0] for name, requests in plan.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--model", default="features", help="embedding model of web and worker (features)")
    parser.add_argument("--requests", type=int, default=150, help="timed requests per endpoint")
    parser.add_argument("--clip-requests", type=int, default=100, help="timed similar-by-clip and identify requests")
    parser.add_argument("--real-songs", type=int, default=24)
    parser.add_argument(
        "--profile-songs", type=int, default=40, help="corpus songs (the last ones) whose hash frequencies are measured"
    )
    parser.add_argument("--build-processes", type=int, default=2)
    parser.add_argument(
        "--ingest-trials", type=int, default=3, help="times one more song is ingested at N and in an empty catalog"
    )
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--scratch-root", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the throwaway folder")
    parser.add_argument("--reuse", type=Path, default=None, help="a folder kept by --keep: measure it again")
    args = parser.parse_args()

    args.scratch_root.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        scratch, args.keep = args.reuse.resolve(), True
    else:
        scratch = Path(tempfile.mkdtemp(prefix="resonance-scale-", dir=args.scratch_root))
    args.scratch = scratch
    redis = RedisServer(scratch)
    env = production_env(
        scratch, EMBEDDING_MODEL=args.model, VECTOR_BACKEND="local", CELERY_BROKER_URL=redis.url, LOG_LEVEL="ERROR"
    )
    os.environ.update(env)
    tracks = list(scale_build.corpus_tracks(args.corpus))
    if len(tracks) <= args.real_songs + args.profile_songs:
        raise SystemExit(f"the corpus has {len(tracks)} usable tracks; --real-songs + --profile-songs must be fewer")
    # The first not in the catalog is ingested at the end, at N and in an empty one.
    extras = [path for path in tracks[args.real_songs :] if path not in profiled(args)]
    out = [f"N = {args.songs:,} ready songs (+1% failed), {args.web_workers} web workers, model {args.model}"]
    out.append(f"CPU: {cpu_flags()}")
    web = worker = None
    try:
        started = time.perf_counter()
        if args.reuse:
            import django

            django.setup()
            out.append(f"reusing the catalog built in {scratch}")
        else:
            out += build(args, env, tracks)
            out.append(f"build total: {time.perf_counter() - started:.0f} s")
        print("\n".join(out), flush=True)
        plan, owners = endpoints(args, tracks)
        from django.db import connections

        connections.close_all()
        redis.start()
        port = free_port()
        web = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"),
                *("--workers", str(args.web_workers), "--timeout", "900", "--log-level", "warning"),
            ],
            cwd=ROOT,
            env=env,
        )
        worker = start_worker(scratch / "worker.log", env)
        wait_listening(port, 120)
        out += measure(args, port, web.pid, plan, owners)
        out += ingest_and_check(env, scratch, not_in_catalog(extras), args.model, args.ingest_trials)
    except Failed as exc:
        out.append(f"FAILED: {exc}")
    finally:
        if worker is not None:
            stop_worker(worker)
        if web is not None:
            web.terminate()
            web.wait(60)
        redis.stop()
        print("\n" + "\n".join(out))
        print(f"load average {os.getloadavg()}")
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def measure(
    args: argparse.Namespace, port: int, master: int, plan: dict[str, list[Request]], owners: dict[str, str]
) -> list[str]:
    while len(workers(master)) < args.web_workers:
        time.sleep(0.1)
    first: dict[str, list[float]] = {name: [] for name in plan}
    for pid in workers(master):
        with only(master, pid):
            for name, took in serve_every_endpoint(port, plan).items():
                first[name].append(took)
    correct = 0

    def check_identify(request: Request, body: bytes) -> None:
        nonlocal correct
        match = json.loads(body).get("match") or {}
        correct += (match.get("song") or {}).get("id") == owners[request.name]

    lines = ["", f"{'endpoint':<22} {'p50 ms':>8} {'p95 ms':>8} {'n':>5}  first request per fresh worker (max)"]
    for name, requests in plan.items():
        count = args.clip_requests if name in {"similar-by-clip", "identify"} else args.requests
        batch = [requests[i % len(requests)] for i in range(count)]
        seconds = timed(port, batch, check_identify if name == "identify" else None)
        p50, p95 = percentiles(seconds)
        lines.append(f"{name:<22} {p50:>8.1f} {p95:>8.1f} {count:>5}  {max(first[name]):.2f} s")
    lines.append(f"identify named the clip's song for {correct} of {args.clip_requests} clips")

    lines += ["", "gunicorn workers after serving every endpoint (MB):"]
    before = {pid: memory_mb(pid) for pid in workers(master)}
    lines += [f"  worker {pid}: RSS {rss:,.0f}  PSS {pss:,.0f}" for pid, (rss, pss) in before.items()]
    lines.append(f"  sum: RSS {sum(r for r, _ in before.values()):,.0f}  PSS {sum(p for _, p in before.values()):,.0f}")
    # With WEB_PRELOAD the master holds the libraries the workers share: its PSS is part of the web tier's memory.
    master_rss, master_pss = memory_mb(master)
    lines.append(
        f"  master: RSS {master_rss:,.0f}  PSS {master_pss:,.0f}; workers + master PSS "
        f"{sum(p for _, p in before.values()) + master_pss:,.0f}"
    )

    os.kill(master, signal.SIGTTIN)
    extra = wait_new_worker(master, set(before))
    with only(master, extra):
        warm = serve_every_endpoint(port, plan)
    after = {pid: memory_mb(pid) for pid in workers(master)}
    rss, pss = after[extra]
    added = sum(p for _, p in after.values()) - sum(p for _, p in before.values())
    lines.append(
        f"  one more worker (SIGTTIN), after serving every endpoint ({sum(warm.values()):.1f} s): "
        f"RSS {rss:,.0f}  PSS {pss:,.0f};"
        f" the workers' PSS sum grew by {added:,.0f}"
    )
    os.kill(master, signal.SIGTTOU)
    while len(workers(master)) > args.web_workers:
        time.sleep(0.1)

    known = set(workers(master))
    victim = min(known)
    started = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    fresh = wait_new_worker(master, known - {victim})
    with only(master, fresh):
        timed(port, plan["more-like-this"][:1])
        mlt = time.perf_counter() - started
        timed(port, plan["identify"][:1])
        ident = time.perf_counter() - started
    lines.append(f"\nworker killed: its replacement answered more-like-this {mlt:.2f} s later, identify {ident:.2f} s")
    return lines


def not_in_catalog(tracks: list[Path]) -> Path | None:
    from catalog.models import Song
    from catalog.services import file_sha256

    for path in tracks:
        if not Song.objects.filter(sha256=file_sha256(path)).exists():
            return path
    return None


def ingest_and_check(env: dict[str, str], scratch: Path, extra: Path | None, model: str, trials: int) -> list[str]:
    var = Path(env["VAR_DIR"])
    database = Path(env["SQLITE_PATH"])
    lines = ["", "disk:"]
    lines += [f"  {p.relative_to(var)}/: {folder_bytes(p) / 1e6:,.1f} MB" for p in sorted(var.iterdir()) if p.is_dir()]
    size = sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))
    lines.append(f"  database ({database.name} with its -wal/-shm): {size / 1e6:,.1f} MB")

    def ingest(target: dict[str, str]) -> tuple[float, str]:
        seconds, done = manage(target, "import_audio", str(extra))
        if done.returncode != 0:
            raise Failed(f"import_audio failed: {done.stderr.strip()[-200:]}")
        return seconds, " / ".join(done.stdout.strip().splitlines()[:3])

    if extra is None:
        lines.append("\nno ingest of one more real song: every corpus track is in the catalog already")
    else:
        from catalog.models import Song
        from catalog.services import delete_song, file_sha256

        empty = production_env(scratch / "empty", EMBEDDING_MODEL=model, VECTOR_BACKEND="local", LOG_LEVEL="ERROR")
        lines.append(f"\ningest of one more real song ({extra.name}), import_audio in a new process, {trials} times:")
        ratios = []
        for trial in range(trials):
            if trial:  # the song goes again, through the product's delete, so the next trial ingests it at N too
                for song in Song.objects.filter(sha256=file_sha256(extra)):
                    delete_song(song)
            at_n, report = ingest(env)
            shutil.rmtree(scratch / "empty", ignore_errors=True)
            (scratch / "empty").mkdir()
            manage(empty, "migrate", "-v", "0")
            alone, _ = ingest(empty)
            ratios.append(at_n / alone)
            lines.append(f"  at N {at_n:.1f} s, empty catalog {alone:.1f} s: {at_n / alone:.2f}x ({report})")
        lines.append(f"  median {statistics.median(ratios):.2f}x")
    seconds, done = manage(env, "check_consistency")
    lines.append(f"check_consistency: {seconds:.1f} s: {(done.stdout or done.stderr).strip().splitlines()[-1:]}")
    return lines


if __name__ == "__main__":
    main()
