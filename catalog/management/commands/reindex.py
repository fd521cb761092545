"""Re-embed the whole catalog with one model, so that switching models is one command; and re-fingerprint the songs
whose fingerprints were made by another version of the landmark algorithm, so that they can be identified again."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog import pipeline, selectors
from catalog.models import Song, SongStatus
from catalog.storage import StorageError, get_storage
from embeddings.audio import decode
from embeddings.base import EmbeddingError, ModelUnavailable
from embeddings.registry import active_model_name, available_models, get_embedding_model
from fingerprints.index import FingerprintIndexError, get_fingerprint_index
from fingerprints.landmarks import ALGORITHM
from fingerprints.services import add_song_fingerprints


def songs_to_refingerprint() -> list[Song]:
    """Ready songs without fingerprints of the current ALGORITHM (the index lists only those as stored)."""
    current = set(get_fingerprint_index().song_ids())
    ready = Song.objects.filter(status=SongStatus.READY).order_by("created_at", "id")
    return [song for song in ready if song.pk not in current]


def refingerprint(song: Song) -> int:
    """Fingerprint a song again from its stored audio; the number of landmarks stored."""
    with tempfile.TemporaryDirectory(prefix="resonance-refingerprint-") as workdir:
        path = Path(workdir) / ("audio" + Path(song.object_key).suffix.lower())
        get_storage().download(song.object_key, path)
        audio = decode(path, max_seconds=settings.MAX_AUDIO_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
    # A song deleted meanwhile must not get fingerprints back.
    if not Song.objects.filter(pk=song.pk, status=SongStatus.READY).exists():
        return 0
    return add_song_fingerprints(song.pk, audio.samples)


class Command(BaseCommand):
    help = (
        "Re-embed every ready song that is not yet on MODEL (default: the active model), then fingerprint every "
        "ready song whose fingerprints are not of the current landmark algorithm. Resumable: songs already on the "
        "model (and the algorithm) are skipped, and an interrupted song keeps its old vector until its new one is "
        "stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", choices=available_models(), help="the model to move to")
        parser.add_argument("--all", action="store_true", help="also re-embed songs already on the model")

    def handle(self, *args: Any, **options: Any) -> None:
        model_name: str = options["model"] or active_model_name()
        try:
            get_embedding_model(model_name)
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        failures = self._reembed(model_name, include_current=options["all"]) + self._refingerprint()
        if failures:
            raise CommandError(f"{failures} songs were not moved; see the reasons above.")

    def _reembed(self, model_name: str, *, include_current: bool) -> int:
        songs = list(selectors.songs_to_reembed(model_name, include_current=include_current))
        if not songs:
            self.stdout.write(f"Every ready song is already embedded with {model_name}.")
            return 0
        started = time.perf_counter()
        failures: list[tuple[str, str]] = []
        for song in tqdm(songs, desc=f"re-embedding with {model_name}", unit="song", file=self.stderr):
            try:
                pipeline.reembed(song, model_name)
            except pipeline.IngestFailed as exc:
                failures.append((song.display_title, str(exc)))
        done = len(songs) - len(failures)
        self.stdout.write(
            f"Re-embedded {done} of {len(songs)} songs with {model_name} in {time.perf_counter() - started:.1f} s."
        )
        for title, reason in failures:
            self.stdout.write(f"  not moved: {title}: {reason}")
        return len(failures)

    def _refingerprint(self) -> int:
        try:
            songs = songs_to_refingerprint()
        except FingerprintIndexError as exc:
            raise CommandError(f"The fingerprint index cannot be read: {exc}") from exc
        if not songs:
            self.stdout.write(f"Every ready song already has {ALGORITHM} fingerprints.")
            return 0
        started = time.perf_counter()
        failures: list[tuple[str, str]] = []
        for song in tqdm(songs, desc=f"fingerprinting with {ALGORITHM}", unit="song", file=self.stderr):
            try:
                refingerprint(song)
            except (StorageError, EmbeddingError, FingerprintIndexError) as exc:
                failures.append((song.display_title, str(exc)))
        done = len(songs) - len(failures)
        self.stdout.write(
            f"Fingerprinted {done} of {len(songs)} songs with {ALGORITHM} in {time.perf_counter() - started:.1f} s."
        )
        for title, reason in failures:
            self.stdout.write(f"  not fingerprinted: {title}: {reason}")
        return len(failures)
