"""Landmark fingerprints of synthetic audio: what songs and queries are hashed into."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from fingerprints.landmarks import FRAME_SECONDS, HASH_BITS, downsample, landmarks, query_landmarks
from tests.fingerprints.music import excerpt, song


def test_landmarks_are_reproducible_and_fit_the_hash_layout() -> None:
    audio = song(11, seconds=10.0)

    first, second = landmarks(audio), landmarks(audio)

    np.testing.assert_array_equal(first.hashes, second.hashes)
    np.testing.assert_array_equal(first.times, second.times)
    assert 60 < len(first) / first.seconds < 130  # about 110 per second
    assert int(first.hashes.max()) < 2**HASH_BITS
    assert np.all(np.diff(first.times.astype(np.int64)) >= 0)
    assert first.seconds == pytest.approx(10.0, abs=0.1)


def test_a_query_holds_most_of_the_songs_landmarks_for_the_same_stretch() -> None:
    audio = song(12, seconds=12.0)
    start_frames = 200  # 3.2 s: a whole number of frames, so the grids line up
    reference = landmarks(audio)
    query = query_landmarks(excerpt(audio, start_frames * FRAME_SECONDS, 6.0))
    inside = (reference.times >= start_frames + 70) & (reference.times < start_frames + 6 / FRAME_SECONDS - 70)
    wanted = set(zip(reference.hashes[inside].tolist(), (reference.times[inside] - start_frames).tolist(), strict=True))
    found = set(zip(query.hashes.tolist(), query.times.tolist(), strict=True))

    assert len(wanted & found) > 0.8 * len(wanted)


@pytest.mark.parametrize("n", [0, 1, 5, 81, 32_001, 4 * 65_536 + 3, 1_000_003])
def test_downsampling_agrees_with_scipys_resampler_so_stored_fingerprints_stay_comparable(n: int) -> None:
    # Songs fingerprinted with signal.resample_poly must keep matching queries downsampled by the faster path.
    audio = (np.random.default_rng(n).standard_normal(n) * 0.3).astype(np.float32)

    ours = downsample(audio)

    expected = signal.resample_poly(audio, 1, 4)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_query_shifts_find_a_song_cut_between_frames() -> None:
    audio = song(13, seconds=12.0)
    reference = landmarks(audio)
    start = 200 * FRAME_SECONDS + FRAME_SECONDS / 2  # half a frame off the song's grid
    query = query_landmarks(excerpt(audio, start, 6.0))
    inside = (reference.times >= 200 + 70) & (reference.times < 200 + 6 / FRAME_SECONDS - 70)
    wanted = set(reference.hashes[inside].tolist())

    found = wanted & set(query.hashes.tolist())

    assert len(found) > 0.7 * len(wanted)


def test_audio_that_is_not_mono_or_not_finite_is_refused() -> None:
    with pytest.raises(ValueError, match="mono"):
        downsample(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="infinite"):
        downsample(np.array([0.0, np.nan], np.float32))
