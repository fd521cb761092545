"""Host-shared derived indexes: immutable segment folders and one manifest, following the database's change log.

The database is the source of truth; a derived index is the copy of it that a host reads fast. Its folder
(DERIVED_INDEX_DIR/<name>/) holds segment folders (`derived.segments`), immutable once written (numpy `.npy` files
that every process memory-maps read-only, so the host's page cache holds the one copy all processes read), and
`manifest.json`: the live segments, the rows of each that are dead (songs deleted or replaced since), and how far the
database's change log (`IndexChange`, one row per write of indexed data, in the writer's transaction) has been applied.

Readers take no lock. Each lookup compares the manifest file's identity with the one it holds (one `stat`) and asks
the database for the count and highest id of changes in the recent window (one indexed aggregate). When changes
are new, the process takes the host's lock for the index, reads the changed songs' current data, writes them as a
new small segment, marks their older rows dead and replaces the manifest atomically; other processes see the new
manifest at their next lookup. Applying a change means "make the song as the database has it now", so a change
seen late, twice or out of order is harmless. Small segments are merged inline; larger merges run in `compact()`
(a Celery task), which writes the merged segment without the lock and takes it only to swap it in. A folder whose
manifest or segments are missing or damaged, or that was built from another database, is rebuilt from the database
with a log line; it is never served.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic
from uuid import UUID

import numpy as np
from django.conf import settings
from django.db.models import Count, Max
from filelock import FileLock
from filelock import Timeout as LockTimeout

from derived.models import IndexChange, IndexEpoch
from derived.segments import Codec, CorruptIndex, P, Part, S, Snapshot, ids_array

logger = logging.getLogger(__name__)

# Change ids this far below the highest applied are read again: PostgreSQL may commit a lower id after a higher one.
RECHECK = 256
MANIFEST = "manifest.json"
FORMAT = 1
# Merges whose result stays below this size run inline, within the sync that made them due.
INLINE_MERGE_BYTES = 64 << 20
# A segment is merged into its newer neighbours once they together reach this fraction of its size...
MERGE_RATIO = 0.5
# ...and rewritten alone once this share of its rows is dead.
DEAD_SHARE = 0.3
# Merges stop at this size. Each segment costs a lookup one read per query hash, so a 100k-song catalog's 11 GB of
# fingerprints fit in one; formats bounded by something else count it in `merge_bytes` (see Segment).
MAX_SEGMENT_BYTES = 16 << 30
# Songs whose current data one sync reads at a time.
_LOAD_CHUNK = 500


class StoreBusy(Exception):
    """Another process holds the index's lock for longer than a lookup waits (a rebuild); retry shortly."""


@dataclass(frozen=True)
class Manifest:
    epoch: str
    applied: int  # the highest change id applied
    recent: frozenset[int]  # the applied change ids above applied - RECHECK
    segments: tuple[str, ...]  # oldest first
    dead: dict[str, list[int]]  # dead rows per segment

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "epoch": self.epoch,
                "applied": self.applied,
                "recent": sorted(self.recent),
                "segments": list(self.segments),
                "dead": {name: self.dead[name] for name in self.segments if self.dead.get(name)},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise CorruptIndex(f"manifest format {raw.get('format')!r} is not {FORMAT}")
            segments = tuple(str(name) for name in raw["segments"])
            return cls(
                epoch=str(raw["epoch"]),
                applied=int(raw["applied"]),
                recent=frozenset(int(i) for i in raw["recent"]),
                segments=segments,
                dead={str(name): [int(r) for r in rows] for name, rows in raw["dead"].items() if name in segments},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptIndex(f"unreadable manifest: {exc}") from exc


@dataclass
class _Held(Generic[S]):
    """This process's view of one index folder, as of one manifest file."""

    pid: int
    key: tuple[int, int, int]
    manifest: Manifest
    snapshot: Snapshot[S]
    segments: dict[str, S] = field(default_factory=dict)


_held: dict[Path, _Held[Any]] = {}
_thread_locks: dict[Path, threading.Lock] = {}
_registry_lock = threading.Lock()


def forget_held() -> None:
    """Drop every view this process holds (tests); the next lookup opens the folders again."""
    with _registry_lock:
        _held.clear()


def _thread_lock(folder: Path) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault(folder, threading.Lock())


class SegmentStore(Generic[S, P]):
    """One derived index on this host: `snapshot()` for reads, the rest for keeping it in step with the database."""

    def __init__(self, name: str, kind: str, codec: Codec[S, P]) -> None:
        self.name = name
        self.kind = kind
        self.codec = codec
        self.folder = Path(settings.DERIVED_INDEX_DIR) / name

    # --- reading ---------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot[S]:
        """The index with every change committed before this call applied (syncing first when it is behind)."""
        try:
            held = self._open()
        except CorruptIndex as exc:
            logger.warning("derived index %s: %s; rebuilding it from the database", self.name, exc)
            held = None
        if held is not None and held.manifest.epoch and not self._behind(held.manifest):
            return held.snapshot
        return self.sync(stale=held).snapshot

    def _behind(self, manifest: Manifest) -> bool:
        window = IndexChange.objects.filter(kind=self.kind, id__gt=manifest.applied - RECHECK)
        found = window.aggregate(count=Count("id"), top=Max("id"))
        return (found["count"], found["top"] or 0) != (len(manifest.recent), max(manifest.recent, default=0))

    def _open(self) -> _Held[S] | None:
        """The view of the folder's current manifest: reused while the file is unchanged, else opened again."""
        path = self.folder / MANIFEST
        for _ in range(3):
            try:
                stat = path.stat()
            except FileNotFoundError:
                return None
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            held = _held.get(self.folder)
            if held is not None and held.pid == os.getpid() and held.key == key:
                return held
            try:
                manifest = Manifest.from_json(path.read_text())
                return self._adopt(key, manifest, held)
            except (CorruptIndex, FileNotFoundError) as exc:
                # A segment removed by a merge that replaced the manifest since it was read: read it again.
                if not path.exists() or _stat_key(path) != key:
                    continue
                raise exc if isinstance(exc, CorruptIndex) else CorruptIndex(str(exc)) from exc
        raise CorruptIndex("the manifest kept changing while it was read")

    def _adopt(self, key: tuple[int, int, int], manifest: Manifest, held: _Held[S] | None) -> _Held[S]:
        reuse = held.segments if held is not None and held.pid == os.getpid() else {}
        segments = {
            name: reuse[name] if name in reuse else self.codec.open(self.folder / name) for name in manifest.segments
        }
        parts = []
        for name in manifest.segments:
            segment = segments[name]
            alive = np.ones(len(segment.song_ids), dtype=np.bool_)
            dead = manifest.dead.get(name, [])
            if dead and (min(dead) < 0 or max(dead) >= alive.size):
                raise CorruptIndex(f"dead rows outside segment {name}")
            alive[dead] = False
            parts.append(Part(name=name, segment=segment, alive=alive))
        adopted = _Held(pid=os.getpid(), key=key, manifest=manifest, snapshot=Snapshot(tuple(parts)), segments=segments)
        with _registry_lock:
            _held[self.folder] = adopted
        return adopted

    # --- following the database ----------------------------------------------------------------------------

    def sync(self, *, stale: _Held[S] | None = None, wait: float | None = None) -> _Held[S]:
        """Apply every change not applied yet (rebuilding first if the folder is unusable), under the host's lock.

        When the lock cannot be had within `wait` seconds (another process is rebuilding), a reader that already
        holds a view keeps it; one that holds none gets StoreBusy.
        """
        timeout = settings.DERIVED_INDEX_LOCK_SECONDS if wait is None else wait
        self.folder.mkdir(parents=True, exist_ok=True)
        thread_lock = _thread_lock(self.folder)
        if not thread_lock.acquire(timeout=timeout):
            return self._busy(stale)
        try:
            with FileLock(self.folder / "lock", timeout=timeout):
                return self._sync_locked()
        except LockTimeout:
            return self._busy(stale)
        finally:
            thread_lock.release()

    def _busy(self, stale: _Held[S] | None) -> _Held[S]:
        if stale is not None:
            return stale
        raise StoreBusy(f"the {self.name} index is being rebuilt by another process; try again shortly")

    def _sync_locked(self) -> _Held[S]:
        try:
            held = self._open()
        except CorruptIndex as exc:
            logger.warning("derived index %s: %s; rebuilding it from the database", self.name, exc)
            held = None
        epoch = self._epoch()
        if held is None or held.manifest.epoch != epoch:
            if held is not None:
                logger.warning("derived index %s was built from another database; rebuilding it", self.name)
            held = self._rebuild(epoch)
        held = self._apply(held)
        return self._merge_inline(held)

    def _epoch(self) -> str:
        epoch, _ = IndexEpoch.objects.get_or_create(kind=self.kind)
        return str(epoch.token)

    def _changes(self, above: int) -> list[tuple[int, UUID]]:
        return list(
            IndexChange.objects.filter(kind=self.kind, id__gt=above).order_by("id").values_list("id", "song_id")
        )

    def _apply(self, held: _Held[S]) -> _Held[S]:
        manifest = held.manifest
        changes = self._changes(manifest.applied - RECHECK)
        new = [(i, song_id) for i, song_id in changes if i not in manifest.recent]
        if not new:
            return held
        songs = list(dict.fromkeys(song_id for _, song_id in new))
        wanted = ids_array(songs)
        dead = {name: set(rows) for name, rows in manifest.dead.items()}
        for part in held.snapshot.parts:
            rows = np.flatnonzero(np.isin(part.segment.song_ids, wanted) & part.alive)
            if rows.size:
                dead.setdefault(part.name, set()).update(int(r) for r in rows)
        names = list(manifest.segments)
        for start in range(0, len(songs), _LOAD_CHUNK):
            chunk = songs[start : start + _LOAD_CHUNK]
            found = self.codec.load(chunk)
            items = [(song_id, found[song_id]) for song_id in chunk if song_id in found]
            if items:
                names.append(self._write(partial(self._write_items, items)))
        applied = max(manifest.applied, max(i for i, _ in changes))
        recent = frozenset(i for i, _ in changes if i > applied - RECHECK)
        return self._publish(
            Manifest(manifest.epoch, applied, recent, tuple(names), {k: sorted(v) for k, v in dead.items()})
        )

    def _rebuild(self, epoch: str) -> _Held[S]:
        """A new index of every song's current data; changes committed meanwhile are applied by the next sync."""
        started = time.perf_counter()
        top = IndexChange.objects.filter(kind=self.kind).aggregate(top=Max("id"))["top"] or 0
        changes = self._changes(top - RECHECK)
        for child in self.folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
        names: list[str] = []
        for items in self.codec.load_all():
            if items:
                names.append(self._write(partial(self._write_items, items)))
        manifest = Manifest(epoch, top, frozenset(i for i, _ in changes if i <= top), tuple(names), {})
        held = self._publish(manifest)
        logger.info(
            "derived index %s rebuilt from the database: %d songs in %d segments, %.2f s",
            self.name,
            held.snapshot.live_rows,
            len(names),
            time.perf_counter() - started,
        )
        return held

    # --- segments and manifests ----------------------------------------------------------------------------

    def _write(self, fill: Callable[[Path], None], *, place: bool = True) -> str:
        """A new segment folder, filled under a temporary name and renamed into place whole (by the caller, under
        the lock, when `place` is false: a placed folder no manifest lists is garbage to other processes)."""
        name = f"seg-{uuid.uuid4().hex[:20]}"
        scratch = self.folder / f".tmp-{name}"
        scratch.mkdir(parents=True)
        try:
            fill(scratch)
            if place:
                os.rename(scratch, self.folder / name)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return name

    def _write_items(self, items: Sequence[tuple[UUID, P]], folder: Path) -> None:
        self.codec.write(folder, items)

    def _merge_parts(self, parts: Sequence[Part[S]], folder: Path) -> None:
        self.codec.merge(folder, [(part.segment, part.alive) for part in parts])

    def _publish(self, manifest: Manifest) -> _Held[S]:
        """Replace the manifest atomically, then remove the segments it no longer lists."""
        path = self.folder / MANIFEST
        scratch = self.folder / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        scratch.write_text(manifest.to_json())
        os.replace(scratch, path)
        keep = set(manifest.segments)
        for child in self.folder.iterdir():
            if child.name.startswith("seg-") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)  # readers holding its maps keep reading them
        held = self._open()
        assert held is not None
        return held

    # --- merging --------------------------------------------------------------------------------------------

    def _merge_inline(self, held: _Held[S]) -> _Held[S]:
        while (run := plan_merge(held.snapshot, limit=INLINE_MERGE_BYTES)) is not None:
            held = self._merge_locked(held, run)
        if plan_merge(held.snapshot, limit=None) is not None:
            request_compaction()
        return held

    def _merge_locked(self, held: _Held[S], run: tuple[int, int]) -> _Held[S]:
        parts = held.snapshot.parts[run[0] : run[1]]
        merged = self._write(partial(self._merge_parts, parts))
        manifest = held.manifest
        names = [*manifest.segments[: run[0]], merged, *manifest.segments[run[1] :]]
        dead = {name: rows for name, rows in manifest.dead.items() if name in names}
        return self._publish(Manifest(manifest.epoch, manifest.applied, manifest.recent, tuple(names), dead))

    def compact(self) -> bool:
        """Merge segments as the merge policy asks, however large: the merge is written without the host's lock,
        which is taken only to swap it in. Returns whether anything was merged."""
        merged_any = False
        while True:
            held = self.sync()
            run = plan_merge(held.snapshot, limit=None)
            if run is None:
                return merged_any
            parts = held.snapshot.parts[run[0] : run[1]]
            names = [part.name for part in parts]
            merged = self._write(partial(self._merge_parts, parts), place=False)
            with _thread_lock(self.folder), FileLock(self.folder / "lock", timeout=settings.DERIVED_INDEX_LOCK_SECONDS):
                current = self._open()
                if current is None or list(current.manifest.segments[run[0] : run[1]]) != names:
                    shutil.rmtree(self.folder / f".tmp-{merged}", ignore_errors=True)  # the index changed: plan again
                    continue
                os.rename(self.folder / f".tmp-{merged}", self.folder / merged)
                # Rows that died while the merge was written die in the merged segment too (by song).
                died = [
                    part.segment.song_ids[np.flatnonzero(part.alive & ~now.alive)]
                    for part, now in zip(parts, current.snapshot.parts[run[0] : run[1]], strict=True)
                ]
                manifest = current.manifest
                segments = [*manifest.segments[: run[0]], merged, *manifest.segments[run[1] :]]
                dead = {name: rows for name, rows in manifest.dead.items() if name in segments}
                late = np.concatenate(died) if died else np.empty(0, dtype="S16")
                if late.size:
                    segment = self.codec.open(self.folder / merged)
                    dead[merged] = [int(r) for r in np.flatnonzero(np.isin(segment.song_ids, late))]
                self._publish(Manifest(manifest.epoch, manifest.applied, manifest.recent, tuple(segments), dead))
            merged_any = True

    # --- checks ---------------------------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.rglob("*") if path.is_file())


def plan_merge(snapshot: Snapshot[Any], *, limit: int | None) -> tuple[int, int] | None:
    """The run of segments [start, stop) to merge next, or None; runs larger than `limit` bytes are left.

    Newer segments are merged into an older one once together they reach MERGE_RATIO of its size, so sizes grow
    geometrically and a catalog of N songs has O(log N) segments; a segment with DEAD_SHARE dead rows is rewritten.
    No merge yields more than MAX_SEGMENT_BYTES: a run takes the newer neighbours that fit under it, so segments
    fill up to it one after another and a catalog of B bytes ends near B / MAX_SEGMENT_BYTES segments.
    """
    parts = snapshot.parts
    sizes = [part.segment.merge_bytes for part in parts]
    cap = MAX_SEGMENT_BYTES if limit is None else min(limit, MAX_SEGMENT_BYTES)
    for start in range(len(parts)):
        stop, total = start + 1, sizes[start]
        while stop < len(parts) and total + sizes[stop] <= cap:
            total, stop = total + sizes[stop], stop + 1
        if stop - start >= 2 and total - sizes[start] >= MERGE_RATIO * sizes[start]:
            return start, stop
    for start, part in enumerate(parts):
        rows = part.alive.size
        dead = rows - int(part.alive.sum())
        if rows and dead >= DEAD_SHARE * rows and sizes[start] <= cap:
            return start, start + 1
    return None


_compaction_requested = 0.0


def request_compaction() -> None:
    """Queue the compaction task, at most once a minute per process (it is idempotent)."""
    global _compaction_requested
    now = time.monotonic()
    if now - _compaction_requested < 60:
        return
    _compaction_requested = now
    from derived.tasks import compact_indexes

    try:
        compact_indexes.delay()
    except Exception:  # the queue may be down: the next sync asks again, and `sync_indexes --compact` does it
        logger.warning("could not queue the derived index compaction", exc_info=True)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
