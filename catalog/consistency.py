"""Finds and repairs disagreements between the database, object storage and the vector index."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from django.conf import settings

from catalog import services
from catalog.models import Song, SongStatus
from catalog.storage import get_storage
from embeddings.index import get_vector_index
from embeddings.registry import available_models, model_dim

UPLOAD_PREFIX = "uploads/"


@dataclass
class Report:
    orphan_vectors: list[tuple[str, UUID]] = field(default_factory=list)  # (model, song id) with no song
    orphan_objects: list[str] = field(default_factory=list)  # stored keys no song points to
    missing_vectors: list[UUID] = field(default_factory=list)  # ready songs absent from their model's index
    missing_files: list[UUID] = field(default_factory=list)  # live songs whose file is gone
    unfinished_deletes: list[UUID] = field(default_factory=list)  # songs left `deleting` by a failed delete
    stalled_ingests: list[UUID] = field(default_factory=list)  # queued songs no worker has picked up

    @property
    def problems(self) -> int:
        return sum(
            len(items)
            for items in (
                self.orphan_vectors,
                self.orphan_objects,
                self.missing_vectors,
                self.missing_files,
                self.unfinished_deletes,
                self.stalled_ingests,
            )
        )


def inspect() -> Report:
    report = Report()
    songs = {song.pk: song for song in Song.objects.all()}
    live = {pk for pk, song in songs.items() if song.status != SongStatus.DELETING}
    report.unfinished_deletes = [pk for pk, song in songs.items() if song.status == SongStatus.DELETING]
    report.stalled_ingests = services.stalled_ingests(older_than=timedelta(minutes=settings.STALLED_INGEST_MINUTES))
    for model in available_models():
        indexed = get_vector_index(model, model_dim(model)).song_ids()
        indexed_set = set(indexed)
        report.orphan_vectors += [(model, song_id) for song_id in indexed if song_id not in live]
        report.missing_vectors += [
            pk
            for pk, song in songs.items()
            if song.status == SongStatus.READY and song.embedding_model == model and pk not in indexed_set
        ]
    keys = {song.object_key for song in songs.values()}
    storage = get_storage()
    report.orphan_objects = [key for key in storage.list_keys(UPLOAD_PREFIX) if key not in keys]
    stored = set(storage.list_keys(UPLOAD_PREFIX))
    report.missing_files = [
        pk
        for pk, song in songs.items()
        if song.status in {SongStatus.UPLOADED, SongStatus.PROCESSING, SongStatus.READY}
        and song.object_key not in stored
    ]
    return report


def repair(report: Report) -> None:
    """Fix every problem in the report; each fix is safe to repeat."""
    for song_id in report.unfinished_deletes:
        song = Song.objects.filter(pk=song_id).first()
        if song is not None:
            services.delete_song(song)
    for model, song_id in report.orphan_vectors:
        get_vector_index(model, model_dim(model)).delete(song_id)
    storage = get_storage()
    for key in report.orphan_objects:
        if not Song.objects.filter(object_key=key).exists():  # a song may have claimed it since the scan
            storage.delete(key)
    for song_id in report.missing_files:
        services.mark_file_missing(song_id)
    if report.stalled_ingests:
        services.requeue_stalled_ingests(older_than=timedelta(minutes=settings.STALLED_INGEST_MINUTES))
    for song_id in report.missing_vectors:
        song = Song.objects.filter(pk=song_id, status=SongStatus.READY).first()
        if song is not None:
            services.reembed_song(song)
