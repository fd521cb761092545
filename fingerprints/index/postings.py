"""Fingerprint segments: landmarks grouped by hash, four bytes per stored landmark, and the lookup over them.

A segment holds songs, each owning a run of consecutive positions, one per analysis frame, from `starts[song]`;
a landmark is stored as its position (song start + anchor frame, a uint32), so the position alone names both song
and time. Postings are grouped by hash: `keys` (the distinct hashes, sorted), `offsets` (where each key's
positions begin) and `positions` (ascending within a key). On disk, as `.npy` files every process maps read-only:
`ids`, `starts`, `frames`, `counts` (per song), `keys`, `offsets`, `positions`: 4 bytes per landmark plus 12 per
distinct hash plus ~40 per song.

A lookup (`fingerprints.index.lookup`) reads only the postings of the query's hashes, found in `keys` (or a bitmap of
them for a large segment).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from derived.segments import BoolArray, CorruptIndex, IdArray, check_shapes, ids_array, open_arrays, release
from derived.store import MAX_SEGMENT_BYTES
from fingerprints.index import FingerprintIndexError, check_landmarks
from fingerprints.landmarks import ALGORITHM
from fingerprints.models import SongFingerprints

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
Payload = tuple[U32, U32]  # (hashes, anchor frames)

_MAX_POSITION = 2**32 - 1
# A segment counts at least this much per frame towards MAX_SEGMENT_BYTES, so no merge runs out of 32-bit positions
# (a catalog of long, sparse songs, silence say, has fewer landmarks per frame than music's 1.7).
_BYTES_PER_FRAME = MAX_SEGMENT_BYTES // _MAX_POSITION + 1
# Landmarks per chunk when a rebuild reads every song, and per step when merging: bounds memory to a few hundred MB.
_LANDMARKS_PER_CHUNK = 16_000_000
# Up to this many keys (a few MB), a binary search over them for the query's sorted hashes stays in the CPU's
# caches; above it, keys filling at least 1 / _DENSE_KEYS of their range are found through a bitmap of that range.
_SEARCHED_KEYS = 1 << 20
_DENSE_KEYS = 32
_FILES = ("ids", "starts", "frames", "counts", "keys", "offsets", "positions")


@dataclass(frozen=True)
class PostingSegment:
    song_ids: IdArray
    starts: I64
    frames: I64
    counts: I64
    keys: U32
    offsets: I64
    positions: U32
    nbytes: int

    @property
    def landmarks(self) -> int:
        return int(self.positions.size)

    @property
    def merge_bytes(self) -> int:
        frames = int(self.starts[-1] + self.frames[-1]) if self.starts.size else 0
        return max(self.nbytes, frames * _BYTES_PER_FRAME)

    @cached_property
    def song_table(self) -> SortedTable:
        """Built once per process on first use: buckets of a quarter to an eighth of the mean song (about 6 int32
        per song), so that three positions in four are settled by the table alone."""
        end = int(self.starts[-1] + self.frames[-1]) if self.starts.size else 1
        return sorted_table(self.starts, end, max(0, (end // max(1, self.starts.size)).bit_length() - 3))

    @cached_property
    def key_bitmap(self) -> KeyBitmap | None:
        """Built once per process on first use, for many keys dense in their range (as pair hashes are): 2 bits per
        hash value (2 MB for 23-bit hashes). None for keys too sparse for it to pay."""
        end = int(self.keys[-1]) + 1 if self.keys.size else 0
        if self.keys.size <= _SEARCHED_KEYS or end > _DENSE_KEYS * self.keys.size:
            return None
        bitmap = key_bitmap(self.keys, end)
        release(self.keys)  # read whole once; lookups need only the bitmap
        return bitmap

    def songs_at(self, positions: I64) -> I64:
        """The song each position falls in."""
        return self.song_table.last_at_or_below(positions)

    def key_ranges(self, hashes: U32) -> tuple[I64, I64]:
        """Where each hash's postings begin in `positions`, and how many there are (0 for a hash not stored);
        `hashes` sorted."""
        bitmap = self.key_bitmap
        if bitmap is None:
            at = np.searchsorted(self.keys, hashes, side="right") - 1
            found = np.maximum(at, 0)
            present = (at >= 0) & (self.keys[found] == hashes)
        else:
            found, present = bitmap.find(hashes)
        starts = np.asarray(self.offsets[found])
        return starts, np.where(present, self.offsets[found + 1] - starts, 0)


@dataclass(frozen=True)
class KeyBitmap:
    """The sorted keys' ranks read from a bitmap of the values present and a running count per 64 values: two
    cache misses a hash, where a binary search over millions of keys takes twenty."""

    words: npt.NDArray[np.uint64]  # bit v % 64 of word v // 64: value v is a key
    before: I64  # before[w]: keys below value 64 w

    def find(self, hashes: U32) -> tuple[I64, npt.NDArray[np.bool_]]:
        """Each hash's index among the keys where present (any index in range where not), and whether present."""
        value = np.minimum(hashes.astype(np.int64), 64 * self.words.size - 1)
        word = self.words[value >> 6]
        bit = (value & 63).astype(np.uint64)
        present = ((word >> bit) & np.uint64(1)).astype(np.bool_) & (hashes.astype(np.int64) == value)
        below = np.bitwise_count(word & ((np.uint64(1) << bit) - np.uint64(1))).astype(np.int64)
        return np.minimum(self.before[value >> 6] + below, self.before[-1] - 1), present


def key_bitmap(keys: U32, end: int) -> KeyBitmap:
    """The bitmap of sorted, distinct `keys`, all below `end`."""
    present = np.zeros(-(-end // 64) * 64, dtype=np.bool_)
    present[keys] = True
    words = np.packbits(present, bitorder="little").view(np.uint64)
    return KeyBitmap(words=words, before=np.r_[0, np.cumsum(np.bitwise_count(words), dtype=np.int64)])


@dataclass(frozen=True)
class SortedTable:
    """np.searchsorted(values, x, "right") - 1 over sorted non-negative `values`, read from a table of that answer
    at every 2**shift-th value and a few halving steps inside one bucket: many times faster for many x than a binary
    search over every value, which misses the cache at each step."""

    values: npt.NDArray[Any]
    shift: int
    first: npt.NDArray[np.int32]  # first[b]: the last value's index at or below b << shift (-1: none)
    steps: int  # halving steps that settle the widest bucket

    def last_at_or_below(self, x: I64) -> I64:
        bucket = np.minimum(x >> self.shift, self.first.size - 2)
        lo = self.first[bucket].astype(np.int64)
        # Only x in a bucket where some value lies are searched further.
        unsettled = np.flatnonzero(self.first[bucket + 1] != lo)
        if unsettled.size:
            at = x[unsettled]
            low, high = lo[unsettled], self.first[bucket[unsettled] + 1].astype(np.int64)
            for _ in range(self.steps):  # the last index in [low, high] whose value is at or below x
                mid = (low + high + 1) >> 1
                below = self.values[mid] <= at
                low, high = np.where(below, mid, low), np.where(below, high, mid - 1)
            lo[unsettled] = low
        return lo


def sorted_table(values: npt.NDArray[Any], end: int, shift: int) -> SortedTable:
    """The table of `values` (all below `end`) in buckets of 2**shift."""
    buckets = (end >> shift) + 1
    first = np.searchsorted(values, np.arange(buckets + 1, dtype=np.int64) << shift, side="right") - 1
    widest = int(np.max(np.diff(first))) + 1  # indices a bucket's answer may be among
    return SortedTable(values=values, shift=shift, first=first.astype(np.int32), steps=widest.bit_length())


def expand(starts: npt.NDArray[np.integer[Any]], counts: npt.NDArray[np.integer[Any]], total: int) -> I64:
    """Concatenated ranges [starts[i], starts[i] + counts[i]) as one int64 array of `total` items."""
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, counts).astype(np.int64)


def _grouped(hashes: U32, positions: U32) -> tuple[U32, I64, U32]:
    """(keys, offsets, positions) of landmarks grouped by hash, positions ascending within each."""
    order = np.lexsort((positions, hashes))
    hashes, positions = hashes[order], positions[order]
    first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if hashes.size else np.empty(0, np.int64)
    return hashes[first], np.r_[first, hashes.size].astype(np.int64), positions


def build(items: Sequence[tuple[UUID, Payload]]) -> dict[str, npt.NDArray[Any]]:
    """The arrays of a segment of these songs, in order."""
    frames = np.asarray([int(t.max()) + 1 if t.size else 1 for _, (_, t) in items], dtype=np.int64)
    starts = np.cumsum(frames) - frames
    if starts.size and int(starts[-1] + frames[-1]) > _MAX_POSITION:
        raise FingerprintIndexError("too many songs for one fingerprint segment (2**32 frames of audio)")
    hashes = np.concatenate([h for _, (h, _) in items]) if items else np.empty(0, np.uint32)
    positions = (
        np.concatenate([t.astype(np.int64) + start for (_, (_, t)), start in zip(items, starts, strict=True)])
        if items
        else np.empty(0, np.int64)
    ).astype(np.uint32)
    keys, offsets, grouped = _grouped(hashes.astype(np.uint32), positions)
    return {
        "ids": ids_array([song_id for song_id, _ in items]),
        "starts": starts,
        "frames": frames,
        "counts": np.asarray([h.size for _, (h, _) in items], dtype=np.int64),
        "keys": keys,
        "offsets": offsets,
        "positions": grouped,
    }


def segment_of(arrays: dict[str, npt.NDArray[Any]], nbytes: int = 0) -> PostingSegment:
    return PostingSegment(
        song_ids=arrays["ids"],
        starts=arrays["starts"],
        frames=arrays["frames"],
        counts=arrays["counts"],
        keys=arrays["keys"],
        offsets=arrays["offsets"],
        positions=arrays["positions"],
        nbytes=nbytes or sum(int(a.nbytes) for a in arrays.values()),
    )


class PostingCodec:
    """Fingerprints of the current algorithm (see `derived.segments.Codec`)."""

    def _rows(self) -> Any:
        return SongFingerprints.objects.filter(algorithm=ALGORITHM)

    def load(self, song_ids: Sequence[UUID]) -> dict[UUID, Payload]:
        from fingerprints.index.local import unpack

        rows = self._rows().filter(song_id__in=list(song_ids)).values_list("song_id", "count", "data")
        return {song_id: unpack(bytes(data), count) for song_id, count, data in rows}

    def load_all(self) -> Iterator[list[tuple[UUID, Payload]]]:
        from fingerprints.index.local import unpack

        chunk: list[tuple[UUID, Payload]] = []
        landmarks = 0
        for song_id, count, data in self._rows().order_by("pk").values_list("song_id", "count", "data").iterator(200):
            chunk.append((song_id, unpack(bytes(data), count)))
            landmarks += count
            if landmarks >= _LANDMARKS_PER_CHUNK:
                yield chunk
                chunk, landmarks = [], 0
        yield chunk

    def write(self, folder: Path, items: Sequence[tuple[UUID, Payload]]) -> None:
        for name, array in build(items).items():
            np.save(folder / f"{name}.npy", array, allow_pickle=False)

    def merge(self, folder: Path, parts: Sequence[tuple[PostingSegment, BoolArray]]) -> None:
        merge_into(folder, parts)

    def open(self, folder: Path) -> PostingSegment:
        arrays, nbytes = open_arrays(folder, _FILES, "fingerprint")
        songs, keys = arrays["ids"].shape[0], arrays["keys"].shape[0]
        expected = {
            "ids": ((songs,), "S16"),
            "starts": ((songs,), np.int64),
            "frames": ((songs,), np.int64),
            "counts": ((songs,), np.int64),
            "keys": ((keys,), np.uint32),
            "offsets": ((keys + 1,), np.int64),
            "positions": ((arrays["positions"].shape[0],), np.uint32),
        }
        check_shapes(folder, arrays, expected, "fingerprint")
        offsets = arrays["offsets"]
        if int(offsets[0]) != 0 or int(offsets[-1]) != arrays["positions"].size:
            raise CorruptIndex(f"fingerprint segment {folder.name}: offsets do not cover the positions")
        if int(arrays["counts"].sum()) != arrays["positions"].size:
            raise CorruptIndex(f"fingerprint segment {folder.name}: song counts do not add up to the positions")
        return segment_of(arrays, nbytes)


def merge_into(folder: Path, parts: Sequence[tuple[PostingSegment, BoolArray]]) -> None:
    """One segment of the parts' live songs, in order, written in bounded steps over ranges of hashes."""
    new_starts: list[I64] = []
    shifts: list[I64] = []
    next_start = 0
    for segment, alive in parts:
        frames = segment.frames[alive]
        starts = next_start + np.cumsum(frames) - frames
        shift = np.zeros(alive.size, dtype=np.int64)
        shift[alive] = starts - segment.starts[alive]
        new_starts.append(starts)
        shifts.append(shift)
        next_start += int(frames.sum())
    if next_start > _MAX_POSITION:
        raise FingerprintIndexError("too many songs for one fingerprint segment (2**32 frames of audio)")
    total = sum(int(segment.counts[alive].sum()) for segment, alive in parts)
    out = npy_format.open_memmap(folder / "positions.npy", "w+", np.uint32, (total,))
    keys_out: list[U32] = []
    counts_out: list[I64] = []
    written = 0
    for low, high in _key_ranges(parts):
        batch_keys: list[U32] = []
        batch_positions: list[I64] = []
        for (segment, alive), shift in zip(parts, shifts, strict=True):
            a, b = np.searchsorted(segment.keys, [low, high])
            if a == b:
                continue
            lo, hi = int(segment.offsets[a]), int(segment.offsets[b])
            positions = segment.positions[lo:hi].astype(np.int64)
            keys = np.repeat(segment.keys[a:b], np.diff(segment.offsets[a : b + 1]))
            song = np.searchsorted(segment.starts, positions, side="right") - 1
            live = alive[song]
            batch_keys.append(keys[live])
            batch_positions.append(positions[live] + shift[song[live]])
        if not batch_keys:
            continue
        keys = np.concatenate(batch_keys)
        positions = np.concatenate(batch_positions)
        order = np.argsort(keys, kind="stable")  # parts stay in order within a key: positions stay ascending
        keys, positions = keys[order], positions[order]
        out[written : written + keys.size] = positions
        written += keys.size
        if keys.size:
            first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            keys_out.append(keys[first])
            counts_out.append(np.diff(np.r_[first, keys.size]))
    out.flush()
    del out
    counts = np.concatenate(counts_out) if counts_out else np.empty(0, np.int64)
    arrays = {
        "ids": np.concatenate([segment.song_ids[alive] for segment, alive in parts]),
        "starts": np.concatenate(new_starts) if new_starts else np.empty(0, np.int64),
        "frames": np.concatenate([segment.frames[alive] for segment, alive in parts]),
        "counts": np.concatenate([segment.counts[alive] for segment, alive in parts]),
        "keys": np.concatenate(keys_out) if keys_out else np.empty(0, np.uint32),
        "offsets": np.r_[0, np.cumsum(counts)].astype(np.int64),
    }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)


def _key_ranges(parts: Sequence[tuple[PostingSegment, BoolArray]]) -> list[tuple[int, int]]:
    """Ranges [low, high) of hash values that split the parts' postings into steps of about _LANDMARKS_PER_CHUNK."""
    total = sum(segment.landmarks for segment, _ in parts)
    steps = max(1, -(-total // _LANDMARKS_PER_CHUNK))
    largest = max((segment for segment, _ in parts), key=lambda s: s.landmarks, default=None)
    if steps == 1 or largest is None or largest.keys.size == 0:
        return [(0, 2**32)]
    at = np.searchsorted(largest.offsets, np.linspace(0, largest.landmarks, steps + 1)[1:-1])
    cuts = sorted({int(largest.keys[min(i, largest.keys.size - 1)]) for i in at})
    bounds = [0, *cuts, 2**32]
    return [(low, high) for low, high in itertools.pairwise(bounds) if low < high]


def checked(items: Sequence[tuple[UUID, Any, Any]]) -> list[tuple[UUID, Payload]]:
    return [(song_id, check_landmarks(hashes, times)) for song_id, hashes, times in items]
