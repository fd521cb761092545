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
