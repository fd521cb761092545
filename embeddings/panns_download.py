"""Downloading PANNs checkpoints and the AudioSet label file, verified and atomically.

Nothing else in the product downloads anything; `python manage.py fetch_model` runs these on request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embeddings.base import ModelUnavailable
from embeddings.panns_labels import LABELS_MAX_BYTES, LABELS_URL, LabelFileError, read_labels
from embeddings.panns_networks import CLASSES_NUM, CNN14, first_line

logger = logging.getLogger(__name__)


def fetch_checkpoint(
    dest: Path,
    *,
    url: str = CNN14.url,
    md5: str = CNN14.md5,
    min_bytes: int = CNN14.min_bytes,
    timeout: float = 30,
) -> Path:
    """Download a checkpoint to `dest`, verified and atomically; an existing `dest` is left alone."""
    dest = Path(dest)
    if dest.exists():
        if dest.is_file() and dest.stat().st_size < min_bytes:
            logger.warning("%s exists but is only %d bytes; leaving it untouched", dest, dest.stat().st_size)
        return dest
    expected_md5 = md5.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", expected_md5):
        raise ValueError(f"{md5!r} is not an MD5 checksum (32 hex digits)")
    manual = (
        f"On a machine with internet, download {url} and copy it to {dest} "
        f"(or set PANNS_CHECKPOINT to where you put it), or set EMBEDDING_MODEL=features"
    )

    def verify(path: Path, size: int, digest: str) -> None:
        if size < min_bytes:
            raise ModelUnavailable(
                f"the download from {url} is only {size} bytes, expected at least {min_bytes}; "
                f"it was cut short or the server sent an error page. {manual}"
            )
        if digest != expected_md5:
            raise ModelUnavailable(
                f"the download from {url} has MD5 {digest}, expected {expected_md5}; the file is corrupt "
                f"or not {dest.name}. {manual}"
            )

    _install(dest, url=url, timeout=timeout, manual=manual, verify=verify, max_bytes=None)
    logger.info("PANNs checkpoint installed at %s", dest)
    return dest


def fetch_labels(dest: Path, *, url: str = LABELS_URL, classes_num: int = CLASSES_NUM, timeout: float = 30) -> Path:
    """Download the AudioSet label CSV to `dest` if it is absent; it must name exactly `classes_num` classes."""
    dest = Path(dest)
    if dest.exists():
        return dest
    manual = f"On a machine with internet, download {url} and copy it to {dest} (or set PANNS_LABELS to it)"

    def verify(path: Path, size: int, digest: str) -> None:
        try:
            read_labels(path, classes_num=classes_num)
        except LabelFileError as exc:
            raise ModelUnavailable(f"the download from {url} is not the AudioSet label file: {exc}. {manual}") from exc

    _install(dest, url=url, timeout=timeout, manual=manual, verify=verify, max_bytes=LABELS_MAX_BYTES)
    logger.info("AudioSet labels installed at %s", dest)
    return dest


def _install(
    dest: Path,
    *,
    url: str,
    timeout: float,
    manual: str,
    verify: Callable[[Path, int, str], None],
    max_bytes: int | None,
) -> None:
    """Stream `url` into a temp file beside `dest`, `verify` it, then rename it into place."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ModelUnavailable(f"{url!r} is not an http(s) URL; copy a local file to {dest} instead")
    temp_path: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A temp file beside dest makes the final rename atomic: dest is either absent or complete.
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False) as out:
            temp_path = Path(out.name)
            size, digest = _download(url, out, timeout=timeout, dest=dest, manual=manual, max_bytes=max_bytes)
            out.flush()
            os.fsync(out.fileno())
        verify(temp_path, size, digest)
        # NamedTemporaryFile creates 0600; web and worker may run as different users.
        os.chmod(temp_path, 0o644)
        _place(temp_path, dest)
    except BaseException as exc:
        if temp_path is not None:
            temp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ModelUnavailable(f"cannot write {dest} ({first_line(exc)}). {manual}") from exc
        raise


def _place(temp_path: Path, dest: Path) -> None:
    """Move a complete file into place without ever replacing one that appeared meanwhile."""
    try:
        # link() fails if dest exists, so a file installed concurrently by someone else stays.
        os.link(temp_path, dest)
    except FileExistsError:
        logger.info("%s appeared while downloading; keeping it", dest)
    except OSError:
        # A file system without hard links: rename, after a last look.
        if not dest.exists():
            os.replace(temp_path, dest)
    temp_path.unlink(missing_ok=True)


def _download(url: str, out: Any, *, timeout: float, dest: Path, manual: str, max_bytes: int | None) -> tuple[int, str]:
    """Stream `url` into `out`; returns the byte count and MD5 hex digest."""
    from tqdm import tqdm

    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    # The scheme was checked to be http(s) by _install.
    request = urllib.request.Request(url, headers={"User-Agent": "resonance-fetch-model"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length_header = response.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, file=sys.stderr
            ) as progress:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress.update(len(chunk))
                    if max_bytes is not None and size > max_bytes:
                        raise ModelUnavailable(
                            f"the download from {url} is over {max_bytes} bytes, far more than expected. {manual}"
                        )
    except urllib.error.HTTPError as exc:
        raise ModelUnavailable(f"downloading {url} failed: HTTP {exc.code} {exc.reason}. {manual}") from exc
    except urllib.error.URLError as exc:
        reason = first_line(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
        raise ModelUnavailable(f"cannot reach {url} ({reason}); no internet? {manual}") from exc
    except OSError as exc:
        # Timeouts and dropped connections while reading the body.
        raise ModelUnavailable(f"downloading {url} failed ({first_line(exc)}). {manual}") from exc
    if total is not None and size != total:
        raise ModelUnavailable(f"the download from {url} stopped at {size} of {total} bytes. {manual}")
    return size, digest.hexdigest()
