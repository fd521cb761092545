"""Lookups over posting segments: every entry of the query's hashes, within a budget the rarest first, and with the
query's times only the songs at the best alignments."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from fingerprints.index import FingerprintIndexError, stop_limit
from fingerprints.index import lookup as lookup_module
from fingerprints.index.local import MemoryFingerprintIndex
from fingerprints.index.lookup import lookup
from fingerprints.selectors import candidates
from tests.fingerprints.entries import as_set, brute_force, clip_of, random_song, snapshot_of


def test_lookup_returns_every_entry_with_a_query_hash_paired_with_each_query_position() -> None:
    rng = np.random.default_rng(0)
    songs = {uuid.uuid4(): random_song(rng, 300) for _ in range(6)}
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in songs.items()])
    query = np.concatenate([rng.integers(0, 600, 40), [7, 7, 7]]).astype(np.uint32)  # repeats and misses

    hits = lookup(snapshot_of(index), query)

    assert len(hits) == len(brute_force(songs, query)) > 0
    assert as_set(hits) == brute_force(songs, query)


def test_lookup_names_the_right_song_and_time_among_songs_of_very_different_lengths() -> None:
    rng = np.random.default_rng(4)
    songs = {}
    for length in rng.choice([1, 2, 3, 40, 5000, 60000], 80):
        times = np.sort(rng.integers(0, length, 30)).astype(np.uint32)  # a song lasts to its last landmark
        songs[uuid.uuid4()] = (rng.integers(0, 200, 30).astype(np.uint32), times)
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in songs.items()])
    query = rng.integers(0, 200, 50).astype(np.uint32)

    assert as_set(lookup(snapshot_of(index), query)) == brute_force(songs, query)


def test_songs_added_one_by_one_are_found_like_songs_loaded_at_once() -> None:
    rng = np.random.default_rng(1)
    songs = {uuid.uuid4(): random_song(rng, n) for n in (20000, 50, 70, 3000, 10)}
    index = MemoryFingerprintIndex()
    for song_id, (hashes, times) in songs.items():
        index.add(song_id, hashes, times)  # one segment each
    query = rng.integers(0, 500, 60).astype(np.uint32)

    assert as_set(lookup(snapshot_of(index), query)) == brute_force(songs, query)


def test_a_lookup_within_a_budget_reads_the_rarest_hashes_first() -> None:
    song_id = uuid.uuid4()
    hashes = np.repeat(np.asarray([1, 2, 3], dtype=np.uint32), [100, 10, 3])
    index = MemoryFingerprintIndex()
    index.add(song_id, hashes, np.arange(hashes.size, dtype=np.uint32))
    snapshot = snapshot_of(index)

    def read(query: list[int], budget: int) -> dict[int, int]:
        hits = lookup(snapshot, np.asarray(query, dtype=np.uint32), budget=budget)
        matched = np.asarray(query)[hits.query_positions]
        return {int(h): int(n) for h, n in zip(*np.unique(matched, return_counts=True), strict=True)}

    assert read([1, 2, 3], budget=0) == {1: 100, 2: 10, 3: 3}
    assert read([1, 2, 3], budget=113) == {1: 100, 2: 10, 3: 3}
    assert read([1, 2, 3], budget=15) == {2: 10, 3: 3}
    assert read([1, 2, 3], budget=12) == {3: 3}
    # A hash the query holds twice costs its entries twice.
    assert read([3, 3, 2], budget=15) == {3: 6}
    assert read([9, 3], budget=3) == {3: 3}


def test_a_lookup_says_when_its_budget_left_hashes_out_and_which_the_stop_list_skipped() -> None:
    common = stop_limit(0) + 1
    hashes = np.repeat(np.asarray([1, 2, 3], dtype=np.uint32), [common, 10, 3])
    index = MemoryFingerprintIndex()
    index.add(uuid.uuid4(), hashes, np.arange(hashes.size, dtype=np.uint32))
    query = np.asarray([1, 2, 3, 9], dtype=np.uint32)

    whole = index.lookup(query, budget=13)
    cut = index.lookup(query, budget=12)

    assert not whole.partial and len(whole) == 13  # the stopped hash is not what a budget leaves out
    assert cut.partial and len(cut) == 3
    assert whole.stopped.tolist() == cut.stopped.tolist() == [1]
    assert not index.lookup(query).partial


def test_hits_name_their_songs_by_id_and_find_them_again() -> None:
    rng = np.random.default_rng(7)
    songs = {uuid.UUID(int=i << 64): random_song(rng, 200) for i in range(1, 5)}  # ids ending in zero bytes
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in songs.items()])

    hits = lookup(snapshot_of(index), np.arange(500, dtype=np.uint32))

    assert sorted(hits.song_ids) == sorted(songs)
    for song_id in songs:
        assert song_id in hits.song_ids
        assert hits.song_ids[hits.song_ids.index(song_id)] == song_id
    assert uuid.uuid4() not in hits.song_ids


def test_a_lookup_with_query_times_keeps_every_hit_of_the_songs_at_the_best_alignments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(12)
    songs = {uuid.uuid4(): random_song(rng, 200, hash_space=1000) for _ in range(1000)}
    target = next(iter(songs))
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in list(songs.items())[:990]])
    for song_id, (h, t) in list(songs.items())[990:]:
        index.add(song_id, h, t)  # songs in several segments
    query = clip_of(rng, songs[target], at=700, taken=80, chance=200, hash_space=1000)
    whole = lookup(snapshot_of(index), query.hashes)
    monkeypatch.setattr(lookup_module, "SHORTLIST_HITS", len(whole) // 10)

    cut = lookup(snapshot_of(index), query.hashes, times=query.times)

    assert len(cut) < len(whole) // 2
    kept = set(cut.song_ids)
    assert target in kept
    assert as_set(cut) == {row for row in as_set(whole) if row[0] in kept}  # every hit of each song kept
    assert candidates(query, cut, limit=1) == candidates(query, whole, limit=1)
    assert candidates(query, cut, limit=1)[0].song_id == target


def test_query_times_that_do_not_match_the_hashes_are_refused() -> None:
    index = MemoryFingerprintIndex()
    index.add(uuid.uuid4(), np.arange(10, dtype=np.uint32), np.arange(10, dtype=np.uint32))

    with pytest.raises(FingerprintIndexError, match="query times"):
        index.lookup(np.arange(5, dtype=np.uint32), times=np.arange(4, dtype=np.uint32))
