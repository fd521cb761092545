"""Identification: which catalog song a clip is taken from, and where in it."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings

from embeddings.base import SAMPLE_RATE
from fingerprints.alignments import SHORTLIST_HITS, SHORTLIST_SIZE, coarse, fullest
from fingerprints.index import FingerprintIndex, FingerprintLookup, Hits, SongLandmarks, get_fingerprint_index
from fingerprints.index.postings import expand
from fingerprints.landmarks import FRAME_SECONDS, QUERY_SHIFTS, Landmarks, query_landmarks

# Offsets within this many frames of the best one (16 ms each) count towards it: frame grids never line up exactly.
OFFSET_TOLERANCE = 1
# A song's background: the score of its BACKGROUND_RANK-th best offset, offsets within BACKGROUND_GAP frames of a
# better one left out (they are the same alignment). Music on a beat grid lines up with an unrelated clip at many
# offsets at once, each about as well; a real match stands far above the song's other offsets, repeats included.
BACKGROUND_RANK = 10
BACKGROUND_GAP = 3
# ...but a background above this many times the other chance estimates is the song repeating itself (see confidence).
BACKGROUND_CAP = 3.0
# chance_level(): matches an unrelated song gets by chance, at least and per query landmark.
CHANCE_BASE = 2.0
CHANCE_PER_HASH = 1 / 1000
_MEAN_SHIFT = float(np.mean(QUERY_SHIFTS))
# A budgeted lookup whose best song has fewer hits than this at one offset is made again with WIDER_BUDGET times
# the budget: the clip's song may hold only hashes too common for the first budget to reach (see scored_hits).
WEAK_SAMPLE = 10
WIDER_BUDGET = 10
# With a `live` filter, this many best songs are asked about at once, so dead ones are passed over in one query.
LIVE_CANDIDATES = 8

# Which of the given song ids may be answered (e.g. ready songs): the others' stored fingerprints are ignored.
LiveFilter = Callable[[list[UUID]], set[UUID]]
# The recording of each of the given songs that is known to share one with other songs (copies of one recording).
RecordingOf = Callable[[list[UUID]], Mapping[UUID, Hashable]]


@dataclass(frozen=True)
class Candidate:
    song_id: UUID
    offset_seconds: float  # where the clip starts in the song
    matches: int  # landmarks of the clip found in the song at that offset
    background: int = 0  # the song's BACKGROUND_RANK-th best offset's matches: what alignment by chance gets


@dataclass(frozen=True)
class Match:
    song_id: UUID
    offset_seconds: float
    confidence: float  # 0..1; see `confidence()`
    matches: int
    query_hashes: int
    runner_up: Candidate | None  # the best other song, if any landmark matched one
    background: int = 0  # see Candidate.background

    @property
    def runner_up_matches(self) -> int:
        return self.runner_up.matches if self.runner_up else 0


def shortlist(songs: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.bool_]:
    """Which hits belong to the songs of the `size` fullest coarse alignments (see `alignments`)."""
    at_best = fullest((songs << 32) | coarse(offsets), size)
    wanted = np.zeros(int(songs.max()) + 1, dtype=np.bool_)
    wanted[songs[at_best]] = True
    return wanted[songs]


def candidates(query: Landmarks, hits: Hits, limit: int = 2) -> list[Candidate]:
    """The `limit` songs with the most landmarks agreeing on one offset, best first (one entry per song).

    Offsets are counted per (song, offset in frames); a bin's score adds its neighbours within OFFSET_TOLERANCE.
    Above SHORTLIST_HITS hits, only the songs of the best coarse alignments are scored so (see `alignments`).
    """
    if len(hits) == 0 or limit < 1:
        return []
    offsets = hits.ref_times - query.times[hits.query_positions].astype(np.int64)
    songs_of_hits = hits.songs
    if offsets.size > SHORTLIST_HITS:
        keep = shortlist(songs_of_hits, offsets, max(SHORTLIST_SIZE, 4 * limit))
        offsets, songs_of_hits = offsets[keep], songs_of_hits[keep]
    keys = np.sort((songs_of_hits << 32) + (offsets + 2**31))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    unique = keys[starts]
    counts = np.diff(np.r_[starts, keys.size])
    scores = counts.copy()
    weighted = np.zeros(unique.size, dtype=np.float64)
    for step in range(1, OFFSET_TOLERANCE + 1):
        # Keys are sorted, so key + step, when present, is at most `step` places further on.
        for gap in range(1, step + 1):
            if unique.size <= gap:
                break
            adjacent = unique[gap:] == unique[:-gap] + step
            later = np.where(adjacent, counts[gap:], 0)
            earlier = np.where(adjacent, counts[:-gap], 0)
            scores[:-gap] += later
            scores[gap:] += earlier
            weighted[:-gap] += step * later
            weighted[gap:] -= step * earlier
    songs = unique >> 32
    found: list[Candidate] = []
    remaining = scores.copy()
    for _ in range(limit):
        i = int(np.argmax(remaining))
        if remaining[i] <= 0:
            break
        song = songs[i]
        first, last = np.searchsorted(songs, [song, song + 1])
        offset_frames = float((unique[i] & 0xFFFFFFFF) - 2**31) + weighted[i] / scores[i] - _MEAN_SHIFT
        found.append(
            Candidate(
                song_id=hits.song_ids[int(song)],
                offset_seconds=round(offset_frames * FRAME_SECONDS, 3),
                matches=int(scores[i]),
                background=_background(unique[first:last], scores[first:last]),
            )
        )
        remaining[first:last] = 0
    return found


def _background(keys: npt.NDArray[np.int64], scores: npt.NDArray[np.int64]) -> int:
    """The BACKGROUND_RANK-th best score among one song's offsets (keys, sorted), near-duplicates left out."""
    left = scores.astype(np.int64)  # a copy
    best = 0
    for _ in range(BACKGROUND_RANK):
        i = int(np.argmax(left))
        best = int(left[i])
        if best <= 0:
            return 0
        lo, hi = np.searchsorted(keys, [keys[i] - BACKGROUND_GAP, keys[i] + BACKGROUND_GAP + 1])
        left[lo:hi] = 0
    return best


def chance_level(query_hashes: int) -> float:
    """A floor on what an unrelated song gets, for a clip with this many landmarks (for tiny catalogs).

    Measured on the 81-track game-soundtrack corpus with pink-noise, MP3-coded clips of files left out of the index:
    the best unrelated song reaches about 15 matches for a 10 s clip (34,000 query landmarks) and 8 for a 3 s one.
    """
    return CHANCE_BASE + query_hashes * CHANCE_PER_HASH


def confidence(matches: int, runner_up: int, query_hashes: int, background: int = 0) -> float:
    """1 - chance / matches, within 0..1: how far the best song stands above what unrelated audio gets.

    `chance` is the larger of the runner-up song's matches and `chance_level()`, raised to the best song's own
    background (its BACKGROUND_RANK-th best offset) but to no more than BACKGROUND_CAP times that: unrelated music
    on the same beat and scale lines up at many offsets about as well as at its best one, which the runner-up alone
    misses in a small catalog; while a song that repeats itself (loops, choruses) lines up at many offsets because
    the clip really is in it several times, which must not count against it without limit.

    So 0.5 means the best song has twice the matches of any other song and of chance. Near 0: two songs are about as
    good (e.g. one recording in the catalog twice), or the best is no better than chance.
    """
    if matches <= 0:
        return 0.0
    unrelated = max(float(runner_up), chance_level(query_hashes))
    chance = max(unrelated, min(float(background), BACKGROUND_CAP * unrelated))
    return round(min(1.0, max(0.0, 1.0 - chance / matches)), 4)


def best_match(
    query: Landmarks, hits: Hits, live: LiveFilter | None = None, recording_of: RecordingOf | None = None
) -> Match | None:
    """The best candidate with its confidence, before thresholds; with `live`, the best of the songs it keeps.

    With `recording_of`, songs of the best song's recording are no rival to it: the clip is in each of them, so the
    runner-up (what the best must stand above) is the best song of another recording.
    """
    asks = live is not None or recording_of is not None
    found = candidates(query, hits, limit=LIVE_CANDIDATES if asks else 2)
    if live is not None and found:
        alive = live([c.song_id for c in found])
        found = [c for c in found if c.song_id in alive]
    if not found:
        return None
    if recording_of is not None and len(found) > 1:
        recordings = recording_of([c.song_id for c in found])
        mine = recordings.get(found[0].song_id)
        found = [found[0], *(c for c in found[1:] if mine is None or recordings.get(c.song_id) != mine)]
    best = found[0]
    runner_up = found[1] if len(found) > 1 else None
    second = runner_up.matches if runner_up else 0
    return Match(
        song_id=best.song_id,
        offset_seconds=best.offset_seconds,
        confidence=confidence(best.matches, second, len(query), best.background),
        matches=best.matches,
        query_hashes=len(query),
        runner_up=runner_up,
        background=best.background,
    )


def accepted(match: Match | None) -> Match | None:
    """The match if it clears FINGERPRINT_MIN_MATCHES and FINGERPRINT_MIN_CONFIDENCE, else None."""
    if match is None:
        return None
    if match.matches < settings.FINGERPRINT_MIN_MATCHES or match.confidence < settings.FINGERPRINT_MIN_CONFIDENCE:
        return None
    return match


def verified_hits(query: Landmarks, stopped: npt.NDArray[np.uint32], songs: dict[UUID, SongLandmarks]) -> Hits:
    """Every hit the query's hashes (but the `stopped` ones) have in these songs' stored landmarks: what a lookup
    without a budget would have found in them."""
    # kind="table": a bitmap over the hashes' range, linear in the songs' landmarks (a sort costs several times it).
    keep = ~np.isin(query.hashes, stopped, kind="table") if stopped.size else np.ones(len(query), dtype=np.bool_)
    positions = np.flatnonzero(keep)
    order = positions[np.argsort(query.hashes[positions], kind="stable")]
    wanted = query.hashes[order]
    song_ids = list(songs)
    if not song_ids or wanted.size == 0:
        return Hits.empty()
    hashes = np.concatenate([songs[s][0] for s in song_ids])
    times = np.concatenate([songs[s][1] for s in song_ids]).astype(np.int64)
    song = np.repeat(np.arange(len(song_ids), dtype=np.int64), [songs[s][0].size for s in song_ids])
    # Most of a song's landmarks are elsewhere in it than the clip: only those sharing a hash with it are matched.
    shared = np.isin(hashes, wanted, kind="table")
    hashes, times, song = hashes[shared], times[shared], song[shared]
    first = np.searchsorted(wanted, hashes, side="left")
    repeats = np.searchsorted(wanted, hashes, side="right") - first
    total = int(repeats.sum())
    return Hits(
        song_ids=song_ids,
        songs=np.repeat(song, repeats),
        ref_times=np.repeat(times, repeats),
        query_positions=order[expand(first, repeats, total)].astype(np.int64),
        stopped=stopped,
    )


def scored_hits(
    query: Landmarks, index: FingerprintLookup, budget: int, shortlist_songs: int, *, widen: bool = True
) -> Hits:
    """The hits to score a query by, within a lookup `budget` (0: none).

    A lookup within its budget reads only the query's rarest hashes: a sample of the hits, enough to tell which
    few songs can be the answer but not how well each matches. The `shortlist_songs` best of them are then matched
    against every hash of the query from their own stored landmarks, so they are scored as a lookup without a
    budget would score them, at a cost bounded by the query and the shortlist rather than by the catalog.

    When no song stands out in that sample (the best has fewer than WEAK_SAMPLE hits at one offset), the clip's
    song may be one whose hashes are all common in the catalog, so the budget never reached them: the lookup is
    made once more with WIDER_BUDGET times the budget. Only such clips (and clips of songs not in the catalog)
    pay for it. `widen=False` is for queries whose song, if any, holds nearly all their landmarks (a chunk of a
    copy of a song): the sample then names it at once, so a weak sample is returned as it is, neither widened nor
    scored exactly.
    """
    hits = index.lookup(query.hashes, budget=budget, times=query.times)
    if not hits.partial:
        return hits
    found = candidates(query, hits, limit=shortlist_songs)
    weak = not found or found[0].matches < WEAK_SAMPLE
    if weak and not widen:
        return hits  # no song stands out, and none can hold nearly all of the query: nothing to score exactly
    if weak:
        wider = index.lookup(query.hashes, budget=budget * WIDER_BUDGET, times=query.times)
        if not wider.partial:
            return wider
        hits, found = wider, candidates(query, wider, limit=shortlist_songs)
    return verified_hits(query, hits.stopped, index.landmarks_of([c.song_id for c in found]))


@dataclass(frozen=True)
class Identification:
    """What identify() found for a clip: its landmarks, the hits scored and the best match before thresholds."""

    query: Landmarks
    hits: Hits
    best: Match | None

    @property
    def match(self) -> Match | None:
        """The answer: the best match if it clears the thresholds (see accepted)."""
        return accepted(self.best)


def examine(
    samples: npt.NDArray[np.floating],
    *,
    index: FingerprintIndex | None = None,
    live: LiveFilter | None = None,
    recording_of: RecordingOf | None = None,
) -> Identification:
    """identify()'s steps, with what each found: for evaluations, which study the best match before thresholds."""
    query = query_landmarks(samples[: int(settings.FINGERPRINT_MAX_QUERY_SECONDS * SAMPLE_RATE)])
    if len(query) == 0:
        return Identification(query, Hits.empty(), None)
    hits = scored_hits(
        query, index or get_fingerprint_index(), settings.FINGERPRINT_LOOKUP_BUDGET, settings.FINGERPRINT_SHORTLIST
    )
    return Identification(query, hits, best_match(query, hits, live, recording_of))


def identify(
    samples: npt.NDArray[np.floating],
    *,
    index: FingerprintIndex | None = None,
    live: LiveFilter | None = None,
    recording_of: RecordingOf | None = None,
) -> Match | None:
    """The catalog song that mono 32 kHz `samples` were taken from, or None when no song is a confident match.

    Only the first FINGERPRINT_MAX_QUERY_SECONDS are used. `live`, when given, is called once with the best
    candidates' ids and returns those that may be named: the others (e.g. songs being deleted whose fingerprints
    are still stored) are passed over for the next best, and are not counted as runner-up either. `recording_of`,
    when given, names the recording of songs known to be copies of one: a copy of the best song is no rival to it
    (see best_match). Raises ValueError for audio that is not a 1-d array of finite samples, and
    FingerprintIndexError (FingerprintIndexUnavailable: retry later) when the index fails.
    """
    return examine(samples, index=index, live=live, recording_of=recording_of).match
