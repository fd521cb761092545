"""Scoring of lookup hits: the shortlist of coarse alignments names the same songs as scoring every hit, and a
lookup within a budget scores its shortlisted songs from every hit they have, widening a weak sample when asked."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from fingerprints import selectors
from fingerprints.index import Hits
from fingerprints.index.local import MemoryFingerprintIndex
from fingerprints.landmarks import Landmarks
from fingerprints.selectors import best_match, candidates, scored_hits
from tests.fingerprints.entries import clip_of


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


def test_scored_hits_within_a_budget_hold_every_hit_of_the_shortlisted_songs() -> None:
    rng = np.random.default_rng(3)
    index = MemoryFingerprintIndex()
    songs = {
        uuid.uuid4(): (
            rng.integers(0, 3000, 400).astype(np.uint32),
            np.sort(rng.integers(0, 4000, 400)).astype(np.uint32),
        )
        for _ in range(300)
    }
    index.add_many([(song_id, h, t) for song_id, (h, t) in songs.items()])
    target = next(iter(songs))
    query = clip_of(rng, songs[target], at=1000, taken=60, chance=300, hash_space=3000)
    whole = index.lookup(query.hashes)

    scored = scored_hits(query, index, budget=len(whole) // 10, shortlist_songs=5)

    assert not whole.partial
    assert index.lookup(query.hashes, budget=len(whole) // 10).partial
    shortlisted = set(scored.song_ids)
    assert target in shortlisted and len(shortlisted) == 5
    in_whole = {row for row in as_rows(whole) if row[0] in shortlisted}
    assert as_rows(scored) == in_whole
    best = best_match(query, scored)
    assert best is not None and best.song_id == target and best.matches >= 60
    assert best.offset_seconds == best_match(query, whole).offset_seconds  # type: ignore[union-attr]


def as_rows(hits: Hits) -> set[tuple[uuid.UUID, int, int]]:
    return {
        (hits.song_ids[s], int(t), int(p))
        for s, t, p in zip(hits.songs, hits.ref_times, hits.query_positions, strict=True)
    }


def _common_hash_catalog() -> tuple[MemoryFingerprintIndex, uuid.UUID, Landmarks]:
    """A catalog where one song holds only common hashes, and a query of it among rare hashes of other songs."""
    rng = np.random.default_rng(11)
    index = MemoryFingerprintIndex()
    common = np.arange(1000, dtype=np.uint32)  # about 30 songs hold each: read last within a budget
    fillers = {
        uuid.uuid4(): (
            np.r_[rng.choice(common, 100), rng.integers(100_000, 1_000_000, 300)].astype(np.uint32),
            rng.integers(0, 4000, 400).astype(np.uint32),
        )
        for _ in range(300)
    }
    target = uuid.uuid4()
    h, t = rng.choice(common, 400).astype(np.uint32), np.sort(rng.integers(0, 4000, 400)).astype(np.uint32)
    index.add_many([(song_id, hashes, times) for song_id, (hashes, times) in [*fillers.items(), (target, (h, t))]])
    # The query: 60 of the target's landmarks among 300 whose rare hashes each point to one unrelated song.
    picked = rng.choice(np.flatnonzero(t >= 1000), 60, replace=False)
    rare = np.concatenate([hashes[100:] for hashes, _ in fillers.values()])
    query = Landmarks(
        hashes=np.r_[h[picked], rng.choice(rare, 300)].astype(np.uint32),
        times=np.r_[t[picked] - 1000, rng.integers(0, 3000, 300)].astype(np.uint32),
        peaks=0,
        frames=3000,
    )
    return index, target, query


def test_a_clip_whose_hashes_are_all_common_is_found_by_the_wider_lookup(monkeypatch: Any) -> None:
    index, target, query = _common_hash_catalog()
    budget = 300  # about the rare hashes' hits: one each in unrelated songs, none in the target

    monkeypatch.setattr(selectors, "WIDER_BUDGET", 1)
    narrow = best_match(query, scored_hits(query, index, budget=budget, shortlist_songs=5))
    monkeypatch.setattr(selectors, "WIDER_BUDGET", 5)
    best = best_match(query, scored_hits(query, index, budget=budget, shortlist_songs=5))

    assert narrow is None or narrow.song_id != target
    assert best is not None and best.song_id == target and best.matches >= 60
    assert best.offset_seconds == best_match(query, index.lookup(query.hashes)).offset_seconds  # type: ignore[union-attr]


class _Counting:
    def __init__(self, index: MemoryFingerprintIndex) -> None:
        self.index, self.lookups, self.read = index, 0, 0

    def lookup(self, hashes: np.ndarray, budget: int = 0, times: np.ndarray | None = None) -> Hits:
        self.lookups += 1
        return self.index.lookup(hashes, budget, times)

    def landmarks_of(self, song_ids: Any) -> Any:
        self.read += len(song_ids)
        return self.index.landmarks_of(song_ids)


def test_a_weak_sample_is_neither_widened_nor_scored_when_the_query_asks_for_copies_only() -> None:
    index, target, query = _common_hash_catalog()
    counting = _Counting(index)

    hits = scored_hits(query, counting, budget=300, shortlist_songs=5, widen=False)

    # One lookup and no stored landmarks read: no song in the sample can hold nearly all of the query.
    assert (counting.lookups, counting.read) == (1, 0)
    assert hits.partial and target not in {hits.song_ids[int(s)] for s in hits.songs}
    widened = _Counting(index)
    scored_hits(query, widened, budget=300, shortlist_songs=5)
    assert widened.lookups == 2  # the default looks again, wider
