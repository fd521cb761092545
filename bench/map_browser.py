"""Benchmark the map page in headless Chromium: first paint and pan frames at N points.

Usage: python bench/map_browser.py [--points 100000] [--groups 30] [--frames 60]

It serves the real /map/ page (Django's test server on an empty throwaway database, the page's own JS and CSS) and
answers its GET /api/map/ with a prepared body of N points (the API's columnar shape, from its own encoder),
so that what is measured is the browser's work: fetching and parsing the answer, laying out and drawing. It prints
the time from navigation to the first full drawing of the points (the page's `map-draw` performance entry), the
drawing's own duration, then drags the map for `--frames` pointer moves and prints the page's `map-pan-frame`
durations and the intervals between animation frames during the drag, and a full redraw after a zoom. Debian
Chromium at /usr/bin/chromium; this prints figures, it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def body(points: int, groups: int) -> bytes:
    """N points in the API's shape, written by the API's own encoder (catalog.maps.as_json)."""
    import django

    django.setup()
    from datetime import UTC, datetime

    from catalog.maps import CatalogMap, as_json

    rng = np.random.default_rng(0)
    centres = rng.uniform(-0.7, 0.7, size=(groups, 2))
    which = rng.integers(0, groups, points)
    coords = np.clip(centres[which] + rng.normal(0, 0.12, size=(points, 2)), -1, 1).astype(np.float32)
    result = CatalogMap(
        model="features",
        colour_by="album",
        explained_variance=(0.31, 0.12),
        groups=[f"Album {g:02d}" for g in range(groups)],
        song_ids=[uuid.UUID(int=i + 1) for i in range(points)],
        coords=coords,
        group_of=which.astype(np.uint32),
        titles=[f"Song number {i}" for i in range(points)],
        artists=[f"Artist {i % 997}" for i in range(points)],
        computed_at=datetime(2026, 1, 1, tzinfo=UTC),
        projected_songs=points,
    )
    return json.dumps(as_json(result), separators=(",", ":")).encode()


def serve_front(prepared: bytes, backend_port: int) -> ThreadingHTTPServer:
    """A local server answering /api/map/ with the prepared body and relaying the rest (page, JS, CSS) from Django."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/api/map/"):
                status, kind, data = 200, "application/json", prepared
            else:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{backend_port}{self.path}") as answer:
                        status, kind, data = answer.status, answer.headers["Content-Type"], answer.read()
                except urllib.error.HTTPError as error:  # e.g. /favicon.ico: relayed as it is
                    status, kind, data = error.code, error.headers.get("Content-Type", "text/plain"), error.read()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    front = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    return front


def stats(values: list[float]) -> str:
    array = np.asarray(values)
    return f"p50 {np.percentile(array, 50):6.1f} ms  p95 {np.percentile(array, 95):6.1f} ms  max {array.max():6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="bench-map-page-"))
    os.environ.update({"VAR_DIR": str(scratch), "DJANGO_SETTINGS_MODULE": "config.settings"})
    sys.path.insert(0, str(ROOT))
    env = dict(os.environ)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{args.port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prepared = body(args.points, args.groups)
    print(f"{args.points:,} points, {args.groups} albums; API answer {len(prepared) / 1e6:.1f} MB")
    try:
        deadline = time.monotonic() + 120
        while True:  # the development server takes a while to start on a busy host
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        front = serve_front(prepared, args.port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            for attempt in range(3):
                page.goto(f"http://127.0.0.1:{front.server_port}/map/")
                page.wait_for_function("performance.getEntriesByName('map-draw').length > 0", timeout=60_000)
                first = page.evaluate(
                    "(() => { const e = performance.getEntriesByName('map-draw')[0]; "
                    "return [e.startTime + e.duration, e.duration]; })()"
                )
                print(
                    f"load {attempt + 1}: first paint {first[0]:.0f} ms after navigation "
                    f"(the drawing: {first[1]:.1f} ms)"
                )
            page.evaluate("performance.clearMeasures()")
            box = page.locator("#map-overlay").bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.evaluate(
                "window.__frames = []; (function tick(t) { window.__frames.push(t); requestAnimationFrame(tick); })"
                "(performance.now())"
            )
            page.mouse.move(x, y)
            page.mouse.down()
            for step in range(args.frames):
                page.mouse.move(x + 3 * (step + 1), y + 2 * (step + 1))
                page.wait_for_timeout(16)
            page.mouse.up()
            page.wait_for_timeout(400)
            pans = page.evaluate("performance.getEntriesByName('map-pan-frame').map((e) => e.duration)")
            redraws = page.evaluate("performance.getEntriesByName('map-draw').map((e) => e.duration)")
            frames = page.evaluate("window.__frames")
            intervals = list(np.diff(frames))
            print(f"pan: {len(pans)} frames drawn, each {stats(pans)}")
            print(f"pan: intervals between animation frames during the drag {stats(intervals)}")
            print(f"full redraw once the pointer rests: {stats(redraws)}")
            page.evaluate("performance.clearMeasures()")
            for _ in range(5):
                page.mouse.wheel(0, -200)
                page.wait_for_timeout(100)
            zooms = page.evaluate("performance.getEntriesByName('map-draw').map((e) => e.duration)")
            print(f"zoom: {len(zooms)} full redraws, each {stats(zooms)}")
            page.mouse.move(x, y)
            started = time.perf_counter()
            page.mouse.move(x + 1, y + 1)
            page.wait_for_timeout(0)
            print(f"hover hit test and tooltip: {(time.perf_counter() - started) * 1000:.1f} ms round trip")
            page.screenshot(path=str(ROOT / "test-artifacts" / "map-100k.png"))
            browser.close()
    finally:
        if "front" in locals():
            front.shutdown()
        server.terminate()
        server.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    main()
