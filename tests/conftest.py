from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Song
from config.cache import HostCache
from config.celery import app as celery_app
from derived.store import forget_held
from embeddings.registry import forget_loaded_models

# The `alongside` fixture: another actor on its own connection, for the lifecycle's races.
pytest_plugins = ["tests.concurrency"]


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def database_env() -> dict[str, str]:
    """Environment that points a child process (a worker, a server, a script) at this test run's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"SQLITE_PATH": str(db["NAME"])}
    credentials = f"{quote(db['USER'] or '', safe='')}:{quote(db['PASSWORD'] or '', safe='')}@" if db["USER"] else ""
    return {"DATABASE_URL": f"postgres://{credentials}{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"}


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    where = f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}" if "postgresql" in db["ENGINE"] else db["NAME"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} ({where}; DATABASE_URL selects PostgreSQL)"


def use_broker(url: str, options: dict[str, Any]) -> None:
    """Point the Celery app at another broker, dropping connections pooled for the old one."""
    celery_app.close()
    celery_app.conf.update(broker_url=url, broker_transport_options=options)
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture(autouse=True, scope="session")
def in_memory_broker() -> None:
    # Tasks queued by tests must never land in the broker folder a development worker reads.
    use_broker("memory://", {})


@pytest.fixture(autouse=True)
def isolated_settings(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """Each test gets its own storage folder and the weight-free model unless it asks otherwise."""
    settings.LOCAL_STORAGE_ROOT = tmp_path / "media"
    settings.DERIVED_INDEX_DIR = tmp_path / "indexes"
    settings.PANNS_DATA_DIR = tmp_path / "models"
    settings.PANNS_CHECKPOINT = None
    settings.EMBEDDING_MODEL = "features"
    # An OpenVINO export of each random checkpoint would take a minute; tests of the default runtime set "auto".
    settings.EMBEDDING_RUNTIME = "torch"
    settings.STORAGE_BACKEND = "local"
    settings.VECTOR_BACKEND = "local"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": str(tmp_path / "cache")}}
    forget_loaded_models()
    forget_held()
    yield settings
    forget_loaded_models()
    forget_held()
    for cache in caches.all(initialized_only=True):
        if isinstance(cache, HostCache):
            cache.disconnect()  # its folder goes with the test: its open files must not pile up


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Run queued tasks in-process, the way a worker would, as soon as they are queued."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def upload(api: APIClient, django_capture_on_commit_callbacks: Any, eager_celery: None) -> Callable[..., Song]:
    """Upload a file through the API as a browser does: ask for a URL, PUT the bytes, confirm."""

    def _upload(path: Path, *, content_type: str = "audio/mpeg", file_name: str | None = None) -> Song:
        body = path.read_bytes()
        created = api.post(
            "/api/uploads/",
            {"file_name": file_name or path.name, "content_type": content_type, "size": len(body)},
            format="json",
        )
        assert created.status_code == 201, created.json()
        ticket = created.json()["upload"]
        put = Client().generic("PUT", ticket["url"], body, content_type=ticket["headers"]["Content-Type"])
        assert put.status_code == 200, put.content
        with django_capture_on_commit_callbacks(execute=True):
            confirmed = api.post(f"/api/songs/{created.json()['song_id']}/uploaded/")
        assert confirmed.status_code == 202, confirmed.json()
        return Song.objects.get(pk=created.json()["song_id"])

    return _upload
