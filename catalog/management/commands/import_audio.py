"""Import audio files or folders into the catalog, skipping files whose bytes are already there."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from tqdm import tqdm

from catalog import pipeline, services
from catalog.errors import CatalogError
from catalog.models import Song, SongStatus
from catalog.transient import GaveUp, with_retries

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff"}


def _audio_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{path} does not exist")
    return found


@dataclass
class Outcomes:
    """What went wrong along the way, for the summary (threads append; list.append is atomic)."""

    retried: list[tuple[str, str]] = field(default_factory=list)  # (file name, transient error) per retry
    rejected: list[str] = field(default_factory=list)


def _ingest(song: Song, retries: int, outcomes: Outcomes) -> None:
    """Ingest one song, riding out transient errors; whatever happens the run goes on and the song is left retryable."""
    try:
        with_retries(
            lambda: pipeline.ingest(song.pk),
            retries=retries,
            on_retry=lambda exc: outcomes.retried.append((song.original_file_name, str(exc))),
        )
    except (pipeline.IngestFailed, GaveUp) as exc:
        services.mark_failed(song.pk, str(exc))
    except Exception as exc:  # one song's surprise must not stop the other songs
        services.mark_failed(song.pk, f"Unexpected error while ingesting ({type(exc).__name__}: {exc})")
    finally:
        close_old_connections()  # each worker thread has its own database connection


def _register(path: Path, retries: int, outcomes: Outcomes) -> Song | None:
    try:
        return with_retries(
            lambda: services.import_file(path),
            retries=retries,
            on_retry=lambda exc: outcomes.retried.append((path.name, str(exc))),
        )
    except GaveUp as exc:
        outcomes.rejected.append(f"{path.name} could not be stored. {exc}")
    except CatalogError as exc:
        outcomes.rejected.append(str(exc))
    return None


class Command(BaseCommand):
    help = (
        "Import audio files or folders (recursively); duplicates by SHA-256 are skipped. Transient errors (storage, "
        "index or database unreachable) are retried with backoff; a song that still fails is left failed and can be "
        "retried."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--workers", type=int, default=2, help="songs ingested in parallel (default 2)")
        parser.add_argument("--queue", action="store_true", help="hand the ingest to the Celery workers instead")
        parser.add_argument(
            "--retries",
            type=int,
            default=None,
            help="retries of a transient error per file (default INGEST_MAX_RETRIES)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        retries = settings.INGEST_MAX_RETRIES if options["retries"] is None else options["retries"]
        if retries < 0:
            raise CommandError("--retries must be at least 0")
        started = time.perf_counter()
        files = _audio_files(options["paths"])
        outcomes = Outcomes()
        added: list[Song] = []
        skipped = 0
        for path in tqdm(files, desc="registering", unit="file", file=self.stderr):
            rejected_before = len(outcomes.rejected)
            song = _register(path, retries, outcomes)
            if song is not None:
                added.append(song)
            elif len(outcomes.rejected) == rejected_before:
                skipped += 1
        if options["queue"]:
            for song in added:
                services.queue_ingest(song)
        else:
            with ThreadPoolExecutor(options["workers"]) as pool:
                list(
                    tqdm(
                        pool.map(lambda song: _ingest(song, retries, outcomes), added),
                        total=len(added),
                        desc="ingesting",
                        unit="song",
                        file=self.stderr,
                    )
                )
        states = Song.objects.filter(pk__in=[s.pk for s in added])
        ready = states.filter(status=SongStatus.READY).count()
        failed = list(states.filter(status=SongStatus.FAILED).values_list("original_file_name", "failure_reason"))
        queued = len(added) - ready - len(failed)
        self.stdout.write(
            f"{len(files)} files: {len(added)} added ({ready} ready, {len(failed)} failed, {queued} queued), "
            f"{skipped} duplicates skipped, {len(outcomes.rejected)} rejected, "
            f"{len(outcomes.retried)} transient errors retried, in {time.perf_counter() - started:.1f} s."
        )
        for name, reason in failed:
            self.stdout.write(f"  failed: {name}: {reason}")
        for reason in outcomes.rejected:
            self.stdout.write(f"  rejected: {reason}")
        for name, reason in outcomes.retried:
            self.stdout.write(f"  retried: {name}: {reason}")
        if failed:
            self.stdout.write(
                "Failed songs keep their files; retry them from the admin or POST /api/songs/<id>/retry/."
            )
