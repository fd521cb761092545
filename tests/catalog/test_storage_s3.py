"""The S3 backend against a real (moto) S3 server: presigned POST uploads, stat, download, playback, errors."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from boto3.exceptions import RetriesExceededError

from catalog.models import Song, SongStatus
from catalog.storage import StorageError, StorageUnavailable, get_storage
from catalog.storage.s3 import S3Storage
from tests import audio
from tests.catalog.conftest import REGION

pytestmark = pytest.mark.django_db

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, so connecting is refused at once


@pytest.fixture
def s3(settings: Any, s3_endpoint: str, bucket: str) -> Any:
    """Point the app at the moto server and a fresh bucket (a new bucket means a new cached storage)."""
    settings.STORAGE_BACKEND = "s3"
    settings.S3_ENDPOINT_URL = s3_endpoint
    settings.S3_PUBLIC_ENDPOINT_URL = s3_endpoint
    settings.S3_BUCKET = bucket
    settings.S3_REGION = REGION
    return settings


def _ask(api: Any, *, file_name: str = "My Song (live).mp3", size: int = 1234) -> dict[str, Any]:
    response = api.post(
        "/api/uploads/", {"file_name": file_name, "content_type": "audio/mpeg", "size": size}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _post_file(ticket: dict[str, Any], name: str, body: bytes) -> requests.Response:
    """Send the file as a browser form does: the ticket's fields first, then the file."""
    assert ticket["method"] == "POST"
    return requests.post(ticket["url"], data=ticket["fields"], files={"file": (name, body, "audio/mpeg")}, timeout=10)


def _policy(fields: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


def test_it_hands_out_a_presigned_post_whose_policy_pins_key_type_and_size(api, s3) -> None:
    before = time.time()
    body = _ask(api, size=4321)
    song = Song.objects.get(pk=body["song_id"])
    ticket = body["upload"]

    assert ticket["method"] == "POST"
    assert ticket["url"] == f"{s3.S3_ENDPOINT_URL}/{s3.S3_BUCKET}"
    assert ticket["headers"] == {}
    assert ticket["expires_in"] == s3.UPLOAD_URL_EXPIRY_SECONDS
    fields = ticket["fields"]
    assert fields["key"] == f"uploads/{song.pk}/My_Song_live_.mp3" == song.object_key
    assert fields["Content-Type"] == "audio/mpeg"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["x-amz-signature"]
    assert not any(name.lower() == "acl" for name in fields)

    policy = _policy(fields)
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 4321] in conditions
    assert {"Content-Type": "audio/mpeg"} in conditions
    assert {"key": song.object_key} in conditions
    assert {"bucket": s3.S3_BUCKET} in conditions
    assert "public-read" not in json.dumps(policy)
    assert not any("acl" in condition for condition in conditions if isinstance(condition, dict))
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert before + s3.UPLOAD_URL_EXPIRY_SECONDS - 5 <= expires <= time.time() + s3.UPLOAD_URL_EXPIRY_SECONDS + 5


def test_it_uploads_through_a_presigned_post_and_ingests(
    api, s3, eager_celery, django_capture_on_commit_callbacks, tmp_path: Path
) -> None:
    path = audio.write(tmp_path / "anthem.mp3", audio.chord([220, 277, 330], 2.0), title="Anthem", artist="The Tones")
    data = path.read_bytes()
    body = _ask(api, file_name="Anthem.mp3", size=len(data))
    song_id = body["song_id"]

    posted = _post_file(body["upload"], "Anthem.mp3", data)
    assert posted.status_code in (200, 201, 204), posted.text
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        confirmed = api.post(f"/api/songs/{song_id}/uploaded/")

    assert confirmed.status_code == 202, confirmed.json()
    assert len(callbacks) == 1
    song = Song.objects.get(pk=song_id)
    assert song.status == SongStatus.READY, song.failure_reason
    assert (song.title, song.artist) == ("Anthem", "The Tones")
    assert song.size == len(data)
    stored = get_storage().stat(song.object_key)
    assert stored is not None
    assert (stored.size, stored.content_type) == (len(data), "audio/mpeg")

    detail = api.get(f"/api/songs/{song_id}/").json()
    playback = detail["playback_url"]
    assert playback.startswith(f"{s3.S3_ENDPOINT_URL}/{s3.S3_BUCKET}/{song.object_key}?")
    assert "X-Amz-Signature=" in playback
    assert f"X-Amz-Expires={s3.PLAYBACK_URL_EXPIRY_SECONDS}" in playback
    fetched = requests.get(playback, timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == data


def test_confirming_before_the_file_arrives_is_a_conflict_and_queues_nothing(
    api, s3, django_capture_on_commit_callbacks
) -> None:
    song_id = _ask(api)["song_id"]

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/songs/{song_id}/uploaded/")

    assert response.status_code == 409
    assert response.json()["code"] == "upload_missing"
    assert "has not arrived in storage yet" in response.json()["detail"]
    assert callbacks == []
    assert Song.objects.get(pk=song_id).status == SongStatus.PENDING_UPLOAD


def test_confirming_a_file_of_another_size_rejects_it_and_deletes_the_object(
    api, s3, django_capture_on_commit_callbacks
) -> None:
    # moto does not enforce the policy's content-length-range, so the server-side check must catch this.
    body = _ask(api, size=10)
    song = Song.objects.get(pk=body["song_id"])
    assert _post_file(body["upload"], "x.mp3", b"x" * 11).ok
    assert get_storage().stat(song.object_key) is not None

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/songs/{song.pk}/uploaded/")

    assert response.status_code == 400
    assert "11 bytes, not the 10 bytes declared" in response.json()["detail"]
    assert callbacks == []
    assert get_storage().stat(song.object_key) is None
    assert Song.objects.get(pk=song.pk).status == SongStatus.PENDING_UPLOAD


def test_missing_objects_stat_as_none_fail_to_download_and_delete_quietly(s3, tmp_path: Path) -> None:
    storage = get_storage()
    assert isinstance(storage, S3Storage)

    assert storage.stat("uploads/nobody/here.mp3") is None
    with pytest.raises(StorageError, match="not in storage"):
        storage.download("uploads/nobody/here.mp3", tmp_path / "audio.mp3")
    storage.delete("uploads/nobody/here.mp3")


def test_it_round_trips_an_object_and_deletes_it(s3, bucket: str, tmp_path: Path) -> None:
    boto3.client("s3", endpoint_url=s3.S3_ENDPOINT_URL, region_name=REGION).put_object(
        Bucket=bucket, Key="uploads/a/b.mp3", Body=b"abc", ContentType="audio/mpeg"
    )
    storage = get_storage()

    storage.download("uploads/a/b.mp3", tmp_path / "b.mp3")
    assert (tmp_path / "b.mp3").read_bytes() == b"abc"
    storage.delete("uploads/a/b.mp3")
    assert storage.stat("uploads/a/b.mp3") is None


def test_an_unreachable_endpoint_is_reported_as_unavailable_quickly(s3, tmp_path: Path) -> None:
    s3.S3_ENDPOINT_URL = s3.S3_PUBLIC_ENDPOINT_URL = UNREACHABLE
    storage = get_storage()

    started = time.perf_counter()
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        storage.stat("uploads/a/b.mp3")
    with pytest.raises(StorageUnavailable):
        storage.download("uploads/a/b.mp3", tmp_path / "b.mp3")
    with pytest.raises(StorageUnavailable):
        storage.delete("uploads/a/b.mp3")
    assert time.perf_counter() - started < 10


def test_confirming_while_storage_is_unreachable_answers_503_and_keeps_the_song_pending(
    api, s3, django_capture_on_commit_callbacks
) -> None:
    song_id = _ask(api)["song_id"]
    s3.S3_ENDPOINT_URL = UNREACHABLE

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/songs/{song_id}/uploaded/")

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert callbacks == []
    assert Song.objects.get(pk=song_id).status == SongStatus.PENDING_UPLOAD


def test_a_download_that_keeps_breaking_off_is_transient(s3, monkeypatch, tmp_path: Path) -> None:
    storage = get_storage()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RetriesExceededError(ConnectionResetError("connection reset by peer"))  # type: ignore[arg-type]

    monkeypatch.setattr(storage._client, "download_file", broken)  # type: ignore[attr-defined]

    with pytest.raises(StorageUnavailable, match="connection reset"):
        storage.download("uploads/a/b.mp3", tmp_path / "b.mp3")


def test_presigned_urls_use_the_public_endpoint_while_the_server_uses_the_internal_one(
    api, s3, s3_endpoint: str, tmp_path: Path
) -> None:
    # The public name only resolves for browsers (think Docker): if the server used it, stat would fail.
    port = urlsplit(s3_endpoint).port
    public = f"http://storage.resonance.invalid:{port}"
    s3.S3_PUBLIC_ENDPOINT_URL = public
    body = _ask(api, size=3)
    song = Song.objects.get(pk=body["song_id"])
    ticket = body["upload"]

    assert ticket["url"] == f"{public}/{s3.S3_BUCKET}"
    # Send the form to the same server under its internal name, as the browser's network would route it.
    assert _post_file(ticket | {"url": f"{s3_endpoint}/{s3.S3_BUCKET}"}, "a.mp3", b"abc").ok

    storage = get_storage()
    stored = storage.stat(song.object_key)
    assert stored is not None
    assert stored.size == 3
    storage.download(song.object_key, tmp_path / "a.mp3")
    assert (tmp_path / "a.mp3").read_bytes() == b"abc"
    playback = storage.playback_url(song.object_key, expires_in=60)
    assert playback.startswith(f"{public}/{s3.S3_BUCKET}/{song.object_key}?")
    assert "X-Amz-Signature=" in playback
