"""Ingests that were lost on the way to a worker are found and queued again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError

from catalog import services
from catalog.errors import QueueUnavailable
from catalog.models import Song, SongStatus
from catalog.tasks import ingest_song_task
from tests import audio

# Real commits, so on-commit hooks (where tasks are queued) run inside the request, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def _stored_song(api, tmp_path: Path) -> Song:
    body = audio.write(tmp_path / "lost.mp3", audio.chord([220, 330], 3.0)).read_bytes()
    ticket = api.post(
        "/api/uploads/", {"file_name": "lost.mp3", "content_type": "audio/mpeg", "size": len(body)}, format="json"
    ).json()
    assert Client().generic("PUT", ticket["upload"]["url"], body, content_type="audio/mpeg").status_code == 200
    return Song.objects.get(pk=ticket["song_id"])


def _queue_down(monkeypatch) -> list[str]:
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(str(args[0]) if args else "")
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(ingest_song_task, "delay", refuse)
    return attempts


def test_confirming_while_the_queue_is_down_answers_503_and_keeps_the_song(api, tmp_path: Path, monkeypatch) -> None:
    song = _stored_song(api, tmp_path)
    attempts = _queue_down(monkeypatch)

    response = api.post(f"/api/songs/{song.pk}/uploaded/")

    assert response.status_code == 503
    assert response.json()["code"] == "queue_unavailable"
    assert "file is stored" in response.json()["detail"]
    assert attempts == [str(song.pk)]
    song.refresh_from_db()
    assert song.status == SongStatus.UPLOADED


def test_a_lost_ingest_is_queued_again_once_it_has_stalled(api, tmp_path: Path, eager_celery, monkeypatch) -> None:
    song = _stored_song(api, tmp_path)
    _queue_down(monkeypatch)
    with pytest.raises(QueueUnavailable, match="cannot be reached"):
        services.confirm_upload(song)
    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 0  # too fresh to be stalled
    monkeypatch.undo()

    Song.objects.filter(pk=song.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 1

    song.refresh_from_db()
    assert song.status == SongStatus.READY, song.failure_reason
    assert services.stalled_ingests(older_than=timedelta(minutes=30)) == []


def test_while_the_queue_stays_down_a_stalled_song_stays_due(api, tmp_path: Path, monkeypatch) -> None:
    song = _stored_song(api, tmp_path)
    Song.objects.filter(pk=song.pk).update(status=SongStatus.UPLOADED, updated_at=timezone.now() - timedelta(hours=1))
    attempts = _queue_down(monkeypatch)

    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 0

    assert attempts == [str(song.pk)]
    assert services.stalled_ingests(older_than=timedelta(minutes=30)) == [song.pk]


def test_a_song_processing_far_past_the_time_limit_counts_as_stalled(api, tmp_path: Path, settings) -> None:
    song = _stored_song(api, tmp_path)
    settings.INGEST_TIME_LIMIT_SECONDS = 600
    Song.objects.filter(pk=song.pk).update(
        status=SongStatus.PROCESSING, updated_at=timezone.now() - timedelta(minutes=15)
    )
    assert services.stalled_ingests(older_than=timedelta(minutes=5)) == []  # may still be running

    Song.objects.filter(pk=song.pk).update(updated_at=timezone.now() - timedelta(minutes=25))
    assert services.stalled_ingests(older_than=timedelta(minutes=5)) == [song.pk]


def test_check_consistency_reports_and_requeues_stalled_ingests(api, tmp_path: Path, eager_celery, capsys) -> None:
    song = _stored_song(api, tmp_path)
    Song.objects.filter(pk=song.pk).update(status=SongStatus.UPLOADED, updated_at=timezone.now() - timedelta(hours=2))

    call_command("check_consistency", "--fix")

    assert "ingests queued but never started" in capsys.readouterr().out
    song.refresh_from_db()
    assert song.status == SongStatus.READY, song.failure_reason


def test_a_confirmation_refused_while_storage_was_down_is_confirmed_once_the_object_is_seen(
    api, tmp_path: Path, eager_celery, monkeypatch
) -> None:
    from catalog.storage import StorageUnavailable
    from catalog.storage.local import LocalStorage

    song = _stored_song(api, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(LocalStorage, "stat", lambda self, key: (_ for _ in ()).throw(StorageUnavailable("timed out")))
        response = api.post(f"/api/songs/{song.pk}/uploaded/")
    assert response.status_code == 503
    assert Song.objects.get(pk=song.pk).status == SongStatus.PENDING_UPLOAD
    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 0  # the browser may still confirm

    Song.objects.filter(pk=song.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 1

    song.refresh_from_db()
    assert song.status == SongStatus.READY, song.failure_reason


def test_an_unconfirmed_upload_still_arriving_is_left_for_the_browser(api, monkeypatch) -> None:
    from catalog.storage import StoredObject
    from catalog.storage.local import LocalStorage

    created = api.post(
        "/api/uploads/", {"file_name": "big.mp3", "content_type": "audio/mpeg", "size": 1000}, format="json"
    ).json()
    Song.objects.filter(pk=created["song_id"]).update(created_at=timezone.now() - timedelta(hours=1))
    monkeypatch.setattr(LocalStorage, "stat", lambda self, key: StoredObject(size=400, content_type="audio/mpeg"))

    assert services.requeue_stalled_ingests(older_than=timedelta(minutes=30)) == 0

    assert Song.objects.get(pk=created["song_id"]).status == SongStatus.PENDING_UPLOAD


def test_a_permanent_storage_error_at_confirmation_answers_503_with_the_reason(
    api, tmp_path: Path, monkeypatch
) -> None:
    from catalog.storage import StorageError
    from catalog.storage.local import LocalStorage

    song = _stored_song(api, tmp_path)
    monkeypatch.setattr(
        LocalStorage, "stat", lambda self, key: (_ for _ in ()).throw(StorageError("S3 refused: AccessDenied"))
    )

    response = api.post(f"/api/songs/{song.pk}/uploaded/")

    assert response.status_code == 503
    assert response.json()["code"] == "storage_error"
    assert "AccessDenied" in response.json()["detail"]
    assert Song.objects.get(pk=song.pk).status == SongStatus.PENDING_UPLOAD
