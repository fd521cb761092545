"""Server-rendered pages; every read goes through `catalog.selectors`, the API does the writes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from catalog import recordings, selectors, services
from catalog.api.permissions import visitor_of
from catalog.api.serializers import SongSerializer
from catalog.errors import CatalogError
from catalog.models import SongStatus
from embeddings.registry import active_model_name

NEIGHBOUR_LIMIT = 10
PARALLEL_UPLOADS = 3
PLACEHOLDER_ID = UUID(int=0)
# Statuses that will change by themselves; the song page polls while the song is in one.
IN_PROGRESS = {SongStatus.PENDING_UPLOAD, SongStatus.UPLOADED, SongStatus.PROCESSING}
# How long toasts stay before they dismiss themselves (the timer pauses while hovered or focused).
TOAST_SUCCESS_MS = 6000
TOAST_ERROR_MS = 10000
SIMILAR_LIMITS = (5, 10, 20)
PATH_STEPS = 8


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def public_or_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Pages are open to everyone unless PUBLIC_CATALOG is false; then visitors log in first."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.PUBLIC_CATALOG and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _page(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """Render a page with what the base layout needs: the active model and the toast timings."""
    return render(
        request,
        template,
        {
            "embedding_model": active_model_name(),
            "toast_ms": {"success": TOAST_SUCCESS_MS, "error": TOAST_ERROR_MS},
            **context,
        },
    )


def _song_urls() -> dict[str, str]:
    # Per-song addresses carry a placeholder id that the scripts swap for the real one.
    return {
        "songDetail": reverse("api-song-detail", args=[PLACEHOLDER_ID]),
        "songPage": reverse("song-detail", args=[PLACEHOLDER_ID]),
    }


@require_safe
@ensure_csrf_cookie
@public_or_login
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        visitor_of(request, create=True)  # before the page's parallel uploads, so they all share one session
    config = {
        "maxUploadMb": settings.MAX_UPLOAD_MB,
        "acceptedContentTypes": sorted(services.AUDIO_CONTENT_TYPES),
        "parallelUploads": PARALLEL_UPLOADS,
        "songIdPlaceholder": str(PLACEHOLDER_ID),
        "emptyText": "No songs yet — drop some audio above to start the catalog.",
        "urls": {
            **_song_urls(),
            "uploads": reverse("api-upload-create"),
            "songs": reverse("api-song-list"),
            "tags": reverse("api-tag-list"),
            "songUploaded": reverse("api-song-uploaded", args=[PLACEHOLDER_ID]),
            "songRetry": reverse("api-song-retry", args=[PLACEHOLDER_ID]),
            "radioPage": reverse("radio"),
            "playlists": reverse("api-playlist-list"),
            "playlistPage": reverse("playlist-detail", args=[PLACEHOLDER_ID]),
            "pathPage": reverse("path"),
        },
    }
    return _page(request, "frontend/home.html", {"config": config, "statuses": SongStatus.choices})


def _clip_page(request: HttpRequest, template: str, *, endpoint: str, url_name: str, **extra: Any) -> HttpResponse:
    """A page that sends one audio clip to `url_name` (find similar, identify)."""
    config = {
        "maxClipMb": settings.SIMILAR_CLIP_MAX_MB,
        "acceptedContentTypes": sorted(services.AUDIO_CONTENT_TYPES),
        "songIdPlaceholder": str(PLACEHOLDER_ID),
        "urls": {**_song_urls(), endpoint: reverse(url_name), "home": reverse("home")},
    }
    context = {
        "config": config,
        "ready_count": selectors.ready_song_count(),
        "max_clip_mb": settings.SIMILAR_CLIP_MAX_MB,
        **extra,
    }
    return _page(request, template, context)


@require_safe
@ensure_csrf_cookie
@public_or_login
def similar(request: HttpRequest) -> HttpResponse:
    return _clip_page(
        request,
        "frontend/similar.html",
        endpoint="similar",
        url_name="api-search-similar",
        max_clip_seconds=round(settings.SIMILAR_CLIP_MAX_SECONDS),
        limits=SIMILAR_LIMITS,
        default_limit=10,
    )


@require_safe
@ensure_csrf_cookie
@public_or_login
def identify(request: HttpRequest) -> HttpResponse:
    return _clip_page(request, "frontend/identify.html", endpoint="identify", url_name="api-identify")


@require_safe
@ensure_csrf_cookie
@public_or_login
def song_detail(request: HttpRequest, song_id: UUID) -> HttpResponse:
    song = selectors.song_get(song_id)
    neighbours: list[selectors.Neighbour] = []
    neighbours_error = ""
    neighbours_notice = ""
    try:
        neighbours = selectors.more_like_this(song, limit=NEIGHBOUR_LIMIT)
        missing = selectors.unreturned_song_count(
            neighbours, limit=NEIGHBOUR_LIMIT, model=song.embedding_model, exclude_song=song
        )
        neighbours_notice = selectors.shortfall_notice(missing)
    except CatalogError as exc:
        neighbours_error = str(exc)
    playback = SongSerializer().get_playback_url
    context = {
        "song": song,
        "duplicates": recordings.duplicates_of(song),
        "duration": format_duration(song.duration_seconds),
        "playback_url": playback(song),
        "in_progress": song.status in IN_PROGRESS,
        "can_retry": song.status == SongStatus.FAILED,
        "neighbours": [
            {
                "song": n.song,
                "score": n.score,
                "duration": format_duration(n.song.duration_seconds),
                "playback_url": playback(n.song),
            }
            for n in neighbours
        ],
        "neighbours_error": neighbours_error,
        "neighbours_notice": neighbours_notice,
        "config": {
            "songId": str(song.id),
            "status": song.status,
            "size": song.size,
            "canRadio": song.status == SongStatus.READY,
            "playlistName": f"Radio: {song.display_title}"[:200],
            **_queue_config(),
            "urls": {
                **_queue_config()["urls"],
                "detail": reverse("api-song-detail", args=[song.id]),
                "retry": reverse("api-song-retry", args=[song.id]),
            },
        },
    }
    return _page(request, "frontend/song.html", context)


def _queue_config() -> dict[str, Any]:
    """What the queue player (radio, paths) needs."""
    return {
        "songIdPlaceholder": str(PLACEHOLDER_ID),
        "urls": {
            **_song_urls(),
            "radio": reverse("api-radio"),
            "path": reverse("api-path"),
            "playlists": reverse("api-playlist-list"),
        },
    }


def _song_ids(values: list[str]) -> list[UUID]:
    ids = []
    for value in values:
        try:
            ids.append(UUID(value))
        except ValueError:
            continue  # a mangled address: the page says what is missing
    return ids


@require_safe
@ensure_csrf_cookie
@public_or_login
def radio_page(request: HttpRequest) -> HttpResponse:
    """A radio from the songs picked in the catalog (?seed=<id>&seed=<id>…)."""
    seeds = _song_ids(request.GET.getlist("seed"))
    songs = list(selectors.song_list().filter(pk__in=seeds))
    config = {**_queue_config(), "seeds": [str(song.pk) for song in songs], "playlistName": "Radio"}
    return _page(request, "frontend/radio.html", {"config": config, "seeds": songs})


@require_safe
@ensure_csrf_cookie
@public_or_login
def path_page(request: HttpRequest) -> HttpResponse:
    """Songs leading from one song to another (?from=<id>&to=<id>&steps=N), played in order."""
    ends = _song_ids([request.GET.get("from", ""), request.GET.get("to", "")])
    steps = request.GET.get("steps", "")
    steps_value = int(steps) if steps.isdigit() else PATH_STEPS
    config = {
        **_queue_config(),
        "from": str(ends[0]) if len(ends) == 2 else "",
        "to": str(ends[1]) if len(ends) == 2 else "",
        "steps": max(1, min(steps_value, settings.RADIO_MAX_LENGTH)),
        "playlistName": "Path",
    }
    on_map = f"{reverse('map')}?{urlencode({'from': config['from'], 'to': config['to'], 'steps': config['steps']})}"
    context = {"config": config, "queue_heading": "Path", "map_url": on_map if config["from"] else ""}
    return _page(request, "frontend/path.html", context)


@require_safe
@ensure_csrf_cookie
@public_or_login
def catalog_map(request: HttpRequest) -> HttpResponse:
    colour_by = request.GET.get("colour_by", "album")
    ends = _song_ids([request.GET.get("from", ""), request.GET.get("to", "")])  # a path drawn as a line
    steps = request.GET.get("steps", "")
    config = {
        "colourBy": colour_by if colour_by in ("album", "tag") else "album",
        "songIdPlaceholder": str(PLACEHOLDER_ID),
        "urls": {
            **_song_urls(),
            "map": reverse("api-map"),
            "home": reverse("home"),
            "path": reverse("api-path"),
            "pathPage": reverse("path"),
        },
        "path": {
            "from": str(ends[0]),
            "to": str(ends[1]),
            "steps": max(1, min(int(steps) if steps.isdigit() else PATH_STEPS, settings.RADIO_MAX_LENGTH)),
        }
        if len(ends) == 2
        else None,
    }
    return _page(request, "frontend/map.html", {"config": config})
