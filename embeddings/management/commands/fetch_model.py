"""`python manage.py fetch_model`: download a PANNs checkpoint and the AudioSet class names for its tags."""

from __future__ import annotations

import re
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from embeddings import panns
from embeddings.base import ModelUnavailable
from embeddings.registry import configured_panns_model, panns_checkpoint_path, panns_labels_path


class Command(BaseCommand):
    help = (
        "Download a PANNs checkpoint (panns-cnn14: Cnn14_mAP=0.431.pth, about 330 MB; panns-cnn10: "
        "Cnn10_mAP=0.380.pth, about 20 MB) to PANNS_CHECKPOINT or PANNS_DATA_DIR, verified by size and MD5, "
        "and the AudioSet label file (class_labels_indices.csv) for sound tags beside it or to PANNS_LABELS. "
        "Existing files are never replaced. A failed label download only warns. Needs internet."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--model",
            choices=list(panns.VARIANTS),
            default=None,
            help="which PANNs model (default: the one EMBEDDING_MODEL names, panns-cnn14 for auto or features)",
        )
        parser.add_argument(
            "--dest", type=Path, default=None, help="where to put the checkpoint (default: the configured path)"
        )
        parser.add_argument("--url", default=None, help="where to download the checkpoint from (default: Zenodo)")
        parser.add_argument("--md5", default=None, help="the MD5 checksum the checkpoint must have")
        parser.add_argument("--labels-url", default=panns.LABELS_URL, help="where to download the label file from")
        parser.add_argument("--no-labels", action="store_true", help="do not download the label file")
        parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        variant = panns.get_variant(options["model"] or configured_panns_model())
        dest: Path = options["dest"] or panns_checkpoint_path(variant.name)
        url: str = options["url"] or variant.url
        md5: str = (options["md5"] or variant.md5).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{32}", md5):
            raise CommandError(f"--md5 {options['md5']!r} is not an MD5 checksum (32 hex digits)")
        if dest.exists():
            self.stdout.write(f"The {variant.name} checkpoint is already at {dest}; nothing to do.")
        else:
            self.stdout.write(f"Downloading the {variant.name} checkpoint from {url}\n  to {dest}")
            try:
                panns.fetch_checkpoint(dest, url=url, md5=md5, min_bytes=variant.min_bytes, timeout=options["timeout"])
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(self.style.SUCCESS(f"The {variant.name} checkpoint is installed at {dest}."))
        if not options["no_labels"]:
            labels = dest.parent / panns.LABELS_FILE_NAME if options["dest"] else panns_labels_path(variant.name)
            self._fetch_labels(labels, options["labels_url"], variant, options["timeout"])

    def _fetch_labels(self, dest: Path, url: str, variant: panns.PannsVariant, timeout: float) -> None:
        if dest.exists():
            self.stdout.write(f"The AudioSet labels are already at {dest}.")
            return
        try:
            panns.fetch_labels(dest, url=url, classes_num=variant.classes_num, timeout=timeout)
        except ModelUnavailable as exc:
            # Embeddings work without it; songs just get no sound tags until it is there.
            warning = f"The AudioSet labels were not installed, so songs get no sound tags: {exc}"
            self.stderr.write(self.style.WARNING(warning))
            return
        self.stdout.write(self.style.SUCCESS(f"The AudioSet labels are installed at {dest}."))
