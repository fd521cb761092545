from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from catalog import selectors


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/home.html", {})


def song_detail(request: HttpRequest, song_id: UUID) -> HttpResponse:
    return render(request, "frontend/song.html", {"song": selectors.song_get(song_id)})
