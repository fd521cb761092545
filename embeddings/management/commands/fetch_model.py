"""`python manage.py fetch_model`: download the PANNs Cnn14 checkpoint that panns-cnn14 embeddings need."""

from __future__ import annotations

import re
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from embeddings import panns
from embeddings.base import ModelUnavailable
from embeddings.registry import panns_checkpoint_path


class Command(BaseCommand):
    help = (
        f"Download the PANNs Cnn14 checkpoint ({panns.CHECKPOINT_FILE_NAME}, about 330 MB) to PANNS_CHECKPOINT "
        "or PANNS_DATA_DIR, verified by size and MD5. An existing file is never replaced. Needs internet."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dest", type=Path, default=None, help="where to put the file (default: the configured checkpoint path)"
        )
        parser.add_argument("--url", default=panns.CHECKPOINT_URL, help="where to download it from")
        parser.add_argument("--md5", default=panns.CHECKPOINT_MD5, help="the MD5 checksum the download must have")

    def handle(self, *args: Any, **options: Any) -> None:
        dest: Path = options["dest"] or panns_checkpoint_path()
        url: str = options["url"]
        md5: str = options["md5"].strip().lower()
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise CommandError(f"--md5 {options['md5']!r} is not an MD5 checksum (32 hex digits)")
        if dest.exists():
            self.stdout.write(f"The PANNs checkpoint is already at {dest}; nothing to do.")
            return
        self.stdout.write(f"Downloading the PANNs checkpoint from {url}\n  to {dest}")
        try:
            panns.fetch_checkpoint(dest, url=url, md5=md5)
        except ModelUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"The PANNs checkpoint is installed at {dest}."))
