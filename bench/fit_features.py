"""Fit the standardisation statistics of the `features` embedding on a corpus of real music.

Usage: python bench/fit_features.py --corpus DIR [--out embeddings/data/feature_stats.npz]
DIR is made by ../shared/corpus/build_corpus.sh; every audio file under it is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embeddings.audio import decode
from embeddings.base import EmbeddingError
from embeddings.features import DIM, STATS_PATH, raw_features

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"}


def _features(path: Path) -> np.ndarray | None:
    try:
        audio = decode(path, max_seconds=900, min_seconds=0.25)
    except EmbeddingError as exc:
        print(f"skipped {path}: {exc}", file=sys.stderr)
        return None
    return raw_features(audio.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=STATS_PATH)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if len(files) < 10:
        raise SystemExit(f"found {len(files)} audio files under {args.corpus}; at least 10 are needed")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = np.stack([row for row in pool.map(_features, files) if row is not None])
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    assert rows.shape[1] == DIM
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, mean=mean.astype(np.float32), std=std.astype(np.float32), tracks=len(rows))
    print(
        f"fitted {DIM} feature statistics on {len(rows)} tracks in {time.perf_counter() - started:.1f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
