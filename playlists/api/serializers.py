from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from catalog.api.serializers import PlayableSongSerializer
from playlists.models import Playlist


class PlaylistWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    songs = serializers.ListField(
        child=serializers.UUIDField(), max_length=settings.PLAYLIST_MAX_SONGS, help_text="Song ids in playing order"
    )


class PlaylistUpdateSerializer(PlaylistWriteSerializer):
    name = serializers.CharField(max_length=200, required=False)
    songs = serializers.ListField(child=serializers.UUIDField(), max_length=settings.PLAYLIST_MAX_SONGS, required=False)


class PlaylistSummarySerializer(serializers.ModelSerializer):
    song_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Playlist
        fields = ["id", "name", "song_count", "created_at", "updated_at"]
        read_only_fields = fields


class PlaylistSerializer(serializers.ModelSerializer):
    songs = serializers.SerializerMethodField()

    class Meta:
        model = Playlist
        fields = ["id", "name", "songs", "created_at", "updated_at"]
        read_only_fields = fields

    def get_songs(self, playlist: Playlist) -> Any:
        return PlayableSongSerializer(self.context["songs"], many=True).data
