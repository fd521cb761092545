"""Measure the decode + embed part of ingest on a corpus, the way a worker does it, without the web or a queue.

Usage:
    python bench/ingest.py --corpus DIR [--limit K] [options]
    python bench/ingest.py --synthetic N [--track-seconds 180] [options]
Options: --model auto|panns-cnn14|panns-cnn10|features (default: EMBEDDING_MODEL), --device, --precision,
--runtime, --batch-size (default: the EMBEDDING_* settings), --songs-at-once N (worker mode: N songs on threads
sharing the model, as a GPU worker with --pool threads runs them), --decode-workers (2), --threads (torch's default),
--random-weights (a PANNs model without its checkpoint: random weights, for speed only),
--hop-seconds (an experiment: a PANNs window hop other than the product's 5 s),
--mode worker|ahead (default worker), --shard K/N (only every N-th file from the K-th: bench/concurrency.py),
--peer (also time the one-pass float32 reference, bench/peer.py, on the same tracks and print the ratio).

`--mode worker` runs exactly what an ingest task does: tracks one after another, each decoded on a thread
(embeddings.audio.decode_in_background, at most 900 s) while the model embeds the blocks already decoded.
`--mode ahead` decodes whole tracks on a thread pool that stays ahead of the model instead, so decoding the
next tracks overlaps embedding the current one. The model is loaded once through the registry, as in a worker.
Prints tracks, audio hours, decode and model seconds, wall seconds,
tracks per minute, the realtime factor (audio seconds per wall second), the CPU seconds used (fairer
than wall time on a machine shared with other work) and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import numpy as np
from django.conf import settings

from bench.ingest_inputs import in_child, write_random_checkpoint, write_synthetic
from embeddings import registry
from embeddings.audio import DecodedAudio, decode, decode_in_background
from embeddings.base import SAMPLE_RATE, EmbeddingError, EmbeddingModel

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"}
MAX_SECONDS = 900.0


@dataclass
class Decoded:
    path: Path
    audio: DecodedAudio | None
    error: str
    started: float
    finished: float


def _decode(path: Path) -> Decoded:
    started = time.perf_counter()
    try:
        audio: DecodedAudio | None = decode(path, max_seconds=MAX_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
        error = ""
    except EmbeddingError as exc:
        audio, error = None, str(exc)
    return Decoded(path, audio, error, started, time.perf_counter())


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: unlike wall time, barely affected by other processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    """How long at least one of the intervals was running."""
    total, end = 0.0, float("-inf")
    for start, finish in sorted(intervals):
        if finish > end:
            total += finish - max(start, end)
            end = finish
    return total


# --- The run -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="a folder; every audio file under it is used")
    source.add_argument("--synthetic", type=int, metavar="N", help="N synthetic tracks, made as MP3 first")
    parser.add_argument("--track-seconds", type=float, default=180.0, help="length of a synthetic track")
    parser.add_argument("--limit", type=int, default=None, help="use only the first K files (sorted by path)")
    parser.add_argument("--model", choices=["auto", *registry.available_models()], default=None)
    parser.add_argument("--device", default=None, help="EMBEDDING_DEVICE: auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", default=None, help="EMBEDDING_PRECISION: auto, float32, float16, bfloat16")
    parser.add_argument("--batch-size", type=int, default=None, help="EMBEDDING_BATCH_SIZE")
    parser.add_argument("--decode-workers", type=int, default=2, help="decode threads that run ahead of the model")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--random-weights", action="store_true", help="PANNs with random weights (speed only)")
    parser.add_argument("--hop-seconds", type=float, default=None, help="experiment: another PANNs window hop")
    parser.add_argument("--window-seconds", type=float, default=None, help="experiment: another PANNs window")
    parser.add_argument("--mode", choices=["worker", "ahead"], default="worker", help="how decoding overlaps")
    parser.add_argument("--shard", default=None, metavar="K/N", help="every N-th file, from the K-th (0-based)")
    parser.add_argument("--peer", action="store_true", help="also time the one-pass float32 Cnn14 reference")
    parser.add_argument("--runtime", default=None, help="EMBEDDING_RUNTIME: torch or openvino")
    parser.add_argument("--songs-at-once", type=int, default=1, help="worker mode: songs analysed on threads at once")
    args = parser.parse_args()
    if args.decode_workers < 1 or args.songs_at_once < 1:
        parser.error("--decode-workers and --songs-at-once must be at least 1")

    with tempfile.TemporaryDirectory(prefix="resonance-bench-") as scratch:
        files = _inputs(args, Path(scratch))
        model_name = _configure(args, Path(scratch))
        _run(args, files, model_name)


def _inputs(args: argparse.Namespace, scratch: Path) -> list[Path]:
    if args.synthetic is not None:
        folder = scratch / "synthetic"
        folder.mkdir()
        print(f"writing {args.synthetic} synthetic {args.track_seconds:g} s MP3s ...", file=sys.stderr)
        in_child(write_synthetic, str(folder), args.synthetic, args.track_seconds)
        corpus: Path = folder
    else:
        corpus = args.corpus
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if args.limit is not None:
        files = files[: args.limit]
    if args.shard:
        shard, _, shards = args.shard.partition("/")
        files = files[int(shard) :: int(shards)]
    if not files:
        raise SystemExit(f"no audio files under {corpus}")
    return files


def _configure(args: argparse.Namespace, scratch: Path) -> str:
    if args.model:
        settings.EMBEDDING_MODEL = args.model
    if args.device:
        settings.EMBEDDING_DEVICE = args.device
    if args.precision:
        settings.EMBEDDING_PRECISION = args.precision
    if args.batch_size:
        settings.EMBEDDING_BATCH_SIZE = args.batch_size
    if args.runtime:
        settings.EMBEDDING_RUNTIME = args.runtime
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    name = registry.active_model_name()
    if name == "features":
        if args.random_weights or args.hop_seconds or args.window_seconds or args.peer:
            raise SystemExit("--random-weights, --hop-seconds, --window-seconds and --peer are for PANNs models")
        return name
    checkpoint = registry.panns_checkpoint_path(name)
    if args.random_weights:
        checkpoint = scratch / f"random-{name}.pth"
        print(f"writing a randomly initialised {name} checkpoint ...", file=sys.stderr)
        in_child(write_random_checkpoint, name, str(checkpoint))
        settings.EMBEDDING_MODEL = name
        settings.PANNS_CHECKPOINT = checkpoint
    elif not checkpoint.is_file():
        raise SystemExit(f"{name} has no checkpoint at {checkpoint}; fetch it or pass --random-weights to time it")
    return name


def _run(args: argparse.Namespace, files: list[Path], model_name: str) -> None:
    load_started = time.perf_counter()
    model = registry.get_embedding_model(model_name)
    load_seconds = time.perf_counter() - load_started
    if args.hop_seconds:
        model.hop_samples = round(args.hop_seconds * SAMPLE_RATE)  # type: ignore[attr-defined]
    if args.window_seconds:
        model.window_samples = round(args.window_seconds * SAMPLE_RATE)  # type: ignore[attr-defined]
    precision = getattr(model, "precision", "float32")
    print(f"{model.name} on {model.device} ({precision}), loaded in {load_seconds:.1f} s", file=sys.stderr)

    run = _run_worker if args.mode == "worker" else _run_ahead
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    result = run(args, files, model)
    decoded, failed = result.decoded, result.failed
    model_seconds, waiting, audio_seconds = result.model_seconds, result.waiting, result.audio_seconds
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    decode_sum = sum(item.finished - item.started for item in decoded)
    decode_wall = _union_seconds([(item.started, item.finished) for item in decoded])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    tracks = len(decoded) - len(failed)

    import torch

    from embeddings.cpu import cpu_capabilities

    rows = [
        ("CPU", cpu_capabilities().describe()),
        ("model", model.name),
        ("device", model.device),
        ("precision", precision),
        ("runtime", str(getattr(model, "runtime", "-"))),
        ("songs at once", str(args.songs_at_once) if args.mode == "worker" else "1"),
        ("batch size", str(getattr(model, "batch_size", "-"))),
        ("torch threads", str(torch.get_num_threads())),
        ("mode", args.mode),
        ("decode workers", str(args.decode_workers) if args.mode == "ahead" else "1 thread per track"),
        ("weights", "random" if args.random_weights else ("none" if model.name == "features" else "checkpoint")),
        ("window / hop seconds", _layout(model)),
        ("tracks", f"{tracks} ({len(failed)} failed)"),
        ("audio hours", f"{audio_seconds / 3600:.2f}"),
        ("model load seconds", f"{load_seconds:.1f}"),
        ("decode seconds (sum)", f"{decode_sum:.1f}"),
        ("decode seconds (wall)", f"{decode_wall:.1f}"),
        ("model seconds", f"{model_seconds:.1f}"),
        ("model idle waiting for decode", f"{waiting:.1f}"),
        ("wall seconds", f"{wall:.1f}"),
        ("tracks per minute", f"{tracks / wall * 60:.1f}"),
        ("realtime factor (decode included)", f"{audio_seconds / wall:.1f}x"),
        ("realtime factor (model only)", f"{audio_seconds / model_seconds:.1f}x" if model_seconds else "-"),
        ("CPU seconds (all threads)", f"{cpu:.1f}"),
        ("audio seconds per CPU second", f"{audio_seconds / cpu:.1f}" if cpu else "-"),
        ("peak RSS MB", f"{peak_mb:.0f}"),
        ("load average (1 min) at the end", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"),
    ]
    if args.peer:
        rows += _peer_rows(model, files, audio_seconds / wall, audio_seconds / cpu if cpu else 0.0)
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for line in failed:
        print(f"failed: {line}")


def _layout(model: EmbeddingModel) -> str:
    window, hop = getattr(model, "window_samples", 0), getattr(model, "hop_samples", 0)
    return f"{window / SAMPLE_RATE:g} / {hop / SAMPLE_RATE:g}" if window else "-"


def _peer_rows(
    model: EmbeddingModel, files: list[Path], product_realtime: float, product_per_cpu: float
) -> list[tuple[str, str]]:
    import torch

    from bench.peer import run_peer

    print("timing the one-pass float32 reference on the same tracks ...", file=sys.stderr)
    peer = run_peer(
        registry.panns_checkpoint_path(model.name),
        model.name,
        files,
        threads=torch.get_num_threads(),
        max_seconds=MAX_SECONDS,
        min_seconds=settings.MIN_AUDIO_SECONDS,
    )
    ratio = product_realtime / peer.realtime_model_only if peer.model_seconds else 0.0
    peer_per_cpu = peer.audio_seconds / peer.cpu_seconds if peer.cpu_seconds else 0.0
    return [
        ("reference: one pass, float32", f"{peer.tracks} tracks, {peer.audio_seconds / 3600:.2f} audio hours"),
        ("reference realtime (model only)", f"{peer.realtime_model_only:.1f}x"),
        ("reference realtime (decode included)", f"{peer.realtime_with_decode:.1f}x"),
        ("reference peak RSS MB", f"{peer.peak_rss_mb:.0f}"),
        ("reference audio seconds per CPU second", f"{peer_per_cpu:.1f} (decode included)"),
        ("ratio: product (decode incl.) / reference (model only)", f"{ratio:.2f}x"),
        ("ratio of audio seconds per CPU second", f"{product_per_cpu / peer_per_cpu:.2f}x" if peer_per_cpu else "-"),
    ]


@dataclass
class Outcome:
    decoded: list[Decoded]
    failed: list[str]
    model_seconds: float = 0.0
    waiting: float = 0.0
    audio_seconds: float = 0.0


def _progress(number: int, total: int, seconds: float, item: Decoded, embed_seconds: float, tags: int) -> None:
    print(
        f"  {number:3d}/{total} {seconds:6.0f} s audio, decode {item.finished - item.started:5.2f} s,"
        f" embed {embed_seconds:5.2f} s, {tags} tags  {item.path.name}",
        file=sys.stderr,
    )


class _Timed:
    """The decoder's blocks, counting how long the model waited for each."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks, self.waiting = iter(blocks), 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            wait_started = time.perf_counter()
            try:
                block = next(self.blocks)
            except StopIteration:
                return
            finally:
                self.waiting += time.perf_counter() - wait_started
            yield block


def _run_worker(args: argparse.Namespace, files: list[Path], model: EmbeddingModel) -> Outcome:
    """Tracks one after another as an ingest task runs them; with --songs-at-once N, N such loops on threads."""
    outcome = Outcome(decoded=[], failed=[])
    queue, lock = iter(files), threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                path = next(queue, None)
            if path is None:
                return
            _one_track(path, model, outcome, lock, len(files))

    threads = [threading.Thread(target=loop, name=f"song-{n}") for n in range(args.songs_at_once)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def _one_track(path: Path, model: EmbeddingModel, outcome: Outcome, lock: threading.Lock, total: int) -> None:
    embed_started = time.perf_counter()
    with decode_in_background(path, max_seconds=MAX_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS) as decoding:
        blocks = _Timed(decoding.blocks())
        try:
            analysis = model.analyse_blocks(blocks)
            seconds = decoding.result().seconds
            error = ""
        except EmbeddingError as exc:
            error, seconds = str(exc), 0.0
    finished = time.perf_counter()
    item = Decoded(path, None, error, embed_started, embed_started + decoding.seconds_spent)
    with lock:
        outcome.decoded.append(item)
        outcome.waiting += blocks.waiting
        outcome.model_seconds += finished - embed_started - blocks.waiting
        if error:
            outcome.failed.append(f"{path.name}: {error}")
            return
        outcome.audio_seconds += seconds
        _progress(len(outcome.decoded), total, seconds, item, finished - embed_started, len(analysis.tags))


def _run_ahead(args: argparse.Namespace, files: list[Path], model: EmbeddingModel) -> Outcome:
    outcome = Outcome(decoded=[], failed=[])
    with ThreadPoolExecutor(args.decode_workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Decoded]] = deque()
        queue = iter(files)
        # Keep one decode per worker plus one finished track ready, so the model never waits when decode keeps up.
        for path in queue:
            pending.append(pool.submit(_decode, path))
            if len(pending) > args.decode_workers:
                break
        while pending:
            wait_started = time.perf_counter()
            item = pending.popleft().result()
            outcome.waiting += time.perf_counter() - wait_started
            next_path = next(queue, None)
            if next_path is not None:
                pending.append(pool.submit(_decode, next_path))
            outcome.decoded.append(item)
            if item.audio is None:
                outcome.failed.append(f"{item.path.name}: {item.error}")
                continue
            seconds = item.audio.seconds
            embed_started = time.perf_counter()
            try:
                analysis = model.analyse(item.audio.samples)
            except EmbeddingError as exc:
                outcome.failed.append(f"{item.path.name}: {exc}")
                continue
            finally:
                outcome.model_seconds += time.perf_counter() - embed_started
                item.audio = None  # let the samples go
            outcome.audio_seconds += seconds
            _progress(
                len(outcome.decoded), len(files), seconds, item, time.perf_counter() - embed_started, len(analysis.tags)
            )
    return outcome


if __name__ == "__main__":
    main()
