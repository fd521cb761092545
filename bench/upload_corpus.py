"""Upload audio files to a running Resonance exactly as the browser does, and time each ingest.

Usage: python bench/upload_corpus.py --url http://127.0.0.1:8000 --corpus DIR [--count 20]
Prints, per song, the upload time and the time from confirmation to `ready`, then a summary.
"""

from __future__ import annotations

import argparse
import mimetypes
import statistics
import time
from pathlib import Path
from typing import Any

import requests

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"}


def upload(session: requests.Session, base: str, path: Path) -> tuple[str, float]:
    body = path.read_bytes()
    content_type = mimetypes.guess_type(path.name)[0] or "audio/mpeg"
    ticket = session.post(
        f"{base}/api/uploads/", json={"file_name": path.name, "content_type": content_type, "size": len(body)}
    )
    ticket.raise_for_status()
    data = ticket.json()
    started = time.perf_counter()
    target = data["upload"]
    if target["method"] == "PUT":
        sent = session.put(target["url"], data=body, headers=target["headers"])
    else:
        sent = session.post(target["url"], data=target["fields"], files={"file": (path.name, body, content_type)})
    sent.raise_for_status()
    session.post(f"{base}/api/songs/{data['song_id']}/uploaded/").raise_for_status()
    return data["song_id"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)[: args.count]
    session = requests.Session()
    confirmed: dict[str, tuple[Path, float]] = {}
    for path in files:
        song_id, upload_s = upload(session, base, path)
        confirmed[song_id] = (path, time.perf_counter())
        print(f"uploaded {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {upload_s:.2f} s")
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + args.timeout
    while len(finished) < len(confirmed) and time.monotonic() < deadline:
        for song_id, (path, at) in confirmed.items():
            if song_id in finished:
                continue
            song = session.get(f"{base}/api/songs/{song_id}/").json()
            if song["status"] in {"ready", "failed"}:
                finished[song_id] = song | {"wait_s": time.perf_counter() - at}
                print(
                    f"{song['status']:>6} {path.name}  {song.get('duration_seconds') or 0:.0f} s of audio  "
                    f"{song['failure_reason']}"
                )
        time.sleep(0.5)
    ready = [s for s in finished.values() if s["status"] == "ready"]
    with_neighbours = 0
    for song in ready:
        results = session.get(f"{base}/api/songs/{song['id']}/more-like-this/").json().get("results", [])
        with_neighbours += bool(results)
    total = time.perf_counter() - min(at for _, at in confirmed.values())
    print(
        f"\n{len(ready)}/{len(confirmed)} ready, {len(finished) - len(ready)} failed, "
        f"{len(confirmed) - len(finished)} unfinished; {with_neighbours} ready songs list neighbours"
    )
    print(
        f"all ingested in {total:.1f} s wall = {total / max(len(finished), 1):.2f} s per song "
        f"(median wait from confirmation {statistics.median(float(s['wait_s']) for s in finished.values()):.1f} s)"
    )


if __name__ == "__main__":
    main()
