"""Playlist pages and the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from playlists.models import Playlist, PlaylistEntry
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db


def _playlist(owner: User, name: str = "<i>Mix</i>") -> Playlist:
    playlist = Playlist.objects.create(owner=owner, name=name)
    for i, title in enumerate(["First", "Second"]):
        PlaylistEntry.objects.create(playlist=playlist, song=SongFactory.create(title=title), position=i)
    return playlist


def test_the_pages_need_a_login_and_show_only_the_owners_playlists() -> None:
    owner = User.objects.create_user("owner", password="pw-owner-12345")
    playlist = _playlist(owner)
    client = Client()

    assert client.get("/playlists/").status_code == 302
    client.force_login(User.objects.create_user("other", password="pw-other-12345"))
    assert client.get(f"/playlists/{playlist.pk}/").status_code == 404
    assert "&lt;i&gt;Mix" not in client.get("/playlists/").content.decode()

    client.force_login(owner)
    listing = client.get("/playlists/").content.decode()
    page = client.get(f"/playlists/{playlist.pk}/").content.decode()
    assert "&lt;i&gt;Mix&lt;/i&gt;" in listing and "<i>Mix</i>" not in listing and "2 songs" in listing
    assert page.index("First") < page.index("Second")
    assert f"/api/playlists/{playlist.pk}/export.m3u8" in page and f"/api/playlists/{playlist.pk}/export.xspf" in page
    assert ">Playlists</a>" in page


def test_staff_see_every_playlist_in_the_admin() -> None:
    _playlist(User.objects.create_user("alice", password="pw-alice-12345"), name="Alice's mix")
    _playlist(User.objects.create_user("bob", password="pw-bob-1234567"), name="Bob's mix")
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-admin-12345"))

    html = client.get("/admin/playlists/playlist/").content.decode()

    assert "Alice&#x27;s mix" in html and "Bob&#x27;s mix" in html
    playlist = Playlist.objects.get(name="Bob's mix")
    assert "Second" in client.get(f"/admin/playlists/playlist/{playlist.pk}/change/").content.decode()
