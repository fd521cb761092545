"""A summary of the catalog: songs by status and model, hours of audio, top sound tags."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog import selectors


class Command(BaseCommand):
    help = "Print songs by status and model, total audio, and the most common sound tags."

    def handle(self, *args: Any, **options: Any) -> None:
        stats = selectors.catalog_stats()
        self.stdout.write(
            f"Songs: {stats.songs}   audio: {stats.audio_hours:.2f} h   storage: {stats.bytes / 1e9:.2f} GB"
        )
        self.stdout.write("By status:")
        for status, count in stats.by_status.items():
            self.stdout.write(f"  {status:<15} {count}")
        self.stdout.write("By model:")
        for model, count in stats.by_model.items():
            self.stdout.write(f"  {model or '(none)':<15} {count}")
        if stats.top_tags:
            self.stdout.write("Top sound tags:")
            for label, count in stats.top_tags:
                self.stdout.write(f"  {label:<30} {count}")
