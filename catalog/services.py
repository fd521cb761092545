"""Writes to the catalog: uploads, ingest state changes, retries and deletion."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import unicodedata
import uuid
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog import lifecycle
from catalog.errors import InvalidState, InvalidUpload, QueueUnavailable, UploadMissing
from catalog.models import Song, SongStatus
from catalog.storage import StorageError, StorageUnavailable, UploadTicket, get_storage

logger = logging.getLogger(__name__)

AUDIO_CONTENT_TYPES = frozenset(
    {
        "audio/mpeg",
        "audio/mp3",
        "audio/wav",
        "audio/wave",
        "audio/x-wav",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "audio/opus",
        "audio/aac",
        "audio/mp4",
        "audio/x-m4a",
        "audio/webm",
        "audio/aiff",
        "audio/x-aiff",
    }
)


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB) * 1024 * 1024


def safe_file_name(name: str) -> str:
    """A storage-safe version of a user's file name: ASCII letters, digits, dot, dash, underscore."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._")
    return cleaned[:120] or "audio"


def create_upload(
    *, file_name: str, content_type: str, size: int, uploaded_by: User | None = None, visitor: str = ""
) -> tuple[Song, UploadTicket]:
    """Register a song waiting for its file and hand out a presigned upload for a server-chosen key.

    `visitor` identifies the session of an uploader without an account (see catalog.api.permissions.visitor_of)."""
    content_type = content_type.split(";")[0].strip().lower()
    if content_type not in AUDIO_CONTENT_TYPES:
        raise InvalidUpload(
            f"{content_type or 'An empty content type'} is not an accepted audio type; "
            f"accepted: {', '.join(sorted(AUDIO_CONTENT_TYPES))}."
        )
    if size < 1:
        raise InvalidUpload("The file is empty.")
    if size > max_upload_bytes():
        raise InvalidUpload(f"The file is {size / 1048576:.1f} MB; the limit is {settings.MAX_UPLOAD_MB} MB.")
    song_id = uuid.uuid4()
    song = Song.objects.create(
        id=song_id,
        object_key=f"uploads/{song_id}/{safe_file_name(file_name)}",
        original_file_name=file_name.strip()[:255] or "audio",
        content_type=content_type,
        size=size,
        status=SongStatus.PENDING_UPLOAD,
        uploaded_by=uploaded_by,
        uploader_session=visitor,
    )
    ticket = get_storage().presign_upload(
        song.object_key,
        content_type=content_type,
        max_bytes=size,
        expires_in=settings.UPLOAD_URL_EXPIRY_SECONDS,
    )
    return song, ticket


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def import_file(path: Path, *, uploaded_by: User | None = None) -> Song | None:
    """Register a local audio file and copy it to storage, ready to ingest; None if its bytes are already here."""
    content_type = (mimetypes.guess_type(path.name)[0] or "").lower()
    if content_type not in AUDIO_CONTENT_TYPES:
        raise InvalidUpload(f"{path.name} does not look like audio (type {content_type or 'unknown'}).")
    size = path.stat().st_size
    if size < 1 or size > max_upload_bytes():
        raise InvalidUpload(f"{path.name} is {size} bytes; files must be 1 byte to {settings.MAX_UPLOAD_MB} MB.")
    digest = file_sha256(path)
    if Song.objects.filter(sha256=digest).exclude(status=SongStatus.DELETING).exists():
        return None
    song_id = uuid.uuid4()
    song = Song.objects.create(
        id=song_id,
        object_key=f"uploads/{song_id}/{safe_file_name(path.name)}",
        original_file_name=path.name[:255],
        content_type=content_type,
        size=size,
        sha256=digest,
        status=SongStatus.PENDING_UPLOAD,  # uploaded only once its object is stored, as with a browser upload
        uploaded_by=uploaded_by,
    )
    try:
        get_storage().put(song.object_key, path, content_type=content_type)
    except Exception:
        Song.objects.filter(pk=song.pk, status=SongStatus.PENDING_UPLOAD).delete()  # no row without its file
        raise
    if not lifecycle.transition(song, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.UPLOADED):
        raise InvalidState(f"{path.name} was removed while it was being imported.")
    return song


def confirm_upload(song: Song) -> Song:
    """The browser says the file is in storage: check it is, and queue the ingest.

    Confirmation and expiry race for the same `pending_upload` song; the guarded transition lets only one win.
    """
    if song.status in CONFIRMED:
        return song  # a repeated confirmation must not queue a second ingest
    if song.status != SongStatus.PENDING_UPLOAD:
        raise InvalidState(f"This song is {song.status}; retry it instead of confirming the upload again.")
    stored = get_storage().stat(song.object_key)
    if stored is None:
        raise UploadMissing("The file has not arrived in storage yet; finish the upload, then confirm it.")
    if stored.size > max_upload_bytes() or stored.size != song.size:
        if lifecycle.status_of(song) == SongStatus.PENDING_UPLOAD:
            get_storage().delete(song.object_key)
        raise InvalidUpload(
            f"The stored file is {stored.size} bytes, not the {song.size} bytes declared; upload it again."
        )
    with transaction.atomic():
        if lifecycle.transition(song, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.UPLOADED, failure_reason=""):
            _queue_ingest(song.pk)
    return _current(song, lost="The upload expired before it was confirmed; upload the file again.")


CONFIRMED = frozenset({SongStatus.UPLOADED, SongStatus.PROCESSING, SongStatus.READY})


def _current(song: Song, *, lost: str) -> Song:
    """The song as it is now, or InvalidState(`lost`) when it was deleted meanwhile."""
    fresh = Song.objects.filter(pk=song.pk).exclude(status=SongStatus.DELETING).first()
    if fresh is None:
        raise InvalidState(lost)
    return fresh


def retry_ingest(song: Song) -> Song:
    """Queue a failed song again; its file is still in storage."""
    if song.status != SongStatus.FAILED:
        raise InvalidState(f"Only failed songs can be retried; this one is {song.status}.")
    if get_storage().stat(song.object_key) is None:
        raise UploadMissing("The file is no longer in storage; upload it again.")
    with transaction.atomic():
        if lifecycle.transition(song, from_=SongStatus.FAILED, to=SongStatus.UPLOADED):
            _queue_ingest(song.pk)
    return _current(song, lost="The song was deleted.")


def reembed_song(song: Song) -> Song:
    """Queue a ready or failed song for a fresh ingest with the active model (e.g. after a model change)."""
    if song.status not in {SongStatus.READY, SongStatus.FAILED}:
        raise InvalidState(f"Only ready or failed songs can be re-embedded; this one is {song.status}.")
    with transaction.atomic():
        if lifecycle.transition(song, from_=song.status, to=SongStatus.UPLOADED):
            _queue_ingest(song.pk)
    return _current(song, lost="The song was deleted.")


def update_song_details(song: Song, *, title: str, artist: str, album: str) -> Song:
    """Edit what people see and search by; the sound, and so the vector, is unchanged."""
    song.title, song.artist, song.album = title.strip()[:500], artist.strip()[:500], album.strip()[:500]
    song.save(update_fields=["title", "artist", "album", "updated_at"])
    return song


def queue_ingest(song: Song) -> None:
    """Hand an uploaded song to the workers once the current transaction commits."""
    _queue_ingest(song.pk)


def _queue_ingest(song_id: UUID) -> None:
    transaction.on_commit(lambda: _send_ingest(song_id))


def _send_ingest(song_id: UUID) -> None:
    from kombu.exceptions import OperationalError

    from catalog.tasks import ingest_song_task

    try:
        ingest_song_task.delay(str(song_id))
    except OperationalError as exc:
        # The song stays `uploaded`; requeue_stalled_ingests (Celery beat, or check_consistency --fix) sends it later.
        logger.warning("could not queue the ingest of song %s: %s", song_id, exc)
        raise QueueUnavailable(
            "The file is stored, but the processing queue cannot be reached right now; the song will be queued "
            "again automatically once it is back."
        ) from exc


def stalled_ingests(*, older_than: timedelta) -> list[UUID]:
    """Songs whose ingest was lost: `uploaded` but never picked up, or `processing` far past the time limit."""
    now = timezone.now()
    processing_limit = timedelta(seconds=settings.INGEST_TIME_LIMIT_SECONDS * 2)
    return list(
        Song.objects.filter(
            Q(status=SongStatus.UPLOADED, updated_at__lt=now - older_than)
            | Q(status=SongStatus.PROCESSING, updated_at__lt=now - max(older_than, processing_limit))
        ).values_list("pk", flat=True)
    )


def requeue_stalled_ingests(*, older_than: timedelta) -> int:
    """Queue again every ingest that was lost (queue down at confirmation, broker data lost); safe to repeat.

    Uploads whose confirmation never got through (storage was down when it came) are confirmed here once their
    object is in storage with the declared size.
    """
    requeued = _confirm_arrived_uploads(older_than=older_than)
    for song_id in stalled_ingests(older_than=older_than):
        try:
            _send_ingest(song_id)
        except QueueUnavailable:
            break  # still down: the songs stay stalled, so the next run tries again
        # Stamped only once sent, so a song is never left stalled-looking-fresh with no task.
        Song.objects.filter(pk=song_id, status__in=STALLABLE).update(updated_at=timezone.now())
        requeued += 1
    if requeued:
        logger.info("queued %d stalled ingests again", requeued)
    return requeued


STALLABLE = frozenset({SongStatus.UPLOADED, SongStatus.PROCESSING})


def _confirm_arrived_uploads(*, older_than: timedelta) -> int:
    cutoff = timezone.now() - older_than
    storage = get_storage()
    confirmed = 0
    for song in Song.objects.filter(status=SongStatus.PENDING_UPLOAD, created_at__lt=cutoff):
        try:
            stored = storage.stat(song.object_key)
        except (StorageUnavailable, StorageError) as exc:
            logger.warning("storage cannot tell whether unconfirmed uploads arrived: %s", exc)
            break
        if stored is None or stored.size != song.size:
            continue  # not there, or still arriving: expiry removes it in time
        try:
            with transaction.atomic():
                if lifecycle.transition(song, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.UPLOADED):
                    _queue_ingest(song.pk)
                    confirmed += 1
        except QueueUnavailable:
            break  # the song is `uploaded` now, so the stalled-ingest pass queues it once the queue is back
    return confirmed


def expire_stale_uploads(*, older_than: timedelta) -> int:
    """Remove songs whose upload was never finished or never confirmed, with any object they left.

    Each song is first moved to `deleting` by a guarded transition, so a confirmation arriving meanwhile either
    wins (the song stays) or is refused (the song goes); never both.
    """
    cutoff = timezone.now() - older_than
    removed = 0
    for song in list(Song.objects.filter(status=SongStatus.PENDING_UPLOAD, created_at__lt=cutoff)):
        if not lifecycle.transition(song, from_=SongStatus.PENDING_UPLOAD, to=SongStatus.DELETING):
            continue  # confirmed (or deleted) since the list was read
        get_storage().delete(song.object_key)  # an upload that arrived but was never confirmed
        Song.objects.filter(pk=song.pk, status=SongStatus.DELETING).delete()
        removed += 1
    if removed:
        logger.info("expired %d unfinished uploads older than %s", removed, older_than)
    return removed


def mark_file_missing(song_id: UUID) -> bool:
    """A song whose stored file vanished cannot be played or re-embedded; say so unless it is already failed."""
    return lifecycle.transition(
        song_id,
        from_=lifecycle.HAS_FILE,
        to=SongStatus.FAILED,
        failure_reason="The file is missing from storage; upload it again.",
    )


def mark_failed(song_id: UUID, reason: str) -> bool:
    """An ingest gave up; refused (False) when the song was finished, deleted or retried meanwhile."""
    failed = lifecycle.transition(
        song_id,
        from_={SongStatus.UPLOADED, SongStatus.PROCESSING},
        to=SongStatus.FAILED,
        failure_reason=reason[:2000],
    )
    if failed:
        logger.warning("ingest of song %s failed: %s", song_id, reason)
    return failed


def delete_song(song: Song) -> None:
    """Remove a song everywhere: vectors and fingerprints, then the stored file, then the row.

    The song is first marked `deleting` (hidden from lists and search) whatever it is doing: deleting waits for
    nothing and always wins. An ingest still running finds its own transition refused and takes back what it
    stored. If a step here fails the song stays `deleting`, and calling this again (or `check_consistency --fix`)
    finishes the job. Nothing is left orphaned.
    """
    from embeddings.index import get_vector_index
    from embeddings.registry import available_models, model_dim
    from fingerprints.services import remove_song_fingerprints

    if not lifecycle.transition(song, from_=lifecycle.ANY, to=SongStatus.DELETING):
        return  # already gone
    for model in available_models():
        get_vector_index(model, model_dim(model)).delete(song.pk)
    remove_song_fingerprints(song.pk)
    get_storage().delete(song.object_key)
    song.delete()  # `deleting` is terminal, so nothing can have revived the row
    logger.info("deleted song %s (%s)", song.pk, song.object_key)
