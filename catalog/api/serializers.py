from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from catalog.models import Song, SongStatus, SongTag
from catalog.storage import get_storage


class UploadRequestSerializer(serializers.Serializer):
    file_name = serializers.CharField(max_length=255)
    content_type = serializers.CharField(max_length=100, allow_blank=True)
    size = serializers.IntegerField(min_value=0)


class SongTagSerializer(serializers.ModelSerializer):
    class Meta:
        model = SongTag
        fields = ["label", "score"]
        read_only_fields = fields


class SongSerializer(serializers.ModelSerializer):
    playback_url = serializers.SerializerMethodField()
    tags = SongTagSerializer(many=True, read_only=True)

    class Meta:
        model = Song
        fields = [
            "id",
            "title",
            "artist",
            "album",
            "duration_seconds",
            "original_file_name",
            "content_type",
            "size",
            "status",
            "failure_reason",
            "ingest_note",
            "embedding_model",
            "tags",
            "created_at",
            "updated_at",
            "playback_url",
        ]
        read_only_fields = fields

    def get_playback_url(self, song: Song) -> str | None:
        if song.status == SongStatus.PENDING_UPLOAD:
            return None
        return get_storage().playback_url(song.object_key, expires_in=settings.PLAYBACK_URL_EXPIRY_SECONDS)


class SongBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Song
        fields = ["id", "title", "artist", "album", "duration_seconds", "original_file_name", "status"]
        read_only_fields = fields


class PlayableSongSerializer(SongBriefSerializer):
    """A song with what a player needs: its playback URL (presigned, expiring)."""

    playback_url = serializers.SerializerMethodField()

    class Meta(SongBriefSerializer.Meta):
        fields = [*SongBriefSerializer.Meta.fields, "playback_url"]
        read_only_fields = fields

    def get_playback_url(self, song: Song) -> str | None:
        return SongSerializer().get_playback_url(song)


class DuplicateSerializer(serializers.Serializer):
    song = SongBriefSerializer()
    excerpt = serializers.BooleanField(help_text="The song holds only part of the recording")
    offset_seconds = serializers.FloatField(help_text="Where it starts in the longest copy it was matched with")


class DuplicatesResponseSerializer(serializers.Serializer):
    song_id = serializers.UUIDField()
    results = DuplicateSerializer(many=True)


class NeighbourSerializer(serializers.Serializer):
    song = SongBriefSerializer()
    score = serializers.FloatField()


# Response shapes, for the OpenAPI schema.


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class UploadTargetSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=["PUT", "POST"])
    url = serializers.URLField()
    fields = serializers.DictField(child=serializers.CharField(), help_text="Form fields to send before the file")  # type: ignore[assignment]  # the response field is named "fields"
    headers = serializers.DictField(child=serializers.CharField(), help_text="Headers to send with a PUT")
    expires_in = serializers.IntegerField()


class UploadResponseSerializer(serializers.Serializer):
    song_id = serializers.UUIDField()
    upload = UploadTargetSerializer()
    song = SongSerializer()


class NeighboursResponseSerializer(serializers.Serializer):
    song_id = serializers.UUIDField(required=False)
    model = serializers.CharField()
    results = NeighbourSerializer(many=True)
    complete = serializers.BooleanField(help_text="False when ready songs are missing from a short list.")
    notice = serializers.CharField(help_text="Why the list is short, when it is; else empty.")


class TagCountSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # the response field is named "label"
    songs = serializers.IntegerField()


class TagListSerializer(serializers.Serializer):
    results = TagCountSerializer(many=True)


class SystemSerializer(serializers.Serializer):
    embedding_model = serializers.CharField()
    embedding_dim = serializers.IntegerField()
    vector_backend = serializers.CharField()
    storage_backend = serializers.CharField()
    max_upload_mb = serializers.IntegerField()
    accepted_content_types = serializers.ListField(child=serializers.CharField())


class CatalogMapSerializer(serializers.Serializer):
    """Columnar, so that 100k songs are a few MB: point i is ids[i], (x[i], y[i]), groups[group[i]], titles[i]."""

    age_seconds = serializers.FloatField(allow_null=True, help_text="How old the stored projection is")
    model = serializers.CharField()
    colour_by = serializers.ChoiceField(choices=["album", "tag"])
    explained_variance = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        help_text="Share of the total variance each of the two components explains",
    )
    groups = serializers.ListField(
        child=serializers.CharField(), help_text='Every album or top tag on the map, sorted; "Unknown" when empty'
    )
    count = serializers.IntegerField(help_text="Points on the map")
    ids = serializers.CharField(help_text="Base64 of the songs' UUIDs, 16 bytes each, in point order")
    x = serializers.CharField(help_text="Base64 of little-endian float32: first principal component, in [-1, 1]")
    y = serializers.CharField(help_text="Base64 of little-endian float32: second principal component, in [-1, 1]")
    group = serializers.CharField(help_text="Base64 of little-endian uint32: each point's index into `groups`")
    titles = serializers.ListField(child=serializers.CharField(), help_text="The title, or the file name")
    artists = serializers.ListField(child=serializers.CharField(allow_blank=True))
    computed_at = serializers.DateTimeField(allow_null=True, help_text="When the stored projection was computed")
    projected_songs = serializers.IntegerField(help_text="Ready songs the stored projection covers")
    placed_since = serializers.IntegerField(help_text="Songs ready since, placed on the stored projection's axes")
    pending = serializers.IntegerField(help_text="Ready songs not on the map yet; a projection is queued for them")


class IdentifiedSongSerializer(serializers.Serializer):
    song = SongBriefSerializer()
    offset_seconds = serializers.FloatField(allow_null=True, help_text="Where the clip starts in the song")
    confidence = serializers.FloatField(required=False)


class IdentifyResponseSerializer(serializers.Serializer):
    match = IdentifiedSongSerializer(allow_null=True)
    runner_up = IdentifiedSongSerializer(allow_null=True, required=False)
    detail = serializers.CharField(required=False)
