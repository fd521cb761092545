"""The fingerprint index protocol and its `get_fingerprint_index()` factory.

An index maps landmark hashes to (song, anchor frame). Backends follow the vector index's switch,
`VECTOR_BACKEND`: `local` keeps fingerprints in the database and looks them up in posting segments on disk that
every process on the host maps (see `local`); `atlas` keeps them in a plain MongoDB collection with an index on the
hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings

# A song's stored landmarks: (hashes, anchor frames), in time order.
SongLandmarks = tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]


class FingerprintIndexError(Exception):
    """The index refused a request; the message says why and how to fix it."""


class FingerprintIndexUnavailable(FingerprintIndexError):
    """The index cannot be reached right now; retrying later may succeed."""


class SongIds(Sequence[UUID]):
    """Song ids kept as 16-byte values (a segment's `ids`), made UUIDs only when read: a lookup can touch tens of
    thousands of songs, of which scoring names a few."""

    def __init__(self, raw: npt.NDArray[np.bytes_]) -> None:
        self.raw = raw

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    @overload
    def __getitem__(self, index: int) -> UUID: ...
    @overload
    def __getitem__(self, index: slice) -> list[UUID]: ...
    def __getitem__(self, index: int | slice) -> UUID | list[UUID]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = range(len(self))[index]
        return UUID(bytes=self.raw[row : row + 1].tobytes())  # a one-row slice keeps trailing zero bytes

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        if isinstance(value, UUID):
            rows = np.flatnonzero(self.raw[start:stop] == np.frombuffer(value.bytes, dtype="S16")[0])
            if rows.size:
                return start + int(rows[0])
        raise ValueError(f"{value!r} is not among the songs")

    def __contains__(self, value: object) -> bool:
        try:
            self.index(value)
        except ValueError:
            return False
        return True


def _no_hashes() -> npt.NDArray[np.uint32]:
    return np.empty(0, dtype=np.uint32)


@dataclass(frozen=True)
class Hits:
    """Index entries whose hash equals one of the query's: entry i is song `song_ids[songs[i]]` at frame
    `ref_times[i]`, and matched the query hash at position `query_positions[i]`.

    `stopped`: the query's hashes left out for being too common (the stop list); `partial`: a lookup budget left out
    rarer ones too, so the hits are a sample to shortlist songs from, not every entry (see `selectors.scored_hits`).
    """

    song_ids: Sequence[UUID]
    songs: npt.NDArray[np.int64]
    ref_times: npt.NDArray[np.int64]
    query_positions: npt.NDArray[np.int64]
    stopped: npt.NDArray[np.uint32] = field(default_factory=_no_hashes)
    partial: bool = False

    def __len__(self) -> int:
        return int(self.songs.size)

    @classmethod
    def empty(cls) -> Hits:
        none = np.empty(0, dtype=np.int64)
        return cls(song_ids=[], songs=none, ref_times=none, query_positions=none)


@dataclass(frozen=True)
class IndexStats:
    songs: int
    hashes: int
    bytes: int  # memory (local) or storage (atlas) the index takes, as far as the backend can tell


class FingerprintLookup(Protocol):
    """What identification reads: postings by hash, and the stored landmarks of a few songs."""

    def lookup(
        self, hashes: npt.NDArray[np.uint32], budget: int = 0, times: npt.NDArray[np.uint32] | None = None
    ) -> Hits:
        """Every stored landmark whose hash is among `hashes`, but those of hashes over the stop limit; with a
        `budget` (> 0), only the rarest hashes, as many as keep the hits within it. With `times` (each hash's frame
        in the query), a backend may keep of many hits only those `selectors.candidates` would score (the songs of
        the fullest coarse alignments, see `fingerprints.alignments`)."""
        ...

    def landmarks_of(self, song_ids: Sequence[UUID]) -> dict[UUID, SongLandmarks]:
        """The stored (hashes, anchor frames) of these songs, in time order; songs without any are left out."""
        ...


class FingerprintIndex(FingerprintLookup, Protocol):
    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        """Store the song's landmarks (hash, anchor frame), replacing any it had."""
        ...

    def remove(self, song_id: UUID) -> None:
        """Forget the song's landmarks; a song without any is not an error."""
        ...

    def song_ids(self) -> list[UUID]:
        """Every song with stored fingerprints, read from the durable copy (consistency checks)."""
        ...

    def stats(self) -> IndexStats: ...


def get_fingerprint_index() -> FingerprintIndex:
    """The configured fingerprint index (the same switch as the vector index: `VECTOR_BACKEND`)."""
    backend = settings.VECTOR_BACKEND
    if backend == "local":
        from fingerprints.index.local import LocalFingerprintIndex

        return LocalFingerprintIndex()
    if backend == "atlas":
        from fingerprints.index.mongo import MongoFingerprintIndex

        return MongoFingerprintIndex.from_settings()
    raise FingerprintIndexError(f"unknown VECTOR_BACKEND {backend!r}")


# A hash holding more than STOP_SHARE of all stored landmarks is skipped by lookups: it says little and costs much
# (sustained tones make a few hashes very common). A share of the index, not a multiple of the average over the hash
# space: pair hashes are far from uniform, and a multiple of the average skips ever more of them as the catalog grows
# (at 1,000 songs, 16 x the average kept 24 of 40 noisy clips identified; this share keeps 39). Never below STOP_MIN.
STOP_SHARE = 2.5e-5
STOP_MIN = 64


def stop_limit(landmarks: int) -> int:
    """The most entries a hash may have in an index of `landmarks` entries and still be looked up."""
    return max(STOP_MIN, int(STOP_SHARE * landmarks))


def check_landmarks(
    hashes: npt.ArrayLike, times: npt.ArrayLike
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """The landmarks as two uint32 arrays of one length, or FingerprintIndexError."""
    h = np.asarray(hashes)
    t = np.asarray(times)
    if h.ndim != 1 or t.shape != h.shape:
        raise FingerprintIndexError(f"hashes {h.shape} and times {t.shape} must be 1-d and of one length")
    for name, array in (("hashes", h), ("times", t)):
        if array.size and (array.dtype.kind not in "iu" or int(array.min()) < 0 or int(array.max()) > 0xFFFFFFFF):
            raise FingerprintIndexError(f"{name} must be integers from 0 to 2**32 - 1")
    return h.astype(np.uint32, copy=False), t.astype(np.uint32, copy=False)
