from __future__ import annotations

from django.db import models


class StoredVector(models.Model):
    """One embedding per song and model: the durable half of the local vector index."""

    song_id = models.UUIDField()
    file = models.CharField(max_length=512, help_text="The song's object key; search can exclude it.")
    model = models.CharField(max_length=64)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float32 little-endian, L2-normalised")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["song_id", "model"], name="one_vector_per_song_and_model")]
        indexes = [models.Index(fields=["model"])]

    def __str__(self) -> str:
        return f"{self.model} vector of {self.song_id}"
