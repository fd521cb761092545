"""Same recording: songs whose fingerprints line up over most of their length hold one recording.

At ingest, the new song's own landmarks are looked up, a chunk at a time, in the fingerprint index that identify
uses. A chunk votes for every other song whose landmarks agree with it on one time offset well above chance (at
each offset that does about as well as the best, when the song repeats itself: music that loops holds a chunk at
every repeat, and any repeat may be the alignment the other chunks agree on); a song that gets the votes of most
chunks at one and the same offset (within `OFFSET_SLACK_SECONDS`) is the same recording, or the new song is an
excerpt of it. A song whose length is mostly covered by the new one is an excerpt of the new one. Links live in
their own table with cascading foreign keys, so deleting either song removes its link and nothing dangles.

Lists (more like this, clip search, radio, paths) keep one song per recording: `collapse` reads the links of a
whole list in one query.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from catalog.models import Recording, RecordingLink, Song, SongStatus
from fingerprints.index import FingerprintIndex, FingerprintLookup, Hits, SongLandmarks, get_fingerprint_index
from fingerprints.landmarks import FRAME_SECONDS, Landmarks
from fingerprints.selectors import candidates, scored_hits

logger = logging.getLogger(__name__)

# Landmarks are looked up in chunks of this much audio, so one lookup's hits stay small for long songs.
CHUNK_SECONDS = 15.0
# A chunk's last, shorter piece counts only when it is at least this long.
MIN_CHUNK_SECONDS = 5.0
# Songs asked about per chunk: enough for a recording held several times already.
CANDIDATES_PER_CHUNK = 8
# A chunk's lookup reads at most this many hits, rarest hashes first (see fingerprints.selectors.scored_hits): the
# same recording holds nearly every one of a chunk's landmarks, so its rarest few already name it.
CHUNK_LOOKUP_BUDGET = 25_000
# Songs whose landmarks a song's chunks keep at hand: each chunk of a duplicate shortlists it again.
_REMEMBERED_SONGS = 32
# Two chunks vote for one alignment when their offsets differ by at most this.
OFFSET_SLACK_SECONDS = 0.5
# A chunk also votes for the other offsets at which a song holds it with at least this share of its best matches.
REPEAT_SHARE = 0.7
# A new song shorter than this share of the song it matches is an excerpt of it.
EXCERPT_RATIO = 0.9


@dataclass(frozen=True)
class RecordingMatch:
    song_id: UUID  # the other song
    offset_seconds: float  # where the new song starts in the other one (negative: the other starts later)
    share: float  # of the new song's chunks that line up with it
    coverage: float  # of the other song's length that the lined-up chunks cover
    new_is_excerpt: bool  # the new song is part of the other one
    other_is_excerpt: bool  # the other song is part of the new one


def _without(hits: Hits, song_id: UUID) -> Hits:
    if song_id not in hits.song_ids:
        return hits
    keep = hits.songs != hits.song_ids.index(song_id)
    return Hits(
        song_ids=hits.song_ids,
        songs=hits.songs[keep],
        ref_times=hits.ref_times[keep],
        query_positions=hits.query_positions[keep],
    )


class _Remembering:
    """An index whose songs' landmarks, once read for a shortlist, are kept for the next chunks (a few dozen)."""

    def __init__(self, index: FingerprintLookup) -> None:
        self.index = index
        self.read: dict[UUID, SongLandmarks] = {}

    def lookup(
        self, hashes: npt.NDArray[np.uint32], budget: int = 0, times: npt.NDArray[np.uint32] | None = None
    ) -> Hits:
        return self.index.lookup(hashes, budget, times)

    def landmarks_of(self, song_ids: Sequence[UUID]) -> dict[UUID, SongLandmarks]:
        missing = [s for s in song_ids if s not in self.read]
        if missing:
            self.read.update(self.index.landmarks_of(missing))
            for old in list(self.read)[: max(0, len(self.read) - _REMEMBERED_SONGS)]:
                if old not in song_ids:
                    del self.read[old]
        return {s: self.read[s] for s in song_ids if s in self.read}


def chunk_votes(
    song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32], index: FingerprintIndex
) -> tuple[int, dict[UUID, list[float]]]:
    """How many chunks the song has, and per other song the offsets (seconds) of the chunks that matched it."""
    frames_per_chunk = int(CHUNK_SECONDS / FRAME_SECONDS)
    last = int(times.max()) if times.size else 0
    chunks = 0
    votes: dict[UUID, list[float]] = defaultdict(list)
    remembering = _Remembering(index)
    for start in range(0, last + 1, frames_per_chunk):
        inside = (times >= start) & (times < start + frames_per_chunk)
        span = (min(last, start + frames_per_chunk) - start) * FRAME_SECONDS
        if not inside.any() or (chunks and span < MIN_CHUNK_SECONDS):
            continue
        chunks += 1
        query = Landmarks(hashes=hashes[inside], times=times[inside], peaks=0, frames=0)
        # One more in the shortlist: the song itself may be stored already (ingested again). No wider lookup when
        # no song stands out: a copy holds nearly all of the chunk's landmarks, so its rarest ones name it at once,
        # and a new song (the usual case) would pay for one per chunk.
        hits = _without(
            scored_hits(query, remembering, CHUNK_LOOKUP_BUDGET, CANDIDATES_PER_CHUNK + 1, widen=False), song_id
        )
        for candidate in candidates(query, hits, limit=CANDIDATES_PER_CHUNK):
            if _beats_chance(candidate.matches, candidate.background, int(inside.sum())):
                votes[candidate.song_id] += _repeats(query, hits, candidate.song_id)
    return chunks, votes


def _repeats(query: Landmarks, hits: Hits, song_id: UUID) -> list[float]:
    """The offsets (seconds) at which the chunk's hits in song `song_id` agree with at least REPEAT_SHARE of the
    best offset's matches (neighbouring frames counted in), best first, each more than twice OFFSET_SLACK_SECONDS
    from the others: one vote per alignment the chunk supports."""
    mine = hits.songs == hits.song_ids.index(song_id)
    offsets = hits.ref_times[mine] - query.times[hits.query_positions[mine]].astype(np.int64)
    low = int(offsets.min())
    counts = np.bincount(offsets - low)
    scores = counts + np.r_[0, counts[:-1]] + np.r_[counts[1:], 0]
    gap = int(2 * OFFSET_SLACK_SECONDS / FRAME_SECONDS)
    found: list[int] = []
    for at in np.argsort(-scores, kind="stable"):
        if scores[at] < REPEAT_SHARE * scores.max():
            break
        if all(abs(int(at) - other) > gap for other in found):
            found.append(int(at))
    return [(at + low) * FRAME_SECONDS for at in found]


def _beats_chance(matches: int, background: int, landmarks_in_chunk: int) -> bool:
    floor = max(settings.FINGERPRINT_MIN_MATCHES, settings.RECORDING_MIN_CHUNK_SHARE * landmarks_in_chunk)
    return matches >= floor and matches >= settings.RECORDING_CHANCE_MARGIN * max(background, 1)


def _aligned(offsets: list[float]) -> tuple[float, int]:
    """The offset most chunks agree on (within OFFSET_SLACK_SECONDS) and how many do."""
    values = np.sort(np.asarray(offsets))
    best, best_count = float(values[0]), 0
    for value in values:
        count = int(np.count_nonzero(np.abs(values - value) <= OFFSET_SLACK_SECONDS))
        if count > best_count:
            best, best_count = float(value), count
    near = values[np.abs(values - best) <= OFFSET_SLACK_SECONDS]
    return float(np.median(near)), best_count


def find_same_recording(
    song_id: UUID,
    found: Landmarks,
    *,
    durations: Callable[[list[UUID]], dict[UUID, float]],
    index: FingerprintIndex | None = None,
) -> RecordingMatch | None:
    """The other song that holds the same recording as song `song_id`, whose landmarks are `found`, or None.

    `durations` is called once with the candidate songs and returns the length of those that may be linked (e.g.
    ready songs); the others are passed over.
    """
    if len(found) == 0:
        return None
    seconds = max(found.seconds, FRAME_SECONDS)
    chunks, votes = chunk_votes(song_id, found.hashes, found.times, index or get_fingerprint_index())
    if not chunks or not votes:
        return None
    lengths = durations(list(votes))
    matches: list[RecordingMatch] = []
    for other, offsets in votes.items():
        other_seconds = lengths.get(other)
        if not other_seconds:
            continue
        offset, agreeing = _aligned(offsets)
        share = agreeing / chunks
        coverage = min(1.0, agreeing * CHUNK_SECONDS / other_seconds)
        new_is_excerpt = seconds < EXCERPT_RATIO * other_seconds
        other_is_excerpt = other_seconds < EXCERPT_RATIO * seconds
        threshold = settings.RECORDING_MIN_SHARE
        if share >= threshold and not other_is_excerpt:
            matches.append(RecordingMatch(other, offset, share, coverage, new_is_excerpt, False))
        elif other_is_excerpt and coverage >= threshold:
            matches.append(RecordingMatch(other, offset, share, coverage, False, True))
    if not matches:
        return None
    return max(matches, key=lambda m: (m.share + m.coverage, -abs(m.offset_seconds)))


def link(song_id: UUID, match: RecordingMatch) -> bool:
    """Record `song_id` and `match.song_id` as one recording; False when either song went away meanwhile.

    Both rows are locked first (on databases that lock rows), so a delete either waits and then removes the links
    with the song, or came first and leaves nothing to link; where rows are not locked, the foreign keys refuse a
    link to a deleted song at commit.
    """
    linkable = {SongStatus.READY, SongStatus.PROCESSING}
    try:
        with transaction.atomic():
            rows = list(
                Song.objects.select_for_update()
                .filter(pk__in=[song_id, match.song_id], status__in=linkable)
                .values_list("pk", flat=True)
            )
            if len(rows) != 2:
                return False
            existing = RecordingLink.objects.filter(song_id=match.song_id).first()
            if existing is None:
                recording = Recording.objects.create()
                RecordingLink.objects.create(
                    song_id=match.song_id,
                    recording=recording,
                    excerpt=match.other_is_excerpt,
                    offset_seconds=max(0.0, -match.offset_seconds) if match.other_is_excerpt else 0.0,
                )
            else:
                recording = existing.recording
            RecordingLink.objects.filter(song_id=song_id).delete()
            RecordingLink.objects.create(
                song_id=song_id,
                recording=recording,
                excerpt=match.new_is_excerpt,
                offset_seconds=max(0.0, match.offset_seconds) + (existing.offset_seconds if existing else 0.0),
            )
    except IntegrityError:
        logger.info("song %s or %s was deleted while they were linked as one recording", song_id, match.song_id)
        return False
    return True


def unlink(song_id: UUID) -> None:
    """Forget the song's recording (a re-ingest decides it again)."""
    RecordingLink.objects.filter(song_id=song_id).delete()


def recording_of(song_ids: Iterable[UUID]) -> dict[UUID, int]:
    """The recording of each song that has one, in one query."""
    ids = list(song_ids)
    if not ids:
        return {}
    return dict(RecordingLink.objects.filter(song_id__in=ids).values_list("song_id", "recording_id"))


T = TypeVar("T")


def collapse(items: Sequence[T], song_id: Callable[[T], UUID], *, also_seen: Iterable[UUID] = ()) -> list[T]:
    """`items` with one song per recording (the first, so the best-ranked), and none of `also_seen`'s recordings.

    One query for the whole list, whatever its length.
    """
    seen_songs = list(also_seen)
    recordings = recording_of([*seen_songs, *(song_id(item) for item in items)])
    seen = {recordings[s] for s in seen_songs if s in recordings}
    kept: list[T] = []
    for item in items:
        recording = recordings.get(song_id(item))
        if recording is None:
            kept.append(item)
        elif recording not in seen:
            seen.add(recording)
            kept.append(item)
    return kept


def distinct_count(songs: QuerySet[Song], *, exclude_song: Song | None = None) -> int:
    """How many entries `songs` make with one per recording, none of `exclude_song`'s recording counted."""
    links = RecordingLink.objects.filter(song__in=songs)
    if exclude_song is not None:
        own = RecordingLink.objects.filter(song_id=exclude_song.pk).values("recording_id")
        links = links.exclude(recording_id__in=own)
    unlinked = songs.filter(recording_link__isnull=True).count()
    return unlinked + links.values("recording_id").distinct().count()


@dataclass(frozen=True)
class Duplicate:
    song: Song
    excerpt: bool
    offset_seconds: float


def duplicates_of(song: Song) -> list[Duplicate]:
    """The other ready songs holding the same recording as `song`, whole copies first."""
    link_row = RecordingLink.objects.filter(song_id=song.pk).first()
    if link_row is None:
        return []
    others = (
        RecordingLink.objects.filter(recording_id=link_row.recording_id, song__status=SongStatus.READY)
        .exclude(song_id=song.pk)
        .select_related("song")
        .order_by("excerpt", "song__created_at")
    )
    return [Duplicate(song=row.song, excerpt=row.excerpt, offset_seconds=row.offset_seconds) for row in others]


def ready_durations(song_ids: list[UUID]) -> dict[UUID, float]:
    """The length of each ready song among `song_ids` (the songs a new one may be linked to)."""
    # By primary key only: a status filter lets SQLite walk the status index instead of the keys.
    rows = Song.objects.filter(pk__in=song_ids).values_list("pk", "status", "duration_seconds")
    return {pk: float(seconds) for pk, status, seconds in rows if seconds and status == SongStatus.READY}
