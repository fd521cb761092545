"""Faults injected into the real stack (redis-server, a Celery worker process, S3 over a cuttable link)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from catalog.models import Song, SongStatus
from embeddings.models import StoredVector
from tests import audio
from tests.services import REAL_STACK, Proxy, wait_until

pytestmark = REAL_STACK


def _ask(api: Any, path: Path) -> dict[str, Any]:
    body = path.read_bytes()
    response = api.post(
        "/api/uploads/", {"file_name": path.name, "content_type": "audio/mpeg", "size": len(body)}, format="json"
    )
    assert response.status_code == 201, response.json()
    return dict(response.json())


def _upload_local(api: Any, path: Path) -> str:
    ticket = _ask(api, path)
    put = Client().generic("PUT", ticket["upload"]["url"], path.read_bytes(), content_type="audio/mpeg")
    assert put.status_code == 200, put.content
    return str(ticket["song_id"])


def _upload_s3(api: Any, path: Path) -> str:
    """Upload as a browser does with S3: the presigned POST's fields, then the file."""
    ticket = _ask(api, path)
    target = ticket["upload"]
    sent = requests.post(
        target["url"], data=target["fields"], files={"file": (path.name, path.read_bytes(), "audio/mpeg")}, timeout=30
    )
    assert sent.status_code in (200, 201, 204), sent.text
    return str(ticket["song_id"])


def _statuses(song_ids: list[str]) -> dict[str, str]:
    return {str(pk): status for pk, status in Song.objects.filter(pk__in=song_ids).values_list("pk", "status")}


def _log(tmp_path: Path) -> str:
    log = tmp_path / "worker.log"
    return log.read_text(errors="replace") if log.exists() else ""


def test_tasks_queued_before_a_redis_restart_are_done_after_it(api, redis, workers, tmp_path: Path) -> None:
    queued = [
        _upload_local(api, audio.write(tmp_path / f"queued-{i}.mp3", audio.chord([220 + 40 * i, 330], 3.0)))
        for i in range(2)
    ]
    for song_id in queued:  # no worker runs yet: the tasks wait in Redis
        assert api.post(f"/api/songs/{song_id}/uploaded/").status_code == 202

    redis.restart()
    workers()

    assert wait_until(lambda: set(_statuses(queued).values()) == {SongStatus.READY}, 90), _log(tmp_path)

    # The worker, still running, reconnects after another restart and takes new work.
    redis.restart()
    later = _upload_local(api, audio.write(tmp_path / "later.mp3", audio.noise_bursts(3.0)))
    assert wait_until(lambda: api.post(f"/api/songs/{later}/uploaded/").status_code == 202, 30)
    assert wait_until(lambda: _statuses([later]) == {later: SongStatus.READY}, 90), _log(tmp_path)
    assert StoredVector.objects.filter(song_id__in=[*queued, later]).count() == 3


def test_confirming_while_redis_is_down_answers_503_and_the_song_is_done_once_it_is_back(
    api, redis, workers, tmp_path: Path
) -> None:
    song_id = _upload_local(api, audio.write(tmp_path / "patient.mp3", audio.chord([262, 330, 392], 3.0)))
    redis.stop()

    response = api.post(f"/api/songs/{song_id}/uploaded/")

    assert response.status_code == 503, response.content
    assert "queued again automatically" in response.json()["detail"]
    assert _statuses([song_id]) == {song_id: SongStatus.UPLOADED}

    redis.start()
    workers()
    Song.objects.filter(pk=song_id).update(updated_at=timezone.now() - timedelta(minutes=31))
    call_command("check_consistency", "--fix")  # what Celery beat's requeue does every ten minutes

    assert wait_until(lambda: _statuses([song_id]) == {song_id: SongStatus.READY}, 90), _log(tmp_path)


@pytest.fixture
def s3_link(s3_endpoint: str, bucket: str, settings: Any) -> Iterator[Proxy]:
    """The app on moto S3 through a link the test can cut or slow down."""
    link = Proxy(int(s3_endpoint.rsplit(":", 1)[1]))
    settings.STORAGE_BACKEND, settings.S3_BUCKET, settings.S3_REGION = "s3", bucket, "us-east-1"
    settings.S3_ENDPOINT_URL = settings.S3_PUBLIC_ENDPOINT_URL = link.url
    yield link
    link.close()


def _s3_worker(settings: Any, **extra: str) -> dict[str, str]:
    """A worker's settings for the same bucket through the same link, retrying every second or so."""
    return {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": settings.S3_BUCKET,
        "S3_ENDPOINT_URL": settings.S3_ENDPOINT_URL,
        "S3_REGION": settings.S3_REGION,
        "INGEST_RETRY_BACKOFF_SECONDS": "1",
        **extra,
    }


def test_storage_down_for_a_while_is_ridden_out_and_the_api_answers_503_meanwhile(
    api, redis, workers, tmp_path: Path, s3_link: Proxy, settings: Any
) -> None:
    first, second = (
        _upload_s3(api, audio.write(tmp_path / f"s3-{i}.mp3", audio.chord([196 + 50 * i, 294], 3.0))) for i in range(2)
    )
    assert api.post(f"/api/songs/{first}/uploaded/").status_code == 202  # queued; no worker yet

    s3_link.cut()
    workers(**_s3_worker(settings))
    # While storage is down the worker keeps retrying, and the API says what is wrong instead of a 500.
    assert wait_until(lambda: Song.objects.get(pk=first).ingest_attempts >= 2, 60), _log(tmp_path)
    down = api.post(f"/api/songs/{second}/uploaded/")
    assert down.status_code == 503
    assert "unavailable" in down.json()["detail"]
    assert Song.objects.get(pk=first).status == SongStatus.PROCESSING

    s3_link.mend()

    assert wait_until(lambda: Song.objects.get(pk=first).status == SongStatus.READY, 120), _log(tmp_path)
    assert api.post(f"/api/songs/{second}/uploaded/").status_code == 202
    assert wait_until(lambda: Song.objects.get(pk=second).status == SongStatus.READY, 90), _log(tmp_path)
    assert "Retry in" in _log(tmp_path)


def test_storage_slower_than_its_timeout_is_retried_until_it_answers_in_time(
    api, redis, workers, tmp_path: Path, s3_link: Proxy, settings: Any
) -> None:
    song_id = _upload_s3(api, audio.write(tmp_path / "slow.mp3", audio.chord([233, 349], 3.0)))
    assert api.post(f"/api/songs/{song_id}/uploaded/").status_code == 202

    s3_link.delay = 3.0  # every answer now comes later than the worker waits for one
    workers(**_s3_worker(settings, S3_READ_TIMEOUT_SECONDS="1"))
    assert wait_until(lambda: Song.objects.get(pk=song_id).ingest_attempts >= 2, 90), _log(tmp_path)
    assert Song.objects.get(pk=song_id).status == SongStatus.PROCESSING

    s3_link.delay = 0.0

    assert wait_until(lambda: Song.objects.get(pk=song_id).status == SongStatus.READY, 120), _log(tmp_path)
    assert "Read timeout" in _log(tmp_path) or "timed out" in _log(tmp_path)
