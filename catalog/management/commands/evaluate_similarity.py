"""Import a folder into a throwaway catalog with the product's own ingest and score its more-like-this lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.evaluation import evaluate
from embeddings.registry import active_model_name, available_models

# Set in the child process that owns the throwaway catalog.
INSIDE = "RESONANCE_EVALUATION_CATALOG"


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise CommandError(f"--k must be whole numbers separated by commas, not {text!r}") from None
    if not ks or ks[0] < 1 or ks[-1] > 100:
        raise CommandError("--k values must be from 1 to 100")
    return ks


class Command(BaseCommand):
    help = (
        "Import every audio file under --corpus into a throwaway catalog (its own database, storage and indexes, "
        "with `import_audio`, the product's ingest), then report precision@k of more-like-this by album and by "
        "artist against chance, and the share of duplicate recordings in the lists. The catalog in use is never "
        "touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corpus", type=Path, required=True, help="folder of audio files (searched recursively)")
        parser.add_argument("--model", default=None, help=f"embedding model: {', '.join(available_models())}")
        parser.add_argument("--k", default="5,10", help="list lengths to score, e.g. 5,10 (default)")
        parser.add_argument("--workers", type=int, default=1, help="songs ingested in parallel (default 1)")
        parser.add_argument("--json", action="store_true", help="print the scores as JSON")
        parser.add_argument("--keep", type=Path, default=None, help="build the catalog in this folder and keep it")

    def handle(self, *args: Any, **options: Any) -> None:
        ks = _ks(options["k"])
        if os.environ.get(INSIDE):
            self.stdout.write(json.dumps([s.as_dict() for s in evaluate(ks)]))
            return
        corpus = Path(options["corpus"])
        if not corpus.is_dir():
            raise CommandError(f"{corpus} is not a folder")
        model = options["model"] or active_model_name()
        if model not in available_models():
            raise CommandError(f"unknown model {model!r}; use one of {', '.join(available_models())}")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="resonance-evaluation-") as scratch:
            folder = Path(options["keep"] or scratch)
            folder.mkdir(parents=True, exist_ok=True)
            env = self._environment(folder, model)
            self._run(["migrate", "--verbosity", "0"], env)
            imported = self._run(["import_audio", str(corpus), "--workers", str(options["workers"])], env)
            self.stderr.write(imported.strip())
            scores = json.loads(self._run(["evaluate_similarity", "--corpus", str(corpus), "--k", options["k"]], env))
        if options["json"]:
            self.stdout.write(json.dumps({"model": model, "scores": scores}))
            return
        songs = scores[0]["songs"] if scores else 0
        self.stdout.write(f"Model {model}, {songs} songs, {time.perf_counter() - started:.0f} s")
        self.stdout.write("| k | album P@k | chance | artist P@k | chance | duplicates in lists | with `include` |")
        self.stdout.write("|---|---|---|---|---|---|---|")
        for s in scores:
            self.stdout.write(
                f"| {s['k']} | {s['album_precision']:.3f} | {s['album_chance']:.3f} | {s['artist_precision']:.3f} "
                f"| {s['artist_chance']:.3f} | {s['duplicate_share_collapsed']:.1%} "
                f"| {s['duplicate_share_included']:.1%} |"
            )

    def _environment(self, folder: Path, model: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_URL", "SQLITE_", "LOCAL_STORAGE", "DERIVED_INDEX", "CELERY_", "MONGODB"))
        }
        env.update(
            {
                INSIDE: "1",
                "VAR_DIR": str(folder),
                "SQLITE_PATH": str(folder / "db.sqlite3"),
                "STORAGE_BACKEND": "local",
                "VECTOR_BACKEND": "local",
                "EMBEDDING_MODEL": model,
                "CACHE_URL": "",
                "PANNS_DATA_DIR": str(settings.PANNS_DATA_DIR),
            }
        )
        if settings.PANNS_CHECKPOINT is not None:
            env["PANNS_CHECKPOINT"] = str(settings.PANNS_CHECKPOINT)
        return env

    def _run(self, arguments: list[str], env: dict[str, str]) -> str:
        manage = Path(settings.BASE_DIR) / "manage.py"
        done = subprocess.run(  # noqa: S603  # our own manage.py, arguments built here
            [sys.executable, str(manage), *arguments], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise CommandError(f"`manage.py {' '.join(arguments)}` failed:\n{done.stderr[-4000:]}")
        return done.stdout
