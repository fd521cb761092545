"""Import audio files or folders into the catalog, skipping files whose bytes are already there."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from tqdm import tqdm

from catalog import pipeline, services
from catalog.errors import CatalogError
from catalog.models import Song, SongStatus

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


def _ingest(song_id: Any) -> None:
    try:
        pipeline.ingest(song_id)
    except pipeline.IngestFailed as exc:
        services.mark_failed(song_id, str(exc))
    finally:
        close_old_connections()  # each worker thread has its own database connection


class Command(BaseCommand):
    help = "Import audio files or folders (recursively); duplicates by SHA-256 are skipped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--workers", type=int, default=2, help="songs ingested in parallel (default 2)")
        parser.add_argument("--queue", action="store_true", help="hand the ingest to the Celery workers instead")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        started = time.perf_counter()
        files = _audio_files(options["paths"])
        added: list[Song] = []
        skipped = 0
        rejected: list[str] = []
        for path in tqdm(files, desc="registering", unit="file", file=self.stderr):
            try:
                song = services.import_file(path)
            except CatalogError as exc:
                rejected.append(str(exc))
                continue
            if song is None:
                skipped += 1
            else:
                added.append(song)
        if options["queue"]:
            for song in added:
                services.queue_ingest(song)
        else:
            with ThreadPoolExecutor(options["workers"]) as pool:
                list(
                    tqdm(
                        pool.map(_ingest, [s.pk for s in added]),
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
            f"{skipped} duplicates skipped, {len(rejected)} rejected, in {time.perf_counter() - started:.1f} s."
        )
        for name, reason in failed:
            self.stdout.write(f"  failed: {name}: {reason}")
        for reason in rejected:
            self.stdout.write(f"  rejected: {reason}")
