"""Playlist pages for a logged-in user; the API does the writes."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from frontend.views import PLACEHOLDER_ID, _page, _queue_config, format_duration
from playlists import selectors


@require_safe
@login_required
def playlist_list(request: HttpRequest) -> HttpResponse:
    return _page(request, "playlists/list.html", {"playlists": selectors.playlists_of(request.user)})


@require_safe
@ensure_csrf_cookie
@login_required
def playlist_detail(request: HttpRequest, playlist_id: UUID) -> HttpResponse:
    playlist = selectors.playlist_get(playlist_id, request.user)
    songs = selectors.playlist_songs(playlist)
    queue = _queue_config()
    config = {
        **queue,
        "playlistId": str(playlist.pk),
        "urls": {
            **queue["urls"],
            "playlist": reverse("api-playlist-detail", args=[playlist.pk]),
            "playlists": reverse("playlists"),
            "songDetail": reverse("api-song-detail", args=[PLACEHOLDER_ID]),
        },
    }
    context = {
        "playlist": playlist,
        "songs": [{"song": song, "duration": format_duration(song.duration_seconds)} for song in songs],
        "config": config,
        "queue_heading": "Playing the playlist",
        "m3u8_url": reverse("api-playlist-export", kwargs={"playlist_id": str(playlist.pk), "format_name": "m3u8"}),
        "xspf_url": reverse("api-playlist-export", kwargs={"playlist_id": str(playlist.pk), "format_name": "xspf"}),
    }
    return _page(request, "playlists/detail.html", context)
