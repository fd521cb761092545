from __future__ import annotations

from django.db import models


class SongFingerprints(models.Model):
    """A song's landmarks, packed: the durable half of the local fingerprint index (see fingerprints.index.local)."""

    song_id = models.UUIDField(unique=True)
    algorithm = models.CharField(max_length=32, help_text="fingerprints.landmarks.ALGORITHM when they were made")
    count = models.PositiveIntegerField(help_text="Number of landmarks.")
    data = models.BinaryField(help_text="zlib of the uint32 hashes (byte planes) and anchor frames (deltas)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "song fingerprints"

    def __str__(self) -> str:
        return f"{self.count} landmarks of {self.song_id}"
