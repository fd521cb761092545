"""Identification against a larger catalog: real songs among synthetic ones, for several stop limits and budgets.

Usage: python bench/identify_scale.py [--songs 1000] [--real 10] [--model-songs 40] [--clips 40]
       [--corpus /work/corpus] [--folder DIR] [--budgets 0,400000,2000000]

Fingerprints `--model-songs` corpus songs with the product's code and pools their landmarks; each of `--songs`
synthetic songs (90-400 s) draws its hashes from that pool (every pooled landmark equally likely, so hashes are as
common as in those songs, never rarer: pessimistic for hashes the pool saw once) and its anchor frames uniformly.
The synthetic songs and `--real` corpus songs are written as segments and merged into one memory-mapped segment
under `--folder` (fingerprints.index.postings, as compaction leaves the local index); then 10 s clips of the real
songs (pink noise at 5 dB, 64 kb/s MP3) are identified with the stop list at the index's own limit, at
LOOKUP_BUDGET and at the `--budgets` given, printing the share identified, hits per clip and the time of lookup and
scoring (the clip's fingerprinting measured apart). This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django

django.setup()

from derived.store import Part, Snapshot
from embeddings.audio import decode
from embeddings.base import SAMPLE_RATE
from fingerprints.index import LOOKUP_BUDGET, stop_limit
from fingerprints.index.postings import PostingCodec, build, lookup, merge_into, segment_of
from fingerprints.landmarks import ALGORITHM, FRAME_SECONDS, landmarks, query_landmarks
from fingerprints.management.commands.evaluate_identify import mix, mp3_roundtrip, pink_noise
from fingerprints.selectors import accepted, best_match

_BATCH = 400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--real", type=int, default=10)
    parser.add_argument("--model-songs", type=int, default=40)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--folder", type=Path, default=None, help="where the merged segment is written")
    parser.add_argument("--budgets", default="0,400000,2000000", help="lookup budgets to try (0: none)")
    args = parser.parse_args()
    tracks = sorted((args.corpus / "mp3").rglob("*.mp3"))
    real = tracks[:: max(1, len(tracks) // args.real)][: args.real]
    model_paths = tracks[:: max(1, len(tracks) // args.model_songs)][: args.model_songs]
    audio: dict[Path, np.ndarray] = {}
    found = {}
    for path in dict.fromkeys([*real, *model_paths]):
        samples = decode(path, max_seconds=900, min_seconds=0.25).samples
        if path in real:
            audio[path] = samples
        found[path] = landmarks(samples)
    pool = np.concatenate([found[p].hashes for p in model_paths])
    rate = pool.size / sum(found[p].seconds for p in model_paths)
    print(f"{ALGORITHM}: pool of {pool.size:,} landmarks from {len(model_paths)} songs, {rate:.0f}/s")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="identify-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    parts = []
    batch = []
    owner = {path: uuid.uuid4() for path in real}
    items = [(owner[p], (found[p].hashes, found[p].times)) for p in real]
    for i in range(args.songs):
        seconds = float(rng.uniform(90, 400))
        count = int(rng.poisson(rate * seconds))
        times = np.sort(rng.integers(0, int(seconds / FRAME_SECONDS), count)).astype(np.uint32)
        batch.append((uuid.uuid4(), (pool[rng.integers(0, pool.size, count)], times)))
        if len(batch) == _BATCH or i == args.songs - 1:
            items += batch
            batch = []
        if len(items) >= _BATCH or i == args.songs - 1:
            segment = segment_of(build(items))
            parts.append((segment, np.ones(len(items), np.bool_)))
            items = []
    merged = folder / "merged"
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir()
    merge_into(merged, parts)
    del parts
    segment = PostingCodec().open(merged)
    snapshot = Snapshot((Part(name="merged", segment=segment, alive=np.ones(segment.song_ids.shape[0], np.bool_)),))
    entries = segment.landmarks
    print(
        f"{args.songs:,} synthetic + {len(real)} real songs: {entries:,} landmarks, {segment.keys.size:,} distinct "
        f"hashes, {segment.nbytes / 1e6:.0f} MB in one segment, built in {time.perf_counter() - began:.0f} s; "
        f"stop limit {stop_limit(entries)}"
    )
    clips = []
    fingerprint_ms = []
    with tempfile.TemporaryDirectory() as scratch:
        for q in range(args.clips):
            path = real[q % len(real)]
            samples = audio[path]
            start = int(rng.uniform(0, max(1, samples.size - 10 * SAMPLE_RATE)))
            excerpt = samples[start : start + 10 * SAMPLE_RATE]
            clip = mp3_roundtrip(mix(excerpt, pink_noise(excerpt.size, rng), 5.0), "64k", Path(scratch))
            t0 = time.perf_counter()
            clips.append((owner[path], query_landmarks(clip)))
            fingerprint_ms.append((time.perf_counter() - t0) * 1000)
    print(f"query fingerprinting (10 s clip, 3 shifts): p50 {np.median(fingerprint_ms):.0f} ms")
    limit = stop_limit(entries)
    for budget in sorted({LOOKUP_BUDGET, *(int(float(b)) for b in args.budgets.split(","))}):
        right = 0
        postings = []
        lookup_ms, score_ms = [], []
        for song_id, query in clips:
            t0 = time.perf_counter()
            hits = lookup(snapshot, query.hashes, limit, budget)
            t1 = time.perf_counter()
            match = accepted(best_match(query, hits))
            t2 = time.perf_counter()
            lookup_ms.append((t1 - t0) * 1000)
            score_ms.append((t2 - t1) * 1000)
            postings.append(len(hits))
            right += match is not None and match.song_id == song_id
        total = np.asarray(lookup_ms) + np.asarray(score_ms)
        print(
            f"stop limit {limit}, budget {budget or 'none':>9}: identified {right}/{len(clips)}  hits p50 "
            f"{np.median(postings):,.0f}  lookup p50 {np.median(lookup_ms):.1f} ms  scoring p50 "
            f"{np.median(score_ms):.1f} ms  both p50/p95 {np.median(total):.1f} / {np.percentile(total, 95):.1f} ms"
        )
    if args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
