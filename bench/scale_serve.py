"""HTTP requests, gunicorn worker control and memory readings for bench/scale.py."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Request:
    name: str
    method: str
    path: str
    body: bytes = b""
    content_type: str = ""

    def send(self, port: int, timeout: float = 900) -> tuple[int, bytes]:
        """One request on a new connection, as a browser's first visit makes it."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            headers = {"Accept": "application/json" if self.path.startswith("/api/") else "text/html"}
            if self.body:
                headers["Content-Type"] = self.content_type
            connection.request(self.method, self.path, body=self.body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def clip_upload(name: str, path: str, clip: bytes) -> Request:
    """A multipart POST of an MP3 clip, as the find-similar and identify pages send it."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="clip"; filename="clip.mp3"\r\n'
            f"Content-Type: audio/mpeg\r\n\r\n"
        ).encode()
        + clip
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return Request(name, "POST", path, body, f"multipart/form-data; boundary={boundary}")


class Failed(Exception):
    pass


def timed(port: int, requests: list[Request], check: Callable[[Request, bytes], None] | None = None) -> list[float]:
    """Seconds per request, one at a time; anything but a 200 (or a failed check) stops the run."""
    seconds = []
    for request in requests:
        started = time.perf_counter()
        status, body = request.send(port)
        seconds.append(time.perf_counter() - started)
        if status != 200:
            raise Failed(f"{request.name}: {request.method} {request.path} answered {status}: {body[:300]!r}")
        if check is not None:
            check(request, body)
    return seconds


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return float(p50), float(p95)


def workers(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return sorted(int(pid) for pid in out)


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB from smaps_rollup; PSS shares each page among the processes mapping it."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    return fields["Rss"] / 1024, fields["Pss"] / 1024


@contextmanager
def only(master: int, pid: int) -> Iterator[None]:
    """Every other gunicorn worker stopped (SIGSTOP), so that `pid` accepts every new connection."""
    others = [w for w in workers(master) if w != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def wait_new_worker(master: int, known: set[int], seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fresh = set(workers(master)) - known
        if fresh:
            return fresh.pop()
        time.sleep(0.02)
    raise Failed("gunicorn started no new worker")


def wait_listening(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Request("healthz", "GET", "/healthz").send(port, timeout=5)[0] in {200, 503}:
                return
        except OSError:
            time.sleep(0.2)
    raise Failed("gunicorn did not start")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
