"""Churn for bench/load.py: staff deletes, re-uploads of the same bytes, files that fail and their retries, and
admin title edits, mixed into the upload and search load; then an audit of every song the run made or touched.

The ledger records what the product answered to each action; the audit compares the database, the storage folder,
the vector table and the fingerprint table with it.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import requests

# Relative weights of the churn actions.
ACTIONS = {"delete": 3, "reupload": 2, "broken_upload": 1, "retry": 2, "edit": 3}
# Audio with no landmarks is noted as such by the ingest and keeps no fingerprints.
NO_LANDMARKS = "Too quiet to fingerprint"


def hex_id(song_id: str) -> str:
    return uuid.UUID(song_id).hex


def upload(session: requests.Session, base: str, name: str, body: bytes) -> str:
    """Upload exactly as a browser does (ask for a URL, PUT the bytes, confirm); the new song's id, as hex."""
    ticket = session.post(
        f"{base}/api/uploads/", json={"file_name": name, "content_type": "audio/mpeg", "size": len(body)}
    )
    ticket.raise_for_status()
    data = ticket.json()
    target = data["upload"]
    session.put(target["url"], data=body, headers=target["headers"]).raise_for_status()
    session.post(f"{base}/api/songs/{data['song_id']}/uploaded/").raise_for_status()
    return hex_id(data["song_id"])


@dataclass
class Ledger:
    """Every song the run made and what was done to it, as the product answered."""

    sources: dict[str, Path | None] = field(default_factory=dict)  # song -> the file of its bytes; None: broken
    seeds: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    titles: dict[str, str] = field(default_factory=dict)  # song -> the last title an edit saved
    outcomes: Counter[str] = field(default_factory=Counter)  # "action: answer" -> times
    newest: list[str] = field(default_factory=list)  # non-seed songs in upload order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, song: str, source: Path | None, *, seed: bool = False) -> None:
        with self.lock:
            self.sources[song] = source
            if seed:
                self.seeds.add(song)
            else:
                self.newest.append(song)

    def live(self) -> list[str]:
        with self.lock:
            return [song for song in self.sources if song not in self.deleted]

    def note(self, action: str, answer: object) -> None:
        with self.lock:
            self.outcomes[f"{action}: {answer}"] += 1


class _FormFields(HTMLParser):
    """The fields a browser would submit from the admin's change form."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "song_form":
            self.in_form = True
        elif self.in_form and tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in {"submit", "button", "image", "file", "reset"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False


class Staff:
    """A staff member: the API with a token (deletes, retries) and the admin site with a session (edits)."""

    def __init__(self, base: str, username: str, password: str, token: str) -> None:
        self.base = base
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Token {token}"
        self.admin = requests.Session()
        self.admin.get(f"{base}/admin/login/").raise_for_status()
        login = self.admin.post(
            f"{base}/admin/login/",
            data={
                "csrfmiddlewaretoken": self.admin.cookies["csrftoken"],
                "username": username,
                "password": password,
                "next": "/admin/",
            },
            allow_redirects=False,
        )
        if login.status_code != 302:
            raise SystemExit(f"admin login failed: {login.status_code}")

    def delete(self, song: str) -> int:
        return self.api.delete(f"{self.base}/api/songs/{uuid.UUID(song)}/").status_code

    def retry(self, song: str) -> int:
        return self.api.post(f"{self.base}/api/songs/{uuid.UUID(song)}/retry/").status_code

    def edit_title(self, song: str, title: str) -> str:
        """Change the title through the admin's change form: saved, gone (no such song) or the answer's status."""
        url = f"{self.base}/admin/catalog/song/{uuid.UUID(song)}/change/"
        page = self.admin.get(url, allow_redirects=False)
        if page.status_code == 302:
            return "gone"
        if page.status_code != 200:
            return str(page.status_code)
        parser = _FormFields()
        parser.feed(page.text)
        form = parser.fields | {"title": title, "_save": "Save"}
        saved = self.admin.post(url, data=form, headers={"Referer": url}, allow_redirects=False)
        if saved.status_code == 302:
            return "saved" if saved.headers.get("Location", "").endswith("/admin/catalog/song/") else "gone"
        return str(saved.status_code)


class Churn:
    """One client doing churn actions at a fixed rate until `stop` is set."""

    def __init__(self, staff: Staff, ledger: Ledger, base: str, per_minute: float, seed: int) -> None:
        self.staff, self.ledger, self.base = staff, ledger, base
        self.interval = 60.0 / per_minute
        self.pick = random.Random(seed)
        self.client = requests.Session()
        self.broken_files = 0
        self.edits = 0

    def run(self, stop: threading.Event) -> None:
        names, weights = zip(*ACTIONS.items(), strict=True)
        next_at = time.monotonic()
        while not stop.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            action = self.pick.choices(names, weights)[0]
            try:
                getattr(self, action)()
            except requests.RequestException as exc:
                self.ledger.note(action, type(exc).__name__)

    def _target(self, songs: list[str]) -> str | None:
        """Often the newest song (its ingest is likely still running), else any."""
        if not songs:
            return None
        return songs[-1] if self.pick.random() < 0.3 else self.pick.choice(songs)

    def _live_uploads(self, *, broken: bool | None = None) -> list[str]:
        with self.ledger.lock:
            return [
                s
                for s in self.ledger.newest
                if s not in self.ledger.deleted and (broken is None or (self.ledger.sources[s] is None) == broken)
            ]

    def delete(self) -> None:
        song = self._target(self._live_uploads())  # seeds stay, so the search clients always have songs
        if song is None:
            return
        answer = self.staff.delete(song)
        if answer == 204:
            with self.ledger.lock:
                self.ledger.deleted.add(song)
        self.ledger.note("delete", answer)

    def reupload(self) -> None:
        """The bytes of a deleted song (half the time, when there is one) or of a live one, uploaded again."""
        with self.ledger.lock:
            gone = [self.ledger.sources[s] for s in self.ledger.deleted if self.ledger.sources[s] is not None]
            alive = [p for s, p in self.ledger.sources.items() if p is not None and s not in self.ledger.deleted]
        of_deleted = bool(gone) and (self.pick.random() < 0.5 or not alive)
        source = self.pick.choice(gone if of_deleted else alive)
        assert source is not None
        kind = "reupload of a deleted song's bytes" if of_deleted else "reupload of a live song's bytes"
        try:
            song = upload(self.client, self.base, source.name, source.read_bytes())
        except requests.HTTPError as exc:
            self.ledger.note(kind, exc.response.status_code)
            return
        self.ledger.add(song, source)
        self.ledger.note(kind, "accepted")

    def broken_upload(self) -> None:
        self.broken_files += 1
        body = b"\xff\xfb" + f"not audio {self.broken_files} ".encode() * 400
        song = upload(self.client, self.base, f"broken-{self.broken_files:03d}.mp3", body)
        self.ledger.add(song, None)
        self.ledger.note("broken upload", "accepted")

    def retry(self) -> None:
        song = self._target(self._live_uploads(broken=True))
        if song is not None:
            self.ledger.note("retry", self.staff.retry(song))

    def edit(self) -> None:
        song = self._target(self.ledger.live())
        if song is None:
            return
        self.edits += 1
        title = f"Edited {self.edits}"
        answer = self.staff.edit_title(song, title)
        if answer == "saved":
            with self.ledger.lock:
                self.ledger.titles[song] = title
        self.ledger.note("edit", answer)


def shared_bytes(database: Path) -> int:
    """Live songs whose bytes another live song also has: browser uploads are not refused as duplicates."""
    with sqlite3.connect(database, timeout=30) as connection:
        counts = connection.execute(
            "SELECT COUNT(*) FROM catalog_song WHERE sha256 != '' GROUP BY sha256 HAVING COUNT(*) > 1"
        ).fetchall()
    return sum(n for (n,) in counts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit(database: Path, stored_keys: list[str], ledger: Ledger) -> list[str]:
    """Every way the stack disagrees with the ledger; empty when each song is in one consistent state."""
    with sqlite3.connect(database, timeout=30) as connection:
        rows = {
            hex_id(r[0]): r[1:]
            for r in connection.execute("SELECT id, status, sha256, title, ingest_note, object_key FROM catalog_song")
        }
        vectors = Counter(hex_id(r[0]) for r in connection.execute("SELECT song_id FROM embeddings_storedvector"))
        prints = Counter(hex_id(r[0]) for r in connection.execute("SELECT song_id FROM fingerprints_songfingerprints"))
    objects = Counter(hex_id(key.split("/")[1]) for key in stored_keys)
    keys = set(stored_keys)
    problems: list[str] = []
    for song, source in ledger.sources.items():
        if song in ledger.deleted:
            left = [
                name
                for name, held in (("row", rows), ("object", objects), ("vector", vectors), ("prints", prints))
                if song in held
            ]
            if left:
                problems.append(f"deleted song {song} still has: {', '.join(left)}")
            continue
        if song not in rows:
            problems.append(f"song {song} lost: no row")
            continue
        status, sha256, title, note, key = rows[song]
        want = "failed" if source is None else "ready"
        if status != want:
            problems.append(f"song {song} is {status}, not {want}")
        if objects[song] != 1 or key not in keys:
            problems.append(f"song {song} has {objects[song]} stored objects")
        want_vectors = 1 if want == "ready" else 0
        want_prints = 0 if want == "failed" or NO_LANDMARKS in note else 1
        if vectors[song] != want_vectors or prints[song] != want_prints:
            problems.append(f"song {song}: {vectors[song]} vectors, {prints[song]} fingerprint sets")
        if source is not None and status == "ready" and sha256 != _sha256(source):
            problems.append(f"song {song}: sha256 differs from its file's")
        if song in ledger.titles and title != ledger.titles[song]:
            problems.append(f"song {song}: title {title!r}, but the last saved edit was {ledger.titles[song]!r}")
    for name, held in (("row", rows), ("object", objects), ("vector", vectors), ("fingerprint set", prints)):
        strays = set(held) - set(ledger.sources)
        if strays:
            problems.append(f"{len(strays)} {name}s of songs the run never made")
    return problems
