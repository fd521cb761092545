"""Scoring of lookup hits: the shortlist of coarse alignments names the same songs as scoring every hit."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from fingerprints import selectors
from fingerprints.index import Hits
from fingerprints.landmarks import Landmarks
from fingerprints.selectors import candidates


def _hits(rng: np.random.Generator) -> tuple[Landmarks, Hits]:
    """200,000 chance hits over 3,000 songs, a song with 300 hits at one offset and one with 120 at another."""
    query_times = np.sort(rng.integers(0, 600, 20_000)).astype(np.uint32)
    query = Landmarks(hashes=np.zeros(query_times.size, np.uint32), times=query_times, peaks=0, frames=625)
    songs = rng.integers(0, 3000, 200_000)
    positions = rng.integers(0, query_times.size, songs.size)
    ref_times = rng.integers(0, 15_000, songs.size)
    for song, offset, count in ((1234, 5000, 300), (77, 9001, 120)):
        at = rng.integers(0, query_times.size, count)
        jitter = rng.integers(-1, 2, count)
        songs = np.r_[songs, np.full(count, song)]
        positions = np.r_[positions, at]
        ref_times = np.r_[ref_times, query_times[at].astype(np.int64) + offset + jitter]
    hits = Hits(
        song_ids=[uuid.UUID(int=i) for i in range(3000)],
        songs=songs.astype(np.int64),
        ref_times=ref_times.astype(np.int64),
        query_positions=positions.astype(np.int64),
    )
    return query, hits


def test_the_shortlist_names_the_same_best_songs_as_scoring_every_hit(monkeypatch: Any) -> None:
    query, hits = _hits(np.random.default_rng(5))
    assert len(hits) > selectors.SHORTLIST_HITS

    short = candidates(query, hits, limit=3)
    monkeypatch.setattr(selectors, "SHORTLIST_HITS", 10**9)
    full = candidates(query, hits, limit=3)

    assert [c.song_id for c in short[:2]] == [uuid.UUID(int=1234), uuid.UUID(int=77)]
    assert short[:2] == full[:2]
    assert short[0].offset_seconds == full[0].offset_seconds
