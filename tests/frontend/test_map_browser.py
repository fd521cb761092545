"""The catalog map in headless Chromium against a live server, under the strict CSP of production.

Any console or script error fails a test. Screenshots land in test-artifacts/map.png and map-phone.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from catalog.models import Song  # noqa: E402
from tests import audio  # noqa: E402
from tests.factories import SongTagFactory  # noqa: E402
from tests.frontend.conftest import screenshot  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POINTS = "[data-testid=map-svg] .map__point"


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _upload_two_families(upload: Any, tmp_path: Path) -> list[Song]:
    """Six ready songs: three chords (album Harmonies) and three drum loops (album Beats)."""
    folder = tmp_path / "catalog"
    seconds = 2.0
    sounds = [
        ("Harmony in A", "Test Tones", "Harmonies", audio.chord([220, 277, 330], seconds)),
        ("Harmony in C", "Test Tones", "Harmonies", audio.chord([262, 330, 392], seconds)),
        ("Harmony in E", "Test Tones", "Harmonies", audio.chord([330, 415, 494], seconds)),
        ("Drum Machine", "Test Beats", "Beats", audio.noise_bursts(seconds, bpm=120, seed=1)),
        ("Fast Drums", "Test Beats", "Beats", audio.noise_bursts(seconds, bpm=150, seed=2)),
        ("Slow Drums", "Test Beats", "Beats", audio.noise_bursts(seconds, bpm=90, seed=3)),
    ]
    songs = []
    for n, (title, artist, album, samples) in enumerate(sounds):
        path = audio.write(folder / f"song-{n}.mp3", samples, title=title, artist=artist, album=album)
        songs.append(upload(path))
    for song in songs:
        song.refresh_from_db()
        assert song.status == "ready", song.failure_reason
        SongTagFactory.create(song=song, label="Music" if song.album == "Harmonies" else "Drum", score=0.8)
    return songs


def _tooltip_for(page: Any, point: Any) -> str:
    point.hover()
    tooltip = page.locator("#map-tooltip")
    sync_api.expect(tooltip).to_be_visible()
    return str(page.locator("#map-tooltip-title").text_content())


def test_the_map_draws_every_song_names_it_on_hover_and_opens_it(
    page: Any, open_page: Any, live_server: Any, upload: Any, tmp_path: Path
) -> None:
    expect = sync_api.expect
    songs = _upload_two_families(upload, tmp_path)
    # What people typed is shown as text, never as markup.
    Song.objects.filter(pk=songs[0].pk).update(title="<img src=x> & <b>A</b>")

    page.goto(f"{live_server.url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Map").click()
    expect(page).to_have_url(f"{live_server.url}/map/")
    expect(page.get_by_role("link", name="Map")).to_have_attribute("aria-current", "page")
    points = page.locator(POINTS)
    expect(points).to_have_count(6)
    expect(page.locator("#map-summary")).to_have_text("6 songs by the features model, coloured by album: 2 albums.")
    legend = page.get_by_test_id("map-legend")
    expect(legend.locator(".map__legend-name")).to_have_text(["Beats", "Harmonies"])

    # The two families of sound sit on either side of the map.
    xs: dict[str, list[float]] = {"Harmonies": [], "Beats": []}
    for song in songs:
        link = page.locator(f'{POINTS}[data-song-id="{song.id}"]')
        xs[song.album].append(float(str(link.locator(".map__dot").get_attribute("cx"))))
    assert max(xs["Harmonies"]) < min(xs["Beats"]) or max(xs["Beats"]) < min(xs["Harmonies"]), xs

    # Hover names the song and its album; the markup in a title stays text.
    target = page.locator(f'{POINTS}[data-song-id="{songs[0].id}"]')
    title = _tooltip_for(page, target)
    expect(page.locator("#map-tooltip-group")).to_have_text(re.compile(r"^Album: (Harmonies|Beats)$"))
    if title.startswith("<img"):
        assert title == "<img src=x> & <b>A</b> — Test Tones"
    assert page.locator("#map-tooltip img, #map-tooltip b").count() == 0
    screenshot(page, "map.png")

    # The keyboard reaches the points after the legend, and focus names the song too.
    legend.locator(".map__legend-item").last.focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused and " — Test " in focused
    expect(page.locator("#map-tooltip-title")).to_have_text(focused.split(". Album: ")[0])
    page.keyboard.press("Escape")
    expect(page.locator("#map-tooltip")).to_be_hidden()

    # The legend picks out a group.
    legend.get_by_role("button", name=re.compile("^Beats")).click()
    expect(legend.get_by_role("button", name=re.compile("^Beats"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f"{POINTS}.is-match")).to_have_count(3)

    # Colour by top sound tag: the legend follows, and the choice survives a reload.
    page.get_by_text("Sound tag", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/map/?colour_by=tag")
    expect(legend.locator(".map__legend-name")).to_have_text(["Drum", "Music"])
    expect(page.locator("#map-legend-heading")).to_have_text("Top sound tag")
    expect(points).to_have_count(6)
    page.reload()
    expect(page.locator("#colour-tag")).to_be_checked()
    expect(legend.locator(".map__legend-name")).to_have_text(["Drum", "Music"])
    _tooltip_for(page, points.first)
    expect(page.locator("#map-tooltip-group")).to_have_text(re.compile(r"^Sound tag: (Drum|Music)$"))

    # A click opens the song under the pointer.
    drum = next(song for song in songs if song.title == "Drum Machine")
    target = page.locator(f'{POINTS}[data-song-id="{drum.id}"]')
    title = _tooltip_for(page, target).split(" — ")[0]
    box = target.locator(".map__dot").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    opened = Song.objects.get(title=title)
    expect(page).to_have_url(f"{live_server.url}/songs/{opened.id}/")
    expect(page.locator("h1")).to_have_text(title)

    # A phone: the map fits the width, and points are big enough to tap. A first tap names the song, a second opens it.
    phone = open_page(viewport={"width": 360, "height": 800}, has_touch=True, is_mobile=True)
    phone.goto(f"{live_server.url}/map/")
    points = phone.locator(POINTS)
    expect(points).to_have_count(6)
    _fits(phone)
    expect(phone.locator("#map-svg")).to_have_attribute("viewBox", "0 0 400 400")
    chord = next(song for song in songs if song.title == "Harmony in E")
    dot = phone.locator(f'{POINTS}[data-song-id="{chord.id}"] .map__dot')
    box = dot.bounding_box()
    assert box["width"] >= 12, box
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    phone.touchscreen.tap(*centre)
    expect(phone.locator("#map-tooltip")).to_be_visible()
    expect(phone.locator("#map-tooltip-hint")).to_have_text("Tap again to open")
    tapped = str(phone.locator("#map-tooltip-title").text_content()).split(" — ")[0]
    expect(phone).to_have_url(f"{live_server.url}/map/")
    _fits(phone)
    screenshot(phone, "map-phone.png")
    phone.touchscreen.tap(*centre)
    expect(phone).to_have_url(f"{live_server.url}/songs/{Song.objects.get(title=tapped).id}/")


def test_the_map_says_when_it_has_too_few_songs_or_fails(
    page: Any, live_server: Any, expected_errors: list[str]
) -> None:
    expect = sync_api.expect
    expected_errors.append("status of 503")  # the outage below, on purpose

    page.goto(f"{live_server.url}/map/")
    expect(page.get_by_test_id("map-empty")).to_contain_text("No song is ready to be mapped yet.")
    expect(page.locator("#map-figure")).to_be_hidden()

    outage = {"on": True}

    def api_map(route: Any) -> None:
        if outage["on"]:
            route.fulfill(status=503, json={"detail": "The vector index is unreachable."})
        else:
            route.continue_()

    page.route("**/api/map/**", api_map)
    page.reload()
    error = page.locator("#map-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The vector index is unreachable.")
    outage["on"] = False
    error.get_by_role("button", name="Try again").click()
    expect(error).to_be_hidden()
    expect(page.get_by_test_id("map-empty")).to_be_visible()
