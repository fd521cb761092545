"""Fingerprint segments (building, merging, finding keys), the packed format and the index factory, without audio."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from derived.segments import Part, Snapshot
from derived.store import plan_merge
from fingerprints.index import FingerprintIndexError, get_fingerprint_index, postings, stop_limit
from fingerprints.index.local import LocalFingerprintIndex, MemoryFingerprintIndex, pack, unpack
from fingerprints.index.lookup import lookup
from fingerprints.index.mongo import MongoFingerprintIndex
from fingerprints.index.postings import PostingCodec, merge_into
from fingerprints.landmarks import landmarks
from tests.fingerprints.entries import as_set, brute_force, random_song, snapshot_of
from tests.fingerprints.music import song


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
    assert as_set(lookup(snapshot_of(index), query)) == brute_force(songs, query)


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


def test_the_memory_index_gives_back_a_songs_landmarks_in_time_order() -> None:
    index = MemoryFingerprintIndex()
    kept, gone = uuid.uuid4(), uuid.uuid4()
    index.add(kept, np.array([5, 6, 7], dtype=np.uint32), np.array([9, 1, 4], dtype=np.uint32))
    index.add(gone, np.array([5], dtype=np.uint32), np.array([0], dtype=np.uint32))
    index.remove(gone)

    found = index.landmarks_of([kept, gone])

    assert list(found) == [kept]
    assert found[kept][0].tolist() == [6, 7, 5] and found[kept][1].tolist() == [1, 4, 9]


def test_keys_found_through_the_bitmap_are_those_a_binary_search_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    keys = np.unique(rng.integers(1, 5000, 3000)).astype(np.uint32)
    segment = postings.segment_of(postings.build([(uuid.uuid4(), (keys, np.arange(keys.size, dtype=np.uint32)))]))
    query = np.unique(np.r_[rng.integers(0, 5200, 400), 0, keys[0], keys[-1], 2**32 - 1]).astype(np.uint32)
    searched = segment.key_ranges(query)

    monkeypatch.setattr(postings, "_SEARCHED_KEYS", 0)
    dense = postings.segment_of(postings.build([(uuid.uuid4(), (keys, np.arange(keys.size, dtype=np.uint32)))]))
    assert dense.key_bitmap is not None and segment.key_bitmap is None
    starts, counts = dense.key_ranges(query)

    assert counts.tolist() == searched[1].tolist()
    assert counts.sum() == np.isin(query, keys).sum() > 0
    assert starts[counts > 0].tolist() == searched[0][searched[1] > 0].tolist()
