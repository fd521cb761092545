"""The catalog map: every ready song placed in 2-D by a PCA of its embedding, grouped by album or top sound tag.

A request reads the worker's stored projection (`catalog.map_refresh`) and never the catalog's vectors: songs that
became ready since are placed on its axes from their own vectors, so a new song is on the map at once. A small
catalog (up to MAP_INLINE_MAX_SONGS) is projected again inside the request whenever it changed, which costs a few
milliseconds and keeps a growing catalog's first songs spread out.

The answer is columnar (ids, coordinates and groups as base64 arrays; titles and artists as lists), about 60 bytes a
song, and the built body is kept in the shared cache under a stamp of the catalog (song count, latest song change,
latest tag, the projection), so a view of an unchanged 100k-song catalog costs a few indexed queries; titles, albums
and tags are read fresh whenever a song changes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from catalog.errors import ServiceUnavailable
from catalog.map_refresh import axes_of, latest_projection, note_uncovered, store_projection
from catalog.models import MapProjection, Song, SongStatus, SongTag
from catalog.selectors import catalog_stamp
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.registry import active_model_name, model_dim

ColourBy = Literal["album", "tag"]
COLOUR_BY: tuple[ColourBy, ...] = ("album", "tag")
UNKNOWN = "Unknown"
# New songs placed on the stored axes per request at most; beyond, they wait for the next projection (queued).
PLACE_LIMIT = 5000
# A built answer is dropped from the cache after this long even if nothing changed (its key changes with the catalog).
_BODY_SECONDS = 24 * 3600

Coords = npt.NDArray[np.float32]
GroupIndex = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class MapPoint:
    song_id: UUID
    title: str
    artist: str
    x: float
    y: float
    group: str


@dataclass(frozen=True)
class CatalogMap:
    model: str
    colour_by: ColourBy
    explained_variance: tuple[float, float]
    groups: list[str]  # sorted; `group_of` indexes it
    song_ids: list[UUID]
    coords: Coords  # (n, 2) in [-1, 1]
    group_of: GroupIndex  # (n,)
    titles: list[str]
    artists: list[str]
    computed_at: datetime | None = None
    projected_songs: int = 0  # ready songs the stored projection covers
    placed_since: int = 0  # songs placed on its axes because they became ready after it
    pending: int = 0  # ready songs not on the map yet: the next projection (queued) places them
    projection_id: int | None = None

    def __len__(self) -> int:
        return len(self.song_ids)

    @property
    def points(self) -> list[MapPoint]:
        """The columns as one object per point, for callers that read a few (a million objects would not pay)."""
        xy = self.coords.astype(np.float64).round(6).tolist()
        return [
            MapPoint(song_id, title, artist, x, y, self.groups[group])
            for song_id, title, artist, (x, y), group in zip(
                self.song_ids, self.titles, self.artists, xy, self.group_of.tolist(), strict=True
            )
        ]

    def age_seconds(self) -> float | None:
        if self.computed_at is None:
            return None
        return _age(self.computed_at.timestamp())


def _age(computed_at: float) -> float:
    return round(max(0.0, timezone.now().timestamp() - computed_at), 1)


def catalog_map(*, colour_by: ColourBy) -> CatalogMap:
    """The ready songs of the active model as points in [-1, 1]², coloured by album or by top sound tag.

    A ready song whose vector is missing from the index has no place on the map and is left out.
    """
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {', '.join(COLOUR_BY)}, not {colour_by!r}")
    model = active_model_name()
    rows = _ready_songs(model, colour_by)
    ready = np.frombuffer(b"".join(row[0].bytes for row in rows), dtype="S16")
    stored = latest_projection(model)
    if len(rows) <= settings.MAP_INLINE_MAX_SONGS and (stored is None or _covers_other_songs(stored, ready)):
        stored = store_projection(model)
    elif stored is None:
        note_uncovered(overdue=True)
        return _empty(model, colour_by, pending=len(rows))
    coords, on_map, placed = _positions(stored, model, [row[0] for row in rows], ready)
    if placed or not on_map.all():
        note_uncovered()
    kept = [row for row, keep in zip(rows, on_map.tolist(), strict=True) if keep]
    groups = sorted({row[4] or UNKNOWN for row in kept})
    number = {group: i for i, group in enumerate(groups)}
    return CatalogMap(
        model=model,
        colour_by=colour_by,
        explained_variance=(round(stored.explained_x, 6), round(stored.explained_y, 6)),
        groups=groups,
        song_ids=[row[0] for row in kept],
        coords=coords[on_map],
        group_of=np.fromiter((number[row[4] or UNKNOWN] for row in kept), dtype=np.uint32, count=len(kept)),
        titles=[row[1] or row[2] for row in kept],
        artists=[row[3] for row in kept],
        computed_at=stored.computed_at,
        projected_songs=stored.song_count,
        placed_since=placed,
        pending=len(rows) - len(kept),
        projection_id=stored.pk,
    )


def map_body(*, colour_by: ColourBy) -> bytes:
    """The API's JSON answer, from the shared cache while the catalog and its projection are unchanged."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {', '.join(COLOUR_BY)}, not {colour_by!r}")
    model = active_model_name()
    stamp = catalog_stamp()  # before reading: a change during the build makes a new stamp
    latest = MapProjection.objects.filter(model=model).order_by("-computed_at", "-pk").values_list("pk", flat=True)
    cached = cache.get(_body_key(model, colour_by, latest.first(), stamp))
    if cached is None:
        result = catalog_map(colour_by=colour_by)  # may store a new projection (a small catalog)
        computed_at = result.computed_at.timestamp() if result.computed_at else None
        cached = (json.dumps(as_json(result, with_age=False), separators=(",", ":")).encode(), computed_at)
        cache.set(_body_key(model, colour_by, result.projection_id, stamp), cached, _BODY_SECONDS)
    body, computed_at = cached
    age = "null" if computed_at is None else json.dumps(_age(computed_at))
    return b'{"age_seconds":' + age.encode() + b"," + body[1:]  # the age is the only part that changes by itself


def _body_key(model: str, colour_by: ColourBy, projection_id: int | None, stamp: str) -> str:
    return f"catalog-map:v3:body:{model}:{colour_by}:{projection_id}:{stamp}"


def as_json(result: CatalogMap, *, with_age: bool = True) -> dict[str, Any]:
    """The API's answer (the shape of CatalogMapSerializer): arrays as base64 of little-endian values, built
    directly because a serializer per point costs seconds at 100k songs."""
    coords = np.asarray(result.coords, dtype="<f4").reshape(-1, 2)
    answer: dict[str, Any] = {"age_seconds": result.age_seconds()} if with_age else {}
    answer |= {
        "model": result.model,
        "colour_by": result.colour_by,
        "explained_variance": list(result.explained_variance),
        "groups": result.groups,
        "count": len(result),
        "ids": _b64(b"".join(song_id.bytes for song_id in result.song_ids)),
        "x": _b64(np.ascontiguousarray(coords[:, 0]).tobytes()),
        "y": _b64(np.ascontiguousarray(coords[:, 1]).tobytes()),
        "group": _b64(np.asarray(result.group_of, dtype="<u4").tobytes()),
        "titles": result.titles,
        "artists": result.artists,
        "computed_at": result.computed_at.isoformat().replace("+00:00", "Z") if result.computed_at else None,
        "projected_songs": result.projected_songs,
        "placed_since": result.placed_since,
        "pending": result.pending,
    }
    return answer


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _empty(model: str, colour_by: ColourBy, *, pending: int) -> CatalogMap:
    return CatalogMap(
        model,
        colour_by,
        (0.0, 0.0),
        [],
        [],
        np.zeros((0, 2), dtype=np.float32),
        np.zeros(0, dtype=np.uint32),
        [],
        [],
        pending=pending,
    )


# (id, title, original file name, artist, group: album or top tag)
_Row = tuple[UUID, str, str, str, str | None]


def _ready_songs(model: str, colour_by: ColourBy) -> list[_Row]:
    songs = Song.objects.filter(status=SongStatus.READY, embedding_model=model).order_by()
    if colour_by == "album":
        return list(songs.values_list("id", "title", "original_file_name", "artist", "album"))
    top_tag = SongTag.objects.filter(song=OuterRef("pk")).order_by("-score", "label").values("label")[:1]
    return list(
        songs.annotate(top_tag=Subquery(top_tag)).values_list("id", "title", "original_file_name", "artist", "top_tag")
    )


def _covers_other_songs(stored: MapProjection, ready: npt.NDArray[np.bytes_]) -> bool:
    ids = np.frombuffer(bytes(stored.song_ids), dtype="S16")
    return len(ids) != len(ready) or not np.array_equal(np.sort(ids), np.sort(ready))


def _positions(
    stored: MapProjection, model: str, song_ids: list[UUID], ready: npt.NDArray[np.bytes_]
) -> tuple[Coords, npt.NDArray[np.bool_], int]:
    """Every ready song's point (from the projection, or placed on its axes, up to PLACE_LIMIT), which songs have
    one, and how many were placed."""
    ids = np.frombuffer(bytes(stored.song_ids), dtype="S16")
    stored_coords = np.frombuffer(bytes(stored.coords), dtype="<f4").reshape(-1, 2)
    coords = np.zeros((len(ready), 2), dtype=np.float32)
    on_map = np.zeros(len(ready), dtype=bool)
    if len(ids):
        order = np.argsort(ids)
        at = np.minimum(np.searchsorted(ids[order], ready), len(ids) - 1)
        on_map = ids[order][at] == ready
        coords[on_map] = stored_coords[order[at[on_map]]]
    missing = np.flatnonzero(~on_map)[:PLACE_LIMIT]
    if not missing.size:
        return coords, on_map, 0
    index = get_vector_index(model, model_dim(model))
    axes = axes_of(stored)
    placed = 0
    for row in missing.tolist():
        try:
            vector = index.get(song_ids[row])
        except IndexUnavailable as exc:
            raise ServiceUnavailable(f"The map is unavailable right now: {exc}") from exc
        if vector is None or vector.shape != (stored.dim,):
            continue
        coords[row] = axes.place(vector[None, :])[0]
        on_map[row] = True
        placed += 1
    return coords, on_map, placed
