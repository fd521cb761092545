"""Server-rendered pages; every read goes through `catalog.selectors`, the API does the writes."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from catalog import selectors, services
from catalog.api.serializers import SongSerializer
from catalog.errors import CatalogError
from catalog.models import SongStatus
from embeddings.registry import active_model_name

NEIGHBOUR_LIMIT = 10
PARALLEL_UPLOADS = 3
PLACEHOLDER_ID = UUID(int=0)
# Statuses that will change by themselves; the song page polls while the song is in one.
IN_PROGRESS = {SongStatus.PENDING_UPLOAD, SongStatus.UPLOADED, SongStatus.PROCESSING}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@require_safe
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    config = {
        "maxUploadMb": settings.MAX_UPLOAD_MB,
        "acceptedContentTypes": sorted(services.AUDIO_CONTENT_TYPES),
        "parallelUploads": PARALLEL_UPLOADS,
        # Per-song addresses carry a placeholder id that the script swaps for the real one.
        "songIdPlaceholder": str(PLACEHOLDER_ID),
        "urls": {
            "uploads": reverse("api-upload-create"),
            "songs": reverse("api-song-list"),
            "tags": reverse("api-tag-list"),
            "songDetail": reverse("api-song-detail", args=[PLACEHOLDER_ID]),
            "songUploaded": reverse("api-song-uploaded", args=[PLACEHOLDER_ID]),
            "songRetry": reverse("api-song-retry", args=[PLACEHOLDER_ID]),
            "songPage": reverse("song-detail", args=[PLACEHOLDER_ID]),
        },
    }
    return render(request, "frontend/home.html", {"embedding_model": active_model_name(), "config": config})


@require_safe
@ensure_csrf_cookie
def song_detail(request: HttpRequest, song_id: UUID) -> HttpResponse:
    song = selectors.song_get(song_id)
    neighbours: list[selectors.Neighbour] = []
    neighbours_error = ""
    try:
        neighbours = selectors.more_like_this(song, limit=NEIGHBOUR_LIMIT)
    except CatalogError as exc:
        neighbours_error = str(exc)
    context = {
        "embedding_model": active_model_name(),
        "song": song,
        "duration": format_duration(song.duration_seconds),
        "playback_url": SongSerializer().get_playback_url(song),
        "in_progress": song.status in IN_PROGRESS,
        "can_retry": song.status == SongStatus.FAILED,
        "neighbours": [
            {"song": n.song, "score": n.score, "duration": format_duration(n.song.duration_seconds)} for n in neighbours
        ],
        "neighbours_error": neighbours_error,
        "config": {
            "songId": str(song.id),
            "status": song.status,
            "urls": {
                "detail": reverse("api-song-detail", args=[song.id]),
                "retry": reverse("api-song-retry", args=[song.id]),
            },
        },
    }
    return render(request, "frontend/song.html", context)
