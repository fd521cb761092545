"""Listening by sound: a radio from seed songs, and a path from one song to another.

Both only ask the vector index for nearest neighbours (a handful of k-NN queries per request) and read the vectors
and rows of the songs those return, so a request costs the same at 100 songs as at 100k.

Radio is stateless: the client sends back what it played and skipped, and each request plans what comes next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np
from django.conf import settings
from django.http import Http404

from catalog import recordings
from catalog.errors import InvalidState, NotSearchable, ServiceUnavailable
from catalog.models import Song, SongStatus
from embeddings.base import FloatArray
from embeddings.index import IndexUnavailable, VectorIndex, VectorIndexError, get_vector_index
from embeddings.registry import active_model_name, model_dim

# Songs fetched per k-NN query: enough to choose from after repeats, caps and copies are taken out.
POOL_PER_QUERY = 40
# The radio asks the index again around where it has got to after this many songs.
REFRESH_EVERY = 5
# When caps and repeats leave no candidate, the radio asks for twice as many neighbours, at most this many times.
MAX_WIDEN = 5
# How far the radio drifts from the seeds towards the songs it last chose (0 stays on the seeds).
DRIFT = 0.35
RECENT = 3
# Weight of closeness to a steer-away or skipped song, taken off a candidate's score.
STEER_WEIGHT = 0.5
# At most this many seeds and steer-away songs are read; the most recent skips count first.
MAX_SEEDS = 10
MAX_STEER = 25
# Extra neighbours a path asks for at each step, for the songs it has used already.
PATH_SPARE = 8


@dataclass(frozen=True)
class Pick:
    song: Song
    score: float  # closeness (dot product) to where the radio or path stood when the song was chosen


class _Catalog:
    """The active model's index, with the vectors and ready rows of the songs a request has met."""

    def __init__(self, *, duplicates: bool) -> None:
        self.duplicates = duplicates  # True: every copy of a recording may be chosen
        self.model = active_model_name()
        self.index: VectorIndex = get_vector_index(self.model, model_dim(self.model))
        self.vectors: dict[UUID, FloatArray] = {}
        self.songs: dict[UUID, Song] = {}
        self.recordings: dict[UUID, int] = {}
        self.last_hits = 0

    def vectors_of(self, song_ids: Iterable[UUID]) -> dict[UUID, FloatArray]:
        wanted = [song_id for song_id in dict.fromkeys(song_ids) if song_id not in self.vectors]
        if wanted:
            self.vectors.update(_read_vectors(self.index, self.model, wanted))
        return {song_id: self.vectors[song_id] for song_id in song_ids if song_id in self.vectors}

    def nearest(self, vector: FloatArray, k: int) -> list[UUID]:
        """Ready songs of this model nearest to `vector`, best first; their rows, vectors and recordings loaded."""
        try:
            hits = self.index.search(vector, k)
        except IndexUnavailable as exc:
            raise ServiceUnavailable(f"Search is unavailable right now: {exc}") from exc
        except VectorIndexError as exc:
            raise ServiceUnavailable(f"Search failed: {exc}") from exc
        self.last_hits = len(hits)
        ids = [hit.song_id for hit in hits]
        fresh = [song_id for song_id in ids if song_id not in self.songs]
        if fresh:
            # By primary key only: a status filter lets SQLite walk the status index instead of the keys.
            found = Song.objects.in_bulk(fresh)
            rows = {
                pk: song
                for pk, song in found.items()
                if song.status == SongStatus.READY and song.embedding_model == self.model
            }
            self.songs.update(rows)
            if not self.duplicates:
                self.recordings.update(recordings.recording_of(rows))
            self.vectors_of(rows)
        return [song_id for song_id in ids if song_id in self.songs and song_id in self.vectors]

    def seed_vectors(self, song_ids: Sequence[UUID], *, what: str) -> dict[UUID, FloatArray]:
        rows = {pk: song for pk, song in Song.objects.in_bulk(song_ids).items() if song.status != SongStatus.DELETING}
        missing = [str(song_id) for song_id in song_ids if song_id not in rows]
        if missing:
            raise Http404(f"No {what} with id {', '.join(missing)}.")
        unready = [song.display_title for song in rows.values() if song.status != SongStatus.READY]
        if unready:
            raise InvalidState(f"Not ready yet, so it cannot be a {what}: {', '.join(unready)}.")
        other = [song.display_title for song in rows.values() if song.embedding_model != self.model]
        if other:
            raise InvalidState(f"Embedded with another model than {self.model}; run `manage.py reindex`: {other}.")
        if not self.duplicates:
            self.recordings.update(recordings.recording_of(rows))
        found = self.vectors_of(song_ids)
        if len(found) != len(set(song_ids)):
            raise NotSearchable(f"A {what} is not in the search index yet; try again in a moment.")
        return found


def _read_vectors(index: VectorIndex, model: str, song_ids: list[UUID]) -> dict[UUID, FloatArray]:
    """The vectors of `song_ids`: one query on the local index's table, else one read per song."""
    if settings.VECTOR_BACKEND == "local":
        from embeddings.models import StoredVector

        rows = StoredVector.objects.filter(song_id__in=song_ids, model=model, dim=index.dim)
        return {
            song_id: np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
            for song_id, blob in rows.values_list("song_id", "vector")
        }
    try:
        found = {song_id: index.get(song_id) for song_id in song_ids}
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"Search is unavailable right now: {exc}") from exc
    return {song_id: vector for song_id, vector in found.items() if vector is not None}


def _unit(vector: FloatArray) -> FloatArray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _key(text: str) -> str:
    return text.strip().casefold()


@dataclass
class _Caps:
    """Songs per artist and per album so far; songs without an artist or album are not capped by it."""

    artists: Counter[str] = field(default_factory=Counter)
    albums: Counter[str] = field(default_factory=Counter)

    def allows(self, song: Song) -> bool:
        artist, album = _key(song.artist), _key(song.album)
        if artist and self.artists[artist] >= settings.RADIO_MAX_PER_ARTIST:
            return False
        return not (album and self.albums[album] >= settings.RADIO_MAX_PER_ALBUM)

    def add(self, song: Song) -> None:
        artist, album = _key(song.artist), _key(song.album)
        if artist:
            self.artists[artist] += 1
        if album:
            self.albums[album] += 1


def radio(
    seeds: Sequence[UUID],
    *,
    length: int,
    avoid: Sequence[UUID] = (),
    exclude: Sequence[UUID] = (),
    relevance: float | None = None,
    duplicates: bool = False,
) -> list[Pick]:
    """Up to `length` ready songs to play after `seeds`, in order.

    Each song is chosen by maximal marginal relevance: closeness to where the radio stands (the seeds, drifting
    towards the last songs chosen) weighed by `relevance` (RADIO_RELEVANCE) against closeness to the songs already
    chosen; closeness to an `avoid` song (steer-away songs and skips) is taken off. Never a seed, a song in
    `exclude` (already played) or `avoid`, another copy of a recording already in the list or among the seeds, nor
    more than RADIO_MAX_PER_ARTIST / RADIO_MAX_PER_ALBUM songs of one artist or album. With `duplicates`, copies
    of one recording count as different songs.
    """
    weight = settings.RADIO_RELEVANCE if relevance is None else relevance
    catalog = _Catalog(duplicates=duplicates)
    seed_ids = list(dict.fromkeys(seeds))[:MAX_SEEDS]
    seed_vectors = catalog.seed_vectors(seed_ids, what="seed")
    steer = list(catalog.vectors_of(list(dict.fromkeys(reversed(avoid)))[:MAX_STEER]).values())
    steer_matrix = np.stack(steer) if steer else None
    centre = _unit(np.mean(np.stack([seed_vectors[s] for s in seed_ids]), axis=0))
    banned = {*seed_ids, *exclude, *avoid}
    used_recordings = {catalog.recordings[s] for s in seed_ids if s in catalog.recordings}

    pool: dict[UUID, None] = {}
    for vector in seed_vectors.values():
        pool.update(dict.fromkeys(catalog.nearest(vector, POOL_PER_QUERY + len(banned))))
    chosen: list[Pick] = []
    chosen_vectors: list[FloatArray] = []
    caps = _Caps()
    target = centre
    asked = 0
    widen = 0
    while len(chosen) < length:
        if chosen and len(chosen) % REFRESH_EVERY == 0 and asked < len(chosen):
            asked = len(chosen)
            pool.update(dict.fromkeys(catalog.nearest(target, POOL_PER_QUERY + len(banned) + len(chosen))))
        eligible = [
            song_id
            for song_id in pool
            if song_id not in banned
            and catalog.recordings.get(song_id) not in used_recordings
            and caps.allows(catalog.songs[song_id])
        ]
        if not eligible:
            if widen >= MAX_WIDEN:
                break  # nothing within reach is allowed any more (caps, copies, repeats)
            widen += 1
            k = POOL_PER_QUERY * 2**widen + len(banned) + len(chosen)
            more = catalog.nearest(target, k)
            if set(more) <= set(pool) and catalog.last_hits < k:
                break  # the catalog has nothing left to offer
            pool.update(dict.fromkeys(more))
            continue
        matrix = np.stack([catalog.vectors[song_id] for song_id in eligible])
        closeness = matrix @ target
        score = weight * closeness
        if chosen_vectors:
            score -= (1 - weight) * np.max(matrix @ np.stack(chosen_vectors).T, axis=1)
        if steer_matrix is not None:
            score -= STEER_WEIGHT * np.maximum(0.0, np.max(matrix @ steer_matrix.T, axis=1))
        best = int(np.argmax(score))
        song_id = eligible[best]
        song = catalog.songs[song_id]
        chosen.append(Pick(song=song, score=float(closeness[best])))
        chosen_vectors.append(catalog.vectors[song_id])
        banned.add(song_id)
        caps.add(song)
        if song_id in catalog.recordings:
            used_recordings.add(catalog.recordings[song_id])
        recent = np.mean(np.stack(chosen_vectors[-RECENT:]), axis=0)
        target = _unit((1 - DRIFT) * centre + DRIFT * _unit(recent))
    return chosen


def slerp(a: FloatArray, b: FloatArray, t: float) -> FloatArray:
    """The point a fraction `t` of the way from unit vector `a` to unit vector `b` along the great circle."""
    dot = float(np.clip(np.dot(a, b), -1.0, 1.0))
    omega = float(np.arccos(dot))
    if omega < 1e-6:
        return _unit((1 - t) * a + t * b)
    return _unit((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega))


def song_path(start: UUID, end: UUID, *, steps: int, duplicates: bool = False) -> list[Pick]:
    """`steps` ready songs that move evenly from `start` to `end`: at each point of the great circle between their
    vectors, the nearest song not used yet (neither end, no song twice, and unless `duplicates` one per
    recording)."""
    if start == end:
        raise InvalidState("A path needs two different songs.")
    catalog = _Catalog(duplicates=duplicates)
    ends = catalog.seed_vectors([start, end], what="song")
    a, b = _unit(ends[start]), _unit(ends[end])
    used = {start, end}
    used_recordings = {catalog.recordings[s] for s in (start, end) if s in catalog.recordings}
    path: list[Pick] = []
    for step in range(1, steps + 1):
        point = slerp(a, b, step / (steps + 1))
        for song_id in catalog.nearest(point, PATH_SPARE + len(used)):
            recording = catalog.recordings.get(song_id)
            if song_id in used or (recording is not None and recording in used_recordings):
                continue
            path.append(Pick(song=catalog.songs[song_id], score=float(catalog.vectors[song_id] @ point)))
            used.add(song_id)
            if recording is not None:
                used_recordings.add(recording)
            break
    return path
