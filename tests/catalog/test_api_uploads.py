from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from catalog.models import Song, SongStatus
from tests import audio

pytestmark = pytest.mark.django_db


def _ask(api, **overrides):
    body = {"file_name": "My Song (live).mp3", "content_type": "audio/mpeg", "size": 1234} | overrides
    return api.post("/api/uploads/", body, format="json")


def test_it_hands_out_a_one_shot_upload_url_for_a_server_chosen_key(api) -> None:
    response = _ask(api)

    assert response.status_code == 201
    body = response.json()
    song = Song.objects.get(pk=body["song_id"])
    assert song.status == SongStatus.PENDING_UPLOAD
    assert song.object_key == f"uploads/{song.pk}/My_Song_live_.mp3"
    assert song.original_file_name == "My Song (live).mp3"
    assert body["upload"]["method"] == "PUT"
    assert body["upload"]["headers"] == {"Content-Type": "audio/mpeg"}
    assert body["upload"]["url"].startswith("http://testserver/storage/upload/")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"content_type": "application/pdf"}, "not an accepted audio type"),
        ({"content_type": ""}, "not an accepted audio type"),
        ({"size": 0}, "empty"),
        ({"size": 201 * 1024 * 1024}, "limit is 200 MB"),
        ({"size": "lots"}, "valid integer"),
    ],
)
def test_it_rejects_bad_upload_requests_with_a_reason(api, overrides, message) -> None:
    response = _ask(api, **overrides)

    assert response.status_code == 400
    assert message in str(response.json())
    assert not Song.objects.exists()


def _put(url: str, body: bytes, content_type: str = "audio/mpeg"):
    return Client().generic("PUT", url, body, content_type=content_type)


def test_the_upload_url_accepts_exactly_one_put(api) -> None:
    url = _ask(api, size=10).json()["upload"]["url"]

    assert _put(url, b"0123456789").status_code == 200
    second = _put(url, b"9876543210")

    assert second.status_code == 409
    assert "already been used" in second.json()["detail"]


def test_the_upload_url_refuses_another_content_type(api) -> None:
    url = _ask(api, size=10).json()["upload"]["url"]

    response = _put(url, b"0123456789", content_type="text/html")

    assert response.status_code == 415


def test_the_upload_url_refuses_more_bytes_than_declared(api) -> None:
    url = _ask(api, size=10).json()["upload"]["url"]

    response = _put(url, b"x" * 11)

    assert response.status_code == 413


def test_the_upload_url_refuses_a_tampered_token(api) -> None:
    url = _ask(api, size=10).json()["upload"]["url"]

    response = _put(url.replace("/upload/", "/upload/x"), b"0123456789")

    assert response.status_code == 403


def test_the_upload_url_expires(api, settings) -> None:
    settings.UPLOAD_URL_EXPIRY_SECONDS = -1
    url = _ask(api, size=10).json()["upload"]["url"]

    response = _put(url, b"0123456789")

    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_confirming_before_the_file_arrived_is_a_conflict_and_queues_nothing(api) -> None:
    song_id = _ask(api).json()["song_id"]

    response = api.post(f"/api/songs/{song_id}/uploaded/")

    assert response.status_code == 409
    assert "not arrived" in response.json()["detail"]
    assert Song.objects.get(pk=song_id).status == SongStatus.PENDING_UPLOAD


def test_confirming_twice_does_not_queue_a_second_ingest(upload, api, tmp_path: Path, mocker=None) -> None:
    song = upload(audio.write(tmp_path / "once.mp3", audio.tone(440, 2.0)))
    assert song.status == SongStatus.READY

    response = api.post(f"/api/songs/{song.pk}/uploaded/")

    assert response.status_code == 202
    song.refresh_from_db()
    assert song.ingest_attempts == 1


def test_confirming_an_unknown_song_is_not_found(api) -> None:
    response = api.post("/api/songs/00000000-0000-0000-0000-000000000000/uploaded/")

    assert response.status_code == 404
