"""The ingest pipeline, in order: fetch, probe, decode, embed, index, fingerprint, same recording, tag.

Decoding runs on a thread and the model embeds each block as it arrives, so decode and inference overlap.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import mutagen
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When

from catalog import lifecycle, recordings
from catalog.models import Song, SongStatus, SongTag
from catalog.storage import StorageError, get_storage
from embeddings.audio import BackgroundDecode, DecodedAudio, decode_in_background
from embeddings.base import Analysis, EmbeddingError, FloatArray, ModelUnavailable, Tag
from embeddings.index import IndexUnavailable, VectorIndexError, get_vector_index
from embeddings.registry import get_embedding_model, model_dim
from fingerprints.landmarks import Landmarks
from fingerprints.landmarks import landmarks as landmarks_of
from fingerprints.services import remove_song_fingerprints, store_landmarks

logger = logging.getLogger(__name__)


class IngestFailed(Exception):
    """The song cannot be ingested as it is; retrying the same file will not help."""


@dataclass(frozen=True)
class Probe:
    sha256: str
    title: str
    artist: str
    album: str
    duration_seconds: float | None


@dataclass
class Timings:
    steps: dict[str, float] = field(default_factory=dict)

    def record(self, step: str, started: float) -> None:
        self.steps[step] = round(time.perf_counter() - started, 3)


def ingest(song_id: UUID) -> None:
    """Turn an uploaded song into a searchable one; idempotent, so a redelivered task is harmless.

    The song may be deleted (or finished by a redelivered twin) at any moment: each step checks it is still
    `processing`, and marking it ready is a guarded transition. A run that loses stops quietly, removing what it
    stored when the song is going away.
    """
    song = _start(song_id)
    if song is None:
        return
    timings = Timings()
    stored = Stored()
    try:
        with tempfile.TemporaryDirectory(prefix="resonance-ingest-") as workdir:
            path = fetch(song, Path(workdir), timings)
            _still(song, SongStatus.PROCESSING)
            probed = probe(path, timings)
            with decode_audio(path) as decoding:
                audio, model_name, analysis = embed(decoding, timings)
            _still(song, SongStatus.PROCESSING)
            stored.vector_model = model_name
            index(song, model_name, analysis.vector, timings)
            _still(song, SongStatus.PROCESSING)
            stored.fingerprints = True
            landmarks = fingerprint(song, audio, timings)
            _still(song, SongStatus.PROCESSING)
            same_recording(song, landmarks, timings)
            _still(song, SongStatus.PROCESSING)
            tag(song, probed, audio, model_name, analysis.tags, timings, landmarks=len(landmarks))
    except Exception as exc:
        if isinstance(exc, Superseded) or lifecycle.status_of(song) != SongStatus.PROCESSING:
            _give_way(song, stored, timings)
            return
        _log_ingest(song, timings, outcome="error", error=f"{type(exc).__name__}: {exc}")
        raise
    _log_ingest(song, timings, outcome="ready", audio_seconds=round(audio.seconds, 2))


class Superseded(Exception):
    """The song left the state this run started from (deleted, expired, finished by a twin): stop here."""


@dataclass
class Stored:
    """What a run has written to the indexes so far, so that a run that loses the song can take it back."""

    vector_model: str | None = None
    fingerprints: bool = False


def _still(song: Song, status: str) -> None:
    if lifecycle.status_of(song) != status:
        raise Superseded(f"song {song.pk} is no longer {status}")


def _give_way(song: Song, stored: Stored, timings: Timings) -> None:
    """Another actor owns the song now; take back what this run stored if the song is going away."""
    status = lifecycle.status_of(song)
    if lifecycle.is_going(song):
        try:
            if stored.vector_model is not None:
                get_vector_index(stored.vector_model, model_dim(stored.vector_model)).delete(song.pk)
            if stored.fingerprints:
                remove_song_fingerprints(song.pk)
        except Exception as exc:  # whatever is left is an orphan that check_consistency --fix removes
            logger.warning("could not take back what the ingest of deleted song %s stored: %s", song.pk, exc)
    _log_ingest(song, timings, outcome="superseded", status=status or "gone")


def _log_ingest(song: Song, timings: Timings, **fields: object) -> None:
    model = song.embedding_model
    try:
        loaded = get_embedding_model()
        model, device = loaded.name, loaded.device
    except ModelUnavailable:
        device = "unavailable"
    logger.info(
        "ingest of song %s: %s",
        song.pk,
        fields["outcome"],
        extra={
            "event": "ingest",
            "song_id": str(song.pk),
            "model": model,
            "device": device,
            "steps": timings.steps,
            "total_s": round(sum(timings.steps.values()), 3),
            **fields,
        },
    )


def reembed(song: Song, model_name: str) -> bool:
    """Embed a ready song with another model; until this returns the song keeps its current vector.

    False when the song is not ready (or stops being ready meanwhile): it is then left as it is.
    """
    if lifecycle.status_of(song) != SongStatus.READY:
        return False
    timings = Timings()
    stored = Stored()
    try:
        with tempfile.TemporaryDirectory(prefix="resonance-reembed-") as workdir:
            path = fetch(song, Path(workdir), timings)
            probed = probe(path, timings)
            with decode_audio(path) as decoding:
                audio, name, analysis = embed(decoding, timings, model_name=model_name)
            _still(song, SongStatus.READY)
            # The new vector goes in first, so an interruption leaves the song on its old, still indexed model.
            stored.vector_model = name
            index(song, name, analysis.vector, timings)
            # Fingerprints do not depend on the model, so they stay; so does the note that there are none.
            unprintable = NO_LANDMARKS_NOTE in song.ingest_note
            tag(
                song,
                probed,
                audio,
                name,
                analysis.tags,
                timings,
                landmarks=0 if unprintable else None,
                from_=SongStatus.READY,
            )
    except Exception as exc:
        if isinstance(exc, Superseded) or lifecycle.status_of(song) != SongStatus.READY:
            _give_way(song, stored, timings)
            return False
        raise
    logger.info("re-embedded song %s with %s in %s", song.pk, name, timings.steps)
    return True


def _start(song_id: UUID) -> Song | None:
    started = lifecycle.transition(
        song_id,
        from_={SongStatus.UPLOADED, SongStatus.PROCESSING},
        to=SongStatus.PROCESSING,
        ingest_attempts=F("ingest_attempts") + 1,
        failure_reason="",
    )
    if not started:
        logger.info("song %s is %s; nothing to ingest", song_id, lifecycle.status_of(song_id) or "deleted")
        return None
    return Song.objects.filter(pk=song_id).first()


def fetch(song: Song, workdir: Path, timings: Timings) -> Path:
    started = time.perf_counter()
    path = workdir / ("audio" + Path(song.object_key).suffix.lower())
    try:
        get_storage().download(song.object_key, path)
    except StorageError as exc:
        raise IngestFailed(f"The uploaded file could not be read from storage: {exc}") from exc
    timings.record("fetch", started)
    return path


def probe(path: Path, timings: Timings) -> Probe:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    title = artist = album = ""
    duration: float | None = None
    try:
        info = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises format-specific errors on damaged headers; decode decides
        info = None
    if info is not None:
        tags = info.tags or {}
        title = _first(tags, "title")
        artist = _first(tags, "artist")
        album = _first(tags, "album")
        length = getattr(info.info, "length", None)
        duration = float(length) if length else None
    timings.record("probe", started)
    return Probe(sha256=digest.hexdigest(), title=title, artist=artist, album=album, duration_seconds=duration)


def _first(tags: object, name: str) -> str:
    try:
        values = tags[name]  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return ""
    value = values[0] if isinstance(values, list) and values else values
    return str(value).strip()[:500] if value else ""


def decode_audio(path: Path) -> AbstractContextManager[BackgroundDecode]:
    """Start decoding on a thread (at most MAX_AUDIO_SECONDS); `embed` takes the blocks as they are ready."""
    return decode_in_background(path, max_seconds=settings.MAX_AUDIO_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)


def embed(
    decoding: BackgroundDecode, timings: Timings, *, model_name: str | None = None
) -> tuple[DecodedAudio, str, Analysis]:
    """The decoded song, the model that embedded it, and its analysis; decode problems are named first."""
    started = time.perf_counter()
    try:
        model = get_embedding_model(model_name)
        analysis = model.analyse_blocks(decoding.blocks())
        audio = decoding.result()
    except ModelUnavailable as exc:
        raise IngestFailed(f"The embedding model is not available: {exc}") from exc
    except EmbeddingError as exc:
        # A silent or too short file is reported as such, not as the model's complaint about it.
        raise IngestFailed(_sentence(_decode_error(decoding) or exc)) from exc
    timings.steps["decode"] = round(decoding.seconds_spent, 3)
    timings.record("embed", started)
    return audio, model.name, analysis


def _decode_error(decoding: BackgroundDecode) -> EmbeddingError | None:
    try:
        decoding.result()
    except EmbeddingError as exc:
        return exc
    return None


def index(song: Song, model_name: str, vector: FloatArray, timings: Timings) -> None:
    """Store the vector and wait until search serves it: a song is never ready without being searchable."""
    started = time.perf_counter()
    try:
        vector_index = get_vector_index(model_name, vector.shape[0])
        vector_index.upsert(song.pk, song.object_key, vector)
        vector_index.wait_searchable(song.pk, vector, timeout=settings.INDEX_SEARCHABLE_TIMEOUT_SECONDS)
    except IndexUnavailable:
        raise  # transient: the task retries with backoff
    except VectorIndexError as exc:
        raise IngestFailed(f"The search index refused the song: {exc}") from exc
    timings.record("index", started)


# Noted on a song whose audio has no landmarks, so that check_consistency does not look for its fingerprints.
NO_LANDMARKS_NOTE = "Too quiet to fingerprint, so identify cannot name it."


def fingerprint(song: Song, audio: DecodedAudio, timings: Timings) -> Landmarks:
    """Landmark fingerprints, so that a short noisy recording can be identified as this exact song."""
    started = time.perf_counter()
    found = landmarks_of(audio.samples)
    store_landmarks(song.pk, found)
    timings.record("fingerprint", started)
    return found


def same_recording(song: Song, found: Landmarks, timings: Timings) -> None:
    """Link the song to a catalog song holding the same recording (another encoding, a trim, an excerpt)."""
    started = time.perf_counter()
    recordings.unlink(song.pk)  # a re-ingest decides again
    if len(found):  # the fingerprint step's landmarks, looked up rather than computed again
        match = recordings.find_same_recording(song.pk, found, durations=recordings.ready_durations)
        if match is not None:
            recordings.link(song.pk, match)
    timings.record("recording", started)


def tag(
    song: Song,
    probed: Probe,
    audio: DecodedAudio,
    model_name: str,
    sound_tags: list[Tag],
    timings: Timings,
    *,
    landmarks: int | None = None,
    from_: str = SongStatus.PROCESSING,
) -> None:
    """Store the tags and mark the song ready, in one transaction; Superseded if the song left `from_`."""
    started = time.perf_counter()
    notes = []
    if audio.truncated:
        total = f" of {_clock(probed.duration_seconds)}" if probed.duration_seconds else ""
        notes.append(f"Only the first {_clock(audio.seconds)}{total} was analysed (MAX_AUDIO_SECONDS).")
    if landmarks == 0:
        notes.append(NO_LANDMARKS_NOTE)
    note = " ".join(notes)
    with transaction.atomic():
        SongTag.objects.filter(song_id=song.pk).delete()
        SongTag.objects.bulk_create(SongTag(song_id=song.pk, label=t.label[:200], score=t.score) for t in sound_tags)
        if not _mark_ready(song, probed, audio, model_name, note, from_=from_):
            raise Superseded(f"song {song.pk} is no longer {from_}")  # rolls the tags back
    timings.record("tag", started)


def _mark_ready(song: Song, probed: Probe, audio: DecodedAudio, model_name: str, note: str, *, from_: str) -> bool:
    return lifecycle.transition(
        song,
        from_=from_,
        to=SongStatus.READY,
        sha256=probed.sha256,
        title=_unless_set("title", probed.title or Path(song.original_file_name).stem),
        artist=_unless_set("artist", probed.artist),
        album=_unless_set("album", probed.album),
        duration_seconds=probed.duration_seconds or audio.seconds,
        embedding_model=model_name,
        ingest_note=note,
        failure_reason="",
    )


def _unless_set(name: str, fallback: str) -> Case:
    """The row's value as it is at the update, or `fallback` where empty, so an edit saved meanwhile is kept."""
    return Case(When(**{name: ""}, then=Value(fallback)), default=F(name))


def _sentence(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def _clock(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
