from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from catalog.models import Song, SongStatus
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db


def test_unfinished_uploads_expire_with_any_stored_object(api, settings, capsys) -> None:
    never_sent = api.post(
        "/api/uploads/", {"file_name": "a.mp3", "content_type": "audio/mpeg", "size": 4}, format="json"
    )
    sent = api.post("/api/uploads/", {"file_name": "b.mp3", "content_type": "audio/mpeg", "size": 4}, format="json")
    Client().generic("PUT", sent.json()["upload"]["url"], b"abcd", content_type="audio/mpeg")
    fresh = api.post("/api/uploads/", {"file_name": "c.mp3", "content_type": "audio/mpeg", "size": 4}, format="json")
    ready = SongFactory.create(status=SongStatus.READY)
    old = timezone.now() - timedelta(hours=25)
    Song.objects.filter(pk__in=[never_sent.json()["song_id"], sent.json()["song_id"], ready.pk]).update(created_at=old)
    sent_file = settings.LOCAL_STORAGE_ROOT / Song.objects.get(pk=sent.json()["song_id"]).object_key
    assert sent_file.exists()

    call_command("expire_uploads")

    assert "Removed 2 unfinished uploads" in capsys.readouterr().out
    assert set(Song.objects.values_list("pk", flat=True)) == {ready.pk, Song.objects.get(pk=fresh.json()["song_id"]).pk}
    assert not sent_file.exists()


def _sent_upload(api, body: bytes = b"abcd") -> Song:
    created = api.post(
        "/api/uploads/", {"file_name": "late.mp3", "content_type": "audio/mpeg", "size": len(body)}, format="json"
    ).json()
    Client().generic("PUT", created["upload"]["url"], body, content_type="audio/mpeg")
    Song.objects.filter(pk=created["song_id"]).update(created_at=timezone.now() - timedelta(hours=25))
    return Song.objects.get(pk=created["song_id"])


def test_an_expiry_arriving_while_a_confirmation_checks_storage_wins_and_the_confirmation_is_refused(
    api, settings, monkeypatch, alongside
) -> None:
    from catalog import services
    from catalog.storage.local import LocalStorage

    song = _sent_upload(api)
    real_stat = LocalStorage.stat

    def stat_then_expire(self, key):
        found = real_stat(self, key)
        alongside(lambda: services.expire_stale_uploads(older_than=timedelta(hours=24)))
        return found

    monkeypatch.setattr(LocalStorage, "stat", stat_then_expire)
    queued: list[object] = []
    monkeypatch.setattr(services, "_queue_ingest", queued.append)

    response = api.post(f"/api/songs/{song.pk}/uploaded/")
    assert alongside.join() == [1]

    assert response.status_code == 409
    assert "expired" in response.json()["detail"]
    assert not Song.objects.filter(pk=song.pk).exists()
    assert not (settings.LOCAL_STORAGE_ROOT / song.object_key).exists()
    assert queued == []


def test_a_confirmation_arriving_after_expiry_listed_the_song_wins_and_the_song_stays(
    api, settings, monkeypatch, alongside
) -> None:
    from catalog import lifecycle, services

    song = _sent_upload(api)
    real_transition = lifecycle.transition
    queued: list[object] = []
    monkeypatch.setattr(services, "_queue_ingest", queued.append)

    def confirm_first(target, *, from_, to, **fields):
        if to == SongStatus.DELETING and not queued:
            alongside(lambda: services.confirm_upload(Song.objects.get(pk=song.pk)))
        return real_transition(target, from_=from_, to=to, **fields)

    monkeypatch.setattr(lifecycle, "transition", confirm_first)

    assert services.expire_stale_uploads(older_than=timedelta(hours=24)) == 0
    alongside.join()

    assert queued == [song.pk]
    assert Song.objects.get(pk=song.pk).status == SongStatus.UPLOADED
    assert (settings.LOCAL_STORAGE_ROOT / song.object_key).exists()
