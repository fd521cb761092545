"""The catalog map: every ready song placed in 2-D by a PCA of its embedding, grouped by album or top sound tag.

The projection (the expensive part: every vector read from the index, then a PCA) is cached and recomputed only when
the set of ready songs on the active model changes. Titles, albums and tags are read fresh on each call, so a renamed
song shows its new name without moving on the map.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypedDict
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.core.cache import cache
from django.db.models import OuterRef, Subquery

from catalog.errors import ServiceUnavailable
from catalog.models import Song, SongStatus, SongTag
from embeddings.base import FloatArray
from embeddings.index import IndexUnavailable, VectorIndexError, get_vector_index
from embeddings.registry import active_model_name, model_dim

ColourBy = Literal["album", "tag"]
COLOUR_BY: tuple[ColourBy, ...] = ("album", "tag")
UNKNOWN = "Unknown"
# The key changes whenever the catalog does; the timeout only bounds how long a vector rewritten in place (e.g. a
# re-embed with the same model, which changes no song row) can go unnoticed.
CACHE_TIMEOUT_S = 6 * 3600
_CACHE_PREFIX = "catalog-map:v1"
# A component with at most this share of the total variance is rounding noise (e.g. the 2nd axis of two songs):
# its axis is all zeros rather than noise blown up to fill [-1, 1].
_NEGLIGIBLE = 1e-6

Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MapPoint:
    song_id: UUID
    title: str
    artist: str
    album: str
    top_tag: str
    x: float
    y: float
    group: str


@dataclass(frozen=True)
class CatalogMap:
    model: str
    colour_by: ColourBy
    explained_variance: tuple[float, float]
    groups: list[str]
    points: list[MapPoint]


class _SongRow(TypedDict):
    id: UUID
    title: str
    original_file_name: str
    artist: str
    album: str
    top_tag: str | None
    updated_at: datetime
    ingest_attempts: int


class _Projection(TypedDict):
    ids: list[str]
    coords: list[tuple[float, float]]
    explained: tuple[float, float]


def catalog_map(*, colour_by: ColourBy) -> CatalogMap:
    """The ready songs of the active model as points in [-1, 1]², coloured by album or by top sound tag.

    A ready song whose vector is missing from the index has no place on the map and is left out.
    """
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {', '.join(COLOUR_BY)}, not {colour_by!r}")
    model = active_model_name()
    songs = _ready_songs(model)
    projection = _cached_projection(model, songs)
    by_id = {str(song["id"]): song for song in songs}
    points: list[MapPoint] = []
    for song_id, (x, y) in zip(projection["ids"], projection["coords"], strict=True):
        song = by_id[song_id]
        points.append(
            MapPoint(
                song_id=song["id"],
                title=song["title"] or song["original_file_name"],
                artist=song["artist"],
                album=song["album"],
                top_tag=song["top_tag"] or "",
                x=x,
                y=y,
                group=(song["album"] if colour_by == "album" else song["top_tag"]) or UNKNOWN,
            )
        )
    points.sort(key=lambda point: (point.title.casefold(), point.artist.casefold(), str(point.song_id)))
    return CatalogMap(
        model=model,
        colour_by=colour_by,
        explained_variance=projection["explained"],
        groups=sorted({point.group for point in points}),
        points=points,
    )


def _ready_songs(model: str) -> list[_SongRow]:
    top_tag = SongTag.objects.filter(song=OuterRef("pk")).order_by("-score", "label").values("label")[:1]
    return list(
        Song.objects.filter(status=SongStatus.READY, embedding_model=model)
        .annotate(top_tag=Subquery(top_tag))
        .order_by("id")
        .values("id", "title", "original_file_name", "artist", "album", "top_tag", "updated_at", "ingest_attempts")
    )


def cache_key(model: str, songs: list[_SongRow]) -> str:
    """(model, number of ready songs, latest updated_at, a digest of which songs and how often each was ingested).

    The digest is needed because the pipeline marks songs ready with `QuerySet.update()`, which leaves `updated_at`
    alone: one song deleted while another becomes ready, or a song re-ingested, changes neither count nor date.
    """
    latest = max((song["updated_at"] for song in songs), default=None)
    digest = hashlib.sha256()
    for song in songs:  # ordered by id
        digest.update(f"{song['id']}:{song['ingest_attempts']};".encode())
    stamp = latest.isoformat() if latest else "-"
    return f"{_CACHE_PREFIX}:{model}:{len(songs)}:{stamp}:{digest.hexdigest()[:32]}"


def _cached_projection(model: str, songs: list[_SongRow]) -> _Projection:
    key = cache_key(model, songs)
    cached: _Projection | None = cache.get(key)
    if cached is not None:
        return cached
    projection = _compute_projection(model, {str(song["id"]) for song in songs})
    cache.set(key, projection, timeout=CACHE_TIMEOUT_S)
    return projection


def _compute_projection(model: str, ready: set[str]) -> _Projection:
    if not ready:
        return {"ids": [], "coords": [], "explained": (0.0, 0.0)}
    try:
        song_ids, matrix = get_vector_index(model, model_dim(model)).export()
    except IndexUnavailable as exc:
        raise ServiceUnavailable(f"The map is unavailable right now: {exc}") from exc
    except VectorIndexError as exc:
        raise ServiceUnavailable(f"The map could not be drawn: {exc}") from exc
    # The index may still hold vectors of songs that are no longer ready (being deleted, re-queued).
    rows = [i for i, song_id in enumerate(song_ids) if str(song_id) in ready]
    coords, explained = pca_2d(matrix[rows])
    return {
        "ids": [str(song_ids[i]) for i in rows],
        "coords": [(round(float(x), 6), round(float(y), 6)) for x, y in coords],
        "explained": (round(explained[0], 6), round(explained[1], 6)),
    }


def pca_2d(matrix: FloatArray) -> tuple[Float64Array, tuple[float, float]]:
    """Rows projected on their two principal components, each axis scaled so its largest |value| is 1.

    Signs are fixed so that every component's largest-|loading| entry is positive: the same vectors always give the
    same picture. Returns the coordinates (n x 2) and the share of the total variance each component explains. An
    axis that explains (next to) nothing, as the second one of two songs, is all zeros; one song sits at (0, 0).
    """
    n, dim = matrix.shape
    coords = np.zeros((n, 2), dtype=np.float64)
    if n < 2 or dim == 0:
        return coords, (0.0, 0.0)
    centred = np.asarray(matrix, dtype=np.float32)
    centred = centred - centred.mean(axis=0, dtype=np.float64).astype(np.float32)
    if n <= dim:
        # Few rows: an SVD of the rows themselves (small, and exact in float64).
        _, singular, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        variances = singular**2
        components = vt[:2]
    else:
        # Many rows: the dim x dim scatter matrix (one float32 matrix product), then its eigenvectors.
        scatter = (centred.T @ centred).astype(np.float64)
        values, vectors = np.linalg.eigh(scatter)
        order = np.argsort(values)[::-1]
        variances = np.clip(values[order], 0.0, None)
        components = vectors[:, order[:2]].T
    total = float(variances.sum())
    explained = [0.0, 0.0]
    for axis, component in enumerate(components):
        share = float(variances[axis]) / total if total > 0 else 0.0
        if share <= _NEGLIGIBLE:
            continue
        if component[np.argmax(np.abs(component))] < 0:
            component = -component
        values_on_axis = centred @ component.astype(np.float32)
        peak = float(np.abs(values_on_axis).max())
        if peak > 0:
            coords[:, axis] = values_on_axis / peak
        explained[axis] = share
    return np.clip(coords, -1.0, 1.0), (explained[0], explained[1])
