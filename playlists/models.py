from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from catalog.models import Song


class Playlist(models.Model):
    """A named, ordered list of songs that one user saved (a radio, a path or songs picked by hand)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="playlists")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="playlist_owner_recent")]

    def __str__(self) -> str:
        return self.name


class PlaylistEntry(models.Model):
    """One place in a playlist; removed with its song, so a deleted song simply drops out."""

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="entries")
    song = models.ForeignKey(Song, on_delete=models.CASCADE, related_name="playlist_entries")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        verbose_name_plural = "playlist entries"
        constraints = [models.UniqueConstraint(fields=["playlist", "position"], name="one_song_per_place")]

    def __str__(self) -> str:
        return f"{self.position + 1}. {self.song}"
