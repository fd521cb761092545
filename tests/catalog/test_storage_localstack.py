"""Presigned URLs against an S3 that checks them: LocalStack with S3_SKIP_SIGNATURE_VALIDATION=0.

moto accepts any signature, size and content type, so what a real S3 would refuse is tested here: a POST outside its
policy (another key, content type or size, or after its expiry) and a tampered or expired presigned GET. LocalStack
checks a POST's policy conditions but not the policy's signature, so that one check is left to real S3.
LocalStack runs on Python 3.13: `bin/test` installs it into .venv-localstack when python3.13 is available
(LOCALSTACK_PYTHON may name another interpreter that has it); without it these tests are skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from catalog.storage.s3 import S3Storage
from tests.catalog.conftest import REGION
from tests.services import ROOT, free_port

PYTHON = Path(os.environ.get("LOCALSTACK_PYTHON", ROOT / ".venv-localstack" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason=f"LocalStack is not installed ({PYTHON})")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    folder = tmp_path_factory.mktemp("localstack")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "SERVICES": "s3",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "LOCALSTACK_VOLUME_DIR": str(folder / "volume"),
        "FILESYSTEM_ROOT": str(folder / "root"),
        "TMPDIR": str(folder),
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "LOCALSTACK_CLI": "0",
    }
    with open(folder / "localstack.log", "wb") as log:
        process = subprocess.Popen(
            [str(PYTHON), "-m", "localstack.runtime.main"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{url}/_localstack/health", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("LocalStack did not start:\n" + (folder / "localstack.log").read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def storage(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    bucket = f"resonance-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=bucket)
    return S3Storage(bucket=bucket, endpoint_url=endpoint, public_endpoint_url=endpoint, region=REGION)


def _post(ticket: Any, body: bytes, *, content_type: str = "audio/mpeg", **changed: str) -> requests.Response:
    fields = {**ticket.fields, **changed}
    return requests.post(
        ticket.url, data=fields, files={"file": ("song.mp3", body, content_type)}, timeout=30, allow_redirects=False
    )


def _ticket(storage: S3Storage, *, max_bytes: int = 1000, expires_in: int = 300) -> Any:
    return storage.presign_upload(
        "uploads/x/song.mp3", content_type="audio/mpeg", max_bytes=max_bytes, expires_in=expires_in
    )


def test_a_presigned_post_within_its_policy_is_stored(storage: S3Storage) -> None:
    response = _post(_ticket(storage), b"ID3" + b"\0" * 500)

    assert response.status_code in (200, 201, 204), response.text
    stored = storage.stat("uploads/x/song.mp3")
    assert stored is not None and stored.size == 503


def test_a_post_to_another_key_is_refused(storage: S3Storage) -> None:
    response = _post(_ticket(storage), b"ID3" + b"\0" * 500, key="uploads/someone-else/song.mp3")

    assert response.status_code == 403, response.text
    assert storage.stat("uploads/someone-else/song.mp3") is None


def test_a_post_with_another_content_type_is_refused(storage: S3Storage) -> None:
    response = _post(_ticket(storage), b"<html>", content_type="text/html", **{"Content-Type": "text/html"})

    assert response.status_code == 403, response.text
    assert storage.stat("uploads/x/song.mp3") is None


def test_a_file_larger_than_declared_is_refused(storage: S3Storage) -> None:
    response = _post(_ticket(storage, max_bytes=100), b"\0" * 101)

    assert response.status_code == 400, response.text
    assert "EntityTooLarge" in response.text
    assert storage.stat("uploads/x/song.mp3") is None


def test_an_expired_upload_ticket_is_refused(storage: S3Storage) -> None:
    ticket = _ticket(storage, expires_in=1)
    time.sleep(2.5)

    response = _post(ticket, b"ID3" + b"\0" * 10)

    assert response.status_code == 403, response.text
    assert "expired" in response.text.lower()


def test_a_playback_url_works_only_as_signed(storage: S3Storage) -> None:
    assert _post(_ticket(storage), b"ID3" + b"\0" * 64).status_code in (200, 201, 204)
    url = storage.playback_url("uploads/x/song.mp3", expires_in=300)

    assert requests.get(url, timeout=30).content == b"ID3" + b"\0" * 64
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", url)
    assert signature is not None
    forged = url.replace(signature.group(1), signature.group(1)[::-1])
    assert requests.get(forged, timeout=30).status_code == 403
    assert requests.get(url.replace("uploads/x/song.mp3", "uploads/x/other.mp3"), timeout=30).status_code == 403


def test_an_expired_playback_url_is_refused(storage: S3Storage) -> None:
    assert _post(_ticket(storage), b"ID3" + b"\0" * 64).status_code in (200, 201, 204)
    url = storage.playback_url("uploads/x/song.mp3", expires_in=1)
    time.sleep(2.5)

    assert requests.get(url, timeout=30).status_code == 403
