"""Writing fingerprints: called by the ingest pipeline when a song is added, replaced or deleted."""

from __future__ import annotations

import logging
from uuid import UUID

import numpy as np
import numpy.typing as npt

from fingerprints.index import FingerprintIndex, get_fingerprint_index
from fingerprints.landmarks import Landmarks, landmarks

logger = logging.getLogger(__name__)


def add_song_fingerprints(
    song_id: UUID, samples: npt.NDArray[np.floating], *, index: FingerprintIndex | None = None
) -> int:
    """Fingerprint a song's decoded audio (mono float32 at 32 kHz) and store it, replacing any earlier fingerprints.

    Returns the number of landmarks stored. Audio without any (silence, near silence) is not an error: the song
    keeps no fingerprints and `identify()` can never name it; 0 is returned. Raises ValueError for audio that is not
    a 1-d array of finite samples, and FingerprintIndexError (FingerprintIndexUnavailable: retry later) when the
    index fails.
    """
    return store_landmarks(song_id, landmarks(samples), index=index)


def store_landmarks(song_id: UUID, found: Landmarks, *, index: FingerprintIndex | None = None) -> int:
    """Store a song's landmarks (from `fingerprints.landmarks.landmarks`), replacing any earlier ones; see above."""
    target = index or get_fingerprint_index()
    if len(found) == 0:
        logger.warning("song %s has no landmarks (%.1f s of audio); it cannot be identified", song_id, found.seconds)
        target.remove(song_id)
        return 0
    target.add(song_id, found.hashes, found.times)
    logger.info("fingerprinted song %s: %d landmarks for %.1f s", song_id, len(found), found.seconds)
    return len(found)


def remove_song_fingerprints(song_id: UUID, *, index: FingerprintIndex | None = None) -> None:
    """Forget a song's fingerprints (e.g. when it is deleted); a song without any is not an error."""
    (index or get_fingerprint_index()).remove(song_id)
