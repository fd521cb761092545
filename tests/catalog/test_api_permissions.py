from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Song
from tests import audio
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db

UPLOAD = {"file_name": "a.mp3", "content_type": "audio/mpeg", "size": 100}


@pytest.fixture
def clients() -> dict[str, APIClient]:
    anonymous = APIClient()
    user = APIClient()
    user.force_authenticate(User.objects.create_user("listener", password="pw-listener-123"))
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("curator", password="pw-curator-123", is_staff=True))
    return {"anonymous": anonymous, "user": user, "staff": staff}


@pytest.mark.parametrize("public", [True, False])
def test_browsing_is_public_or_login_only(clients, settings, public) -> None:
    settings.PUBLIC_CATALOG = public
    song = SongFactory.create()

    for who, client in clients.items():
        expected = 200 if public or who != "anonymous" else 403
        assert client.get("/api/songs/").status_code == expected, who
        assert client.get(f"/api/songs/{song.pk}/").status_code == expected, who


@pytest.mark.parametrize("anonymous_uploads", [True, False])
def test_uploads_need_a_user_unless_opened(clients, settings, anonymous_uploads) -> None:
    settings.ALLOW_ANONYMOUS_UPLOADS = anonymous_uploads

    for who, client in clients.items():
        expected = 201 if anonymous_uploads or who != "anonymous" else 403
        assert client.post("/api/uploads/", UPLOAD, format="json").status_code == expected, who


def test_each_song_records_its_uploader(clients) -> None:
    response = clients["user"].post("/api/uploads/", UPLOAD, format="json")

    uploader = Song.objects.get(pk=response.json()["song_id"]).uploaded_by
    assert uploader is not None
    assert uploader.username == "listener"


def test_a_user_cannot_confirm_or_retry_another_users_upload(clients) -> None:
    song_id = clients["user"].post("/api/uploads/", UPLOAD, format="json").json()["song_id"]
    other = APIClient()
    other.force_authenticate(User.objects.create_user("intruder", password="pw-intruder-123"))

    assert other.post(f"/api/songs/{song_id}/uploaded/").status_code == 403
    assert other.post(f"/api/songs/{song_id}/retry/").status_code == 403
    # Staff may act on anyone's upload; the file has not arrived, which is the next thing they are told.
    assert clients["staff"].post(f"/api/songs/{song_id}/uploaded/").status_code == 409


def test_only_staff_can_delete(clients, upload, tmp_path: Path) -> None:
    song = upload(audio.write(tmp_path / "gone.mp3", audio.tone(440, 2.0)))

    assert clients["anonymous"].delete(f"/api/songs/{song.pk}/").status_code == 403
    assert clients["user"].delete(f"/api/songs/{song.pk}/").status_code == 403
    assert clients["staff"].delete(f"/api/songs/{song.pk}/").status_code == 204
    assert not Song.objects.filter(pk=song.pk).exists()


def test_scripts_authenticate_with_a_token(settings) -> None:
    settings.ALLOW_ANONYMOUS_UPLOADS = False
    user = User.objects.create_user("script", password="pw-script-12345")
    token = Token.objects.create(user=user)
    client = APIClient()

    assert client.post("/api/uploads/", UPLOAD, format="json").status_code == 403
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.post("/api/uploads/", UPLOAD, format="json").status_code == 201


def test_session_writes_need_a_csrf_token() -> None:
    User.objects.create_user("browser", password="pw-browser-123")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="browser", password="pw-browser-123")

    response = client.post("/api/uploads/", UPLOAD, format="json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_uploads_and_searches_are_rate_limited(api) -> None:
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    song = SongFactory.create(embedding_model="features")
    cache.clear()
    rates: dict[str, str | None] = {"uploads": "2/minute", "searches": "3/minute"}
    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        uploads = [api.post("/api/uploads/", UPLOAD, format="json").status_code for _ in range(3)]
        searches = [api.get(f"/api/songs/{song.pk}/more-like-this/").status_code for _ in range(4)]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()

    assert uploads == [201, 201, 429]
    assert searches[-1] == 429
    assert 429 not in searches[:3]


def test_a_song_without_an_uploader_may_be_changed_by_staff_only(clients) -> None:
    imported = SongFactory.create(status="failed", uploaded_by=None)

    assert clients["anonymous"].post(f"/api/songs/{imported.pk}/retry/").status_code == 403
    assert clients["user"].post(f"/api/songs/{imported.pk}/retry/").status_code == 403
    # Staff pass the permission; the file was never stored, which is what they are told next.
    assert clients["staff"].post(f"/api/songs/{imported.pk}/retry/").status_code == 409


def test_a_visitor_may_confirm_only_the_uploads_of_their_own_session(settings) -> None:
    settings.ALLOW_ANONYMOUS_UPLOADS = True
    visitor, stranger = APIClient(), APIClient()
    song_id = visitor.post("/api/uploads/", UPLOAD, format="json").json()["song_id"]

    assert stranger.post(f"/api/songs/{song_id}/uploaded/").status_code == 403
    assert visitor.post(f"/api/songs/{song_id}/uploaded/").status_code == 409  # allowed; the file has not arrived


# Another process opens the same cache folder the way the settings do.
_READ_OTHER_PROCESS = """
import sys
from diskcache.djangocache import DjangoCache
print(DjangoCache(sys.argv[1], {}).get("shared-by-all-processes"))
"""


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_follow_public_catalog(clients, settings, path) -> None:
    settings.PUBLIC_CATALOG = False

    assert clients["anonymous"].get(path).status_code == 403
    assert clients["user"].get(path).status_code == 200


def test_throttle_counters_live_in_the_cache_every_process_shares(settings) -> None:
    from django.core.cache import caches

    caches["default"].set("shared-by-all-processes", 41)
    seen = subprocess.run(
        [sys.executable, "-c", _READ_OTHER_PROCESS, str(settings.CACHES["default"]["LOCATION"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen == "41"


def test_a_forged_forwarded_for_header_does_not_escape_the_rate_limit(api) -> None:
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    original = ScopedRateThrottle.THROTTLE_RATES
    ScopedRateThrottle.THROTTLE_RATES = {"uploads": "2/minute"}
    try:
        codes = [
            api.post("/api/uploads/", UPLOAD, format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
            for i in range(3)
        ]
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()

    assert codes == [201, 201, 429]


def test_a_visitors_parallel_uploads_can_all_be_confirmed(settings) -> None:
    settings.ALLOW_ANONYMOUS_UPLOADS = True
    visitor = APIClient()
    assert visitor.get("/").status_code == 200  # the page opens the session its uploads share
    session_before = dict(visitor.session.items())
    first = visitor.post("/api/uploads/", UPLOAD, format="json").json()["song_id"]
    # A parallel request that read the session before `first` was made saves it back as it was.
    stale = visitor.session
    stale.clear()
    stale.update(session_before)
    stale.save()
    second = visitor.post("/api/uploads/", UPLOAD, format="json").json()["song_id"]

    for song_id in (first, second):
        assert visitor.post(f"/api/songs/{song_id}/uploaded/").status_code == 409  # allowed; no file yet
