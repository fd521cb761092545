"""Remove uploads that were never finished or confirmed (the periodic task does the same hourly)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from catalog import services


class Command(BaseCommand):
    help = "Remove songs still waiting for their upload after --hours (default UPLOAD_EXPIRY_HOURS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["hours"] if options["hours"] is not None else settings.UPLOAD_EXPIRY_HOURS
        removed = services.expire_stale_uploads(older_than=timedelta(hours=hours))
        self.stdout.write(f"Removed {removed} unfinished uploads older than {hours:g} hours.")
