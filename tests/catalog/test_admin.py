from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from catalog.models import Song, SongStatus
from embeddings.index import get_vector_index
from tests import audio
from tests.factories import SongFactory, SongTagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-admin-12345"))
    return client


def test_the_song_list_shows_status_model_duration_and_tags_escaped(staff_client: Client) -> None:
    song = SongFactory.create(title="<script>alert(1)</script>", duration_seconds=125, embedding_model="features")
    SongTagFactory.create(song=song, label="Piano")

    html = staff_client.get("/admin/catalog/song/").content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    assert "2:05" in html
    assert "Piano" in html


def test_non_staff_cannot_open_the_admin() -> None:
    client = Client()
    client.force_login(User.objects.create_user("listener", password="pw-listener-123"))

    response = client.get("/admin/catalog/song/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_retry_failed_action_requeues_only_failed_songs(
    staff_client: Client, upload, tmp_path: Path, settings, django_capture_on_commit_callbacks
) -> None:
    settings.EMBEDDING_MODEL = "panns-cnn14"  # no weights here: the ingest fails
    failed = upload(audio.write(tmp_path / "f.mp3", audio.tone(440, 2.0)))
    assert failed.status == SongStatus.FAILED
    settings.EMBEDDING_MODEL = "features"

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post("/admin/catalog/song/", {"action": "retry_failed", "_selected_action": [str(failed.pk)]})

    failed.refresh_from_db()
    assert failed.status == SongStatus.READY


def test_delete_action_removes_the_file_and_the_vector(staff_client: Client, upload, tmp_path: Path, settings) -> None:
    song = upload(audio.write(tmp_path / "bye.mp3", audio.tone(440, 2.0)))
    stored = settings.LOCAL_STORAGE_ROOT / song.object_key
    assert stored.exists()

    staff_client.post("/admin/catalog/song/", {"action": "delete_everywhere", "_selected_action": [str(song.pk)]})

    assert not Song.objects.filter(pk=song.pk).exists()
    assert not stored.exists()
    assert get_vector_index("features", 222).get(song.pk) is None


def test_editing_the_title_updates_search(staff_client: Client, api) -> None:
    song = SongFactory.create(title="Old name")
    form = {"title": "Harbour Lights", "artist": "Ana", "album": "", "tags-TOTAL_FORMS": 0, "tags-INITIAL_FORMS": 0}

    response = staff_client.post(f"/admin/catalog/song/{song.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert [s["title"] for s in api.get("/api/songs/", {"search": "harbour"}).json()["results"]] == ["Harbour Lights"]
