"""Re-embed the whole catalog with one model, so that switching models is one command."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog import pipeline, selectors
from embeddings.base import ModelUnavailable
from embeddings.registry import active_model_name, available_models, get_embedding_model


class Command(BaseCommand):
    help = (
        "Re-embed every ready song that is not yet on MODEL (default: the active model). Resumable: songs already "
        "on the model are skipped, and an interrupted song keeps its old vector until its new one is stored."
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
        songs = list(selectors.songs_to_reembed(model_name, include_current=options["all"]))
        if not songs:
            self.stdout.write(f"Every ready song is already embedded with {model_name}.")
            return
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
        if failures:
            raise CommandError(f"{len(failures)} songs kept their previous model; see the reasons above.")
