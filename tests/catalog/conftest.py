"""Servers the catalog tests share: a moto S3 server (one per module) and a fresh bucket per test, and for the
real-stack tests a durable redis-server with Celery worker processes on this test's database and storage."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import database_env, use_broker
from tests.services import RedisServer, start_worker, stop_worker

REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port, with throwaway credentials and no host AWS config."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"resonance-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", durable=True)
    server.folder.mkdir()
    server.start()
    use_broker(server.url, {"visibility_timeout": 3600})
    yield server
    use_broker("memory://", {})
    server.stop()


@pytest.fixture
def workers(redis: RedisServer, settings: Any, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a worker on this test's database, storage and broker; extra settings as keyword arguments."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> subprocess.Popen[bytes]:
        env = {
            "CELERY_BROKER_URL": redis.url,
            **database_env(),
            "LOCAL_STORAGE_ROOT": str(settings.LOCAL_STORAGE_ROOT),
            "EMBEDDING_MODEL": "features",
            "VAR_DIR": str(tmp_path / "worker-var"),
            **extra,
        }
        started.append(start_worker(tmp_path / "worker.log", env))
        return started[-1]

    yield start
    for process in started:
        stop_worker(process)
