"""Fingerprint segments and lookup, the packed format and the index factory, without audio files."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from derived.store import Part, Snapshot, plan_merge
from fingerprints.index import FingerprintIndexError, get_fingerprint_index, postings, stop_limit
from fingerprints.index.local import LocalFingerprintIndex, MemoryFingerprintIndex, pack, unpack
from fingerprints.index.mongo import MongoFingerprintIndex
from fingerprints.index.postings import PostingCodec, PostingSegment, lookup, merge_into
from fingerprints.landmarks import landmarks
from tests.fingerprints.music import song


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


def _snapshot(index: MemoryFingerprintIndex) -> Snapshot[PostingSegment]:
    return Snapshot(tuple(index.parts))


def test_lookup_returns_every_entry_with_a_query_hash_paired_with_each_query_position() -> None:
    rng = np.random.default_rng(0)
    songs = {uuid.uuid4(): random_song(rng, 300) for _ in range(6)}
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in songs.items()])
    query = np.concatenate([rng.integers(0, 600, 40), [7, 7, 7]]).astype(np.uint32)  # repeats and misses

    hits = lookup(_snapshot(index), query)

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

    assert as_set(lookup(_snapshot(index), query)) == brute_force(songs, query)


def test_songs_added_one_by_one_are_found_like_songs_loaded_at_once() -> None:
    rng = np.random.default_rng(1)
    songs = {uuid.uuid4(): random_song(rng, n) for n in (20000, 50, 70, 3000, 10)}
    index = MemoryFingerprintIndex()
    for song_id, (hashes, times) in songs.items():
        index.add(song_id, hashes, times)  # one segment each
    query = rng.integers(0, 500, 60).astype(np.uint32)

    assert as_set(lookup(_snapshot(index), query)) == brute_force(songs, query)


def test_merged_segments_keep_the_live_songs_and_drop_the_removed(tmp_path: Any) -> None:
    rng = np.random.default_rng(2)
    songs = {uuid.uuid4(): random_song(rng, 2000) for _ in range(20)}
    index = MemoryFingerprintIndex()
    items = list(songs.items())
    for start in range(0, 20, 5):
        index.add_many([(k, h, t) for k, (h, t) in items[start : start + 5]])
    for song_id in list(songs)[:12]:
        index.remove(song_id)
        del songs[song_id]

    merge_into(tmp_path, [(part.segment, part.alive) for part in index.parts])
    merged = PostingCodec().open(tmp_path)

    assert merged.landmarks == 8 * 2000 and merged.song_ids.size == 8
    query = rng.integers(0, 500, 60).astype(np.uint32)
    whole = Snapshot((Part(name="merged", segment=merged, alive=np.ones(8, dtype=np.bool_)),))
    assert as_set(lookup(whole, query)) == brute_force(songs, query)
    assert as_set(lookup(_snapshot(index), query)) == brute_force(songs, query)


def test_merging_in_many_small_steps_gives_the_same_segment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    songs = {uuid.uuid4(): random_song(rng, 3000, hash_space=2**23) for _ in range(6)}
    index = MemoryFingerprintIndex()
    for song_id, (hashes, times) in songs.items():
        index.add(song_id, hashes, times)
    parts = [(part.segment, part.alive) for part in index.parts]
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    merge_into(tmp_path / "one", parts)
    monkeypatch.setattr(postings, "_LANDMARKS_PER_CHUNK", 1000)  # about 18 steps over ranges of hashes
    merge_into(tmp_path / "many", parts)

    one, many = PostingCodec().open(tmp_path / "one"), PostingCodec().open(tmp_path / "many")
    for name in ("song_ids", "starts", "keys", "offsets", "positions"):
        assert np.array_equal(getattr(one, name), getattr(many, name)), name


def test_long_songs_are_merged_only_as_far_as_32_bit_positions_reach(tmp_path: Any) -> None:
    # Five songs of 2**30 frames (about 200 days of audio each) with two landmarks: tiny files, huge positions.
    songs = [(uuid.uuid4(), (np.array([1, 2], np.uint32), np.array([0, 2**30 - 1], np.uint32))) for _ in range(5)]
    segments = [postings.segment_of(postings.build([item])) for item in songs]
    snapshot = Snapshot(tuple(Part(name=str(i), segment=s, alive=np.ones(1, np.bool_)) for i, s in enumerate(segments)))

    start, stop = plan_merge(snapshot, limit=None) or (0, 0)

    assert (start, stop) == (0, 3)  # a fourth song would pass 2**32 frames
    merge_into(tmp_path, [(s, np.ones(1, np.bool_)) for s in segments[start:stop]])
    merged = Snapshot((Part(name="merged", segment=PostingCodec().open(tmp_path), alive=np.ones(3, np.bool_)),))
    hits = lookup(merged, np.array([2], np.uint32))
    assert sorted(int(t) for t in hits.ref_times) == [2**30 - 1] * 3
    assert {hits.song_ids[int(s)] for s in hits.songs} == {song_id for song_id, _ in songs[:3]}


def test_adding_a_song_again_replaces_it() -> None:
    rng = np.random.default_rng(3)
    song_id = uuid.uuid4()
    index = MemoryFingerprintIndex()
    index.add(song_id, *random_song(rng, 100))
    new = random_song(rng, 80)
    index.add(song_id, *new)

    query = np.arange(500, dtype=np.uint32)
    assert as_set(index.lookup(query)) == brute_force({song_id: new}, query)
    assert index.stats().hashes == 80 and index.stats().songs == 1


def test_a_hash_stored_too_often_is_skipped() -> None:
    index = MemoryFingerprintIndex()
    common = stop_limit(0) + 1
    index.add(uuid.uuid4(), np.full(common, 5, dtype=np.uint32), np.arange(common, dtype=np.uint32))
    index.add(uuid.uuid4(), np.array([6], dtype=np.uint32), np.array([0], dtype=np.uint32))

    hits = index.lookup(np.array([5, 6], dtype=np.uint32))

    assert len(hits) == 1 and int(hits.query_positions[0]) == 1


@pytest.mark.parametrize(
    ("hashes", "times"), [(np.array([1, 2]), np.array([1])), (np.array([-1]), np.array([0])), (np.ones((2, 2)), None)]
)
def test_malformed_landmarks_are_refused(hashes, times) -> None:
    with pytest.raises(FingerprintIndexError):
        MemoryFingerprintIndex().add(uuid.uuid4(), hashes, times if times is not None else hashes)


def test_packed_landmarks_round_trip_in_time_order_and_compress() -> None:
    found = landmarks(song(11))
    rng = np.random.default_rng(4)
    shuffled = rng.permutation(len(found))
    hashes, times = found.hashes[shuffled], found.times[shuffled]

    data = pack(hashes, times)
    back_hashes, back_times = unpack(data, len(found))

    order = np.argsort(times, kind="stable")
    np.testing.assert_array_equal(back_hashes, hashes[order])
    np.testing.assert_array_equal(back_times, times[order])
    assert len(data) < len(found) * 8 * 0.6
    with pytest.raises(FingerprintIndexError, match="fingerprint again"):
        unpack(data, len(found) - 1)


def test_the_backend_follows_vector_backend(settings: Any) -> None:
    settings.VECTOR_BACKEND = "local"
    assert isinstance(get_fingerprint_index(), LocalFingerprintIndex)

    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", "mongodb://127.0.0.1:1/"
    settings.MONGODB_DB, settings.FINGERPRINT_COLLECTION = "db", "prints"
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    assert (index.uri, index.database, index.collection) == ("mongodb://127.0.0.1:1/", "db", "prints")

    settings.MONGODB_URI = ""
    with pytest.raises(FingerprintIndexError, match="MONGODB_URI"):
        get_fingerprint_index()


def test_a_lookup_within_a_budget_reads_the_rarest_hashes_first() -> None:
    song_id = uuid.uuid4()
    hashes = np.repeat(np.asarray([1, 2, 3], dtype=np.uint32), [100, 10, 3])
    index = MemoryFingerprintIndex()
    index.add(song_id, hashes, np.arange(hashes.size, dtype=np.uint32))
    snapshot = _snapshot(index)

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


def test_the_memory_index_gives_back_a_songs_landmarks_in_time_order() -> None:
    index = MemoryFingerprintIndex()
    kept, gone = uuid.uuid4(), uuid.uuid4()
    index.add(kept, np.array([5, 6, 7], dtype=np.uint32), np.array([9, 1, 4], dtype=np.uint32))
    index.add(gone, np.array([5], dtype=np.uint32), np.array([0], dtype=np.uint32))
    index.remove(gone)

    found = index.landmarks_of([kept, gone])

    assert list(found) == [kept]
    assert found[kept][0].tolist() == [6, 7, 5] and found[kept][1].tolist() == [1, 4, 9]


def test_hits_name_their_songs_by_id_and_find_them_again() -> None:
    rng = np.random.default_rng(7)
    songs = {uuid.UUID(int=i << 64): random_song(rng, 200) for i in range(1, 5)}  # ids ending in zero bytes
    index = MemoryFingerprintIndex()
    index.add_many([(k, h, t) for k, (h, t) in songs.items()])

    hits = lookup(_snapshot(index), np.arange(500, dtype=np.uint32))

    assert sorted(hits.song_ids) == sorted(songs)
    for song_id in songs:
        assert song_id in hits.song_ids
        assert hits.song_ids[hits.song_ids.index(song_id)] == song_id
    assert uuid.uuid4() not in hits.song_ids
