"""Reads of the catalog."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Lower
from django.http import Http404

from catalog import recordings, textsearch
from catalog.clips import clip_vector
from catalog.errors import InvalidClip, NotSearchable, ServiceUnavailable
from catalog.models import Song, SongStatus, SongTag
from embeddings.audio import decode
from embeddings.base import EmbeddingError, FloatArray
from embeddings.index import IndexUnavailable, VectorIndex, VectorIndexError, get_vector_index
from embeddings.registry import active_model_name, model_dim
from fingerprints.index import FingerprintIndexError
from fingerprints.selectors import identify as fingerprint_identify

SORTS = {"newest": "-created_at", "oldest": "created_at", "title": "title", "artist": "artist"}


# Stale entries are never read (the stamp is in the key); this only bounds how long they take up room.
TAG_COUNTS_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Neighbour:
    song: Song
    score: float


def song_list(
    *, search: str = "", status: str = "", tag: str = "", sort: str = "newest", to_count: bool = False
) -> QuerySet[Song]:
    """The catalog list; `to_count`: the same songs, planned for counting them rather than for a page."""
    songs = Song.objects.exclude(status=SongStatus.DELETING).prefetch_related("tags")
    if search:
        # Each database's own text index; the same songs on both (see catalog/textsearch.py).
        songs = textsearch.matching(songs, search, to_count=to_count)
    if status:
        songs = songs.filter(status=status)
    if tag:
        songs = songs.filter(_holding(tag, walk=songs_tagged(tag) > (_COUNT_WALK_ABOVE if to_count else _WALK_ABOVE)))
    return songs.order_by(SORTS.get(sort, "-created_at"), "id")


def listed_count(status: str = "") -> int:
    """How many songs `song_list(status=status)` holds, without a search or tag: the table's rows less those it
    leaves out, which the status index finds directly (a few in a working catalog). A count with a condition reads
    every row (16 ms at 100k songs on SQLite), where a bare count reads the table's pages (2 ms)."""
    if status == SongStatus.DELETING:
        return 0
    left_out = [value for value in SongStatus.values if status and value != status] or [SongStatus.DELETING]
    # Two statements, no transaction (SQLite's would take the write lock): a song changing in between moves the
    # count by one for this page at most, as if it had changed just before or after.
    return Song.objects.count() - Song.objects.filter(status__in=left_out).count()


def search_match_count(search: str) -> int | None:
    """How many songs `song_list(search=search)` holds, when the text index tells without reading them (SQLite):
    a count that reads up to SEARCH_COUNT_LIMIT songs takes 13-16 ms at 100k songs, this one 3-5 ms."""
    return textsearch.match_count(search, left_out=SongStatus.DELETING)


# A tag held by more songs than this is listed by walking the sort's index and checking each song's tags (a page
# reads about 25 x songs / holders rows); a rarer one by reading its holders from the label index and sorting them.
_WALK_ABOVE = 2000
# Counting stops at SEARCH_COUNT_LIMIT + 1 songs, so a walk reads about 1000 x songs / holders rows.
_COUNT_WALK_ABOVE = 20_000


def _holding(tag: str, *, walk: bool) -> Q | Exists:
    """Songs with sound tag `tag` (any letter case), planned for a common tag (`walk`) or a rare one."""
    labelled = SongTag.objects.annotate(lower=Lower("label")).filter(lower=Lower(Value(tag)))
    if walk:
        return Exists(labelled.filter(song_id=OuterRef("pk")))
    # A subquery on the lower(label) index, not a join: no DISTINCT over every matching row.
    return Q(pk__in=labelled.values("song_id"))


def tag_counts(limit: int = 50) -> list[tuple[str, int]]:
    """The most common sound tags in the catalog, for filters (songs being deleted left out)."""
    return _all_tag_counts()[:limit]


def songs_tagged(tag: str) -> int:
    """How many listed songs hold sound tag `tag` (any letter case), from the shared tag counts."""
    wanted = tag.lower()
    return sum(songs for label, songs in _all_tag_counts() if label.lower() == wanted)


def _all_tag_counts() -> list[tuple[str, int]]:
    """Every label with its songs, most common first: counted once per catalog change, for every process.

    Counting groups every tag row (about 5 a song), so the answer is kept in the shared cache under the catalog's
    stamp; a request that finds it there reads three index entries.
    """
    key = f"tag-counts:v2:{catalog_stamp()}"  # the stamp first: a change while counting makes a new key
    cached: list[tuple[str, int]] | None = cache.get(key)
    if cached is None:
        # COUNT(id) reads the label index alone (it holds the row id); COUNT(song) would visit every row.
        counts = Counter(dict(SongTag.objects.values_list("label").annotate(songs=Count("id")).order_by()))
        # The few songs being deleted still hold their tags until they are gone: read through the status index.
        deleting = Song.objects.filter(status=SongStatus.DELETING).values("pk")
        going = SongTag.objects.filter(song_id__in=deleting).values_list("label").annotate(n=Count("id"))
        counts.subtract(dict(going.order_by()))
        cached = sorted(((label, n) for label, n in counts.items() if n > 0), key=lambda item: (-item[1], item[0]))
        cache.set(key, cached, TAG_COUNTS_SECONDS)
    return cached


def catalog_stamp() -> str:
    """Changes whenever a song is added, changed or deleted, or a tag added: three indexed reads."""
    latest = Song.objects.aggregate(latest=Max("updated_at"))["latest"]  # alone, so that it reads one index entry
    changed = latest.timestamp() if latest else None
    return f"{Song.objects.count()}:{changed}:{SongTag.objects.aggregate(latest=Max('pk'))['latest']}"


@dataclass(frozen=True)
class CatalogStats:
    songs: int
    audio_hours: float
    bytes: int
    by_status: dict[str, int]
    by_model: dict[str, int]
    top_tags: list[tuple[str, int]]


def catalog_stats() -> CatalogStats:
    totals = Song.objects.aggregate(songs=Count("id"), seconds=Sum("duration_seconds"), bytes=Sum("size"))
    by_status = dict(Song.objects.values_list("status").annotate(n=Count("id")).order_by("status"))
    by_model = dict(Song.objects.filter(status=SongStatus.READY).values_list("embedding_model").annotate(n=Count("id")))
    return CatalogStats(
        songs=totals["songs"] or 0,
        audio_hours=(totals["seconds"] or 0.0) / 3600,
        bytes=totals["bytes"] or 0,
        by_status=by_status,
        by_model=by_model,
        top_tags=tag_counts(10),
    )


def song_get(song_id: UUID | str, *, include_deleting: bool = False, with_tags: bool = True) -> Song:
    songs = Song.objects.all() if include_deleting else Song.objects.exclude(status=SongStatus.DELETING)
    if with_tags:
        songs = songs.prefetch_related("tags")
    try:
        return songs.get(pk=song_id)
    except (Song.DoesNotExist, ValueError):
        raise Http404(f"No song with id {song_id}.") from None


def songs_to_reembed(model_name: str, *, include_current: bool = False) -> QuerySet[Song]:
    """Ready songs whose vector comes from another model (or every ready song with `include_current`)."""
    songs = Song.objects.filter(status=SongStatus.READY)
    if not include_current:
        songs = songs.exclude(embedding_model=model_name)
    return songs.order_by("created_at", "id")


def similar_to_clip(path: Path, *, limit: int = 10, duplicates: bool = False) -> list[Neighbour]:
    """Ready songs that sound most like an audio clip, which a worker embeds; the clip is never catalogued."""
    model, vector = clip_vector(path)
    return _neighbours(
        get_vector_index(model, model_dim(model)), vector, limit=limit, exclude_song=None, duplicates=duplicates
    )


def _neighbours(
    index: VectorIndex, vector: FloatArray, *, limit: int, exclude_song: Song | None, duplicates: bool = False
) -> list[Neighbour]:
    """The nearest ready songs; unless `duplicates`, one per recording and none of `exclude_song`'s recording."""
    # Spare hits: some may belong to songs deleted or re-queued since they were indexed, or to one recording.
    spare = 5 if duplicates else limit + 5
    try:
        hits = index.search(vector, limit + spare, exclude_file=exclude_song.object_key if exclude_song else None)
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"Search is unavailable right now: {exc}") from exc
    except VectorIndexError as exc:
        raise ServiceUnavailable(f"Search failed: {exc}") from exc
    songs = Song.objects.in_bulk([hit.song_id for hit in hits])
    neighbours = [
        Neighbour(song=songs[hit.song_id], score=hit.score)
        for hit in hits
        if hit.song_id in songs
        and songs[hit.song_id].status == SongStatus.READY
        and (exclude_song is None or hit.song_id != exclude_song.pk)
    ]
    if not duplicates:
        seen = [exclude_song.pk] if exclude_song is not None else []
        neighbours = recordings.collapse(neighbours, lambda n: n.song.pk, also_seen=seen)
    return neighbours[:limit]


def more_like_this(song: Song, *, limit: int = 10, duplicates: bool = False) -> list[Neighbour]:
    """The ready songs that sound most like `song`, best first, never `song` itself (nor, unless `duplicates`, its
    other copies, and one song per recording)."""
    if song.status != SongStatus.READY:
        raise NotSearchable(f"This song is {song.get_status_display().lower()}; neighbours appear once it is ready.")
    model = active_model_name()
    if song.embedding_model != model:
        raise NotSearchable(
            f"This song was embedded with {song.embedding_model or 'no model'}, but the catalog now uses {model}; "
            "run `python manage.py reindex` to compare it."
        )
    index = get_vector_index(model, model_dim(model))
    try:
        vector = index.get(song.id)
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"Search is unavailable right now: {exc}") from exc
    if vector is None:
        raise NotSearchable("This song is not in the search index yet; try again in a moment.")
    return _neighbours(index, vector, limit=limit, exclude_song=song, duplicates=duplicates)


def unreturned_song_count(
    neighbours: list[Neighbour], *, limit: int, model: str, exclude_song: Song | None = None, duplicates: bool = False
) -> int:
    """How many ready songs of `model` a short list left out: just stored, not yet served by the index, or lost.

    Atlas indexes a write a moment after it is stored, so a list shorter than `limit` is compared with the
    catalog rather than passed off as complete. Full lists cost no query.
    """
    if len(neighbours) >= limit:
        return 0
    ready = Song.objects.filter(status=SongStatus.READY, embedding_model=model)
    if exclude_song is not None:
        ready = ready.exclude(pk=exclude_song.pk)
    listable = ready.count() if duplicates else recordings.distinct_count(ready, exclude_song=exclude_song)
    return max(0, min(limit, listable) - len(neighbours))


def shortfall_notice(missing: int) -> str:
    if not missing:
        return ""
    songs = "1 ready song is" if missing == 1 else f"{missing} ready songs are"
    return (
        f"{songs} not in these results yet: the search index has not caught up with them. Try again in a moment; "
        "if it lasts, run `python manage.py check_consistency --fix`."
    )


def ready_song_count() -> int:
    """How many songs can be searched by sound right now."""
    return listed_count(SongStatus.READY)


@dataclass(frozen=True)
class Identification:
    song: Song
    offset_seconds: float
    confidence: float
    runner_up: Song | None
    runner_up_offset_seconds: float | None


def identify_clip(path: Path) -> Identification | None:
    """Which catalog song a clip (possibly noisy or re-encoded) was cut from; None below the confidence bar."""
    try:
        audio = decode(path, max_seconds=settings.FINGERPRINT_MAX_QUERY_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
    except EmbeddingError as exc:
        raise InvalidClip(f"The clip cannot be used: {exc}.") from exc
    ready: dict[UUID, Song] = {}

    def live(song_ids: list[UUID]) -> set[UUID]:
        # One query for the candidates, by primary key (with `status = ready` in the query, SQLite walks the status
        # index over every ready song instead: 75 ms at 100k songs); their rows are kept for the answer.
        rows = Song.objects.in_bulk(song_ids)
        ready.update({pk: song for pk, song in rows.items() if song.status == SongStatus.READY})
        return set(ready)

    try:
        match = fingerprint_identify(audio.samples, live=live, recording_of=recordings.recording_of)
    except FingerprintIndexError as exc:
        raise ServiceUnavailable(f"Identification is unavailable right now: {exc}") from exc
    if match is None:
        return None
    song = ready.get(match.song_id)
    if song is None:
        return None
    runner_up = ready.get(match.runner_up.song_id) if match.runner_up is not None else None
    return Identification(
        song=song,
        offset_seconds=match.offset_seconds,
        confidence=match.confidence,
        runner_up=runner_up,
        runner_up_offset_seconds=match.runner_up.offset_seconds if runner_up and match.runner_up else None,
    )
