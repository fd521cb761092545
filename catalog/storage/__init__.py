"""The object storage protocol and its `get_storage()` factory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from django.conf import settings


@dataclass(frozen=True)
class UploadTicket:
    """Everything a browser needs to send one file straight to storage."""

    method: Literal["PUT", "POST"]
    url: str
    # Form fields to send before the file in a multipart POST (S3 presigned POST).
    fields: dict[str, str] = field(default_factory=dict)
    # Headers the browser must send with a PUT.
    headers: dict[str, str] = field(default_factory=dict)
    expires_in: int = 0


@dataclass(frozen=True)
class StoredObject:
    size: int
    content_type: str


class StorageError(Exception):
    """A permanent storage problem (e.g. the object does not exist)."""


class StorageUnavailable(Exception):
    """Storage cannot be reached right now; retrying later may succeed."""


class Storage(Protocol):
    def presign_upload(self, key: str, *, content_type: str, max_bytes: int, expires_in: int) -> UploadTicket: ...

    def stat(self, key: str) -> StoredObject | None:
        """Size and type of a stored object, or None when there is none."""
        ...

    def download(self, key: str, destination: Path) -> None: ...

    def put(self, key: str, source: Path, *, content_type: str) -> None:
        """Store a local file under `key` (imports); never overwrites an existing object."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every object key under `prefix` (consistency checks)."""
        ...

    def playback_url(self, key: str, *, expires_in: int) -> str: ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...


@lru_cache(maxsize=4)
def _storage(
    backend: str, root: Path, bucket: str, endpoint: str | None, public: str | None, region: str, read_timeout: float
) -> Storage:
    if backend == "local":
        from catalog.storage.local import LocalStorage

        return LocalStorage(root)
    if backend == "s3":
        from catalog.storage.s3 import S3Storage

        return S3Storage(
            bucket=bucket, endpoint_url=endpoint, public_endpoint_url=public, region=region, read_timeout=read_timeout
        )
    raise StorageError(f"unknown STORAGE_BACKEND {backend!r}")


def get_storage() -> Storage:
    return _storage(
        settings.STORAGE_BACKEND,
        settings.LOCAL_STORAGE_ROOT,
        settings.S3_BUCKET,
        settings.S3_ENDPOINT_URL,
        settings.S3_PUBLIC_ENDPOINT_URL,
        settings.S3_REGION,
        settings.S3_READ_TIMEOUT_SECONDS,
    )
