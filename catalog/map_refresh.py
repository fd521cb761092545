"""The catalog map's projection: computed by a worker over every ready song's vector, stored, and debounced.

`store_projection` reads the vectors in passes (the local index's mapped segments in place, without a second copy)
and keeps one `MapProjection` per model with its time and song count. Recomputing is debounced: a run is due once no
song arrived for MAP_SETTLE_SECONDS, or when the oldest change it would cover is MAP_REFRESH_SECONDS old, so while
songs keep arriving it runs at most every MAP_REFRESH_SECONDS, and once more when they stop (queued by beat's
`check_map`, every MAP_CHECK_SECONDS).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from catalog.errors import ServiceUnavailable
from catalog.models import MapProjection, Song, SongStatus
from catalog.projection import Axes, Chunks, Float64Array, IdArray, Projection, in_memory, project
from embeddings.base import FloatArray
from embeddings.index import IndexUnavailable, VectorIndex, VectorIndexError, get_vector_index
from embeddings.registry import active_model_name, model_dim

logger = logging.getLogger(__name__)

# Vectors per chunk when the projection reads the index.
_CHUNK_ROWS = 8192
_FIRST_CHANGE = "catalog-map:v3:first-change"  # the oldest change the stored map does not cover
_LAST_CHANGE = "catalog-map:v3:last-change"
_PENDING = "catalog-map:v3:pending"  # a projection is queued or running


def latest_projection(model: str) -> MapProjection | None:
    return MapProjection.objects.filter(model=model).order_by("-computed_at", "-pk").first()


def axes_of(stored: MapProjection) -> Axes:
    return Axes(
        mean=np.frombuffer(bytes(stored.mean), dtype="<f4").astype(np.float32),
        components=np.frombuffer(bytes(stored.components), dtype="<f4").astype(np.float32).reshape(2, stored.dim),
        peaks=(stored.peak_x, stored.peak_y),
        explained=(stored.explained_x, stored.explained_y),
    )


def store_projection(model: str | None = None) -> MapProjection:
    """Project every ready song of `model` (default: the active one) and keep it as the model's only projection."""
    model = model or active_model_name()
    dim = model_dim(model)
    started = time.perf_counter()
    ready = _ready_ids(model)
    projection = _project_index(get_vector_index(model, dim), dim, ready)
    axes = projection.axes
    with transaction.atomic():
        stored = MapProjection.objects.create(
            model=model,
            computed_at=timezone.now(),
            song_count=len(projection.song_ids),
            seconds=round(time.perf_counter() - started, 3),
            dim=dim,
            mean=axes.mean.astype("<f4").tobytes(),
            components=axes.components.astype("<f4").tobytes(),
            peak_x=axes.peaks[0],
            peak_y=axes.peaks[1],
            explained_x=axes.explained[0],
            explained_y=axes.explained[1],
            song_ids=projection.song_ids.tobytes(),
            coords=projection.coords.astype("<f4").tobytes(),
        )
        MapProjection.objects.filter(model=model).exclude(pk=stored.pk).delete()
    logger.info("map of %d %s songs projected in %.2f s", stored.song_count, model, stored.seconds)
    return stored


def _ready_ids(model: str) -> IdArray:
    ids = Song.objects.filter(status=SongStatus.READY, embedding_model=model).values_list("id", flat=True)
    raw = b"".join(song_id.bytes for song_id in ids.iterator(chunk_size=10_000))
    return np.frombuffer(raw, dtype="S16")


def _project_index(index: VectorIndex, dim: int, ready: IdArray) -> Projection:
    try:
        return project(_index_chunks(index, ready), dim)
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"The map is unavailable right now: {exc}") from exc
    except VectorIndexError as exc:
        raise ServiceUnavailable(f"The map could not be drawn: {exc}") from exc


def _index_chunks(index: VectorIndex, ready: IdArray) -> Chunks:
    """Passes over the ready songs' vectors: the local index's mapped segments in place, else one export."""
    from embeddings.index.local import LocalVectorIndex

    if isinstance(index, LocalVectorIndex):
        snapshot = index.snapshot()  # one fixed view, so that every pass reads the same rows
        # The index may still hold vectors of songs that are no longer ready (being deleted, re-queued).
        keeps = [part.alive & np.isin(part.segment.song_ids, ready) for part in snapshot.parts]

        def passes() -> Iterator[tuple[IdArray, FloatArray]]:
            for part, keep in zip(snapshot.parts, keeps, strict=True):
                segment = part.segment
                for start in range(0, len(segment), _CHUNK_ROWS):
                    stop = min(start + _CHUNK_ROWS, len(segment))
                    rows = np.flatnonzero(keep[start:stop]) + start
                    if rows.size == stop - start:
                        yield segment.song_ids[start:stop], segment.vectors[start:stop]
                    elif rows.size:
                        yield segment.song_ids[rows], segment.vectors[rows]

        return passes
    song_ids, matrix = index.export()
    wanted = set(ready.tolist())
    rows = [i for i, song_id in enumerate(song_ids) if song_id.bytes in wanted]
    ids = np.frombuffer(b"".join(song_ids[i].bytes for i in rows), dtype="S16")
    return in_memory(ids, matrix[rows], chunk=_CHUNK_ROWS)


def pca_2d(matrix: FloatArray) -> tuple[Float64Array, tuple[float, float]]:
    """Rows of an in-memory matrix on their two principal components, each axis scaled to [-1, 1]."""
    ids = np.zeros(len(matrix), dtype="S16")
    projection = project(in_memory(ids, np.asarray(matrix, dtype=np.float32)), matrix.shape[1])
    return projection.coords, projection.axes.explained


# --- Debouncing ------------------------------------------------------------------------------------------------------
# No delayed (ETA) messages: a worker holding one cannot reconnect after a Redis restart.


def next_run_delay(*, now: float, first_change: float, last_change: float, settle: float, refresh: float) -> float:
    """Seconds until the map should be projected again: 0 once no song arrived for `settle` s or the oldest change
    not on the map is `refresh` s old, whichever comes first."""
    quiet_at = last_change + settle
    due_at = first_change + refresh
    if now >= quiet_at or now >= due_at:
        return 0.0
    return min(quiet_at, due_at) - now


def _clock() -> float:
    return time.time()


def note_catalog_change(*, after_commit: bool = True) -> None:
    """Songs arrived or left: remember when, and queue a projection if one is due now.

    `after_commit=False` queues at once, for callers whose writes are already committed (a finished ingest task).
    """
    now = _clock()
    cache.add(_FIRST_CHANGE, now, None)
    cache.set(_LAST_CHANGE, now, None)
    if after_commit:
        transaction.on_commit(queue_if_due)
    else:
        queue_if_due()


def note_uncovered(*, overdue: bool = False) -> None:
    # A reader saw ready songs the stored map lacks; overdue (no map at all) queues the projection now.
    cache.add(_FIRST_CHANGE, 0.0 if overdue else _clock(), None)
    queue_if_due()


def queue_if_due() -> bool:
    """Queue one projection if the catalog changed and the run is due; never two at a time."""
    first = cache.get(_FIRST_CHANGE)
    if first is None:
        return False  # nothing changed since the last projection began
    delay = next_run_delay(
        now=_clock(),
        first_change=float(first),
        last_change=float(cache.get(_LAST_CHANGE) or first),
        settle=settings.MAP_SETTLE_SECONDS,
        refresh=settings.MAP_REFRESH_SECONDS,
    )
    if delay > 0:
        return False
    pending_for = settings.MAP_REFRESH_SECONDS + 2 * settings.MAP_CHECK_SECONDS + 600  # a lost task is not forever
    if not cache.add(_PENDING, _clock(), timeout=pending_for):
        return False
    _queue_refresh()
    return True


def _queue_refresh() -> None:
    from kombu.exceptions import OperationalError

    from catalog.tasks import refresh_map_task

    try:
        refresh_map_task.delay()
    except OperationalError:
        cache.delete(_PENDING)
        logger.warning("could not queue the map projection; the next change or beat queues it again", exc_info=True)


def refresh_projection() -> str:
    """The queued run: project every ready song now; changes that arrive meanwhile count toward the next run."""
    cache.delete(_FIRST_CHANGE)  # first: a change during the run is not covered by it
    try:
        stored = store_projection(active_model_name())
    finally:
        cache.delete(_PENDING)
    return f"projected {stored.song_count} songs in {stored.seconds:.2f} s"


def refresh_if_stale() -> bool:
    """Beat's check: queue the projection that is due, including one for ready songs the stored map does not
    cover when no change was noted (a lost note, a restored database)."""
    model = active_model_name()
    stored = latest_projection(model)
    if stored is not None and (timezone.now() - stored.computed_at).total_seconds() < settings.MAP_REFRESH_SECONDS:
        return queue_if_due()  # recent: songs without a vector must not make every check project again
    ready = Song.objects.filter(status=SongStatus.READY, embedding_model=model).count()
    if (stored is None and ready) or (stored is not None and stored.song_count != ready):
        cache.add(_FIRST_CHANGE, 0.0, None)  # long ago: due now
    return queue_if_due()
