from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from playlists.models import Playlist, PlaylistEntry


class PlaylistEntryInline(admin.TabularInline[PlaylistEntry, Playlist]):
    model = PlaylistEntry
    extra = 0
    raw_id_fields = ["song"]
    fields = ["position", "song"]


@admin.register(Playlist)
class PlaylistAdmin(admin.ModelAdmin[Playlist]):
    """Staff see every user's playlists."""

    list_display = ["name", "owner", "songs", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["name", "owner__username"]
    list_filter = ["updated_at"]
    raw_id_fields = ["owner"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [PlaylistEntryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Playlist]:
        return super().get_queryset(request).annotate(entry_count=Count("entries"))

    @admin.display(description="Songs", ordering="entry_count")
    def songs(self, playlist: Any) -> int:
        return int(playlist.entry_count)
