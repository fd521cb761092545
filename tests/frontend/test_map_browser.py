"""The catalog map in headless Chromium against a live server, under the strict CSP of production.

Any console or script error fails a test. Screenshots land in test-artifacts/map.png, map-phone.png and
map-large.png. The map is a canvas: tests point at a song from its coordinates in the API answer, the canvas's box and
the padding and view the page publishes on its wrapper (data-pad, data-view).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from catalog import map_refresh  # noqa: E402
from catalog.models import Song, SongStatus  # noqa: E402
from embeddings.models import StoredVector  # noqa: E402
from embeddings.registry import model_dim  # noqa: E402
from tests import audio  # noqa: E402
from tests.factories import SongFactory, SongTagFactory  # noqa: E402
from tests.frontend.conftest import screenshot  # noqa: E402
from tests.map_answer import map_points  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _map_points(live_server: Any, page: Any, colour_by: str = "album") -> dict[str, dict[str, Any]]:
    body = page.evaluate(f"fetch('{live_server.url}/api/map/?colour_by={colour_by}').then((r) => r.json())")
    return {point["id"]: point for point in map_points(body)}


def _geometry(page: Any) -> tuple[dict[str, float], float, float, float, float]:
    box = page.locator("#map-overlay").bounding_box()
    wrap = page.locator("#map-canvas")
    pad = float(wrap.get_attribute("data-pad"))
    k, tx, ty = (float(v) for v in str(wrap.get_attribute("data-view")).split(","))
    return box, pad, k, tx, ty


def _screen(page: Any, point: dict[str, Any], geometry: Any = None) -> tuple[float, float]:
    """Where a point is drawn, in page coordinates."""
    box, pad, k, tx, ty = geometry or _geometry(page)
    x = pad + (point["x"] + 1) / 2 * (box["width"] - 2 * pad)
    y = pad + (1 - point["y"]) / 2 * (box["height"] - 2 * pad)
    return box["x"] + x * k + tx, box["y"] + y * k + ty


def _nearest(page: Any, points: dict[str, dict[str, Any]], at: tuple[float, float]) -> str:
    geometry = _geometry(page)
    spots = {song_id: _screen(page, point, geometry) for song_id, point in points.items()}
    return min(spots, key=lambda song_id: (spots[song_id][0] - at[0]) ** 2 + (spots[song_id][1] - at[1]) ** 2)


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


def _tooltip_at(page: Any, spot: tuple[float, float]) -> str:
    page.mouse.move(spot[0] + 40, spot[1] + 40)
    page.mouse.move(*spot)
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
    expect(page.locator("#map-summary")).to_have_text("6 songs by the features model, coloured by album: 2 albums.")
    expect(page.locator("#map-freshness")).to_have_text("Map computed just now.")
    legend = page.get_by_test_id("map-legend")
    expect(legend.locator(".map__legend-name")).to_have_text(["Beats", "Harmonies"])
    points = _map_points(live_server, page)
    assert set(points) == {str(song.id) for song in songs}

    # The two families of sound sit on either side of the map.
    xs: dict[str, list[float]] = {"Harmonies": [], "Beats": []}
    for song in songs:
        xs[song.album].append(_screen(page, points[str(song.id)])[0])
    assert max(xs["Harmonies"]) < min(xs["Beats"]) or max(xs["Beats"]) < min(xs["Harmonies"]), xs

    # Hover names the song and its album; the markup in a title stays text.
    spot = _screen(page, points[str(songs[0].id)])
    title = _tooltip_at(page, spot)
    expect(page.locator("#map-tooltip-group")).to_have_text(re.compile(r"^Album: (Harmonies|Beats)$"))
    named = page.locator("#map-canvas").get_attribute("data-active-song")
    assert named == _nearest(page, points, spot)
    if named == str(songs[0].id):
        assert title == "<img src=x> & <b>A</b> — Test Tones"
    assert page.locator("#map-tooltip img, #map-tooltip b").count() == 0
    screenshot(page, "map.png")

    # The keyboard reaches the map after the legend; focus names a song, arrows move to the nearest one that way.
    page.mouse.move(0, 0)
    legend.locator(".map__legend-item").last.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "map-overlay"
    expect(page.locator("#map-tooltip")).to_be_visible()
    first = str(page.locator("#map-canvas").get_attribute("data-active-song"))
    expect(page.locator("#map-announcer")).to_contain_text(points[first]["title"])
    for key in ("ArrowRight", "ArrowLeft"):
        before = page.locator("#map-canvas").get_attribute("data-active-song")
        page.keyboard.press(key)
        after = page.locator("#map-canvas").get_attribute("data-active-song")
        if after != before:
            moved = points[str(after)]["x"] - points[str(before)]["x"]
            assert moved > 0 if key == "ArrowRight" else moved < 0, (key, before, after)
    page.keyboard.press("Escape")
    expect(page.locator("#map-tooltip")).to_be_hidden()

    # The legend picks out a group.
    legend.get_by_role("button", name=re.compile("^Beats")).click()
    expect(legend.get_by_role("button", name=re.compile("^Beats"))).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#map-canvas")).to_have_attribute("data-highlighted", "Beats")
    legend.get_by_role("button", name=re.compile("^Beats")).click()

    # Colour by top sound tag: the legend follows, and the choice survives a reload.
    page.get_by_text("Sound tag", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/map/?colour_by=tag")
    expect(legend.locator(".map__legend-name")).to_have_text(["Drum", "Music"])
    expect(page.locator("#map-legend-heading")).to_have_text("Top sound tag")
    page.reload()
    expect(page.locator("#colour-tag")).to_be_checked()
    expect(legend.locator(".map__legend-name")).to_have_text(["Drum", "Music"])
    drum = next(song for song in songs if song.title == "Drum Machine")
    spot = _screen(page, points[str(drum.id)])
    title = _tooltip_at(page, spot).split(" — ")[0]
    expect(page.locator("#map-tooltip-group")).to_have_text(re.compile(r"^Sound tag: (Drum|Music)$"))

    # A click opens the song under the pointer.
    page.mouse.click(*spot)
    opened = Song.objects.get(title=title)
    expect(page).to_have_url(f"{live_server.url}/songs/{opened.id}/")
    expect(page.locator("h1")).to_have_text(title)

    # A phone: the map fits the width and is square. A first tap names the song, a second opens it.
    phone = open_page(viewport={"width": 360, "height": 800}, has_touch=True, is_mobile=True)
    phone.goto(f"{live_server.url}/map/")
    expect(phone.locator("#map-summary")).to_contain_text("6 songs")
    _fits(phone)
    box = phone.locator("#map-overlay").bounding_box()
    assert abs(box["width"] - box["height"]) < 2, box
    chord = next(song for song in songs if song.title == "Harmony in E")
    centre = _screen(phone, points[str(chord.id)])
    phone.touchscreen.tap(*centre)
    expect(phone.locator("#map-tooltip")).to_be_visible()
    expect(phone.locator("#map-tooltip-hint")).to_have_text("Tap again to open")
    tapped = str(phone.locator("#map-tooltip-title").text_content()).split(" — ")[0]
    expect(phone).to_have_url(f"{live_server.url}/map/")
    _fits(phone)
    screenshot(phone, "map-phone.png")
    phone.touchscreen.tap(*centre)
    expect(phone).to_have_url(f"{live_server.url}/songs/{Song.objects.get(title=tapped).id}/")


def _bulk_catalog(count: int) -> list[Song]:
    """`count` ready songs in 12 albums with clustered vectors, written in bulk, and the worker's projection."""
    rng = np.random.default_rng(0)
    dim = model_dim("features")
    centres = rng.normal(size=(12, dim)).astype(np.float32)
    songs = SongFactory.build_batch(count, embedding_model="features", status=SongStatus.READY)
    for n, song in enumerate(songs):
        song.album = f"Album {n % 12:02d}"
        song.artist = f"Artist {n % 40}"
    Song.objects.bulk_create(songs, batch_size=1000)
    rows = []
    for n, song in enumerate(songs):
        vector = centres[n % 12] + rng.normal(size=dim).astype(np.float32) * 0.6
        vector /= np.linalg.norm(vector)
        rows.append(
            StoredVector(song_id=song.id, file=song.object_key, model="features", dim=dim, vector=vector.tobytes())
        )
    StoredVector.objects.bulk_create(rows, batch_size=1000)
    map_refresh.store_projection()  # what the worker task does once ingests settle
    return songs


def test_a_map_of_thousands_of_songs_is_drawn_on_a_canvas_pans_zooms_and_opens_the_song_hovered(
    page: Any, live_server: Any, expected_errors: list[str]
) -> None:
    expect = sync_api.expect
    expected_errors.append("status of 404")  # the song page's player: songs written in bulk have no stored file
    _bulk_catalog(3000)

    page.goto(f"{live_server.url}/map/")
    expect(page.locator("#map-summary")).to_have_text(re.compile(r"^3,000 songs by the features model"))
    assert page.locator("#map-figure svg, #map-figure a").count() == 0  # no DOM node per song
    expect(page.get_by_test_id("map-legend").locator(".map__legend-name")).to_have_count(9)  # 8 + "Other albums"
    points = _map_points(live_server, page)
    assert len(points) == 3000
    # The canvas is painted: some pixels are not blank.
    painted = page.evaluate(
        "(() => { const c = document.getElementById('map-points'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) "
        "if (d[i]) n++; return n; })()"
    )
    assert painted > 3000, painted
    screenshot(page, "map-large.png")

    # Hover names the song drawn nearest to the pointer.
    some = list(points.values())[1234]
    spot = _screen(page, some)
    _tooltip_at(page, spot)
    named = str(page.locator("#map-canvas").get_attribute("data-active-song"))
    assert named == _nearest(page, points, spot)
    expect(page.locator("#map-tooltip-title")).to_have_text(f"{points[named]['title']} — {points[named]['artist']}")

    # Zoom in around the pointer, then drag the map: the song stays under its drawn position.
    page.mouse.wheel(0, -600)
    expect(page.locator("#map-canvas")).not_to_have_attribute("data-view", "1,0,0")
    page.mouse.move(*_screen(page, some))
    page.mouse.down()
    page.mouse.move(spot[0] - 60, spot[1] - 30, steps=6)
    page.mouse.up()
    k = float(str(page.locator("#map-canvas").get_attribute("data-view")).split(",")[0])
    assert k > 1.5, k
    spot = _screen(page, some)
    _tooltip_at(page, spot)
    named = str(page.locator("#map-canvas").get_attribute("data-active-song"))
    assert named == _nearest(page, points, spot)

    # A click opens the song hovered.
    page.mouse.click(*spot)
    expect(page).to_have_url(f"{live_server.url}/songs/{named}/")
    expect(page.locator("h1")).to_have_text(points[named]["title"])


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


def test_a_path_between_two_songs_is_drawn_on_the_map_as_a_line_and_links_back_to_its_page(
    page: Any, live_server: Any
) -> None:
    expect = sync_api.expect
    songs = _bulk_catalog(600)
    start, end = songs[0], songs[5]  # different albums: different clusters

    page.goto(f"{live_server.url}/path/?from={start.pk}&to={end.pk}&steps=5")
    page.get_by_role("link", name="See it on the map").click()

    expect(page.locator("#map-summary")).to_have_text(re.compile(r"^600 songs"))
    line = page.get_by_test_id("map-path")
    expect(line).to_contain_text(f"The line is the path from “{start.title}” to “{end.title}”: 7 songs.")
    expect(page.locator("#map-canvas")).to_have_attribute("data-path-songs", "7")
    # The line is on the overlay, with no song hovered.
    painted = page.evaluate(
        "(() => { const c = document.getElementById('map-overlay'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) "
        "if (d[i]) n++; return n; })()"
    )
    assert painted > 200
    screenshot(page, "map-path.png")
    line.get_by_role("link", name="Listen to it").click()
    expect(page.get_by_test_id("path-list").locator("li")).to_have_count(7)
