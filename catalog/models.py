from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class SongStatus(models.TextChoices):
    PENDING_UPLOAD = "pending_upload", "Waiting for upload"
    UPLOADED = "uploaded", "Uploaded"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Being deleted"


class Song(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    object_key = models.CharField(max_length=512, unique=True)
    original_file_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(help_text="Declared size in bytes; checked against the stored object.")
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)

    title = models.CharField(max_length=500, blank=True)
    artist = models.CharField(max_length=500, blank=True)
    album = models.CharField(max_length=500, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    status = models.CharField(max_length=20, choices=SongStatus.choices, default=SongStatus.PENDING_UPLOAD)
    failure_reason = models.TextField(blank=True)
    ingest_note = models.TextField(blank=True, help_text="Something a listener should know, e.g. a cut length.")
    embedding_model = models.CharField(max_length=64, blank=True)
    ingest_attempts = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="songs"
    )
    uploader_session = models.CharField(
        max_length=64, blank=True, default="", editable=False, help_text="SHA-256 of the uploading visitor's session."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            # The list's sorts with their id tiebreak, unfiltered and by status, so a page reads 25 index entries.
            # The status too: a deep page skips its offset along this index alone, never reading the rows it skips.
            models.Index(fields=["-created_at", "id", "status"], name="song_newest_status"),
            models.Index(fields=["title", "id"], name="song_title"),
            models.Index(fields=["artist", "id"], name="song_artist"),
            models.Index(fields=["status", "title", "id"], name="song_status_title"),
            models.Index(fields=["status", "artist", "id"], name="song_status_artist"),
            # The latest change to any song, which the map's cached answer is keyed by.
            models.Index(fields=["updated_at"], name="song_updated"),
        ]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        return self.title or self.original_file_name


class SongTag(models.Model):
    """A sound class the embedding model heard in the song (e.g. an AudioSet label), with its probability."""

    song = models.ForeignKey(Song, on_delete=models.CASCADE, related_name="tags")
    label = models.CharField(max_length=200, db_index=True)
    score = models.FloatField()

    class Meta:
        ordering = ["-score"]
        constraints = [models.UniqueConstraint(fields=["song", "label"], name="one_score_per_song_and_label")]
        # The tag filter matches labels case-insensitively.
        indexes = [models.Index(Lower("label"), name="songtag_label_lower")]

    def __str__(self) -> str:
        return f"{self.label} ({self.score:.2f})"


class Recording(models.Model):
    """One recording held by several catalog songs: other encodings, trims or excerpts of the same audio."""

    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Recording {self.pk}"


class RecordingLink(models.Model):
    """A song's place in its recording; removed with the song (or the recording), so no link outlives either."""

    song = models.OneToOneField(Song, on_delete=models.CASCADE, related_name="recording_link")
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="links")
    excerpt = models.BooleanField(default=False, help_text="The song holds only part of the recording.")
    offset_seconds = models.FloatField(default=0.0, help_text="Where the song starts in the longest copy it matched.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.song_id} in recording {self.recording_id}"


class MapProjection(models.Model):
    """The catalog map of one model, computed by a worker: the axes new songs are placed on, and every song's point.

    `song_ids` holds 16-byte ids and `coords` float32 (x, y) pairs in the same order; `mean` (dim) and `components`
    (2 x dim) are float32 too. Only the latest projection of each model is kept.
    """

    model = models.CharField(max_length=64)
    computed_at = models.DateTimeField()
    song_count = models.PositiveIntegerField(help_text="Ready songs the projection covers.")
    seconds = models.FloatField(help_text="How long computing it took.")
    dim = models.PositiveIntegerField()
    mean = models.BinaryField()
    components = models.BinaryField()
    peak_x = models.FloatField()
    peak_y = models.FloatField()
    explained_x = models.FloatField()
    explained_y = models.FloatField()
    song_ids = models.BinaryField()
    coords = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["model", "-computed_at"], name="mapprojection_latest")]

    def __str__(self) -> str:
        return f"{self.model} map of {self.song_count} songs ({self.computed_at:%Y-%m-%d %H:%M})"
