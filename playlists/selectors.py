"""Reads of playlists."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from catalog.lifecycle import HAS_FILE
from catalog.models import Song
from playlists.models import Playlist


def playlists_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Playlist]:
    """The user's playlists, newest change first, with how many playable songs each holds."""
    return Playlist.objects.filter(owner_id=user.pk).annotate(
        song_count=Count("entries", filter=Q(entries__song__status__in=HAS_FILE))
    )


def playlist_get(playlist_id: UUID | str, user: AbstractBaseUser | AnonymousUser) -> Playlist:
    """The playlist if `user` owns it (staff may open any); 404 otherwise, so others' playlists are not revealed."""
    playlists = Playlist.objects.select_related("owner")
    if not getattr(user, "is_staff", False):
        playlists = playlists.filter(owner_id=user.pk)
    try:
        return playlists.get(pk=playlist_id)
    except (Playlist.DoesNotExist, ValueError):
        raise Http404(f"No playlist with id {playlist_id}.") from None


def playlist_songs(playlist: Playlist) -> list[Song]:
    """Its songs in order; songs being deleted, or without a file to play, are left out."""
    entries = playlist.entries.filter(song__status__in=HAS_FILE).select_related("song").order_by("position")
    return [entry.song for entry in entries]
