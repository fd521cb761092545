"""Headless Chromium against a live server: upload by picker, drop and keyboard, watch ingest, browse neighbours."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; Django would refuse ORM calls from it otherwise.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

from catalog.models import Song, SongStatus  # noqa: E402
from tests import audio  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What a strict production policy would allow; the pages must work under it unchanged.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_URL = re.compile(r"^http://[^/]+/(songs/[0-9a-f-]+/)?(\?.*)?$")
INGEST_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page whose HTML arrives with a strict CSP; any console error or script error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []

    def with_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    def on_console(message: Any) -> None:
        if message.type == "error" and "favicon.ico" not in (message.location or {}).get("url", ""):
            problems.append(f"console: {message.text}")

    page.route(PAGE_URL, with_csp)
    # Intercept file choosers from the start: switching interception on races the first key press otherwise.
    page.on("filechooser", lambda chooser: None)
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield page
    context.close()
    assert not problems, problems


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


def _drop_file(page: Any, path: Path) -> None:
    """Drop a file on the zone the way a browser does: a DataTransfer holding a File, with no type given."""
    page.evaluate(
        """([name, bytes]) => {
            const file = new File([new Uint8Array(bytes)], name);
            const data = new DataTransfer();
            data.items.add(file);
            const zone = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
            }
        }""",
        [path.name, list(path.read_bytes())],
    )


def _row(page: Any, file_name: str) -> Any:
    return page.locator(".upload", has=page.locator(".upload__name", has_text=file_name))


def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_upload_ingest_and_browse_neighbours(
    page: Any, live_server: Any, eager_celery: None, songs_on_disk: dict[str, Path]
) -> None:
    expect = sync_api.expect
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
    for name in ("chord.mp3", "drums.mp3"):
        row = _row(page, name)
        expect(row).to_have_attribute("data-status", "ready", timeout=INGEST_TIMEOUT_MS)
        expect(row.locator(".upload__status")).to_have_text("Ready")
        expect(row.locator("progress")).to_have_js_property("value", 100)
        expect(row.get_by_role("link", name="Open song")).to_be_visible()
    broken = _row(page, "broken.mp3")
    expect(broken).to_have_attribute("data-status", "failed", timeout=INGEST_TIMEOUT_MS)
    expect(broken.locator(".upload__status")).to_contain_text("Failed:")
    reason = Song.objects.get(original_file_name="broken.mp3").failure_reason
    assert reason
    expect(broken.locator(".upload__status")).to_contain_text(reason)

    # The dropped file had no type; it was declared from its extension.
    assert Song.objects.get(original_file_name="drums.mp3").content_type == "audio/mpeg"
    assert Song.objects.filter(status=SongStatus.READY).count() == 2

    catalog = page.locator("#catalog-list")
    expect(page.locator("#catalog-count")).to_have_text("3 songs")
    expect(catalog.locator(".song-item", has_text="Harmony in A")).to_contain_text("Ready")
    expect(catalog.locator(".song-item", has_text="Drum Machine")).to_contain_text("Test Beats")
    expect(catalog.locator(".song-item", has_text="broken.mp3")).to_contain_text("Failed")
    _screenshot(page, "home-after-uploads.png")

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

    neighbours = page.get_by_test_id("neighbours")
    expect(neighbours.locator(".song-item")).to_have_count(1)  # the failed song is not searchable
    neighbour = neighbours.locator(".song-item", has_text="Drum Machine")
    expect(neighbour.locator(".score__value")).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
    _screenshot(page, "song-page.png")

    neighbour.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/songs/{drums.id}/")
    expect(page.locator("h1")).to_have_text("Drum Machine")
    expect(page.get_by_test_id("neighbours")).to_contain_text("Harmony in A")

    # Phone width: nothing may overflow sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/")
    expect(page.locator("#catalog-list .song-item")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(page, "home-phone.png")
    page.goto(f"{live_server.url}/songs/{chord.id}/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(page, "song-page-phone.png")


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
