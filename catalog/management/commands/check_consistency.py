"""Find songs, stored files and vectors that disagree, and with --fix repair them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog import consistency


class Command(BaseCommand):
    help = (
        "Report orphaned vectors, fingerprints and files, ready songs missing from the index or without fingerprints, "
        "unfinished deletes and lost ingests."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="repair what is found")

    def handle(self, *args: Any, **options: Any) -> None:
        report = consistency.inspect()
        lines = [
            ("vectors without a song", len(report.orphan_vectors)),
            ("fingerprints without a song", len(report.orphan_fingerprints)),
            ("stored files without a song", len(report.orphan_objects)),
            ("ready songs missing from the index", len(report.missing_vectors)),
            ("ready songs without fingerprints", len(report.missing_fingerprints)),
            ("songs whose file is missing", len(report.missing_files)),
            ("unfinished deletes", len(report.unfinished_deletes)),
            ("ingests queued but never started", len(report.stalled_ingests)),
        ]
        for label, count in lines:
            self.stdout.write(f"  {label:<36} {count}")
        if not report.problems:
            self.stdout.write("Consistent: database, storage and index agree.")
            return
        if not options["fix"]:
            raise CommandError(f"{report.problems} problems found; run with --fix to repair them.")
        consistency.repair(report)
        remaining = consistency.inspect().problems
        self.stdout.write(
            f"Repaired {report.problems} problems; {remaining} remain (re-embeds finish when the workers run them)."
        )
