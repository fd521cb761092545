"""Landmark hashing (landmarks-v3): triplets of an anchor and two of its targets."""

from __future__ import annotations

import numpy as np

from fingerprints import landmarks as lm


def _peaks(bins: list[int], frames: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(frames, dtype=np.int64), np.asarray(bins, dtype=np.int64)


def test_a_song_keeps_some_target_pairs_per_anchor_and_a_query_every_pair_among_them() -> None:
    t, f = _peaks([50, 52, 60, 47, 58, 66], [0, 5, 10, 15, 20, 25])

    song, song_times = lm.triplets(t, f, fanout=5, combos=lm.REFERENCE_COMBOS)
    clip, clip_times = lm.triplets(t, f, fanout=5)

    first = song_times == 0
    assert first.sum() == lm.REFERENCE_COMBOS  # the first peak has 5 targets: 6 of their 10 pairs are kept
    assert (clip_times == 0).sum() == 10
    assert set(song[first].tolist()) <= set(clip[clip_times == 0].tolist())
    assert np.all(np.diff(song_times.astype(np.int64)) >= 0)


def test_neighbouring_targets_come_first() -> None:
    assert lm.combinations(5)[:4] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert len(lm.combinations(14)) == 91


def test_a_triplet_hash_changes_with_either_target() -> None:
    base = lm.triplets(*_peaks([50, 55, 60], [0, 10, 20]), fanout=2)[0]
    moved_second = lm.triplets(*_peaks([50, 56, 60], [0, 10, 20]), fanout=2)[0]
    moved_third = lm.triplets(*_peaks([50, 55, 60], [0, 10, 21]), fanout=2)[0]

    assert base.size == moved_second.size == moved_third.size == 1
    assert len({int(base[0]), int(moved_second[0]), int(moved_third[0])}) == 3


def test_hashes_fit_hash_bits() -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 2000, 400))
    f = rng.integers(lm.MIN_BIN, lm.MAX_BIN, 400)

    hashes, _ = lm.triplets(t, f, fanout=14)

    assert hashes.size > 1000
    assert int(hashes.max()) < 2**lm.HASH_BITS <= 2**32
