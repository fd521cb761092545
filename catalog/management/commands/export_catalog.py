"""Export songs and their sound tags as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog import selectors

FIELDS = [
    "id",
    "title",
    "artist",
    "album",
    "duration_seconds",
    "original_file_name",
    "status",
    "failure_reason",
    "embedding_model",
    "sha256",
    "size",
    "created_at",
    "tags",
]


class Command(BaseCommand):
    help = "Write every song (with its sound tags) as CSV or JSON to a file or standard output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--output", type=Path, help="file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        rows: list[dict[str, Any]] = [
            {
                "id": str(song.pk),
                "title": song.title,
                "artist": song.artist,
                "album": song.album,
                "duration_seconds": song.duration_seconds,
                "original_file_name": song.original_file_name,
                "status": song.status,
                "failure_reason": song.failure_reason,
                "embedding_model": song.embedding_model,
                "sha256": song.sha256,
                "size": song.size,
                "created_at": song.created_at.isoformat(),
                "tags": [{"label": tag.label, "score": round(tag.score, 4)} for tag in song.tags.all()],
            }
            for song in selectors.song_list(sort="oldest")
        ]
        buffer = io.StringIO()
        if options["format"] == "json":
            json.dump(rows, buffer, indent=2)
            buffer.write("\n")
        else:
            writer = csv.DictWriter(buffer, fieldnames=FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row | {"tags": "; ".join(f"{t['label']}:{t['score']}" for t in row["tags"])})
        if options["output"]:
            options["output"].write_text(buffer.getvalue())
        else:
            self.stdout.write(buffer.getvalue(), ending="")
        if options["output"]:
            self.stderr.write(f"Exported {len(rows)} songs to {options['output']}.")
