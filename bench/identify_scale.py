"""Identification against a larger catalog: real songs among synthetic ones, for several stop limits.

Usage: python bench/identify_scale.py [--songs 1000] [--real 10] [--clips 40] [--corpus /work/corpus]

Builds an in-memory fingerprint index (fingerprints.index.local.MemoryFingerprintIndex: the local index's segments
and lookup) of `--songs` synthetic songs, their hashes drawn from the frequencies measured on four corpus songs
(bench/scale_build.py), plus `--real` corpus songs fingerprinted with the product's code; then identifies 10 s
clips of the real songs (pink noise at 5 dB, 64 kb/s MP3) with the stop list at the index's own limit and at other
limits, printing the share identified, postings per clip and lookup-plus-scoring time. This prints figures; it is
not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django

django.setup()

import scale_build

from derived.store import Snapshot
from embeddings.audio import decode
from embeddings.base import SAMPLE_RATE
from fingerprints.index import stop_limit
from fingerprints.index.local import MemoryFingerprintIndex, unpack
from fingerprints.index.postings import lookup
from fingerprints.landmarks import landmarks, query_landmarks
from fingerprints.management.commands.evaluate_identify import mix, mp3_roundtrip, pink_noise
from fingerprints.selectors import accepted, best_match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--real", type=int, default=10)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    args = parser.parse_args()
    tracks = sorted((args.corpus / "mp3").rglob("*.mp3"))
    real = tracks[:: max(1, len(tracks) // args.real)][: args.real]
    model = scale_build.measure_hashes(real[:4])
    print(model.describe())
    scale_build._set_model(model)
    index = MemoryFingerprintIndex()
    rng = np.random.default_rng(0)
    batch = []
    for i in range(args.songs):
        count, data = scale_build.synthetic_fingerprints((i, float(rng.uniform(90, 400))))
        hashes, times = unpack(data, count)
        batch.append((uuid.uuid4(), hashes, times))
        if len(batch) == 500:
            index.add_many(batch)
            batch = []
    index.add_many(batch)
    audio = {}
    owner = {}
    for path in real:
        audio[path] = decode(path, max_seconds=900, min_seconds=0.25).samples
        found = landmarks(audio[path])
        owner[path] = uuid.uuid4()
        index.add(owner[path], found.hashes, found.times)
    snapshot = Snapshot(tuple(index.parts))
    entries = sum(part.segment.landmarks for part in snapshot.parts)
    print(f"{args.songs:,} synthetic + {len(real)} real songs: {entries:,} landmarks; stop limit {stop_limit(entries)}")
    clips = []
    with tempfile.TemporaryDirectory() as scratch:
        for q in range(args.clips):
            path = real[q % len(real)]
            samples = audio[path]
            start = int(rng.uniform(0, max(1, samples.size - 10 * SAMPLE_RATE)))
            excerpt = samples[start : start + 10 * SAMPLE_RATE]
            clip = mp3_roundtrip(mix(excerpt, pink_noise(excerpt.size, rng), 5.0), "64k", Path(scratch))
            clips.append((owner[path], query_landmarks(clip)))
    for limit in [*sorted({stop_limit(entries), int(entries * 1e-5), int(entries * 1e-4)}), 0]:
        right = 0
        postings = []
        started = time.perf_counter()
        for song_id, query in clips:
            hits = lookup(snapshot, query.hashes, limit)
            postings.append(len(hits))
            match = accepted(best_match(query, hits))
            right += match is not None and match.song_id == song_id
        took = (time.perf_counter() - started) / len(clips) * 1000
        print(
            f"stop limit {limit or 'none':>8}: identified {right}/{len(clips)}  "
            f"postings p50 {np.median(postings):,.0f}  {took:.0f} ms per clip (lookup and scoring)"
        )


if __name__ == "__main__":
    main()
