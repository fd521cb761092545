from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import lru_cache

import pytest

from derived.store import forget_held
from fingerprints.index.local import LocalFingerprintIndex
from fingerprints.landmarks import Landmarks, landmarks
from tests.fingerprints.music import song

SONG_SEEDS = (11, 12, 13, 14)


@pytest.fixture(autouse=True)
def fresh_mirror() -> Iterator[None]:
    """Each test starts holding no view of the derived index, as a fresh process would."""
    forget_held()
    yield
    forget_held()


@lru_cache(maxsize=16)
def song_landmarks(seed: int) -> Landmarks:
    return landmarks(song(seed))


@pytest.fixture
def catalog(db: None) -> dict[int, uuid.UUID]:
    """Four synthetic 30 s songs in the local index: seed -> song id (landmarks computed once per session)."""
    ids = {seed: uuid.uuid4() for seed in SONG_SEEDS}
    index = LocalFingerprintIndex()
    for seed, song_id in ids.items():
        found = song_landmarks(seed)
        assert len(found) > 0
        index.add(song_id, found.hashes, found.times)
    return ids
