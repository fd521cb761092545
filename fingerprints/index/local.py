"""The local fingerprint index: landmarks kept in the database, served from an in-memory table in each process.

Durable copy: one `SongFingerprints` row per song, its landmarks packed (hashes as byte planes, anchor frames as
deltas, zlib: about 2.1 bytes per landmark, 1.8 MB per hour of audio). Every write also replaces the
`FingerprintIndexVersion` token; each process checks that token before a lookup (one primary-key read) and, when it
changed, reads the (song, token) list and fetches only the songs that are new or rewritten, dropping those that are
gone.

The in-memory table: sorted uint32 hashes searched with `np.searchsorted`.

Each landmark takes 8 bytes: its hash (uint32) and a position (uint32). Every song owns a run of consecutive
positions, one per frame, starting at `starts[song]`; a landmark's position is its song's start plus its anchor
frame, so the position alone names both song and time (2**32 positions hold about 2 years of audio). The song of
a position is found by a binary search over `starts`, which grows with the order songs were added in.

Landmarks live in two sorted segments: `main`, large, and `recent`, small, which takes every addition and is
merged into `main` (in linear time) once it holds more than a sixteenth of it. A removed song is only marked dead;
its landmarks are skipped by lookups and dropped when dead ones exceed a quarter of the table (`_compact`).

Writers hold `lock`; each change publishes a new immutable `Snapshot`, which lookups read without a lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.db import transaction

from fingerprints.index import FingerprintIndexError, Hits, IndexStats, check_landmarks, stop_limit
from fingerprints.landmarks import ALGORITHM
from fingerprints.models import FingerprintIndexVersion, SongFingerprints

logger = logging.getLogger(__name__)

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

_MAX_POSITION = 2**32 - 1
_DEAD_SHARE = 0.25
_RECENT_SHARE = 16
_RECENT_MIN = 1 << 16
# Per-song bookkeeping in `stats().bytes`: starts, counts, alive, the id list and dict (an estimate).
_BYTES_PER_SONG = 8 + 8 + 1 + 200


@dataclass(frozen=True)
class Snapshot:
    main_hashes: U32
    main_positions: U32
    recent_hashes: U32
    recent_positions: U32
    starts: I64  # per song index, increasing
    alive: npt.NDArray[np.bool_]
    song_ids: list[UUID]  # per song index, dead ones included
    live_songs: int
    live_hashes: int

    @property
    def entries(self) -> int:
        return int(self.main_hashes.size + self.recent_hashes.size)

    def lookup(self, hashes: npt.NDArray[np.uint32], max_per_hash: int = 0) -> Hits:
        """Entries whose hash is in `hashes`; a hash with more than `max_per_hash` entries (if > 0) is skipped."""
        query = np.asarray(hashes, dtype=np.uint32)
        if query.size == 0 or self.entries == 0:
            return Hits.empty()
        order = np.argsort(query, kind="stable")
        ordered = query[order]
        first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        unique = ordered[first]
        multiplicity = np.diff(np.r_[first, ordered.size])
        segments = [
            (table_hashes, table_positions)
            for table_hashes, table_positions in (
                (self.main_hashes, self.main_positions),
                (self.recent_hashes, self.recent_positions),
            )
            if table_hashes.size
        ]
        ranges = []
        for table_hashes, _ in segments:
            lo = np.searchsorted(table_hashes, unique, side="left")
            ranges.append((lo, np.searchsorted(table_hashes, unique, side="right") - lo))
        common = sum(counts for _, counts in ranges) > max_per_hash if max_per_hash > 0 else None
        positions: list[U32] = []
        which: list[I64] = []
        for (_, table_positions), (lo, counts) in zip(segments, ranges, strict=True):
            if common is not None:
                counts[common] = 0
            total = int(counts.sum())
            if total == 0:
                continue
            positions.append(table_positions[_expand(lo, counts, total)])
            which.append(np.repeat(np.arange(unique.size, dtype=np.int64), counts))
        if not positions:
            return Hits.empty()
        position = np.concatenate(positions).astype(np.int64)
        unique_index = np.concatenate(which)
        song = np.searchsorted(self.starts, position, side="right") - 1
        live = self.alive[song]
        position, unique_index, song = position[live], unique_index[live], song[live]
        # Each hit pairs with every query position holding its hash.
        repeats = multiplicity[unique_index]
        total = int(repeats.sum())
        query_positions = order[_expand(first[unique_index], repeats, total)].astype(np.int64)
        song = np.repeat(song, repeats)
        ref_times = np.repeat(position, repeats) - self.starts[song]
        used = np.flatnonzero(np.bincount(song, minlength=self.starts.size))
        local = np.zeros(self.starts.size, dtype=np.int64)
        local[used] = np.arange(used.size)
        return Hits(
            song_ids=[self.song_ids[int(i)] for i in used],
            songs=local[song],
            ref_times=ref_times.astype(np.int64),
            query_positions=query_positions,
        )


def _expand(starts: npt.NDArray[np.integer], counts: npt.NDArray[np.integer], total: int) -> I64:
    """Concatenated ranges [starts[i], starts[i] + counts[i]) as one int64 array of `total` items."""
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, counts).astype(np.int64)


def _merge(a_hashes: U32, a_positions: U32, b_hashes: U32, b_positions: U32) -> tuple[U32, U32]:
    """Two hash-sorted runs merged into one, in linear time."""
    if a_hashes.size == 0:
        return b_hashes, b_positions
    if b_hashes.size == 0:
        return a_hashes, a_positions
    at = np.searchsorted(a_hashes, b_hashes, side="right")
    return np.insert(a_hashes, at, b_hashes), np.insert(a_positions, at, b_positions)


def _sorted(hashes: U32, positions: U32) -> tuple[U32, U32]:
    order = np.argsort(hashes, kind="stable")
    return hashes[order], positions[order]


class HashTable:
    """The mutable table behind a snapshot; see the module's docstring."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._main = (np.empty(0, np.uint32), np.empty(0, np.uint32))
        self._recent = (np.empty(0, np.uint32), np.empty(0, np.uint32))
        self._starts: list[int] = []
        self._frames: list[int] = []
        self._counts: list[int] = []
        self._alive: list[bool] = []
        self._song_ids: list[UUID] = []
        self._index_of: dict[UUID, int] = {}
        self._next = 0
        self._dead_hashes = 0
        self.snapshot: Snapshot = self._publish()

    def __contains__(self, song_id: object) -> bool:
        return song_id in self._index_of

    @property
    def songs(self) -> list[UUID]:
        return list(self._index_of)

    def _publish(self) -> Snapshot:
        live_hashes = sum(c for c, a in zip(self._counts, self._alive, strict=True) if a)
        self.snapshot = Snapshot(
            main_hashes=self._main[0],
            main_positions=self._main[1],
            recent_hashes=self._recent[0],
            recent_positions=self._recent[1],
            starts=np.asarray(self._starts, dtype=np.int64),
            alive=np.asarray(self._alive, dtype=np.bool_),
            song_ids=list(self._song_ids),
            live_songs=len(self._index_of),
            live_hashes=live_hashes,
        )
        return self.snapshot

    def _allocate(self, song_id: UUID, times: U32) -> U32:
        """A song index and run of positions for the song; returns the landmarks' positions."""
        frames = int(times.max()) + 1 if times.size else 1
        if self._next + frames > _MAX_POSITION:
            self._compact()
            if self._next + frames > _MAX_POSITION:
                raise FingerprintIndexError("the fingerprint table is full (2**32 frames of audio)")
        self._index_of[song_id] = len(self._song_ids)
        self._song_ids.append(song_id)
        self._starts.append(self._next)
        self._frames.append(frames)
        self._counts.append(int(times.size))
        self._alive.append(True)
        positions = (times.astype(np.int64) + self._next).astype(np.uint32)
        self._next += frames
        return positions

    def _kill(self, song_id: UUID) -> bool:
        index = self._index_of.pop(song_id, None)
        if index is None:
            return False
        self._alive[index] = False
        self._dead_hashes += self._counts[index]
        return True

    def add(self, song_id: UUID, hashes: npt.ArrayLike, times: npt.ArrayLike) -> None:
        self.add_many([(song_id, hashes, times)])

    def add_many(self, songs: Iterable[tuple[UUID, npt.ArrayLike, npt.ArrayLike]]) -> None:
        """Add (or replace) several songs with one sort: much faster than one by one when loading."""
        with self.lock:
            new_hashes: list[U32] = []
            new_positions: list[U32] = []
            for song_id, hashes, times in songs:
                h, t = check_landmarks(hashes, times)
                self._kill(song_id)
                new_positions.append(self._allocate(song_id, t))
                new_hashes.append(h)
            if not new_hashes:
                return
            batch = _sorted(np.concatenate(new_hashes), np.concatenate(new_positions))
            main_size = self._main[0].size
            if batch[0].size > main_size // _RECENT_SHARE:
                self._main = _merge(*self._main, *batch)
            else:
                self._recent = _merge(*self._recent, *batch)
                if self._recent[0].size > max(_RECENT_MIN, main_size // _RECENT_SHARE):
                    self._main = _merge(*self._main, *self._recent)
                    self._recent = (np.empty(0, np.uint32), np.empty(0, np.uint32))
            self._maybe_compact()
            self._publish()

    def remove(self, song_id: UUID) -> bool:
        with self.lock:
            if not self._kill(song_id):
                return False
            self._maybe_compact()
            self._publish()
            return True

    def clear(self) -> None:
        with self.lock:
            self._reset()

    def _maybe_compact(self) -> None:
        total = self._main[0].size + self._recent[0].size
        if self._dead_hashes > max(1024, total * _DEAD_SHARE):
            self._compact()

    def _compact(self) -> None:
        """Drop dead songs' landmarks and give the live songs consecutive positions again."""
        hashes = np.concatenate([self._main[0], self._recent[0]])
        positions = np.concatenate([self._main[1], self._recent[1]]).astype(np.int64)
        starts = np.asarray(self._starts, dtype=np.int64)
        alive = np.asarray(self._alive, dtype=np.bool_)
        song = np.searchsorted(starts, positions, side="right") - 1 if starts.size else np.empty(0, np.int64)
        keep = alive[song] if song.size else np.empty(0, np.bool_)
        live = np.flatnonzero(alive)
        frames = np.asarray(self._frames, dtype=np.int64)[live]
        new_starts = np.cumsum(frames) - frames
        shift = np.zeros(starts.size, dtype=np.int64)
        shift[live] = new_starts - starts[live]
        moved = (positions[keep] + shift[song[keep]]).astype(np.uint32)
        self._main = _sorted(hashes[keep], moved)
        self._recent = (np.empty(0, np.uint32), np.empty(0, np.uint32))
        self._song_ids = [self._song_ids[i] for i in live]
        self._index_of = {song_id: i for i, song_id in enumerate(self._song_ids)}
        self._starts = [int(s) for s in new_starts]
        self._frames = [int(f) for f in frames]
        self._counts = [self._counts[i] for i in live]
        self._alive = [True] * len(live)
        self._next = int(new_starts[-1] + frames[-1]) if live.size else 0
        self._dead_hashes = 0

    def stats(self) -> IndexStats:
        snapshot = self.snapshot
        entries = snapshot.entries
        return IndexStats(
            songs=snapshot.live_songs,
            hashes=snapshot.live_hashes,
            bytes=entries * 8 + len(snapshot.song_ids) * _BYTES_PER_SONG,
        )


class MemoryFingerprintIndex:
    """A fingerprint index held in this process only (evaluations, tests); nothing is stored.

    Lookups skip hashes with more than `stop_limit()` entries, as the local index does.
    """

    def __init__(self) -> None:
        self.table = HashTable()

    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        self.table.add(song_id, hashes, times)

    def add_many(self, songs: Iterable[tuple[UUID, npt.ArrayLike, npt.ArrayLike]]) -> None:
        self.table.add_many(songs)

    def remove(self, song_id: UUID) -> None:
        self.table.remove(song_id)

    def song_ids(self) -> list[UUID]:
        return self.table.songs

    def lookup(self, hashes: npt.NDArray[np.uint32]) -> Hits:
        snapshot = self.table.snapshot
        return snapshot.lookup(hashes, stop_limit(snapshot.entries))

    def stats(self) -> IndexStats:
        return self.table.stats()


# --- the database ------------------------------------------------------------------------------------------

_VERSION_NAME = "local"
# Songs read from the database per query while loading.
_CHUNK = 200


def pack(hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> bytes:
    """Landmarks as bytes for the database: sorted by time, hashes and time deltas as byte planes, zlib."""
    order = np.argsort(times, kind="stable")
    h = hashes[order].astype("<u4")
    deltas = np.diff(times[order].astype(np.int64), prepend=0).astype("<u4")
    planes = np.concatenate([h.view(np.uint8).reshape(-1, 4).T.ravel(), deltas.view(np.uint8).reshape(-1, 4).T.ravel()])
    return zlib.compress(planes.tobytes(), 6)


def unpack(data: bytes, count: int) -> tuple[U32, U32]:
    """The inverse of `pack`: (hashes, times) sorted by time."""
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    if raw.size != 8 * count:
        raise FingerprintIndexError(f"stored fingerprints hold {raw.size} bytes, not {8 * count}; fingerprint again")
    hashes = np.ascontiguousarray(raw[: 4 * count].reshape(4, count).T).view("<u4").ravel().astype(np.uint32)
    deltas = np.ascontiguousarray(raw[4 * count :].reshape(4, count).T).view("<u4").ravel()
    return hashes, np.cumsum(deltas, dtype=np.int64).astype(np.uint32)


class _Mirror:
    """This process's table of the database's fingerprints, as of `version`."""

    def __init__(self) -> None:
        self.table = HashTable()
        self.version: UUID | None = None
        self.tokens: dict[UUID, UUID] = {}

    def fetch(self, song_ids: list[UUID]) -> None:
        """Read these songs' rows and put them in the table with one sort."""
        songs: list[tuple[UUID, npt.ArrayLike, npt.ArrayLike]] = []
        tokens: dict[UUID, UUID] = {}
        for start in range(0, len(song_ids), _CHUNK):
            rows = SongFingerprints.objects.filter(algorithm=ALGORITHM, song_id__in=song_ids[start : start + _CHUNK])
            for song_id, token, count, data in rows.values_list("song_id", "token", "count", "data"):
                hashes, times = unpack(bytes(data), count)
                songs.append((song_id, hashes, times))
                tokens[song_id] = token
        self.table.add_many(songs)
        self.tokens.update(tokens)

    def sync(self) -> None:
        """Bring the table up to date: fetch new and rewritten songs, drop deleted ones."""
        current = dict(SongFingerprints.objects.filter(algorithm=ALGORITHM).values_list("song_id", "token"))
        for song_id in set(self.tokens) - set(current):
            self.table.remove(song_id)
            del self.tokens[song_id]
        self.fetch([song_id for song_id, token in current.items() if self.tokens.get(song_id) != token])


_mirror: _Mirror | None = None
_mirror_lock = threading.Lock()


def forget_mirror() -> None:
    """Drop this process's table; the next lookup loads it again."""
    global _mirror
    with _mirror_lock:
        _mirror = None


class LocalFingerprintIndex:
    """Fingerprints in the database, looked up in this process's in-memory copy (see the module docstring)."""

    def _bump(self) -> None:
        FingerprintIndexVersion.objects.update_or_create(name=_VERSION_NAME, defaults={"version": uuid.uuid4()})

    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        h, t = check_landmarks(hashes, times)
        data = pack(h, t)
        with transaction.atomic():
            SongFingerprints.objects.update_or_create(
                song_id=song_id,
                defaults={"algorithm": ALGORITHM, "count": int(h.size), "data": data, "token": uuid.uuid4()},
            )
            self._bump()

    def remove(self, song_id: UUID) -> None:
        with transaction.atomic():
            deleted, _ = SongFingerprints.objects.filter(song_id=song_id).delete()
            if deleted:
                self._bump()

    def snapshot(self) -> Snapshot:
        """The table as of the database's current version: loaded on first use, then synced when it changed."""
        global _mirror
        version = FingerprintIndexVersion.objects.filter(name=_VERSION_NAME).values_list("version", flat=True).first()
        with _mirror_lock:
            if _mirror is not None and _mirror.version == version:
                return _mirror.table.snapshot
            started = time.perf_counter()
            mirror = _mirror or _Mirror()
            mirror.sync()
            mirror.version = version
            _mirror = mirror
            stats = mirror.table.stats()
            logger.info(
                "fingerprint table at %s: %d songs, %d landmarks, %.1f MB, synced in %.2f s",
                version,
                stats.songs,
                stats.hashes,
                stats.bytes / 1e6,
                time.perf_counter() - started,
            )
            return mirror.table.snapshot

    def lookup(self, hashes: npt.NDArray[np.uint32]) -> Hits:
        snapshot = self.snapshot()
        return snapshot.lookup(hashes, stop_limit(snapshot.entries))

    def song_ids(self) -> list[UUID]:
        return list(SongFingerprints.objects.filter(algorithm=ALGORITHM).values_list("song_id", flat=True))

    def has(self, song_id: UUID) -> bool:
        return SongFingerprints.objects.filter(song_id=song_id, algorithm=ALGORITHM).exists()

    def stats(self) -> IndexStats:
        """Songs and landmarks in the table, and the memory it takes in this process."""
        self.snapshot()
        assert _mirror is not None
        return _mirror.table.stats()
