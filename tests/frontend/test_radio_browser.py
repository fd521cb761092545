"""Headless Chromium: radio from a song page and from a catalog selection, and a path page, on short real songs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from catalog.models import Song, SongStatus  # noqa: E402
from tests import audio  # noqa: E402
from tests.frontend.conftest import screenshot  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait_js(page: Any, expression: str, arg: Any = None, timeout_s: float = 20) -> Any:
    """Poll a JavaScript expression until it is truthy (the strict CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_s
    while not (value := page.evaluate(expression, arg)):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(50)
    return value


@pytest.fixture
def short_songs(upload: Any, tmp_path: Path) -> list[Song]:
    """Five ready songs of 1.5 s each: tones a semitone apart, by different artists."""
    folder = tmp_path / "radio"
    songs = [
        upload(
            audio.write(
                folder / f"tone-{i}.mp3",
                audio.tone(330 * 2 ** (i / 12), 1.5, harmonics=3),
                title=f"Tone {i}",
                artist=f"Artist {i}",
            )
        )
        for i in range(5)
    ]
    assert all(song.status == SongStatus.READY for song in songs), [s.failure_reason for s in songs]
    return songs


CURRENT = "() => document.getElementById('queue-player').dataset.current"
PLAYING = "() => { const a = document.getElementById('queue-audio'); return !a.paused && a.currentTime > 0; }"


def test_radio_started_on_a_song_page_moves_to_the_next_song_when_one_ends(
    page: Any, live_server: Any, short_songs: list[Song]
) -> None:
    expect = sync_api.expect
    seed = short_songs[0]
    page.goto(f"{live_server.url}/songs/{seed.pk}/")

    page.get_by_role("button", name="Start radio").click()

    expect(page.locator("#queue-player")).to_be_visible()
    first = _wait_js(page, CURRENT)
    assert first != str(seed.pk)
    _wait_js(page, PLAYING)
    expect(page.get_by_test_id("queue-now-title")).not_to_be_empty()
    screenshot(page, "radio-song-page.png")
    second = _wait_js(page, f"(first) => {{ const c = ({CURRENT})(); return c && c !== first && c; }}", first)
    assert second not in {first, str(seed.pk)}
    _wait_js(page, PLAYING)
    # Skipping moves on at once, to a song not heard yet.
    page.get_by_role("button", name="Skip").click()
    third = _wait_js(page, f"(s) => {{ const c = ({CURRENT})(); return c && c !== s && c; }}", second)
    assert third not in {first, second, str(seed.pk)}
    queued = page.locator("#queue-list li[data-song-id]").evaluate_all("(rows) => rows.map((r) => r.dataset.songId)")
    assert not {first, second, third, str(seed.pk)} & set(queued)


def test_a_catalog_selection_starts_a_radio_and_two_songs_make_a_path(
    page: Any, live_server: Any, short_songs: list[Song]
) -> None:
    expect = sync_api.expect
    page.goto(f"{live_server.url}/")
    rows = page.locator("#catalog-list .song-item")
    expect(rows).to_have_count(5)

    page.get_by_role("checkbox", name="Select Tone 0").check()
    page.get_by_role("checkbox", name="Select Tone 4").check()
    expect(page.locator("#selection-count")).to_have_text("2 selected")
    screenshot(page, "radio-catalog-selection.png")
    page.get_by_role("link", name="Path between them").click()

    expect(page.get_by_test_id("path-list").locator("li")).to_have_count(5)  # both ends and the 3 songs between
    titles = page.get_by_test_id("path-list").locator(".song-item__title").all_text_contents()
    assert titles[0] == "Tone 0" and titles[-1] == "Tone 4"
    assert sorted(titles[1:-1]) == ["Tone 1", "Tone 2", "Tone 3"]
    page.get_by_role("button", name="Play the path").click()
    expect(page.get_by_test_id("queue-now-title")).to_have_text("Tone 0")
    screenshot(page, "path-page.png")

    page.goto(f"{live_server.url}/")
    page.get_by_role("checkbox", name="Select Tone 2").check()
    page.get_by_role("link", name="Start radio").click()
    expect(page.locator("#queue-player")).to_be_visible()
    current = _wait_js(page, CURRENT)
    assert current != str(short_songs[2].pk)


def test_a_listener_saves_the_radio_as_a_playlist_and_reorders_it(
    open_page: Any, live_server: Any, short_songs: list[Song]
) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from playlists.models import Playlist

    expect = sync_api.expect
    listener = User.objects.create_user("listener", password="pw-listener-123")
    login = Client()
    login.force_login(listener)
    page = open_page()
    page.context.add_cookies([{"name": "sessionid", "value": login.cookies["sessionid"].value, "url": live_server.url}])
    page.on("dialog", lambda dialog: dialog.accept("Evening radio"))
    page.goto(f"{live_server.url}/songs/{short_songs[0].pk}/")
    page.get_by_role("button", name="Start radio").click()
    _wait_js(page, CURRENT)

    page.get_by_role("button", name="Save as playlist…").click()

    _wait_js(page, "() => document.querySelector('#toasts-status').textContent.includes('Saved')")
    playlist = Playlist.objects.get(owner=listener)
    assert playlist.name == "Evening radio" and playlist.entries.count() == 4  # every song but the seed
    page.get_by_role("link", name="Playlists").click()
    page.get_by_role("link", name="Evening radio").click()
    rows = page.get_by_test_id("playlist-songs").locator(".song-item__title")
    before = rows.all_text_contents()
    page.get_by_role("button", name=f"Move {before[0]} down").click()
    expect(page.locator("#playlist-message")).to_have_text("Saved.")
    after = [entry.song.display_title for entry in playlist.entries.order_by("position").select_related("song")]
    assert after == [before[1], before[0], *before[2:]]
    screenshot(page, "playlist-page.png")
