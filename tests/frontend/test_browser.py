"""Headless Chromium against a live server: uploads, toasts, the catalog, find-similar, the song page and its waveform.

Every page is served with a strict CSP, and any console or script error fails the test. Screenshots land in
test-artifacts/.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from catalog.models import Song, SongStatus  # noqa: E402
from frontend import views  # noqa: E402
from tests import audio  # noqa: E402
from tests.factories import SongFactory, SongTagFactory  # noqa: E402
from tests.frontend.conftest import ARTIFACTS, screenshot  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INGEST_TIMEOUT_MS = 60_000


@pytest.fixture
def songs_on_disk(tmp_path: Path) -> dict[str, Path]:
    files = tmp_path / "to-upload"
    rng = random.Random(7)
    broken = files / "broken.mp3"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(bytes(rng.getrandbits(8) for _ in range(20_000)))
    notes = files / "notes.txt"
    notes.write_text("not audio")
    return {
        "chord": audio.write(
            files / "chord.mp3", audio.chord([220, 277, 330], 4.0), title="Harmony in A", artist="Test Tones"
        ),
        "drums": audio.write(files / "drums.mp3", audio.noise_bursts(4.0), title="Drum Machine", artist="Test Beats"),
        "broken": broken,
        "notes": notes,
    }


def _drop_file(page: Any, path: Path, zone: str = "dropzone") -> None:
    """Drop a file on a zone the way a browser does: a DataTransfer holding a File, with no type given."""
    page.evaluate(
        """([name, bytes, zoneId]) => {
            const file = new File([new Uint8Array(bytes)], name);
            const data = new DataTransfer();
            data.items.add(file);
            const zone = document.getElementById(zoneId);
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
            }
        }""",
        [path.name, list(path.read_bytes()), zone],
    )


def _row(page: Any, file_name: str) -> Any:
    return page.locator(".upload", has=page.locator(".upload__name", has_text=file_name))


def _fits(page: Any) -> None:
    """Nothing may overflow sideways."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _active_id(page: Any) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.id : ''")


def _wait_js(page: Any, expression: str, arg: Any = None, timeout_s: float = 15) -> None:
    """Poll a JavaScript expression until it is truthy. (wait_for_function evaluates strings with eval, which the
    strict CSP forbids once it has to poll.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(50)


def _wait_playing(page: Any, selector: str) -> None:
    _wait_js(
        page, "(s) => { const a = document.querySelector(s); return a && !a.paused && a.currentTime > 0; }", selector
    )


def _playback_src(rows: Any, title: str) -> str:
    """The absolute playback address behind a row's play button."""
    src = rows.filter(has_text=title).locator("button.play-button").get_attribute("data-play-src")
    return str(rows.page.evaluate("(s) => new URL(s, location.href).href", src))


def _upload_family(upload: Any, tmp_path: Path, seconds: float = 4.0) -> dict[str, Song]:
    """Three ready songs of different sound families, uploaded through the API."""
    folder = tmp_path / "catalog"
    chord = audio.chord([220, 277, 330], seconds)
    drums = audio.noise_bursts(seconds)
    whistle = audio.tone(880, seconds, harmonics=2)
    return {
        "chord": upload(audio.write(folder / "chord.mp3", chord, title="Harmony in A")),
        "drums": upload(audio.write(folder / "drums.mp3", drums, title="Drum Machine", artist="Test Beats")),
        "whistle": upload(audio.write(folder / "whistle.mp3", whistle, title="Whistle")),
    }


def test_upload_ingest_and_browse_neighbours(
    page: Any, live_server: Any, eager_celery: None, songs_on_disk: dict[str, Path], monkeypatch: Any
) -> None:
    expect = sync_api.expect
    # Toasts stay long enough here to be checked whatever the machine's speed; another test sees them go.
    monkeypatch.setattr(views, "TOAST_SUCCESS_MS", 120_000)
    monkeypatch.setattr(views, "TOAST_ERROR_MS", 120_000)
    page.goto(f"{live_server.url}/")
    expect(page.get_by_test_id("embedding-model")).to_have_text("features")
    expect(page.locator("#catalog-count")).to_have_text("0 songs")
    expect(page.locator("#catalog-list")).to_contain_text("No songs yet")

    # Three ways in: the file input, a real drop event, and the keyboard on the focused zone.
    page.set_input_files("#file-input", [songs_on_disk["chord"], songs_on_disk["notes"]])
    _drop_file(page, songs_on_disk["drums"])
    page.locator("#dropzone").focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files(songs_on_disk["broken"])

    expect(_row(page, "notes.txt")).to_have_attribute("data-status", "rejected")
    expect(_row(page, "notes.txt")).to_contain_text("Not accepted")
    alerts = page.locator("#toasts-alert")
    successes = page.locator("#toasts-status")
    expect(alerts).to_have_attribute("role", "alert")
    expect(successes).to_have_attribute("role", "status")
    expect(alerts.locator(".toast", has_text="notes.txt was not added")).to_be_visible()
    for name in ("chord.mp3", "drums.mp3"):
        row = _row(page, name)
        expect(row).to_have_attribute("data-status", "ready", timeout=INGEST_TIMEOUT_MS)
        expect(row.locator(".upload__status")).to_have_text("Ready")
        expect(row.locator("progress")).to_have_js_property("value", 100)
        expect(row.get_by_role("link", name="Open song")).to_be_visible()
    expect(successes.locator(".toast", has_text="“Harmony in A” is ready.")).to_be_visible()
    expect(successes.locator(".toast", has_text="“Drum Machine” is ready.").get_by_role("link")).to_have_text(
        "Open song"
    )
    broken = _row(page, "broken.mp3")
    expect(broken).to_have_attribute("data-status", "failed", timeout=INGEST_TIMEOUT_MS)
    expect(broken.locator(".upload__status")).to_contain_text("Failed:")
    reason = Song.objects.get(original_file_name="broken.mp3").failure_reason
    assert reason
    expect(broken.locator(".upload__status")).to_contain_text(reason)
    failure_toast = alerts.locator(".toast", has_text="broken.mp3 failed")
    expect(failure_toast).to_contain_text(reason)
    # The toasts never took the focus: it is still on the drop zone the keyboard used.
    assert _active_id(page) == "dropzone"
    failure_toast.get_by_role("button", name="Dismiss notification").click()
    expect(failure_toast).to_have_count(0)

    # The dropped file had no type; it was declared from its extension.
    assert Song.objects.get(original_file_name="drums.mp3").content_type == "audio/mpeg"
    assert Song.objects.filter(status=SongStatus.READY).count() == 2

    catalog = page.locator("#catalog-list")
    expect(page.locator("#catalog-count")).to_have_text("3 songs")
    expect(catalog.locator(".song-item", has_text="Harmony in A")).to_contain_text("Ready")
    expect(catalog.locator(".song-item", has_text="Drum Machine")).to_contain_text("Test Beats")
    expect(catalog.locator(".song-item", has_text="broken.mp3")).to_contain_text("Failed")
    screenshot(page, "home-after-uploads.png")

    # Retrying the corrupt file queues it again and it fails again, with its reason.
    broken.get_by_role("button", name="Retry").click()
    expect(broken).to_have_attribute("data-status", "failed", timeout=INGEST_TIMEOUT_MS)
    assert Song.objects.get(original_file_name="broken.mp3").ingest_attempts == 2

    page.fill("#search-input", "drum")
    expect(catalog.locator(".song-item")).to_have_count(1)
    expect(catalog).to_contain_text("Drum Machine")
    page.fill("#search-input", "")
    expect(catalog.locator(".song-item")).to_have_count(3)

    # The song page: details, a playable player and its neighbour.
    catalog.get_by_role("link", name=re.compile("Harmony in A")).click()
    chord = Song.objects.get(title="Harmony in A")
    drums = Song.objects.get(title="Drum Machine")
    expect(page).to_have_url(f"{live_server.url}/songs/{chord.id}/")
    expect(page.locator("h1")).to_have_text("Harmony in A")
    expect(page.get_by_test_id("song-status")).to_have_text("Ready")
    expect(page.locator(".facts")).to_contain_text("0:04")
    player = page.locator("audio#player")
    assert player.get_attribute("src")
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(4.0, abs=0.2)
    expect(page.locator("#waveform")).to_have_attribute("data-state", "ready")

    neighbours = page.get_by_test_id("neighbours")
    expect(neighbours.locator(".song-item")).to_have_count(1)  # the failed song is not searchable
    neighbour = neighbours.locator(".song-item", has_text="Drum Machine")
    expect(neighbour.locator(".score__value")).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
    screenshot(page, "song-page.png")

    neighbour.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/songs/{drums.id}/")
    expect(page.locator("h1")).to_have_text("Drum Machine")
    expect(page.get_by_test_id("neighbours")).to_contain_text("Harmony in A")

    # Phone width (the narrowest common one): nothing may overflow sideways.
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{live_server.url}/")
    expect(page.locator("#catalog-list .song-item")).to_have_count(3)
    _fits(page)
    screenshot(page, "home-phone.png")
    page.goto(f"{live_server.url}/songs/{chord.id}/")
    expect(page.locator("#waveform")).to_have_attribute("data-state", "ready")
    _fits(page)
    screenshot(page, "song-page-phone.png")


def test_at_most_three_files_upload_at_once(page: Any, live_server: Any, eager_celery: None, tmp_path: Path) -> None:
    expect = sync_api.expect
    paths = [audio.write(tmp_path / f"tone-{n}.wav", audio.tone(220 * (n + 1), 1.0)) for n in range(5)]
    held: list[Any] = []
    page.route("**/storage/upload/**", lambda route: held.append(route))  # hold uploads until released

    def wait_for_held(count: int) -> None:
        for _ in range(100):
            if len(held) >= count:
                break
            page.wait_for_timeout(100)
        page.wait_for_timeout(300)  # and give a fourth upload the chance to start, wrongly
        assert len(held) == count

    page.goto(f"{live_server.url}/")
    page.set_input_files("#file-input", paths)

    rows = page.locator(".upload")
    expect(rows.and_(page.locator('[data-status="uploading"]'))).to_have_count(3)
    expect(rows.and_(page.locator('[data-status="queued"]'))).to_have_count(2)
    wait_for_held(3)
    held[0].continue_()
    wait_for_held(4)  # one finished, one more started
    held[1].continue_()
    wait_for_held(5)
    for route in held[2:]:
        route.continue_()
    expect(rows.and_(page.locator('[data-status="ready"]'))).to_have_count(5, timeout=INGEST_TIMEOUT_MS)
    expect(page.locator("#catalog-list .song-item")).to_have_count(5)
    assert Song.objects.filter(status=SongStatus.READY).count() == 5


def test_toasts_are_announced_and_dismiss_themselves_without_taking_focus(
    page: Any, live_server: Any, eager_celery: None, tmp_path: Path, monkeypatch: Any
) -> None:
    expect = sync_api.expect
    monkeypatch.setattr(views, "TOAST_SUCCESS_MS", 3000)
    monkeypatch.setattr(views, "TOAST_ERROR_MS", 3000)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    tone = audio.write(tmp_path / "tone.wav", audio.tone(330, 1.0))

    page.goto(f"{live_server.url}/")
    page.locator("#search-input").focus()
    page.set_input_files("#file-input", [tone, notes])

    error = page.get_by_role("alert").locator(".toast", has_text="notes.txt was not added")
    expect(error).to_contain_text("Not accepted")
    success = page.get_by_role("status").locator(".toast", has_text="is ready")
    expect(success).to_be_visible(timeout=INGEST_TIMEOUT_MS)
    expect(success.get_by_role("link", name="Open song")).to_have_attribute("href", re.compile(r"^/songs/[0-9a-f-]+/$"))
    assert _active_id(page) == "search-input"
    expect(page.locator(".toast")).to_have_count(0, timeout=10_000)
    assert _active_id(page) == "search-input"
    # The rows keep what the toasts said.
    expect(_row(page, "notes.txt")).to_have_attribute("data-status", "rejected")
    expect(_row(page, "tone.wav")).to_have_attribute("data-status", "ready")


def test_find_similar_ranks_the_right_family_first_with_scores_and_players(
    page: Any, live_server: Any, upload: Any, tmp_path: Path, expected_errors: list[str]
) -> None:
    expect = sync_api.expect
    expected_errors.append("status of 400 (Bad Request) (http://localhost")  # the bogus clip, on purpose
    songs = _upload_family(upload, tmp_path)
    clips = tmp_path / "clips"
    beat = audio.write(clips / "beat.wav", audio.noise_bursts(3.0, bpm=126, seed=7))
    chord = audio.write(clips / "b-major.wav", audio.chord([247, 311, 370], 3.0))
    bogus = clips / "bogus.mp3"
    bogus.write_bytes(b"definitely not audio" * 100)
    notes = clips / "notes.txt"
    notes.write_text("not audio")

    page.goto(f"{live_server.url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Find similar").click()
    expect(page).to_have_url(f"{live_server.url}/similar/")
    expect(page.get_by_role("link", name="Find similar")).to_have_attribute("aria-current", "page")
    expect(page.locator("h1")).to_have_text("Find similar songs")
    expect(page.get_by_test_id("similar-empty-catalog")).to_have_count(0)

    # A drum clip dropped on the zone: the drum song first, every result with a score and a player.
    _drop_file(page, beat, zone="clip-zone")
    results = page.get_by_test_id("similar-results").locator(".result")
    expect(results).to_have_count(3)
    expect(page.locator("#results-heading")).to_have_text("Songs that sound like “beat.wav”")
    expect(results.first).to_contain_text("Drum Machine")
    expect(results.first.get_by_role("link")).to_have_attribute("href", f"/songs/{songs['drums'].id}/")
    expect(results.locator(".score__value")).to_have_text([re.compile(r"^-?\d\.\d{3}$")] * 3)
    scores = [float(text) for text in results.locator(".score__value").all_text_contents()]
    assert scores == sorted(scores, reverse=True)
    players = results.locator("audio[controls]")
    expect(players).to_have_count(3)
    for index in range(3):
        expect(players.nth(index)).to_have_attribute("src", re.compile(r"^/storage/media/"))
    expect(players.first).to_have_attribute("aria-label", "Play Drum Machine")
    # The first player really plays its song.
    page.evaluate("document.querySelector('.result audio').preload = 'metadata'")
    page.evaluate("document.querySelector('.result audio').load()")
    _wait_js(page, "document.querySelector('.result audio').duration > 3.5")
    page.set_viewport_size({"width": 1200, "height": 900})
    screenshot(page, "similar.png")

    # A chord clip through the picker, fewer results: now the chord comes first.
    page.select_option("#limit-select", "5")
    page.set_input_files("#clip-input", chord)
    expect(page.locator("#results-heading")).to_have_text("Songs that sound like “b-major.wav”")
    expect(results.first).to_contain_text("Harmony in A")

    # A file that only pretends to be audio: the server's reason is shown, and no stale results.
    _drop_file(page, bogus, zone="clip-zone")
    error = page.locator("#similar-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("bogus.mp3")
    expect(error).to_contain_text("could not be decoded")
    expect(page.locator("#results-panel")).to_be_hidden()
    screenshot(page, "similar-error.png")

    # Not audio at all: refused before anything is sent.
    _drop_file(page, notes, zone="clip-zone")
    expect(error).to_contain_text("notes.txt: Not accepted")

    # Keyboard: the focused zone opens the picker.
    page.locator("#clip-zone").focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert not chooser.value.is_multiple()
    chooser.value.set_files(beat)
    expect(results.first).to_contain_text("Drum Machine")
    expect(error).to_be_hidden()

    # The clips never joined the catalog.
    assert Song.objects.count() == 3

    page.set_viewport_size({"width": 360, "height": 800})
    expect(players).to_have_count(3)
    _fits(page)
    screenshot(page, "similar-phone-360.png")


def test_catalog_searches_filters_paginates_and_plays(page: Any, live_server: Any, upload: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    songs = _upload_family(upload, tmp_path, seconds=8.0)  # long enough to be still playing when checked
    SongTagFactory.create(song=songs["chord"], label="Music", score=0.9)
    SongTagFactory.create(song=songs["chord"], label="Guitar", score=0.4)
    SongTagFactory.create(song=songs["drums"], label="Music", score=0.8)
    SongTagFactory.create(song=songs["drums"], label="Drum", score=0.7)
    SongFactory.create(title="Broken tape", status=SongStatus.FAILED, original_file_name="tape.mp3")
    SongFactory.create(title="Still thinking", artist="Slow Band", status=SongStatus.PROCESSING)

    page.goto(f"{live_server.url}/")
    catalog = page.locator("#catalog-list")
    rows = catalog.locator(".song-item")
    count = page.locator("#catalog-count")
    expect(count).to_have_text("5 songs")

    def titles() -> list[str]:
        return rows.locator(".song-item__title").all_text_contents()

    # Search covers title, artist, album and file name.
    page.get_by_label("Search", exact=True).fill("slow band")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Still thinking")
    page.get_by_label("Search", exact=True).fill("whistle.mp3")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Whistle")
    page.get_by_label("Search", exact=True).fill("")
    expect(rows).to_have_count(5)

    # Status.
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Broken tape")
    expect(count).to_have_text("1 song with status failed")
    expect(page).to_have_url(re.compile(r"\?status=failed$"))
    expect(rows.first.get_by_role("button")).to_have_count(0)  # nothing to play in a failed song

    # Sound tag, alone and with the status.
    page.get_by_label("Status", exact=True).select_option("")
    expect(page.get_by_label("Sound", exact=True)).to_be_visible()
    page.get_by_label("Sound", exact=True).select_option("Drum")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Drum Machine")
    page.get_by_label("Sound", exact=True).select_option("Music")
    expect(rows).to_have_count(2)
    assert sorted(titles()) == ["Drum Machine", "Harmony in A"]
    page.get_by_label("Sort by", exact=True).select_option("title")
    expect(rows.first).to_contain_text("Drum Machine")
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(catalog).to_contain_text("No songs match these filters.")
    screenshot(page, "catalog-empty-filter.png")
    catalog.get_by_role("button", name="Clear filters").click()
    expect(rows).to_have_count(5)
    assert _active_id(page) == "search-input"

    # A filtered view survives a reload, and a tag on a row filters by it.
    page.goto(f"{live_server.url}/?tag=Music&status=ready")
    expect(rows).to_have_count(2)
    expect(page.get_by_label("Sound", exact=True)).to_have_value("Music")
    expect(page.get_by_label("Status", exact=True)).to_have_value("ready")
    page.get_by_role("button", name="Clear filters").first.click()
    expect(rows).to_have_count(5)
    rows.filter(has_text="Harmony in A").get_by_role("link", name="Guitar").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Sound", exact=True)).to_have_value("Guitar")
    page.get_by_role("button", name="Clear filters").first.click()
    expect(rows).to_have_count(5)

    # Play and pause from a row, on the one shared player.
    drum_row = rows.filter(has_text="Drum Machine")
    drum_row.get_by_role("button", name="Play Drum Machine").click()
    _wait_playing(page, "#shared-player")
    expect(drum_row.get_by_role("button", name="Pause Drum Machine")).to_have_attribute("data-state", "playing")
    expect(drum_row).to_have_class(re.compile(r"\bis-playing\b"))
    expect(page.locator("#now-playing")).to_be_visible()
    expect(page.locator("#now-playing-title")).to_have_text("Drum Machine")
    screenshot(page, "catalog-playing.png")
    drum_row.get_by_role("button", name="Pause Drum Machine").click()
    expect(page.locator("#shared-player")).to_have_js_property("paused", True)
    expect(drum_row.get_by_role("button", name="Play Drum Machine")).to_have_attribute("data-state", "paused")
    expect(drum_row).not_to_have_class(re.compile(r"\bis-playing\b"))
    # Another row takes over the player.
    chord_row = rows.filter(has_text="Harmony in A")
    chord_row.get_by_role("button", name="Play Harmony in A").click()
    _wait_playing(page, "#shared-player")
    expect(chord_row).to_have_class(re.compile(r"\bis-playing\b"))
    expect(drum_row).not_to_have_class(re.compile(r"\bis-current\b"))
    assert page.evaluate("document.getElementById('shared-player').src") == _playback_src(rows, "Harmony in A")
    # The playing row keeps its state when the list reloads.
    page.get_by_label("Search", exact=True).fill("harmony")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_class(re.compile(r"\bis-playing\b"))
    page.get_by_role("button", name="Close the player").click()
    expect(page.locator("#now-playing")).to_be_hidden()
    expect(rows.first.get_by_role("button")).to_have_attribute("aria-label", "Play Harmony in A")
    page.get_by_label("Search", exact=True).fill("")
    expect(rows).to_have_count(5)

    # Pages.
    SongFactory.create_batch(22)
    page.reload()
    expect(count).to_have_text("27 songs")
    expect(rows).to_have_count(25)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 2")
    expect(page.locator("#page-prev")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(rows).to_have_count(2)
    expect(page.locator("#page-info")).to_have_text("Page 2 of 2")
    expect(page).to_have_url(re.compile(r"\?page=2$"))
    expect(page.locator("#page-next")).to_be_disabled()

    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{live_server.url}/?tag=Music")
    expect(rows).to_have_count(2)
    _fits(page)
    page.locator("section", has=page.locator("#catalog-heading")).screenshot(
        path=str(ARTIFACTS / "catalog-phone-360.png")
    )
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(f"{live_server.url}/?tag=Music")
    expect(rows).to_have_count(2)
    page.locator("section", has=page.locator("#catalog-heading")).screenshot(path=str(ARTIFACTS / "catalog.png"))


def test_song_page_waveform_seeks_and_more_like_this_plays(
    page: Any, live_server: Any, upload: Any, tmp_path: Path
) -> None:
    expect = sync_api.expect
    songs = _upload_family(upload, tmp_path)
    SongTagFactory.create(song=songs["chord"], label="Music", score=0.9)

    page.goto(f"{live_server.url}/songs/{songs['chord'].id}/")
    canvas = page.locator("#waveform")
    expect(canvas).to_have_attribute("data-state", "ready")
    expect(canvas).to_have_attribute("aria-label", re.compile(r"^Waveform of Harmony in A"))
    expect(page.locator(".waveform__message")).to_be_hidden()
    drawn = page.evaluate(
        """() => {
            const canvas = document.getElementById("waveform");
            const {data, width, height} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            let painted = 0;
            const columns = new Set();
            for (let i = 3; i < data.length; i += 4) {
                if (data[i] > 0) { painted += 1; columns.add(((i - 3) / 4) % width); }
            }
            return {painted, columns: columns.size, width, height};
        }"""
    )
    assert drawn["width"] > 300
    assert drawn["columns"] > 0.9 * drawn["width"], drawn  # a steady chord: every column has a peak
    assert drawn["painted"] > 0.2 * drawn["width"] * drawn["height"], drawn

    # Clicking the middle of the picture seeks the player to the middle of the song.
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    _wait_js(page, "document.getElementById('player').currentTime > 0")
    assert page.evaluate("document.getElementById('player').currentTime") == pytest.approx(2.0, abs=0.3)
    expect(canvas).to_have_attribute("aria-valuenow", "2")
    # And the keyboard: it is a slider.
    canvas.focus()
    page.keyboard.press("Home")
    expect(canvas).to_have_attribute("aria-valuenow", "0")
    page.keyboard.press("ArrowRight")
    expect(canvas).to_have_attribute("aria-valuetext", "0:01 of 0:04")
    # The part already played is drawn in the accent colour, the rest in grey (redrawn on the next frame).
    _wait_js(
        page,
        """() => {
            const canvas = document.getElementById("waveform");
            const context = canvas.getContext("2d");
            const y = Math.round(canvas.height / 2);
            const at = (fraction) => context.getImageData(Math.round(canvas.width * fraction), y, 1, 1).data.join();
            return at(0.1) !== at(0.8);
        }""",
    )
    screenshot(page, "song.png")

    # More like this: each row plays on the shared player, which pauses the main one.
    page.keyboard.press("Home")
    page.evaluate("document.getElementById('player').play()")
    _wait_playing(page, "#player")
    neighbours = page.get_by_test_id("neighbours").locator(".song-item")
    expect(neighbours).to_have_count(2)
    drums_row = neighbours.filter(has_text="Drum Machine")
    drums_row.get_by_role("button", name="Play Drum Machine").click()
    _wait_playing(page, "#shared-player")
    expect(drums_row).to_have_class(re.compile(r"\bis-playing\b"))
    expect(page.locator("#player")).to_have_js_property("paused", True)
    drums_row.get_by_role("button", name="Pause Drum Machine").click()
    expect(page.locator("#shared-player")).to_have_js_property("paused", True)

    # And onward to the next song.
    drums_row.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/songs/{songs['drums'].id}/")
    expect(page.locator("#waveform")).to_have_attribute("data-state", "ready")
    expect(page.get_by_test_id("neighbours")).to_contain_text("Harmony in A")

    page.set_viewport_size({"width": 360, "height": 800})
    expect(page.locator("#waveform")).to_have_attribute("data-state", "ready")
    _fits(page)
    screenshot(page, "song-phone-360.png")

    page.set_viewport_size({"width": 1200, "height": 900})
    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(page.locator("#waveform")).to_have_attribute("data-state", "ready")
    screenshot(page, "song-dark.png")
