"""Writes to playlists: create, rename, reorder and edit, delete."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from catalog.errors import CatalogError
from catalog.models import Song, SongStatus
from playlists.models import Playlist, PlaylistEntry


class InvalidPlaylist(CatalogError):
    code = "invalid_playlist"


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())[:200]
    if not cleaned:
        raise InvalidPlaylist("A playlist needs a name.")
    return cleaned


def _check_songs(song_ids: Sequence[UUID]) -> list[UUID]:
    if len(song_ids) > settings.PLAYLIST_MAX_SONGS:
        raise InvalidPlaylist(f"A playlist holds at most {settings.PLAYLIST_MAX_SONGS} songs.")
    found = set(Song.objects.filter(pk__in=song_ids).exclude(status=SongStatus.DELETING).values_list("pk", flat=True))
    missing = [str(song_id) for song_id in dict.fromkeys(song_ids) if song_id not in found]
    if missing:
        raise InvalidPlaylist(f"No song with id {', '.join(missing)}.")
    return list(song_ids)


def _write_entries(playlist: Playlist, song_ids: list[UUID]) -> None:
    PlaylistEntry.objects.filter(playlist=playlist).delete()
    PlaylistEntry.objects.bulk_create(
        PlaylistEntry(playlist=playlist, song_id=song_id, position=i) for i, song_id in enumerate(song_ids)
    )


def create_playlist(owner: User, *, name: str, song_ids: Sequence[UUID]) -> Playlist:
    cleaned, songs = _clean_name(name), _check_songs(song_ids)
    with transaction.atomic():
        playlist = Playlist.objects.create(owner=owner, name=cleaned)
        # A song deleted meanwhile fails the foreign key at commit: the whole save is refused, nothing half-written.
        _write_entries(playlist, songs)
    return playlist


def update_playlist(playlist: Playlist, *, name: str | None = None, song_ids: Sequence[UUID] | None = None) -> Playlist:
    """Rename it and/or replace its songs (in their new order); what is not given is kept."""
    cleaned = _clean_name(name) if name is not None else None
    songs = _check_songs(song_ids) if song_ids is not None else None
    with transaction.atomic():
        locked = Playlist.objects.select_for_update().get(pk=playlist.pk)
        if cleaned is not None:
            locked.name = cleaned
        locked.save()  # bumps updated_at, also when only the songs change
        if songs is not None:
            _write_entries(locked, songs)
    return locked


def delete_playlist(playlist: Playlist) -> None:
    playlist.delete()
