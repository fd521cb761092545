"""Random songs' landmarks and the entries a lookup must find among them, for the fingerprint index's tests."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from derived.segments import Snapshot
from fingerprints.index.local import MemoryFingerprintIndex
from fingerprints.index.postings import PostingSegment
from fingerprints.landmarks import Landmarks


def random_song(rng: np.random.Generator, n: int, hash_space: int = 500) -> tuple[np.ndarray, np.ndarray]:
    hashes = rng.integers(0, hash_space, n).astype(np.uint32)
    times = np.sort(rng.integers(0, 5000, n)).astype(np.uint32)
    return hashes, times


def brute_force(songs: dict[uuid.UUID, tuple[np.ndarray, np.ndarray]], query: np.ndarray) -> set[tuple[Any, ...]]:
    found = set()
    for song_id, (hashes, times) in songs.items():
        for position, h in enumerate(query):
            for t in times[hashes == h]:
                found.add((song_id, int(t), position))
    return found


def as_set(hits: Any) -> set[tuple[Any, ...]]:
    return {
        (hits.song_ids[s], int(t), int(p))
        for s, t, p in zip(hits.songs, hits.ref_times, hits.query_positions, strict=True)
    }


def snapshot_of(index: MemoryFingerprintIndex) -> Snapshot[PostingSegment]:
    return Snapshot(tuple(index.parts))


def clip_of(
    rng: np.random.Generator, song: tuple[np.ndarray, np.ndarray], at: int, taken: int, chance: int, hash_space: int
) -> Landmarks:
    """A query of `taken` of the song's landmarks from frame `at` on (times counted from there), among `chance`
    random ones."""
    hashes, times = song
    picked = rng.choice(np.flatnonzero(times >= at), taken, replace=False)
    return Landmarks(
        hashes=np.r_[hashes[picked], rng.integers(0, hash_space, chance)].astype(np.uint32),
        times=np.r_[times[picked] - at, rng.integers(0, 3000, chance)].astype(np.uint32),
        peaks=0,
        frames=3000,
    )
