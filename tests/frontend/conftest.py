"""Headless Chromium for the page tests: one browser per module, and pages served with a strict CSP on which any
console or script error fails the test."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# What a strict production policy would allow; the pages must work under it unchanged.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_URL = re.compile(r"^http://[^/]+/(songs/[0-9a-f-]+/|similar/|map/|identify/)?(\?.*)?$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an event loop in this thread; Django would refuse ORM calls from it otherwise.
        # Set only while a browser module runs: left in the environment, it fails `check --deploy`.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture
def expected_errors() -> list[str]:
    """Console errors a test provokes on purpose (substrings); any other one fails the test."""
    return []


@pytest.fixture
def open_page(browser: Any, expected_errors: list[str]) -> Iterator[Callable[..., Any]]:
    """Opens pages (context options as for `new_context`) whose HTML arrives with STRICT_CSP."""
    cache.clear()
    problems: list[str] = []
    contexts: list[Any] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and "favicon.ico" not in (message.location or {}).get("url", ""):
            problems.append(f"console: {message.text} ({(message.location or {}).get('url', '')})")

    def with_csp(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    def _open(**options: Any) -> Any:
        context = browser.new_context(**{"viewport": {"width": 1200, "height": 900}, **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.route(PAGE_URL, with_csp)
        # Intercept file choosers from the start: switching interception on races the first key press otherwise.
        page.on("filechooser", lambda chooser: None)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        return page

    yield _open
    for context in contexts:
        context.close()
    unexpected = [problem for problem in problems if not any(allowed in problem for allowed in expected_errors)]
    assert not unexpected, unexpected


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page()


def screenshot(page: Any, name: str, **options: Any) -> Path:
    """Save a full-page screenshot under test-artifacts/ for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True, **options)
    return path
