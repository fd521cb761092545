"""The host-shared derived index: processes sharing one copy, following each other's writes, restarts, damage."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from derived.segments import song_id_at
from derived.store import MANIFEST, forget_held
from embeddings.index.local import LocalVectorIndex
from fingerprints.index.local import LocalFingerprintIndex
from fingerprints.landmarks import landmarks
from tests.conftest import database_env, on_postgres
from tests.derived.memory import mapped_kb
from tests.fingerprints.music import excerpt, song

ROOT = Path(__file__).resolve().parents[2]
DIM = 4


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _other_process(settings: Any, code: str) -> Any:
    """Run `code` in a new Python process on the same database and index folder; returns what it prints (JSON)."""
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **database_env(),
        "DERIVED_INDEX_DIR": str(settings.DERIVED_INDEX_DIR),
        "VAR_DIR": str(Path(settings.DERIVED_INDEX_DIR).parent),
        "LOG_LEVEL": "WARNING",
    }
    script = "import django, json, uuid\ndjango.setup()\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _segment_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.npy") if ".tmp-" not in str(p))


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_copy_and_see_each_others_adds_and_deletes(settings: Any) -> None:
    index = LocalVectorIndex(model="shared", dim=DIM)
    here = uuid.uuid4()
    index.upsert(here, "uploads/here.mp3", _unit(1, 0, 0, 0))
    assert [hit.song_id for hit in index.search(_unit(1, 0, 0, 0), limit=5)] == [here]

    # The other process finds this process's song in the same files, then adds one of its own.
    seen = _other_process(
        settings,
        """
        from embeddings.index.local import LocalVectorIndex
        index = LocalVectorIndex(model="shared", dim=4)
        found = [str(hit.song_id) for hit in index.search([1, 0, 0, 0], limit=5)]
        there = uuid.uuid4()
        index.upsert(there, "uploads/there.mp3", [0, 1, 0, 0])
        print(json.dumps({"found": found, "there": str(there)}))
        """,
    )
    assert seen["found"] == [str(here)]

    hits = index.search(_unit(0, 1, 0, 0), limit=5)
    assert hits[0].song_id == uuid.UUID(seen["there"])
    # One copy, on the shared disk: each song has one live row, read through read-only maps of the folder's files.
    snapshot = index.snapshot()
    live = [
        song_id_at(part.segment.song_ids, int(row)) for part in snapshot.parts for row in np.flatnonzero(part.alive)
    ]
    assert sorted(live) == sorted([here, uuid.UUID(seen["there"])])
    for part in snapshot.parts:
        assert isinstance(part.segment.vectors, np.memmap) and not part.segment.vectors.flags.writeable
        assert Path(str(part.segment.vectors.filename)).parent.parent == index.store.folder

    _other_process(
        settings,
        f"""
        from embeddings.index.local import LocalVectorIndex
        LocalVectorIndex(model="shared", dim=4).delete(uuid.UUID("{here}"))
        print("{{}}")
        """,
    )
    assert here not in {hit.song_id for hit in index.search(_unit(1, 0, 0, 0), limit=5)}


@pytest.mark.django_db(transaction=True)
def test_fingerprints_added_by_another_process_are_identified_here(settings: Any) -> None:
    index = LocalFingerprintIndex()
    first = uuid.uuid4()
    found = landmarks(song(11))
    index.add(first, found.hashes, found.times)
    assert index.stats().songs == 1
    seen = _other_process(
        settings,
        """
        from fingerprints.index.local import LocalFingerprintIndex
        from fingerprints.landmarks import landmarks
        from tests.fingerprints.music import song
        index = LocalFingerprintIndex()
        before = index.stats().songs
        late = uuid.uuid4()
        found = landmarks(song(12))
        index.add(late, found.hashes, found.times)
        print(json.dumps({"before": before, "late": str(late)}))
        """,
    )
    assert seen["before"] == 1

    from fingerprints.selectors import identify

    match = identify(excerpt(song(12), 5.0, 5.0))
    assert match is not None and str(match.song_id) == seen["late"]


@pytest.mark.django_db
def test_a_restarted_process_answers_from_the_index_on_disk_without_rebuilding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = LocalVectorIndex(model="restart", dim=DIM)
    song_id = uuid.uuid4()
    index.upsert(song_id, "uploads/a.mp3", _unit(0, 0, 1, 0))
    index.search(_unit(0, 0, 1, 0), limit=1)
    stamp = (index.store.folder / MANIFEST).stat().st_mtime_ns
    forget_held()  # as a new process starts: it holds nothing

    restarted = LocalVectorIndex(model="restart", dim=DIM)
    monkeypatch.setattr(restarted.store.codec, "load_all", None)  # a rebuild would fail
    monkeypatch.setattr(restarted.store.codec, "load", None)  # and so would reading any song again

    assert restarted.search(_unit(0, 0, 1, 0), limit=1)[0].song_id == song_id
    assert (index.store.folder / MANIFEST).stat().st_mtime_ns == stamp


@pytest.mark.django_db
@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "manifest"])
def test_a_damaged_or_missing_file_is_rebuilt_from_the_database_and_never_served(
    damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    index = LocalVectorIndex(model="damaged", dim=DIM)
    songs = [uuid.uuid4() for _ in range(3)]
    for i, song_id in enumerate(songs):
        index.upsert(song_id, f"uploads/{i}.mp3", _unit(1, i, 0, 0))
    index.search(_unit(1, 0, 0, 0), limit=1)
    forget_held()
    vectors = next(p for p in _segment_files(index.store.folder) if p.name == "vectors.npy")
    if damage == "truncate":
        vectors.write_bytes(vectors.read_bytes()[:100])
    elif damage == "garbage":
        vectors.write_bytes(os.urandom(vectors.stat().st_size))
    elif damage == "delete":
        vectors.unlink()
    else:
        (index.store.folder / MANIFEST).write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="derived.store"):
        hits = index.search(_unit(1, 0, 0, 0), limit=3)

    assert [hit.song_id for hit in hits] == songs
    assert [round(hit.score, 5) for hit in hits] == [
        round(float(_unit(1, i, 0, 0) @ _unit(1, 0, 0, 0)), 5) for i in range(3)
    ]
    assert "rebuilding it from the database" in caplog.text


@pytest.mark.django_db
def test_an_index_built_from_another_database_is_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    from derived.models import IndexEpoch

    index = LocalVectorIndex(model="epoch", dim=DIM)
    song_id = uuid.uuid4()
    index.upsert(song_id, "uploads/a.mp3", _unit(1, 0, 0, 0))
    index.search(_unit(1, 0, 0, 0), limit=1)
    IndexEpoch.objects.filter(kind=index.kind).update(token=uuid.uuid4())  # as after restoring another database
    index.upsert(uuid.uuid4(), "uploads/b.mp3", _unit(0, 1, 0, 0))

    with caplog.at_level(logging.WARNING, logger="derived.store"):
        assert len(index.search(_unit(1, 0, 0, 0), limit=5)) == 2
    assert "built from another database" in caplog.text


@pytest.mark.django_db
def test_a_song_deleted_while_a_compaction_is_written_stays_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    index = LocalVectorIndex(model="compact", dim=DIM)
    songs = [uuid.uuid4() for _ in range(6)]
    for i, song_id in enumerate(songs):
        index.upsert(song_id, f"uploads/{i}.mp3", _unit(1, i, 1, 0))
        index.search(_unit(1, 0, 0, 0), limit=1)
    monkeypatch.setattr("derived.store.INLINE_MERGE_BYTES", 0)  # nothing merged inline: compaction has work
    monkeypatch.setattr("derived.store.request_compaction", lambda: None)
    for song_id in songs[:2]:
        index.upsert(song_id, "uploads/again.mp3", _unit(0, 0, 0, 1))
        index.search(_unit(1, 0, 0, 0), limit=1)
    store = index.store
    original = store._merge_parts
    victim = songs[4]

    def merge_then_delete(parts: Any, folder: Path) -> None:
        original(parts, folder)
        index.delete(victim)  # committed while the merged segment was being written, before the swap
        store.sync()

    monkeypatch.setattr(store, "_merge_parts", merge_then_delete)
    assert store.compact()

    live = {hit.song_id for hit in index.search(_unit(1, 0, 0, 0), limit=10)}
    assert live == set(songs) - {victim}
    assert len(index.snapshot().parts) < 8


@pytest.mark.django_db
def test_compaction_never_writes_a_segment_larger_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    dim = 512  # rows large enough to outweigh the files' headers
    index = LocalVectorIndex(model="capped", dim=dim)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr("derived.store.request_compaction", lambda: None)
    monkeypatch.setattr("derived.store.INLINE_MERGE_BYTES", 0)  # one segment per sync, merged only by compaction
    songs = [uuid.uuid4() for _ in range(12)]
    index.upsert(songs[0], "uploads/0.mp3", vectors[0])
    index.search(vectors[0], limit=1)
    one_song = index.snapshot().parts[0].segment.nbytes
    for i, song_id in enumerate(songs[1:], start=1):
        index.upsert(song_id, f"uploads/{i}.mp3", vectors[i])
        index.search(vectors[0], limit=1)
    assert len(index.snapshot().parts) == 12
    monkeypatch.setattr("derived.store.MAX_SEGMENT_BYTES", 3 * one_song)
    assert index.store.compact()

    parts = index.snapshot().parts
    # As few segments as the cap allows: each fills up to it before the next one starts.
    assert len(parts) == 4
    assert all(part.segment.nbytes <= 3 * one_song for part in parts)
    assert {hit.song_id for hit in index.search(vectors[0], limit=20)} == set(songs)


def test_a_change_committed_after_a_later_one_was_applied_still_reaches_the_index(alongside) -> None:
    """PostgreSQL hands out change ids at insert and commits them in any order: the later id can be applied first."""
    from django.db import transaction

    index = LocalVectorIndex(model="late", dim=DIM)
    first, early, late = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    index.upsert(first, "uploads/first.mp3", _unit(0, 0, 0, 1))
    index.search(_unit(0, 0, 0, 1), limit=1)  # built, before the two writers start

    def write_later_and_search() -> list[uuid.UUID]:
        index.upsert(late, "uploads/late.mp3", _unit(0, 1, 0, 0))
        return [hit.song_id for hit in index.search(_unit(0, 1, 0, 0), limit=3)]

    with transaction.atomic():
        index.upsert(early, "uploads/early.mp3", _unit(1, 0, 0, 0))  # takes its change id, not committed yet
        other = alongside(write_later_and_search)  # on its own connection: commits a higher id, syncs past it
    seen_by_other = other.join()
    if on_postgres():  # SQLite made the other writer wait for this commit, so it saw both
        assert late in seen_by_other and early not in seen_by_other

    assert index.search(_unit(1, 0, 0, 0), limit=1)[0].song_id == early
    assert {hit.song_id for hit in index.search(_unit(0, 1, 0, 0), limit=3)} == {first, early, late}


@pytest.mark.django_db
@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_a_fingerprint_lookup_keeps_no_postings_pages_mapped(settings: Any, tmp_path: Path) -> None:
    index = LocalFingerprintIndex()
    for i in range(3):
        found = landmarks(song(i, seconds=30))
        index.add(uuid.uuid4(), found.hashes, found.times)
    query = landmarks(song(1, seconds=30))

    assert len(index.lookup(query.hashes)) > 0

    files = list(Path(settings.DERIVED_INDEX_DIR).rglob("positions.npy"))
    assert files and all(mapped_kb(path) == 0 for path in files)
