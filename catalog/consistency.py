"""Finds and repairs disagreements between the database, object storage, the vector index and the fingerprints.

The catalog keeps changing while this runs, so two rules make it safe. Indexes and storage are listed before the
songs: a song is always created before anything is stored for it, so whatever the first listings hold belongs to a
song the later one shows, unless that song is really gone. And every finding is checked again, song by song, just
before it is repaired, so nothing live (an ingest or a delete in progress) is ever repaired away.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Q

from catalog import lifecycle, services
from catalog.errors import InvalidState
from catalog.models import Song, SongStatus
from catalog.pipeline import NO_LANDMARKS_NOTE
from catalog.storage import get_storage
from embeddings.index import get_vector_index
from embeddings.registry import available_models, model_dim
from fingerprints.index import get_fingerprint_index

UPLOAD_PREFIX = "uploads/"


@dataclass
class Report:
    orphan_vectors: list[tuple[str, UUID]] = field(default_factory=list)  # (model, song id) with no song
    orphan_fingerprints: list[UUID] = field(default_factory=list)  # fingerprints of songs that are gone
    orphan_objects: list[str] = field(default_factory=list)  # stored keys no song points to
    missing_vectors: list[UUID] = field(default_factory=list)  # ready songs absent from their model's index
    missing_fingerprints: list[UUID] = field(default_factory=list)  # ready songs with audio but no fingerprints
    missing_files: list[UUID] = field(default_factory=list)  # live songs whose file is gone
    unfinished_deletes: list[UUID] = field(default_factory=list)  # songs left `deleting` by a failed delete
    stalled_ingests: list[UUID] = field(default_factory=list)  # queued songs no worker has picked up

    @property
    def problems(self) -> int:
        return sum(
            len(items)
            for items in (
                self.orphan_vectors,
                self.orphan_fingerprints,
                self.orphan_objects,
                self.missing_vectors,
                self.missing_fingerprints,
                self.missing_files,
                self.unfinished_deletes,
                self.stalled_ingests,
            )
        )


def inspect() -> Report:
    report = Report()
    indexed = {model: set(get_vector_index(model, model_dim(model)).song_ids()) for model in available_models()}
    fingerprinted = set(get_fingerprint_index().song_ids())
    stored = set(get_storage().list_keys(UPLOAD_PREFIX))
    songs = _songs()  # last, so that everything listed above belongs to a song listed here unless it is gone
    live = {pk for pk, song in songs.items() if song.status != SongStatus.DELETING}
    report.unfinished_deletes = [pk for pk, song in songs.items() if song.status == SongStatus.DELETING]
    report.stalled_ingests = services.stalled_ingests(older_than=timedelta(minutes=settings.STALLED_INGEST_MINUTES))
    for model, ids in indexed.items():
        report.orphan_vectors += [(model, song_id) for song_id in sorted(ids - live)]
        report.missing_vectors += [
            pk
            for pk, song in songs.items()
            if song.status == SongStatus.READY and song.embedding_model == model and pk not in ids
        ]
    report.orphan_fingerprints = sorted(fingerprinted - live)
    report.missing_fingerprints = [
        pk
        for pk, song in songs.items()
        if song.status == SongStatus.READY
        and pk not in fingerprinted
        and song.object_key in stored
        and NO_LANDMARKS_NOTE not in song.ingest_note
    ]
    keys = {song.object_key for song in songs.values()}
    report.orphan_objects = sorted(stored - keys)
    report.missing_files = [
        pk for pk, song in songs.items() if song.status in lifecycle.HAS_FILE and song.object_key not in stored
    ]
    return report


def _songs() -> dict[UUID, Song]:
    return {song.pk: song for song in Song.objects.only("pk", "status", "object_key", "embedding_model", "ingest_note")}


def repair(report: Report) -> None:
    """Fix every problem in the report that is still a problem now; each fix is safe to repeat."""
    for song_id in report.unfinished_deletes:
        song = Song.objects.filter(pk=song_id, status=SongStatus.DELETING).first()
        if song is not None:
            services.delete_song(song)
    for model, song_id in report.orphan_vectors:
        if lifecycle.is_going(song_id):  # an ingest may have created the song since the listing
            get_vector_index(model, model_dim(model)).delete(song_id)
    fingerprints = get_fingerprint_index()
    for song_id in report.orphan_fingerprints:
        if lifecycle.is_going(song_id):
            fingerprints.remove(song_id)
    storage = get_storage()
    for key in report.orphan_objects:
        if not Song.objects.filter(object_key=key).exists():  # a song may have claimed it since the scan
            storage.delete(key)
    for song_id in report.missing_files:
        song = Song.objects.filter(pk=song_id, status__in=lifecycle.HAS_FILE).first()
        if song is not None and storage.stat(song.object_key) is None:
            services.mark_file_missing(song_id)
    if report.stalled_ingests:
        services.requeue_stalled_ingests(older_than=timedelta(minutes=settings.STALLED_INGEST_MINUTES))
    for song_id in report.missing_vectors:
        song = Song.objects.filter(pk=song_id, status=SongStatus.READY).first()
        if song is not None and _vector_of(song) is None:
            _ingest_again(song)
    if report.missing_fingerprints:
        fingerprinted = set(fingerprints.song_ids())  # listed again: an ingest may have stored them since
        still_missing = Song.objects.filter(
            ~Q(ingest_note__contains=NO_LANDMARKS_NOTE),
            pk__in=[pk for pk in report.missing_fingerprints if pk not in fingerprinted],
            status=SongStatus.READY,
        )
        for song in still_missing:
            _ingest_again(song)  # a fresh ingest fingerprints it


def _vector_of(song: Song) -> object:
    return get_vector_index(song.embedding_model, model_dim(song.embedding_model)).get(song.pk)


def _ingest_again(song: Song) -> None:
    with contextlib.suppress(InvalidState):  # the song moved on (deleted, or queued again) since it was read
        services.reembed_song(song)
