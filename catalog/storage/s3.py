"""S3 and S3-compatible stores (MinIO, R2, ...): browsers upload with a presigned POST policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from boto3.exceptions import RetriesExceededError
from boto3.session import Session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from catalog.storage import StorageError, StorageUnavailable, StoredObject, UploadTicket

# Fail fast on a dead or black-holed endpoint: a web request waits on stat(), and Celery retries ingests itself.
_CONNECT_TIMEOUT_SECONDS = 5
_READ_TIMEOUT_SECONDS = 60
_MAX_ATTEMPTS = 3

_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


def _translate(exc: Exception, key: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _TRANSIENT_CODES:
            return StorageUnavailable(f"S3 is unavailable ({code}) for {key!r}")
        if code in {"404", "NoSuchKey", "NotFound"}:
            return StorageError(f"object {key!r} is not in storage")
        return StorageError(f"S3 refused the request for {key!r}: {code}")
    return StorageUnavailable(f"S3 cannot be reached for {key!r}: {exc}")


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        public_endpoint_url: str | None,
        region: str,
        read_timeout: float = _READ_TIMEOUT_SECONDS,
    ) -> None:
        self.bucket = bucket
        config = Config(
            signature_version="s3v4",
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            read_timeout=read_timeout,
            retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
        )
        # A session of our own: boto3's shared default session is not safe to create clients from in
        # several threads at once, and this factory may first run inside a threaded web worker.
        session = Session()
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        # Presigned URLs are signed for the host the browser will use.
        self._public: Any = (
            session.client("s3", endpoint_url=public_endpoint_url, region_name=region, config=config)
            if public_endpoint_url != endpoint_url
            else self._client
        )

    def presign_upload(self, key: str, *, content_type: str, max_bytes: int, expires_in: int) -> UploadTicket:
        post = self._public.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=expires_in,
        )
        return UploadTicket(method="POST", url=post["url"], fields=dict(post["fields"]), expires_in=expires_in)

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise _translate(exc, key) from exc
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise _translate(exc, key) from exc
        return StoredObject(size=int(head["ContentLength"]), content_type=str(head.get("ContentType", "")))

    def download(self, key: str, destination: Path) -> None:
        try:
            self._client.download_file(self.bucket, key, str(destination))
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        except RetriesExceededError as exc:  # the body stream kept breaking off mid-download
            cause = getattr(exc, "last_exception", exc)
            raise StorageUnavailable(f"S3 kept dropping the download of {key!r}: {cause}") from exc

    def put(self, key: str, source: Path, *, content_type: str) -> None:
        if self.stat(key) is not None:
            raise StorageError(f"object {key!r} already exists")
        try:
            self._client.upload_file(str(source), self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (ClientError, BotoCoreError, RetriesExceededError) as exc:
            raise _translate(exc, key) from exc

    def list_keys(self, prefix: str) -> Iterator[str]:
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, prefix) from exc

    def playback_url(self, key: str, *, expires_in: int) -> str:
        url: str = self._public.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
