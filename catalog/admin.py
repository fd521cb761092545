from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from catalog import recordings, services
from catalog.errors import CatalogError
from catalog.models import RecordingLink, Song, SongStatus, SongTag


class SongTagInline(admin.TabularInline[SongTag, Song]):
    model = SongTag
    extra = 0
    readonly_fields = ["label", "score"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


READ_ONLY_FIELDS = [
    "id",
    "status",
    "failure_reason",
    "ingest_note",
    "embedding_model",
    "duration_seconds",
    "original_file_name",
    "object_key",
    "content_type",
    "size",
    "sha256",
    "uploaded_by",
    "ingest_attempts",
    "created_at",
    "updated_at",
]


class HasDuplicatesFilter(admin.SimpleListFilter):
    """Songs that share their recording with another song (another encoding, a trim, an excerpt)."""

    title = "has duplicates"
    parameter_name = "duplicates"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Song]) -> QuerySet[Song]:
        shared = RecordingLink.objects.values("recording_id").annotate(n=Count("id")).filter(n__gte=2)
        duplicated = RecordingLink.objects.filter(recording_id__in=shared.values("recording_id")).values("song_id")
        if self.value() == "yes":
            return queryset.filter(pk__in=duplicated)
        if self.value() == "no":
            return queryset.exclude(pk__in=duplicated)
        return queryset


@admin.register(Song)
class SongAdmin(admin.ModelAdmin[Song]):
    list_display = [
        "display_title",
        "artist",
        "album",
        "status",
        "embedding_model",
        "duration",
        "tag_list",
        "created_at",
    ]
    list_filter = ["status", "embedding_model", HasDuplicatesFilter, "tags__label"]
    search_fields = ["title", "artist", "album", "original_file_name", "sha256"]
    list_select_related = ["uploaded_by"]
    inlines = [SongTagInline]
    actions = ["reembed", "retry_failed", "delete_everywhere"]
    fields = ["title", "artist", "album", *READ_ONLY_FIELDS, "same_recording"]
    readonly_fields = [*READ_ONLY_FIELDS, "same_recording"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Song]:
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="Duration", ordering="duration_seconds")
    def duration(self, song: Song) -> str:
        if song.duration_seconds is None:
            return "—"
        minutes, seconds = divmod(round(song.duration_seconds), 60)
        return f"{minutes}:{seconds:02d}"

    @admin.display(description="Same recording as")
    def same_recording(self, song: Song) -> str:
        others = recordings.duplicates_of(song)
        return ", ".join(other.song.display_title + (" (excerpt)" if other.excerpt else "") for other in others)

    @admin.display(description="Sound tags")
    def tag_list(self, song: Song) -> str:
        return ", ".join(tag.label for tag in list(song.tags.all())[:3])

    def save_model(self, request: HttpRequest, obj: Song, form: Any, change: bool) -> None:
        services.update_song_details(obj, title=obj.title, artist=obj.artist, album=obj.album)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # songs arrive through uploads or `import_audio`

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by one that also clears storage and the index
        return actions

    def _each(self, request: HttpRequest, songs: QuerySet[Song], action: Any, verb: str) -> None:
        done = 0
        for song in songs:
            try:
                action(song)
                done += 1
            except CatalogError as exc:
                self.message_user(request, f"{song.display_title}: {exc}", messages.WARNING)
        self.message_user(request, f"{verb} {done} of {len(songs)} songs.", messages.SUCCESS)

    @admin.action(description="Re-embed with the active model", permissions=["change"])
    def reembed(self, request: HttpRequest, queryset: QuerySet[Song]) -> None:
        self._each(request, queryset, services.reembed_song, "Queued")

    @admin.action(description="Retry failed songs", permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Song]) -> None:
        self._each(request, queryset.filter(status=SongStatus.FAILED), services.retry_ingest, "Queued")

    @admin.action(description="Delete songs with their files and vectors", permissions=["delete"])
    def delete_everywhere(self, request: HttpRequest, queryset: QuerySet[Song]) -> None:
        self._each(request, queryset, services.delete_song, "Deleted")

    def delete_model(self, request: HttpRequest, obj: Song) -> None:
        services.delete_song(obj)
