from __future__ import annotations

from django.contrib import admin

from catalog.models import Song


@admin.register(Song)
class SongAdmin(admin.ModelAdmin[Song]):
    list_display = ["display_title", "artist", "album", "status", "embedding_model", "duration_seconds", "created_at"]
    list_filter = ["status", "embedding_model"]
    search_fields = ["title", "artist", "album", "original_file_name", "sha256"]
    readonly_fields = [
        "id",
        "object_key",
        "original_file_name",
        "content_type",
        "size",
        "sha256",
        "status",
        "failure_reason",
        "ingest_note",
        "embedding_model",
        "ingest_attempts",
        "created_at",
        "updated_at",
    ]
