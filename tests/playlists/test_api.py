"""Playlists through the API: save, reorder and edit, export, and what happens when songs go away."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from catalog import services
from catalog.models import Song, SongStatus
from catalog.storage import get_storage
from playlists.exports import XSPF_NAMESPACE
from playlists.models import Playlist, PlaylistEntry
from tests import audio
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def listener() -> User:
    return User.objects.create_user("listener", password="pw-listener-123")


@pytest.fixture
def client_of(listener: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(listener)
    return client


@pytest.fixture
def songs() -> list[Song]:
    return [
        SongFactory.create(title=f"Song {i}", artist="Band" if i % 2 else "", album="LP", duration_seconds=60.5 + i)
        for i in range(4)
    ]


def _create(client: APIClient, songs: list[Song], name: str = "Evening") -> dict[str, Any]:
    answer = client.post("/api/playlists/", {"name": name, "songs": [str(s.pk) for s in songs]}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def test_a_user_saves_a_playlist_and_gets_it_back_in_order(client_of: APIClient, songs: list[Song]) -> None:
    created = _create(client_of, [songs[2], songs[0], songs[1]])

    assert [s["title"] for s in created["songs"]] == ["Song 2", "Song 0", "Song 1"]
    assert all(s["playback_url"] for s in created["songs"])
    listed = client_of.get("/api/playlists/").json()
    assert [(p["name"], p["song_count"]) for p in listed] == [("Evening", 3)]
    assert client_of.get(f"/api/playlists/{created['id']}/").json()["songs"] == created["songs"]


def test_reordering_renaming_and_editing_replace_what_was_saved(client_of: APIClient, songs: list[Song]) -> None:
    created = _create(client_of, songs[:3])
    url = f"/api/playlists/{created['id']}/"

    reordered = client_of.patch(url, {"songs": [str(songs[1].pk), str(songs[0].pk)]}, format="json").json()
    renamed = client_of.patch(url, {"name": "  Late   night "}, format="json").json()
    added = client_of.patch(url, {"songs": [str(s.pk) for s in [songs[3], songs[1], songs[0]]]}, format="json")

    assert [s["title"] for s in reordered["songs"]] == ["Song 1", "Song 0"]
    assert renamed["name"] == "Late night" and [s["title"] for s in renamed["songs"]] == ["Song 1", "Song 0"]
    assert [s["title"] for s in added.json()["songs"]] == ["Song 3", "Song 1", "Song 0"]
    assert list(PlaylistEntry.objects.order_by("position").values_list("position", flat=True)) == [0, 1, 2]


def test_bad_input_is_refused_and_changes_nothing(client_of: APIClient, songs: list[Song], settings: Any) -> None:
    created = _create(client_of, songs[:2])
    url = f"/api/playlists/{created['id']}/"
    ghost = str(uuid.uuid4())

    unknown = client_of.patch(url, {"songs": [str(songs[0].pk), ghost]}, format="json")
    nameless = client_of.post("/api/playlists/", {"name": "   ", "songs": []}, format="json")
    settings.PLAYLIST_MAX_SONGS = 2
    too_long = client_of.patch(url, {"songs": [str(s.pk) for s in songs[:3]]}, format="json")

    assert unknown.status_code == 400 and ghost in unknown.json()["detail"]
    assert nameless.status_code == 400
    assert too_long.status_code == 400
    assert [s["title"] for s in client_of.get(url).json()["songs"]] == ["Song 0", "Song 1"]


def test_a_deleted_song_drops_out_and_the_playlist_survives(client_of: APIClient, songs: list[Song]) -> None:
    created = _create(client_of, songs[:3])
    url = f"/api/playlists/{created['id']}/"

    SongFactory._meta.model.objects.filter(pk=songs[2].pk).update(status=SongStatus.DELETING)
    hidden = client_of.get(url).json()
    services.delete_song(Song.objects.get(pk=songs[2].pk))
    services.delete_song(songs[0])

    assert [s["title"] for s in hidden["songs"]] == ["Song 0", "Song 1"]  # a song being deleted is not played
    assert [s["title"] for s in client_of.get(url).json()["songs"]] == ["Song 1"]
    assert client_of.get("/api/playlists/").json()[0]["song_count"] == 1
    m3u = client_of.get(f"{url}export.m3u8").content.decode()
    assert "Song 1" in m3u and "Song 0" not in m3u


def test_m3u8_export_lists_titles_durations_and_playback_urls(
    client_of: APIClient, songs: list[Song], tmp_path: Path
) -> None:
    stored = audio.write(tmp_path / "one.mp3", audio.tone(440, 1.0))
    get_storage().put(songs[1].object_key, stored, content_type="audio/mpeg")
    created = _create(client_of, [songs[1], songs[0]], name="Road\ntrip")

    answer = client_of.get(f"/api/playlists/{created['id']}/export.m3u8")

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("audio/x-mpegurl")
    assert 'filename="Road_trip.m3u8"' in answer["Content-Disposition"]
    lines = answer.content.decode().splitlines()
    assert lines[:2] == ["#EXTM3U", "#PLAYLIST:Road trip"]
    assert lines[2] == "#EXTINF:62,Band - Song 1" and lines[4] == "#EXTINF:60,Song 0"
    for url_line in (lines[3], lines[5]):
        assert url_line.startswith("http://testserver/storage/media/")
    assert client_of.get(lines[3].removeprefix("http://testserver")).status_code == 200  # the URL plays


def test_xspf_export_parses_with_titles_durations_and_locations(client_of: APIClient, songs: list[Song]) -> None:
    SongFactory._meta.model.objects.filter(pk=songs[1].pk).update(title="Rock & <Roll>")
    created = _create(client_of, [songs[1], songs[0]])

    answer = client_of.get(f"/api/playlists/{created['id']}/export.xspf")

    assert answer["Content-Type"].startswith("application/xspf+xml")
    root = ET.fromstring(answer.content)  # noqa: S314  # the test's own export
    ns = {"x": XSPF_NAMESPACE}
    assert root.tag == f"{{{XSPF_NAMESPACE}}}playlist" and root.get("version") == "1"
    assert root.findtext("x:title", namespaces=ns) == "Evening"
    tracks = root.findall("x:trackList/x:track", ns)
    assert [t.findtext("x:title", namespaces=ns) for t in tracks] == ["Rock & <Roll>", "Song 0"]
    assert [t.findtext("x:duration", namespaces=ns) for t in tracks] == ["61500", "60500"]
    assert tracks[0].findtext("x:creator", namespaces=ns) == "Band"
    assert all((t.findtext("x:location", namespaces=ns) or "").startswith("http://testserver/") for t in tracks)


def test_playlists_are_private_to_their_owner(client_of: APIClient, songs: list[Song]) -> None:
    created = _create(client_of, songs[:1])
    other = APIClient()
    other.force_authenticate(User.objects.create_user("someone", password="pw-someone-123"))

    assert other.get(f"/api/playlists/{created['id']}/").status_code == 404
    assert other.get(f"/api/playlists/{created['id']}/export.m3u8").status_code == 404
    assert other.patch(f"/api/playlists/{created['id']}/", {"name": "Mine"}, format="json").status_code == 404
    assert other.delete(f"/api/playlists/{created['id']}/").status_code == 404
    assert other.get("/api/playlists/").json() == []
    assert APIClient().get("/api/playlists/").status_code in {401, 403}
    anonymous = APIClient().post("/api/playlists/", {"name": "x", "songs": []}, format="json")
    assert anonymous.status_code in {401, 403}
    assert Playlist.objects.get().name == "Evening"


def test_deleting_a_playlist_keeps_its_songs(client_of: APIClient, songs: list[Song]) -> None:
    created = _create(client_of, songs)

    assert client_of.delete(f"/api/playlists/{created['id']}/").status_code == 204

    assert not Playlist.objects.exists() and not PlaylistEntry.objects.exists()
    assert Song.objects.count() == 4
