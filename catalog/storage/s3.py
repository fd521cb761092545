"""S3 and S3-compatible stores (MinIO, R2, ...): browsers upload with a presigned POST policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from catalog.storage import StorageError, StorageUnavailable, StoredObject, UploadTicket

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
    def __init__(self, *, bucket: str, endpoint_url: str | None, public_endpoint_url: str | None, region: str) -> None:
        self.bucket = bucket
        config = Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"})
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        # Presigned URLs are signed for the host the browser will use.
        self._public: Any = (
            boto3.client("s3", endpoint_url=public_endpoint_url, region_name=region, config=config)
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
