"""Build or bring up to date this host's derived indexes (vectors, fingerprints) from the database."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from derived.services import local_stores


class Command(BaseCommand):
    help = "Build or update this host's derived indexes from the database; --compact merges their segments."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--compact", action="store_true", help="Also merge segments as far as the policy asks.")

    def handle(self, *args: Any, **options: Any) -> None:
        for store in local_stores():
            started = time.perf_counter()
            held = store.sync()
            if options["compact"]:
                store.compact()
                held = store.sync()
            self.stdout.write(
                f"{store.name}: {held.snapshot.live_rows} songs in {len(held.snapshot.parts)} segments, "
                f"{store.disk_bytes() / 1e6:.1f} MB on disk, {time.perf_counter() - started:.1f} s"
            )
