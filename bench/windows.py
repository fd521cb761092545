"""Choose the PANNs window length and hop by measurement: speed against agreement with the 10 s / 5 s layout.

Usage: python bench/windows.py --corpus DIR [--stride N] [--limit K] [--excerpt-seconds 90]
       [--layouts 10/5,10/10,20/20,30/30 (or W/H/precision)] [--precision auto] [--checkpoint PATH]
Every track is decoded once (the middle `--excerpt-seconds` of it, 0 = the whole track) and embedded with each
layout from the same samples. Prints, per layout, the model's audio seconds per CPU second, the song vectors'
cosine to the first layout's (mean and minimum over the songs), and the more-like-this recall@10 against the first
layout's lists (each song's 10 nearest other songs in the set). Without --checkpoint a randomly initialised Cnn14
is used: its vectors are a proxy for the trained network's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from embeddings import panns
from embeddings.audio import decode
from embeddings.base import SAMPLE_RATE, EmbeddingError
from embeddings.cpu import cpu_capabilities

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _excerpt(samples: np.ndarray, seconds: float) -> np.ndarray:
    length = round(seconds * SAMPLE_RATE)
    if not seconds or samples.size <= length:
        return samples
    start = (samples.size - length) // 2
    return samples[start : start + length]


def recall_at(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean share of each song's k nearest others (by the reference vectors) that the candidate vectors also list."""
    k = min(k, len(reference) - 1)

    def nearest(vectors: np.ndarray) -> np.ndarray:
        scores = vectors @ vectors.T
        np.fill_diagonal(scores, -np.inf)
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    mine, theirs = nearest(reference), nearest(candidate)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(mine, theirs, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--stride", type=int, default=1, help="every N-th track (sorted by path), then --limit")
    parser.add_argument("--excerpt-seconds", type=float, default=90.0)
    parser.add_argument("--layouts", default="10/5,10/10,20/20,30/30", help="window/hop seconds, the first is today's")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    # window/hop, or window/hop/precision to compare precisions too
    specs = [item.split("/") for item in args.layouts.split(",")]
    layouts = [(float(spec[0]), float(spec[1])) for spec in specs]
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    files = files[:: args.stride][: args.limit]
    with tempfile.TemporaryDirectory(prefix="resonance-windows-") as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = Path(scratch) / panns.CHECKPOINT_FILE_NAME
            torch.save({"model": panns.build_cnn14().state_dict()}, checkpoint)
        base = panns.load_panns(checkpoint, device="cpu", batch_size=args.batch_size, precision=args.precision)
    embedders = [
        panns.PannsEmbedder(
            base._model,
            precision=spec[2] if len(spec) > 2 else base.precision,
            batch_size=args.batch_size,
            window_seconds=float(spec[0]),
            hop_seconds=float(spec[1]),
        )
        for spec in specs
    ]
    vectors: list[list[np.ndarray]] = [[] for _ in layouts]
    cpu = [0.0] * len(layouts)
    audio_seconds = 0.0
    print(f"CPU: {cpu_capabilities().describe()}; {torch.get_num_threads()} threads; {base.precision}", flush=True)
    for number, path in enumerate(files, start=1):
        try:
            samples = _excerpt(decode(path, max_seconds=900, min_seconds=1).samples, args.excerpt_seconds)
        except EmbeddingError as exc:
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            continue
        audio_seconds += samples.size / SAMPLE_RATE
        started = time.perf_counter()
        for index, embedder in enumerate(embedders):
            cpu_started = _cpu_seconds()
            vectors[index].append(embedder.embed(samples))
            cpu[index] += _cpu_seconds() - cpu_started
        print(
            f"  {number}/{len(files)} {samples.size / SAMPLE_RATE:5.0f} s {time.perf_counter() - started:5.1f} s"
            f"  {path.name}",
            file=sys.stderr,
            flush=True,
        )
    reference = np.stack(vectors[0])
    between = reference @ reference.T
    spread = between[~np.eye(len(reference), dtype=bool)]
    print(f"{len(reference)} songs, {audio_seconds / 3600:.2f} audio hours per layout")
    print(f"cosine between different songs (first layout): mean {spread.mean():.5f}, min {spread.min():.5f}")
    print("layout (window/hop s)  audio s per CPU s  speed vs first  cosine to first (mean / min)  recall@10")
    for embedder, songs, seconds in zip(embedders, vectors, cpu, strict=True):
        stacked = np.stack(songs)
        cosines = np.sum(stacked * reference, axis=1)
        name = f"{embedder.window_samples / SAMPLE_RATE:g}/{embedder.hop_samples / SAMPLE_RATE:g} {embedder.precision}"
        print(
            name.ljust(23)
            + f"{audio_seconds / seconds:17.1f}  {cpu[0] / seconds:13.2f}x"
            + f"  {cosines.mean():.5f} / {cosines.min():.5f}".ljust(29)
            + f"  {recall_at(reference, stacked):.3f}"
        )


if __name__ == "__main__":
    main()
