"""Re-embed the whole catalog with one model, so that switching models is one command; and re-fingerprint the songs
whose fingerprints were made by another version of the landmark algorithm, so that they can be identified again."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog import lifecycle, pipeline, selectors
from catalog.models import Song, SongStatus
from catalog.storage import StorageError, get_storage
from catalog.transient import GaveUp, with_retries
from embeddings.audio import decode
from embeddings.base import EmbeddingError, ModelUnavailable
from embeddings.registry import active_model_name, available_models, get_embedding_model
from fingerprints.index import FingerprintIndexError, get_fingerprint_index
from fingerprints.landmarks import ALGORITHM
from fingerprints.services import add_song_fingerprints, remove_song_fingerprints


def songs_to_refingerprint() -> list[Song]:
    """Ready songs without fingerprints of the current ALGORITHM (the index lists only those as stored)."""
    current = set(get_fingerprint_index().song_ids())
    ready = Song.objects.filter(status=SongStatus.READY).order_by("created_at", "id")
    # A song noted as too quiet has no landmarks to store, so it would be listed again on every run.
    return [song for song in ready if song.pk not in current and pipeline.NO_LANDMARKS_NOTE not in song.ingest_note]


def refingerprint(song: Song) -> int | None:
    """Fingerprint a song again from its stored audio; the number of landmarks stored, None if it is not ready."""
    if lifecycle.status_of(song) != SongStatus.READY:
        return None
    with tempfile.TemporaryDirectory(prefix="resonance-refingerprint-") as workdir:
        path = Path(workdir) / ("audio" + Path(song.object_key).suffix.lower())
        get_storage().download(song.object_key, path)
        audio = decode(path, max_seconds=settings.MAX_AUDIO_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
    if lifecycle.status_of(song) != SongStatus.READY:
        return None
    found = add_song_fingerprints(song.pk, audio.samples)
    # A delete that won meanwhile already removed the fingerprints it saw; take back the ones stored after it.
    if lifecycle.is_going(song):
        remove_song_fingerprints(song.pk)
        return None
    return found


@dataclass
class Outcomes:
    """What one pass did to its songs, for the summary."""

    done: int = 0
    skipped: list[str] = field(default_factory=list)  # no longer ready when their turn came
    failed: list[tuple[str, str]] = field(default_factory=list)  # (title, reason): still on their old state
    retried: list[tuple[str, str]] = field(default_factory=list)  # (title, transient error) per retry


def _each(songs: list[Song], step: Callable[[Song], object], retries: int, outcomes: Outcomes, **bar: Any) -> None:
    """Run `step` on every song, riding out transient errors; one song's failure never stops the others."""
    for song in tqdm(songs, unit="song", **bar):
        _one(song, step, retries, outcomes)


def _one(song: Song, step: Callable[[Song], object], retries: int, outcomes: Outcomes) -> None:
    title = song.display_title
    try:
        result = with_retries(
            lambda: step(song),
            retries=retries,
            on_retry=lambda exc: outcomes.retried.append((title, str(exc))),
        )
    except (pipeline.IngestFailed, GaveUp, StorageError, EmbeddingError, FingerprintIndexError) as exc:
        outcomes.failed.append((title, str(exc)))
    except Exception as exc:  # a surprise on one song must not stop the rest; the song keeps its old state
        outcomes.failed.append((title, f"Unexpected error ({type(exc).__name__}: {exc})"))
    else:
        if result is False or result is None:
            outcomes.skipped.append(title)
        else:
            outcomes.done += 1


class Command(BaseCommand):
    help = (
        "Re-embed every ready song that is not yet on MODEL (default: the active model), then fingerprint every "
        "ready song whose fingerprints are not of the current landmark algorithm. Resumable: songs already on the "
        "model (and the algorithm) are skipped, and an interrupted song keeps its old vector until its new one is "
        "stored. Transient errors (storage, index or database unreachable) are retried with backoff; a song that "
        "still fails keeps its old state and the run goes on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", choices=available_models(), help="the model to move to")
        parser.add_argument("--all", action="store_true", help="also re-embed songs already on the model")
        parser.add_argument(
            "--retries",
            type=int,
            default=None,
            help="retries of a transient error per song (default INGEST_MAX_RETRIES)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model_name: str = options["model"] or active_model_name()
        retries = settings.INGEST_MAX_RETRIES if options["retries"] is None else options["retries"]
        if retries < 0:
            raise CommandError("--retries must be at least 0")
        try:
            get_embedding_model(model_name)
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        failures = self._reembed(model_name, options["all"], retries) + self._refingerprint(retries)
        if failures:
            raise CommandError(f"{failures} songs were not moved; see the reasons above. Run reindex again to retry.")

    def _reembed(self, model_name: str, include_current: bool, retries: int) -> int:
        try:
            songs = with_retries(
                lambda: list(selectors.songs_to_reembed(model_name, include_current=include_current)), retries=retries
            )
        except GaveUp as exc:
            raise CommandError(f"The catalog cannot be read: {exc}") from exc
        if not songs:
            self.stdout.write(f"Every ready song is already embedded with {model_name}.")
            return 0
        started = time.perf_counter()
        outcomes = Outcomes()
        _each(
            songs,
            lambda song: pipeline.reembed(song, model_name),
            retries,
            outcomes,
            desc=f"re-embedding with {model_name}",
            file=self.stderr,
        )
        self._summary(f"Re-embedded {{done}} of {len(songs)} songs with {model_name}", outcomes, started, "not moved")
        return len(outcomes.failed)

    def _refingerprint(self, retries: int) -> int:
        try:
            songs = with_retries(songs_to_refingerprint, retries=retries)
        except (GaveUp, FingerprintIndexError) as exc:
            raise CommandError(f"The fingerprint index cannot be read: {exc}") from exc
        if not songs:
            self.stdout.write(f"Every ready song already has {ALGORITHM} fingerprints.")
            return 0
        started = time.perf_counter()
        outcomes = Outcomes()
        _each(songs, refingerprint, retries, outcomes, desc=f"fingerprinting with {ALGORITHM}", file=self.stderr)
        self._summary(
            f"Fingerprinted {{done}} of {len(songs)} songs with {ALGORITHM}", outcomes, started, "not fingerprinted"
        )
        return len(outcomes.failed)

    def _summary(self, headline: str, outcomes: Outcomes, started: float, failed_as: str) -> None:
        self.stdout.write(
            f"{headline.format(done=outcomes.done)} in {time.perf_counter() - started:.1f} s: "
            f"{len(outcomes.skipped)} skipped (no longer ready), {len(outcomes.failed)} {failed_as}, "
            f"{len(outcomes.retried)} transient errors retried."
        )
        for title in outcomes.skipped:
            self.stdout.write(f"  skipped: {title}: no longer ready")
        for title, reason in outcomes.failed:
            self.stdout.write(f"  {failed_as}: {title}: {reason}")
        for title, reason in outcomes.retried:
            self.stdout.write(f"  retried: {title}: {reason}")
