"""Identification against a larger catalog: real songs among synthetic ones, per lookup budget and shortlist.

Usage: python bench/identify_scale.py [--songs 1000] [--as-if 100000] [--real 10] [--model-songs 40]
       [--clips 30] [--holdout 5] [--corpus /work/corpus] [--folder DIR] [--budgets 0,400000] [--shortlists 16]

Fingerprints `--model-songs` corpus songs with the product's code and pools their landmarks; each of `--songs`
synthetic songs (90-400 s) draws its hashes from that pool (every pooled landmark equally likely, so hashes are as
common as in those songs, never rarer: pessimistic for hashes the pool saw once) and its anchor frames uniformly.
The synthetic songs and `--real` corpus songs are written as segments and merged into one memory-mapped segment
under `--folder` (fingerprints.index.postings, as compaction leaves the local index). Clips of the real songs
(10 s and 3 s at 5 dB, 10 s at 0 dB of pink noise, 64 kb/s MP3) are then identified with the product's scoring
(fingerprints.selectors.scored_hits: a lookup within the budget, then the shortlisted songs matched against every
hash of the clip). Clips of `--holdout` further corpus songs, left out of the index, are identified too: every
answer to them is a false match. Times leave out making the shortlisted synthetic songs' landmarks again (a catalog
reads them from storage instead).

`--as-if M` judges every hash as a catalog of M songs would: its count scaled by M / songs against the stop limit
of M songs' landmarks, and the budget scaled down by songs / M, so a lookup keeps the hashes it would keep at M.
The true song's rank among the budget's candidates is printed too: at M songs there are M / songs times as many
unrelated songs to outrank it, so a rank r here stands for about r x M / songs there. This prints figures; it is
not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django

django.setup()

from derived.segments import Part, Snapshot
from embeddings.audio import decode
from embeddings.base import SAMPLE_RATE, EmbeddingError
from fingerprints.index import Hits, SongLandmarks, stop_limit
from fingerprints.index.lookup import lookup
from fingerprints.index.postings import PostingCodec, build, merge_into, segment_of
from fingerprints.landmarks import ALGORITHM, FRAME_SECONDS, Landmarks, landmarks, query_landmarks
from fingerprints.management.commands.evaluate_identify import mix, mp3_roundtrip, pink_noise
from fingerprints.selectors import accepted, best_match, candidates, scored_hits

_BATCH = 400
CLIP_TYPES = (("10 s, 5 dB", 10.0, 5.0), ("3 s, 5 dB", 3.0, 5.0), ("10 s, 0 dB", 10.0, 0.0))


class Synthetic:
    """Song i's landmarks, the same every time they are made (so a shortlist can read them again)."""

    def __init__(self, pool: npt.NDArray[np.uint32], rate: float) -> None:
        self.pool, self.rate = pool, rate

    def song(self, i: int) -> SongLandmarks:
        rng = np.random.default_rng([7, i])
        seconds = float(rng.uniform(90, 400))
        count = int(rng.poisson(self.rate * seconds))
        times = np.sort(rng.integers(0, int(seconds / FRAME_SECONDS), count)).astype(np.uint32)
        return self.pool[rng.integers(0, self.pool.size, count)], times


class ScaledIndex:
    """The merged segment behind the fingerprint index protocol, its hashes judged as at `scale` times the size."""

    def __init__(
        self,
        snapshot: Snapshot,
        scale: float,
        stored: dict[uuid.UUID, SongLandmarks],
        make: Synthetic,
        numbers: dict[uuid.UUID, int],
    ) -> None:
        self.snapshot, self.scale, self.stored, self.make, self.numbers = snapshot, scale, stored, make, numbers
        entries = sum(part.segment.landmarks for part in snapshot.parts)
        self.limit = max(1, int(stop_limit(int(entries * scale)) / scale))
        self.making_s = 0.0  # spent making synthetic songs' landmarks again: not part of a lookup's cost

    def lookup(
        self, hashes: npt.NDArray[np.uint32], budget: int = 0, times: npt.NDArray[np.uint32] | None = None
    ) -> Hits:
        return lookup(self.snapshot, hashes, self.limit, max(1, int(budget / self.scale)) if budget else 0, times)

    def landmarks_of(self, song_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, SongLandmarks]:
        t0 = time.perf_counter()
        found = {s: self.stored[s] if s in self.stored else self.make.song(self.numbers[s]) for s in song_ids}
        self.making_s += time.perf_counter() - t0
        return found


def rank_of(query: Landmarks, hits: Hits, song_id: uuid.UUID) -> int:
    """1 + how many songs outrank the true one among the budget's hits (0: not among the first 200)."""
    for i, c in enumerate(candidates(query, hits, limit=200)):
        if c.song_id == song_id:
            return i + 1
    return 0


def audible(path: Path) -> bool:
    try:
        decode(path, max_seconds=5, min_seconds=0.25)
    except EmbeddingError:
        return False  # the corpus holds a track of pure silence
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=1000)
    parser.add_argument("--as-if", type=int, default=0, help="judge hashes as a catalog of this many songs would")
    parser.add_argument("--real", type=int, default=10)
    parser.add_argument("--model-songs", type=int, default=40)
    parser.add_argument("--clips", type=int, default=30, help="per clip type")
    parser.add_argument("--holdout", type=int, default=5, help="corpus songs left out of the index, clips queried")
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--folder", type=Path, default=None, help="where the merged segment is written")
    parser.add_argument("--budgets", default="0,400000", help="lookup budgets to try (0: none), at --as-if's size")
    parser.add_argument("--shortlists", default="16", help="shortlist sizes to try")
    args = parser.parse_args()
    tracks = [t for t in sorted((args.corpus / "mp3").rglob("*.mp3")) if audible(t)]
    real = tracks[:: max(1, len(tracks) // args.real)][: args.real]
    model_paths = tracks[1 :: max(1, len(tracks) // args.model_songs)][: args.model_songs]
    held = [t for t in tracks if t not in real and t not in model_paths][: args.holdout]
    audio: dict[Path, np.ndarray] = {}
    found = {}
    for path in dict.fromkeys([*real, *model_paths, *held]):
        samples = decode(path, max_seconds=900, min_seconds=0.25).samples
        if path in real or path in held:
            audio[path] = samples
        found[path] = landmarks(samples)
    pool = np.concatenate([found[p].hashes for p in model_paths])
    rate = pool.size / sum(found[p].seconds for p in model_paths)
    print(f"{ALGORITHM}: pool of {pool.size:,} landmarks from {len(model_paths)} songs, {rate:.0f}/s")
    make = Synthetic(pool, rate)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="identify-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    owner = {path: uuid.uuid4() for path in real}
    stored = {owner[p]: (found[p].hashes, found[p].times) for p in real}
    numbers: dict[uuid.UUID, int] = {}
    parts = []
    items = list(stored.items())
    for i in range(args.songs):
        new_id = uuid.uuid4()
        numbers[new_id] = i
        items.append((new_id, make.song(i)))
        if len(items) >= _BATCH or i == args.songs - 1:
            parts.append((segment_of(build(items)), np.ones(len(items), np.bool_)))
            items = []
    merged = folder / "merged"
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir()
    merge_into(merged, parts)
    del parts
    segment = PostingCodec().open(merged)
    snapshot = Snapshot((Part(name="merged", segment=segment, alive=np.ones(segment.song_ids.shape[0], np.bool_)),))
    scale = args.as_if / args.songs if args.as_if else 1.0
    index = ScaledIndex(snapshot, scale, stored, make, numbers)
    print(
        f"{args.songs:,} synthetic + {len(real)} real songs: {segment.landmarks:,} landmarks, {segment.keys.size:,} "
        f"distinct hashes, {segment.nbytes / 1e6:.0f} MB in one segment, built in {time.perf_counter() - began:.0f} s; "
        f"hashes judged as at {args.songs * scale:,.0f} songs: stop limit {index.limit} here"
    )
    rng = np.random.default_rng(0)
    budgets = [int(float(b)) for b in args.budgets.split(",")]
    shortlists = [int(k) for k in args.shortlists.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        for label, seconds, snr in CLIP_TYPES:
            clips: list[tuple[uuid.UUID | None, Landmarks]] = []
            fingerprint_ms = []
            queried = [real[q % len(real)] for q in range(args.clips)]
            queried += [held[q % len(held)] for q in range(args.clips if held else 0)]
            for path in queried:
                samples = audio[path]
                start = int(rng.uniform(0, max(1, samples.size - seconds * SAMPLE_RATE)))
                excerpt = samples[start : start + int(seconds * SAMPLE_RATE)]
                clip = mp3_roundtrip(mix(excerpt, pink_noise(excerpt.size, rng), snr), "64k", Path(scratch))
                t0 = time.perf_counter()
                clips.append((owner.get(path), query_landmarks(clip)))
                fingerprint_ms.append((time.perf_counter() - t0) * 1000)
            indexed = sum(song_id is not None for song_id, _ in clips)
            print(
                f"\n{label}: {indexed} clips of indexed songs, {len(clips) - indexed} of songs left out, "
                f"fingerprinting p50 {np.median(fingerprint_ms):.0f} ms"
            )
            for budget in budgets:
                ranks = [
                    rank_of(query, index.lookup(query.hashes, budget), true_id)
                    for true_id, query in clips
                    if true_id is not None
                ]
                shown = ", ".join(f"{r}" for r in sorted(ranks))
                print(f"  budget {budget or 'none':>9}: true song's rank among the budget's hits: {shown}")
                for k in shortlists if budget else shortlists[:1]:
                    right = wrong = false = 0
                    best_false = 0
                    hit_counts, ms = [], []
                    for song_id, query in clips:
                        making, t0 = index.making_s, time.perf_counter()
                        hits = scored_hits(query, index, budget, k)
                        best = best_match(query, hits)
                        match = accepted(best)
                        ms.append((time.perf_counter() - t0 - (index.making_s - making)) * 1000)
                        hit_counts.append(len(hits))
                        if song_id is None:
                            false += match is not None
                            best_false = max(best_false, best.matches if best else 0)
                            continue
                        right += match is not None and match.song_id == song_id
                        wrong += match is not None and match.song_id != song_id
                    print(
                        f"    shortlist {k:>3}: identified {right}/{indexed}, wrong {wrong}, false matches "
                        f"{false}/{len(clips) - indexed} (best {best_false} matches); scored hits p50 "
                        f"{np.median(hit_counts):,.0f}; lookup + scoring p50 / p95 {np.median(ms):.1f} / "
                        f"{np.percentile(ms, 95):.1f} ms"
                    )
    if args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
