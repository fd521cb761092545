"""Reads of the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from catalog.errors import NotSearchable, ServiceUnavailable
from catalog.models import Song, SongStatus, SongTag
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.registry import active_model_name, model_dim

SORTS = {"newest": "-created_at", "oldest": "created_at", "title": "title", "artist": "artist"}


@dataclass(frozen=True)
class Neighbour:
    song: Song
    score: float


def song_list(*, search: str = "", status: str = "", tag: str = "", sort: str = "newest") -> QuerySet[Song]:
    songs = Song.objects.prefetch_related("tags")
    if search:
        songs = songs.filter(
            Q(title__icontains=search)
            | Q(artist__icontains=search)
            | Q(album__icontains=search)
            | Q(original_file_name__icontains=search)
        )
    if status:
        songs = songs.filter(status=status)
    if tag:
        songs = songs.filter(tags__label__iexact=tag).distinct()
    return songs.order_by(SORTS.get(sort, "-created_at"), "id")


def tag_counts(limit: int = 50) -> list[tuple[str, int]]:
    """The most common sound tags in the catalog, for filters."""
    rows = SongTag.objects.values("label").annotate(songs=Count("song")).order_by("-songs", "label")[:limit]
    return [(row["label"], row["songs"]) for row in rows]


def song_get(song_id: UUID | str) -> Song:
    try:
        return Song.objects.prefetch_related("tags").get(pk=song_id)
    except (Song.DoesNotExist, ValueError):
        raise Http404(f"No song with id {song_id}.") from None


def more_like_this(song: Song, *, limit: int = 10) -> list[Neighbour]:
    """The ready songs that sound most like `song`, best first, never `song` itself."""
    if song.status != SongStatus.READY:
        raise NotSearchable(f"This song is {song.get_status_display().lower()}; neighbours appear once it is ready.")
    model = active_model_name()
    if song.embedding_model != model:
        raise NotSearchable(
            f"This song was embedded with {song.embedding_model or 'no model'}, but the catalog now uses {model}; "
            "re-embed it to compare."
        )
    index = get_vector_index(model, model_dim(model))
    try:
        vector = index.get(song.id)
        if vector is None:
            raise NotSearchable("This song is not in the search index yet; try again in a moment.")
        # Ask for a few spare hits: some may belong to songs deleted or re-queued since they were indexed.
        hits = index.search(vector, limit + 5, exclude_file=song.object_key)
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"Search is unavailable right now: {exc}") from exc
    songs = Song.objects.in_bulk([hit.song_id for hit in hits if hit.song_id != song.id])
    neighbours = [
        Neighbour(song=songs[hit.song_id], score=hit.score)
        for hit in hits
        if hit.song_id in songs and songs[hit.song_id].status == SongStatus.READY
    ]
    return neighbours[:limit]
