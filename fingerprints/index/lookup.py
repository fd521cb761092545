"""The lookup over a snapshot of posting segments (see `postings`): the entries of the query's hashes.

A lookup reads only the postings of the query's hashes, skipping hashes stored more often than the stop limit and,
within a budget, the commonest of the rest; entries of dead songs are marked out through the snapshot's alive masks.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np
import numpy.typing as npt

from derived.segments import BoolArray, IdArray, Snapshot, release
from fingerprints.alignments import SHORTLIST_HITS, SHORTLIST_SIZE, coarse, fullest
from fingerprints.index import FingerprintIndexError, Hits, SongIds
from fingerprints.index.postings import I64, PostingSegment, expand


def lookup(
    snapshot: Snapshot[PostingSegment],
    hashes: npt.NDArray[np.uint32],
    max_per_hash: int = 0,
    budget: int = 0,
    times: npt.NDArray[np.uint32] | None = None,
) -> Hits:
    """Entries of live songs whose hash is in `hashes`; a hash with more than `max_per_hash` entries (if > 0),
    counted over every segment, is skipped; with a `budget` (if > 0), only the query's rarest hashes are read, as
    many as keep the hits (entries times the hash's repeats in the query) within it.

    With `times` (each hash's frame in the query), more than SHORTLIST_HITS hits are cut down to those of the songs
    owning the SHORTLIST_SIZE fullest coarse alignments before any song is named (see `fingerprints.alignments`).
    """
    query = np.asarray(hashes, dtype=np.uint32)
    if times is not None and np.shape(times) != query.shape:
        raise FingerprintIndexError(f"{np.shape(times)} query times for {query.shape} hashes")
    parts = [part for part in snapshot.parts if part.segment.keys.size]
    if query.size == 0 or not parts:
        return Hits.empty()
    order = np.argsort(query, kind="stable")
    ordered = query[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    unique = ordered[first]
    multiplicity = np.diff(np.r_[first, ordered.size])
    ranges = []
    for part in parts:
        ranges.append(part.segment.key_ranges(unique))
    totals = np.zeros(unique.size, dtype=np.int64)
    for _, counts in ranges:
        totals += counts
    stopped = totals > max_per_hash if max_per_hash > 0 else np.zeros(unique.size, dtype=np.bool_)
    skipped = stopped.copy()
    if budget > 0:
        skipped |= over_budget(np.where(stopped, 0, totals), multiplicity, budget)
    # Hashes left out by the budget alone, and that some song holds: without them the hits are a sample.
    partial = bool(np.any(skipped & ~stopped & (totals > 0)))
    if np.any(skipped):
        for _, counts in ranges:
            counts[skipped] = 0
    found: list[tuple[PostingSegment, BoolArray, I64, I64]] = []
    for part, (lo, counts) in zip(parts, ranges, strict=True):
        total = int(counts.sum())
        if total:
            position = part.segment.positions[expand(lo, counts, total)].astype(np.int64)
            release(part.segment.positions)
            found.append((part.segment, part.alive, position, np.repeat(np.arange(unique.size), counts)))
    if times is not None and int((totals[~skipped] * multiplicity[~skipped]).sum()) > SHORTLIST_HITS:
        found = _at_best_alignments(found, order, first, multiplicity, np.asarray(times, dtype=np.int64))
    id_parts: list[IdArray] = []
    known = 0
    songs: list[I64] = []
    ref_times: list[I64] = []
    which: list[I64] = []
    for segment, alive, position, unique_index in found:
        song = segment.songs_at(position)
        live = alive[song]
        position, unique_index, song = position[live], unique_index[live], song[live]
        if song.size == 0:
            continue
        # The segment's songs that were hit, numbered in order: a count per song, not a sort of every hit.
        used = np.flatnonzero(np.bincount(song, minlength=segment.starts.size))
        number = np.zeros(segment.starts.size, dtype=np.int64)
        number[used] = np.arange(used.size) + known
        songs.append(number[song])
        id_parts.append(np.asarray(segment.song_ids[used]))
        known += used.size
        ref_times.append(position - segment.starts[song])
        which.append(unique_index)
    if not songs:
        return Hits(*_nothing(), stopped=unique[stopped], partial=partial)
    song = np.concatenate(songs)
    ref_time = np.concatenate(ref_times)
    unique_index = np.concatenate(which)
    # Each hit pairs with every query position holding its hash.
    repeats = multiplicity[unique_index]
    total = int(repeats.sum())
    return Hits(
        song_ids=SongIds(np.concatenate(id_parts)),
        songs=np.repeat(song, repeats),
        ref_times=np.repeat(ref_time, repeats),
        query_positions=order[expand(first[unique_index], repeats, total)].astype(np.int64),
        stopped=unique[stopped],
        partial=partial,
    )


def _at_best_alignments(
    found: list[tuple[PostingSegment, BoolArray, I64, I64]], order: I64, first: I64, multiplicity: I64, times: I64
) -> list[tuple[PostingSegment, BoolArray, I64, I64]]:
    """The hits (segment, alive, positions, unique hash index) of the songs owning the fullest coarse alignments.

    A position is its song's start plus the song frame, so position minus query frame is one number per alignment
    across a segment's songs: the alignments are counted before any hit's song is looked up, and only the songs of
    the fullest ones are.
    """
    frame_of = times[order[first]]  # the query frame of each distinct hash, where it is in the query once
    keys: list[I64] = []
    paired: list[I64] = []
    for number, (_, _, position, unique_index) in enumerate(found):
        repeats = multiplicity[unique_index]
        many = np.flatnonzero(repeats > 1)
        pairs, frames = position, frame_of[unique_index]
        if many.size:  # hashes held more than once in the query pair with each of their frames
            count = repeats[many]
            spread = order[expand(first[unique_index[many]], count, int(count.sum()))]
            pairs = np.r_[np.delete(position, many), np.repeat(position[many], count)]
            frames = np.r_[np.delete(frames, many), times[spread]]
        paired.append(pairs)
        keys.append((number << 40) | coarse(pairs - frames))
    at_best = np.split(fullest(np.concatenate(keys), SHORTLIST_SIZE), np.cumsum([k.size for k in keys])[:-1])
    kept = []
    for (segment, alive, position, unique_index), pairs, best in zip(found, paired, at_best, strict=True):
        wanted = np.unique(segment.songs_at(pairs[best]))
        if wanted.size:
            inside = _in_songs(segment, wanted, position)
            kept.append((segment, alive, position[inside], unique_index[inside]))
    return kept


def _in_songs(segment: PostingSegment, wanted: I64, position: I64) -> BoolArray:
    """Which positions fall in the `wanted` songs (sorted): a table of about 65,536 spans of the segment says which
    positions may, so that only those are searched among the songs."""
    starts = segment.starts[wanted]
    ends = starts + segment.frames[wanted]
    shift = (int(ends[-1]) >> 16).bit_length()
    first, last = starts >> shift, (ends - 1) >> shift
    maybe = np.zeros(int(last[-1]) + 2, dtype=np.bool_)
    maybe[expand(first, last - first + 1, int((last - first + 1).sum()))] = True
    candidates = np.flatnonzero(maybe[np.minimum(position >> shift, maybe.size - 1)])
    at = np.maximum(np.searchsorted(starts, position[candidates], side="right") - 1, 0)
    inside = np.zeros(position.size, dtype=np.bool_)
    inside[candidates] = (position[candidates] >= starts[at]) & (position[candidates] < ends[at])
    return inside


def _nothing() -> tuple[list[UUID], I64, I64, I64]:
    none = np.empty(0, dtype=np.int64)
    return [], none, none, none


def over_budget(totals: I64, multiplicity: I64, budget: int) -> npt.NDArray[np.bool_]:
    """Which hashes a lookup within `budget` hits leaves out: the commonest, once the rarer ones (entries times
    repeats in the query) have used it up. Rare hashes are both cheap and the most telling."""
    cost = totals * multiplicity
    if int(cost.sum()) <= budget:
        return np.zeros(totals.size, dtype=np.bool_)
    order = np.argsort(totals, kind="stable")
    out = np.ones(totals.size, dtype=np.bool_)
    out[order[np.cumsum(cost[order]) <= budget]] = False
    return out
