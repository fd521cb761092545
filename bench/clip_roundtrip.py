"""Benchmark clip analysis on the workers: the round trip over Redis against the analysis itself, similar-by-clip at
scale, and the identify page's decode and landmark extraction (which stays in the web process).

Usage: python bench/clip_roundtrip.py [--model features|panns-cnn14] [--songs 100000] [--requests 30]
                                      [--corpus /work/corpus/mp3] [--seconds 10]

It starts redis-server and one Celery worker serving the `clips` queue (with `panns-cnn14` it first writes a
random-weight Cnn14 checkpoint: speed only), cuts `--seconds` s MP3 clips from corpus tracks with ffmpeg, and sends
each clip exactly as `catalog.clips.clip_vector` does (inline in the task message; the web waits on the Redis result).
Per clip it prints the worker's own decode + embedding time and the round trip the web process waits, and their
difference: what handing the clip to a worker adds. Similar-by-clip at `--songs` is that round trip plus a search of
a `--songs` x dim vector segment (the local index's fast mode, what the API runs next); the HTTP layer around them
(form parsing, 15 song rows) is not included. Then it times decode + landmark extraction of the same clips in this
process (what POST /api/identify/ does before its lookup). This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cut_clips(corpus: Path, count: int, seconds: float, folder: Path) -> list[Path]:
    tracks = sorted(corpus.rglob("*.mp3"))
    if not tracks:
        raise SystemExit(f"no MP3 files under {corpus}")
    clips = []
    for n in range(count):
        out = folder / f"clip-{n}.mp3"
        track = tracks[n % len(tracks)]
        start = 20 + 7 * (n // len(tracks))
        subprocess.run(
            [
                *("ffmpeg", "-v", "error", "-y", "-ss", str(start), "-t", str(seconds), "-i", str(track)),
                *("-ac", "1", "-c:a", "libmp3lame", "-b:a", "128k", str(out)),
            ],
            check=True,
        )
        clips.append(out)
    return clips


def p50(values: list[float]) -> str:
    ms = np.asarray(values) * 1000
    return f"p50 {np.percentile(ms, 50):7.1f} ms  p95 {np.percentile(ms, 95):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="features", choices=["features", "panns-cnn14"])
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus/mp3"))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-clips-"))
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = {
        "VAR_DIR": str(scratch / "var"),
        "CELERY_BROKER_URL": redis_url,
        "EMBEDDING_MODEL": args.model,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if args.model == "panns-cnn14":
            checkpoint = scratch / "Cnn14_mAP=0.431.pth"
            code = (
                "import sys, torch; from embeddings import panns; torch.manual_seed(0); "
                "torch.save({'model': panns.build_cnn14().state_dict()}, sys.argv[1])"
            )
            subprocess.run([sys.executable, "-c", code, str(checkpoint)], check=True, cwd=ROOT)
            env["PANNS_CHECKPOINT"] = str(checkpoint)
        os.environ.update(env)
        processes.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
            )
        )
        log = open(scratch / "worker.log", "wb")  # noqa: SIM115 (the worker writes to it until the end)
        processes.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "clips", "--concurrency", "1"),
                    *("--without-gossip", "--without-mingle", "--loglevel", "WARNING"),
                ],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        import django

        django.setup()
        from catalog import clips
        from catalog.tasks import analyse_clip_task
        from derived.segments import Part, Snapshot
        from embeddings.audio import decode
        from embeddings.index.scan import scan_kernel, search_snapshot
        from embeddings.index.segments import VectorCodec
        from embeddings.registry import model_dim
        from fingerprints.landmarks import query_landmarks

        dim = model_dim(args.model)
        files = cut_clips(args.corpus, args.requests, args.seconds, scratch)
        print(f"{args.requests} clips of {args.seconds:g} s cut from {args.corpus}; model {args.model} ({dim}-d)")

        # A segment of --songs vectors, as the host's index holds it, for the search that follows the analysis.
        rng = np.random.default_rng(0)
        folder = scratch / "segment"
        folder.mkdir()
        vectors = rng.standard_normal((args.songs, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        items = [(uuid.UUID(int=i + 1), (f"uploads/{i}.mp3", vectors[i])) for i in range(args.songs)]
        VectorCodec(args.model, dim).write(folder, items)
        del vectors, items
        segment = VectorCodec(args.model, dim).open(folder)
        snapshot = Snapshot((Part(name="bench", segment=segment, alive=np.ones(args.songs, dtype=np.bool_)),))
        scan_kernel()
        fast = args.songs >= 20_000

        def ask(path: Path) -> tuple[float, float, np.ndarray]:
            clip = {"inline": base64.b64encode(path.read_bytes()).decode("ascii"), "suffix": ".mp3"}
            started = time.perf_counter()
            answer = clips._ask_worker(analyse_clip_task, args.model, clip, 600.0)
            waited = time.perf_counter() - started
            return waited, float(answer["seconds"]), clips._vector_of(answer, args.model)

        started = time.perf_counter()
        ask(files[0])  # the worker loads its model first
        print(f"first clip (worker starting and loading the model): {time.perf_counter() - started:.1f} s")
        waits, analyses, searches = [], [], []
        for path in files:
            waited, analysed, vector = ask(path)
            started = time.perf_counter()
            search_snapshot(snapshot, vector, 15, None, fast=fast)
            searches.append(time.perf_counter() - started)
            waits.append(waited)
            analyses.append(analysed)
        overheads = [w - a for w, a in zip(waits, analyses, strict=True)]
        print(f"worker's decode + embedding:        {p50(analyses)}")
        print(f"round trip the web waits:           {p50(waits)}")
        mean_ms = statistics.fmean(overheads) * 1000
        print(f"added by the hand-off over Redis:   {p50(overheads)}  (mean {mean_ms:.1f} ms)")
        print(f"search of {args.songs:,} vectors ({'fast' if fast else 'exact'}):  {p50(searches)}")
        totals = [w + s for w, s in zip(waits, searches, strict=True)]
        print(f"similar-by-clip at {args.songs:,} songs (analysis + hand-off + search): {p50(totals)}")

        decodes, extracts = [], []
        for path in files:
            started = time.perf_counter()
            audio = decode(path, max_seconds=30.0, min_seconds=0.25)
            decoded = time.perf_counter()
            query_landmarks(audio.samples)
            decodes.append(decoded - started)
            extracts.append(time.perf_counter() - decoded)
        print(f"identify, in the web process: decode {p50(decodes)}; landmark extraction {p50(extracts)}")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
