"""Files under a local folder, written by signed one-shot PUT URLs that Django itself receives."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from django.core import signing
from django.urls import reverse

from catalog.storage import StorageError, StoredObject, UploadTicket

UPLOAD_SALT = "resonance.storage.upload"
PLAYBACK_SALT = "resonance.storage.playback"
CHUNK = 1024 * 1024


class UploadRejected(Exception):
    """A PUT that the signed URL does not allow; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        root = self.root.resolve()
        if root not in path.parents or ".." in Path(key).parts:
            raise StorageError(f"object key {key!r} escapes the storage folder")
        return path

    def presign_upload(self, key: str, *, content_type: str, max_bytes: int, expires_in: int) -> UploadTicket:
        self.path_for(key)
        token = signing.dumps(
            {"k": key, "t": content_type, "m": max_bytes, "x": int(time.time()) + expires_in}, salt=UPLOAD_SALT
        )
        return UploadTicket(
            method="PUT",
            url=reverse("storage-upload", args=[token]),
            headers={"Content-Type": content_type},
            expires_in=expires_in,
        )

    def receive_upload(self, token: str, *, content_type: str, content_length: int | None, body: BinaryIO) -> str:
        """Store one PUT body if the token allows it; return the key."""
        try:
            claims = signing.loads(token, salt=UPLOAD_SALT)
        except signing.BadSignature:
            raise UploadRejected(403, "This upload URL is not valid.") from None
        if time.time() > claims["x"]:
            raise UploadRejected(403, "This upload URL has expired; ask for a new one.")
        if content_type.split(";")[0].strip().lower() != claims["t"]:
            raise UploadRejected(415, f"This upload URL accepts only Content-Type {claims['t']}.")
        max_bytes: int = claims["m"]
        if content_length is None:
            raise UploadRejected(411, "Content-Length is required.")
        if content_length > max_bytes:
            raise UploadRejected(413, f"The file is larger than the {max_bytes} bytes declared for this upload.")
        if content_length == 0:
            raise UploadRejected(400, "The upload is empty.")
        final = self.path_for(claims["k"])
        if final.exists():
            raise UploadRejected(409, "This upload URL has already been used.")
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=final.parent, prefix=".upload-")
        try:
            received = 0
            with os.fdopen(fd, "wb") as out:
                while received < content_length:
                    chunk = body.read(min(CHUNK, content_length - received))
                    if not chunk:
                        break
                    received += len(chunk)
                    out.write(chunk)
            if received != content_length:
                raise UploadRejected(400, f"The upload ended after {received} of {content_length} bytes.")
            try:
                # A hard link fails if the key exists, so two racing PUTs cannot both succeed.
                os.link(temp_name, final)
            except FileExistsError:
                raise UploadRejected(409, "This upload URL has already been used.") from None
        finally:
            os.unlink(temp_name)
        # Content type travels with the file, as S3 keeps it as object metadata.
        final.with_name(final.name + ".type").write_text(claims["t"])
        return str(claims["k"])

    def stat(self, key: str) -> StoredObject | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        type_file = path.with_name(path.name + ".type")
        content_type = type_file.read_text() if type_file.is_file() else "application/octet-stream"
        return StoredObject(size=path.stat().st_size, content_type=content_type)

    def put(self, key: str, source: Path, *, content_type: str) -> None:
        path = self.path_for(key)
        if path.exists():
            raise StorageError(f"object {key!r} already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as handle, open(path, "xb") as out:
            shutil.copyfileobj(handle, out, CHUNK)
        path.with_name(path.name + ".type").write_text(content_type)

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.root.resolve()
        folder = base / prefix
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".type") and not path.name.startswith(".upload-"):
                yield path.relative_to(base).as_posix()

    def download(self, key: str, destination: Path) -> None:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError(f"object {key!r} is not in storage")
        shutil.copyfile(path, destination)

    def playback_url(self, key: str, *, expires_in: int) -> str:
        token = signing.dumps({"k": key, "x": int(time.time()) + expires_in}, salt=PLAYBACK_SALT)
        return reverse("storage-media", args=[token])

    def resolve_playback(self, token: str) -> tuple[Path, str]:
        try:
            claims = signing.loads(token, salt=PLAYBACK_SALT)
        except signing.BadSignature:
            raise UploadRejected(403, "This link is not valid.") from None
        if time.time() > claims["x"]:
            raise UploadRejected(403, "This link has expired; reload the page.")
        stored = self.stat(claims["k"])
        if stored is None:
            raise UploadRejected(404, "The file is no longer in storage.")
        return self.path_for(claims["k"]), stored.content_type

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".type").unlink(missing_ok=True)
