from __future__ import annotations

import uuid

from django.db import models


class IndexChange(models.Model):
    """One write to a song's indexed data (a vector, its fingerprints): what each host's derived index follows.

    Written in the same transaction as the data it announces; a derived index applies every change it has not seen
    by reading the song's current data, so changes may be applied late, twice or out of order.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=96, help_text="Which derived index follows it, e.g. vectors:features.")
    song_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "id"], name="index_change_kind_id")]

    def __str__(self) -> str:
        return f"{self.kind} change {self.id} of {self.song_id}"


class IndexEpoch(models.Model):
    """A token per kind that a derived index records when it is built: a different database means a rebuild."""

    kind = models.CharField(max_length=96, primary_key=True)
    token = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"{self.kind} epoch {self.token}"
