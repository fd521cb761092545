"""The local fingerprint index: landmarks kept in the database, looked up in this host's shared derived index.

Durable copy: one `SongFingerprints` row per song, its landmarks packed (hashes as byte planes, anchor frames as
deltas, zlib). Every write also records an `IndexChange`, which the host's derived index follows
(`derived.store.SegmentStore` with `postings.PostingCodec`: postings grouped by hash, memory-mapped by every process,
4 bytes per landmark), so every process on the host reads one copy on disk and sees other processes' writes at its
next lookup. `MemoryFingerprintIndex` builds the same segments in memory (evaluations, tests) and looks them up
with the same code.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.db import transaction
from isal import isal_zlib

from derived.segments import Part, Snapshot, ids_array
from derived.services import record_change
from derived.store import SegmentStore, StoreBusy
from fingerprints.index import (
    FingerprintIndexError,
    FingerprintIndexUnavailable,
    Hits,
    IndexStats,
    SongLandmarks,
    check_landmarks,
    stop_limit,
)
from fingerprints.index.lookup import lookup
from fingerprints.index.postings import Payload, PostingCodec, PostingSegment, build, segment_of
from fingerprints.landmarks import ALGORITHM
from fingerprints.models import SongFingerprints

U32 = npt.NDArray[np.uint32]
KIND = f"fingerprints:{ALGORITHM}"


def stats_of(snapshot: Snapshot[PostingSegment], nbytes: int) -> IndexStats:
    songs = sum(int(part.alive.sum()) for part in snapshot.parts)
    hashes = sum(int(part.segment.counts[part.alive].sum()) for part in snapshot.parts)
    return IndexStats(songs=songs, hashes=hashes, bytes=nbytes)


def stopped_lookup(
    snapshot: Snapshot[PostingSegment],
    hashes: npt.NDArray[np.uint32],
    budget: int = 0,
    times: npt.NDArray[np.uint32] | None = None,
) -> Hits:
    """Lookup with the stop list for the snapshot's size (hashes far more common than average are skipped), within
    `budget` hits if > 0 (see `lookup.lookup` for `times`)."""
    landmarks = sum(part.segment.landmarks for part in snapshot.parts)
    return lookup(snapshot, hashes, stop_limit(landmarks), budget, times)


class MemoryFingerprintIndex:
    """A fingerprint index held in this process only (evaluations, tests): the local index's segments and lookup,
    built in memory; nothing is stored."""

    def __init__(self) -> None:
        self.parts: list[Part[PostingSegment]] = []
        self.stored: dict[UUID, SongLandmarks] = {}

    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        self.add_many([(song_id, hashes, times)])

    def add_many(self, songs: Iterable[tuple[UUID, npt.ArrayLike, npt.ArrayLike]]) -> None:
        items = [(song_id, check_landmarks(h, t)) for song_id, h, t in songs]
        for song_id, (h, t) in items:
            self.remove(song_id)
            order = np.argsort(t, kind="stable")
            self.stored[song_id] = (h[order], t[order])
        if items:
            segment = segment_of(build(items))
            self.parts.append(Part(name=str(len(self.parts)), segment=segment, alive=np.ones(len(items), np.bool_)))

    def remove(self, song_id: UUID) -> None:
        self.stored.pop(song_id, None)
        wanted = ids_array([song_id])
        for part in self.parts:
            part.alive[np.isin(part.segment.song_ids, wanted)] = False

    def song_ids(self) -> list[UUID]:
        return [
            UUID(bytes=part.segment.song_ids[row : row + 1].tobytes())
            for part in self.parts
            for row in np.flatnonzero(part.alive)
        ]

    def lookup(
        self, hashes: npt.NDArray[np.uint32], budget: int = 0, times: npt.NDArray[np.uint32] | None = None
    ) -> Hits:
        return stopped_lookup(Snapshot(tuple(self.parts)), hashes, budget, times)

    def landmarks_of(self, song_ids: Sequence[UUID]) -> dict[UUID, SongLandmarks]:
        return {song_id: self.stored[song_id] for song_id in song_ids if song_id in self.stored}

    def stats(self) -> IndexStats:
        snapshot = Snapshot(tuple(self.parts))
        return stats_of(snapshot, sum(part.segment.nbytes for part in self.parts))


# --- the database ------------------------------------------------------------------------------------------


def pack(hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> bytes:
    """Landmarks as bytes for the database: sorted by time, hashes and time deltas as byte planes, zlib."""
    order = np.argsort(times, kind="stable")
    h = hashes[order].astype("<u4")
    deltas = np.diff(times[order].astype(np.int64), prepend=0).astype("<u4")
    planes = np.concatenate([h.view(np.uint8).reshape(-1, 4).T.ravel(), deltas.view(np.uint8).reshape(-1, 4).T.ravel()])
    return zlib.compress(planes.tobytes(), 6)


def unpack(data: bytes, count: int) -> tuple[U32, U32]:
    """The inverse of `pack`: (hashes, times) sorted by time."""
    raw = np.frombuffer(isal_zlib.decompress(data), dtype=np.uint8)
    if raw.size != 8 * count:
        raise FingerprintIndexError(f"stored fingerprints hold {raw.size} bytes, not {8 * count}; fingerprint again")
    planes = raw.reshape(8, count)
    return _from_planes(planes[:4]), np.cumsum(_from_planes(planes[4:]), dtype=np.uint32)


def _from_planes(planes: npt.NDArray[np.uint8]) -> U32:
    """Little-endian uint32s from their four byte planes (a transpose and a view cost three times as much)."""
    out = planes[3].astype(np.uint32)
    for plane in planes[2::-1]:
        out <<= 8
        out |= plane
    return out


class LocalFingerprintIndex:
    """Fingerprints in the database, looked up in this host's derived index (see the module docstring)."""

    def __init__(self) -> None:
        self.store: SegmentStore[PostingSegment, Payload] = SegmentStore(
            f"fingerprints-{ALGORITHM}", KIND, PostingCodec()
        )

    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        h, t = check_landmarks(hashes, times)
        data = pack(h, t)
        with transaction.atomic():
            SongFingerprints.objects.update_or_create(
                song_id=song_id, defaults={"algorithm": ALGORITHM, "count": int(h.size), "data": data}
            )
            record_change(KIND, song_id)

    def remove(self, song_id: UUID) -> None:
        with transaction.atomic():
            deleted, _ = SongFingerprints.objects.filter(song_id=song_id).delete()
            if deleted:
                record_change(KIND, song_id)

    def snapshot(self) -> Snapshot[PostingSegment]:
        try:
            return self.store.snapshot()
        except StoreBusy as exc:
            raise FingerprintIndexUnavailable(str(exc)) from exc

    def lookup(
        self, hashes: npt.NDArray[np.uint32], budget: int = 0, times: npt.NDArray[np.uint32] | None = None
    ) -> Hits:
        return stopped_lookup(self.snapshot(), hashes, budget, times)

    def landmarks_of(self, song_ids: Sequence[UUID]) -> dict[UUID, SongLandmarks]:
        """From the database, the durable copy: a shortlist's few songs, read by their unique key."""
        rows = SongFingerprints.objects.filter(song_id__in=list(song_ids), algorithm=ALGORITHM)
        return {
            song_id: unpack(bytes(data), count) for song_id, count, data in rows.values_list("song_id", "count", "data")
        }

    def song_ids(self) -> list[UUID]:
        return list(SongFingerprints.objects.filter(algorithm=ALGORITHM).values_list("song_id", flat=True))

    def has(self, song_id: UUID) -> bool:
        return SongFingerprints.objects.filter(song_id=song_id, algorithm=ALGORITHM).exists()

    def stats(self) -> IndexStats:
        """Songs and landmarks in the index, and the bytes its files take on this host's disk."""
        return stats_of(self.snapshot(), self.store.disk_bytes())
