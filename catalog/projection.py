"""A 2-D PCA of many vectors read in chunks: never more than one chunk of them in memory besides the source.

Randomized subspace iteration on the covariance (Halko, Martinsson & Tropp, 2011): one pass for the mean and the
total variance, a few passes each multiplying the centred rows by a thin (dim x k) basis, a Rayleigh-Ritz step for
the top two components, and one pass for the coordinates. Every pass reads the source chunk by chunk (the local
index's memory-mapped segments), so the vectors are held once, by the page cache, whatever the catalog's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embeddings.base import FloatArray

Float64Array = npt.NDArray[np.float64]
IdArray = npt.NDArray[np.bytes_]
# One pass over the vectors: chunks of (16-byte song ids, float32 rows), the same rows in the same order each time.
Chunks = Callable[[], Iterable[tuple[IdArray, FloatArray]]]

# The basis carries a few more directions than the two kept: the top two converge much faster with them.
_BASIS = 10
_ITERATIONS = 6
# A component with at most this share of the total variance is rounding noise (e.g. the 2nd axis of two songs):
# its axis is all zeros rather than noise blown up to fill [-1, 1].
_NEGLIGIBLE = 1e-6


@dataclass(frozen=True)
class Axes:
    """What places a vector on the map: (vector - mean) @ components.T / peaks, clipped to [-1, 1]."""

    mean: FloatArray  # (dim,)
    components: FloatArray  # (2, dim), unit rows; a negligible axis is all zeros
    peaks: tuple[float, float]  # the largest |value| on each axis when computed (1.0 for an empty axis)
    explained: tuple[float, float]

    def place(self, vectors: FloatArray) -> Float64Array:
        values = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T
        return np.clip(values.astype(np.float64) / np.asarray(self.peaks), -1.0, 1.0)


@dataclass(frozen=True)
class Projection:
    song_ids: IdArray
    coords: Float64Array  # (n, 2) in [-1, 1]
    axes: Axes


def project(chunks: Chunks, dim: int, *, seed: int = 0) -> Projection:
    """The rows that `chunks` yields, on their two principal components, each axis scaled to [-1, 1].

    Signs are fixed so that each component's largest-|loading| entry is positive: the same vectors always give the
    same picture. One row sits at (0, 0); an axis that explains (next to) nothing is all zeros.
    """
    n, total, sum_squares = 0, np.zeros(dim, dtype=np.float64), 0.0
    for _, rows in chunks():
        n += len(rows)
        total += rows.sum(axis=0, dtype=np.float64)
        sum_squares += float(np.einsum("ij,ij->", rows, rows, dtype=np.float64))
    mean = total / n if n else total
    variance = max(sum_squares - n * float(mean @ mean), 0.0)
    mean32 = mean.astype(np.float32)
    components = np.zeros((2, dim), dtype=np.float32)
    explained = [0.0, 0.0]
    if n >= 2 and dim and variance > 0:
        values, vectors = _top_components(chunks, mean32, dim, seed=seed)
        for axis in range(min(2, values.size)):
            share = float(values[axis]) / variance
            if share <= _NEGLIGIBLE:
                continue
            component = vectors[:, axis]
            if component[np.argmax(np.abs(component))] < 0:
                component = -component
            components[axis] = component.astype(np.float32)
            explained[axis] = min(share, 1.0)
    ids, raw = _coordinates(chunks, mean32, components)
    peaks = tuple(float(p) if p > 0 else 1.0 for p in (np.abs(raw).max(axis=0) if len(raw) else np.ones(2)))
    axes = Axes(mean=mean32, components=components, peaks=(peaks[0], peaks[1]), explained=(explained[0], explained[1]))
    coords = np.clip(raw / np.asarray(axes.peaks), -1.0, 1.0) if len(raw) else np.zeros((0, 2))
    return Projection(song_ids=ids, coords=coords, axes=axes)


def _covariance_times(chunks: Chunks, mean: FloatArray, basis: FloatArray) -> Float64Array:
    """(X - mean)^T (X - mean) @ basis over every chunk, without forming the centred rows."""
    out = np.zeros(basis.shape, dtype=np.float64)
    shift = mean @ basis
    for _, rows in chunks():
        product = rows @ basis - shift  # (rows - mean) @ basis
        out += (rows.T @ product).astype(np.float64) - np.outer(mean, product.sum(axis=0, dtype=np.float64))
    return out


def _top_components(chunks: Chunks, mean: FloatArray, dim: int, *, seed: int) -> tuple[Float64Array, Float64Array]:
    k = min(_BASIS, dim)
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, k)))[0].astype(np.float32)
    for _ in range(_ITERATIONS):
        basis = np.linalg.qr(_covariance_times(chunks, mean, basis))[0].astype(np.float32)
    image = _covariance_times(chunks, mean, basis)
    small = basis.astype(np.float64).T @ image
    values, vectors = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0.0, None), basis.astype(np.float64) @ vectors[:, order]


def _coordinates(chunks: Chunks, mean: FloatArray, components: FloatArray) -> tuple[IdArray, Float64Array]:
    ids: list[IdArray] = []
    coords: list[Float64Array] = []
    shift = mean @ components.T
    for chunk_ids, rows in chunks():
        ids.append(np.asarray(chunk_ids, dtype="S16"))
        coords.append((rows @ components.T - shift).astype(np.float64))
    if not ids:
        return np.empty(0, dtype="S16"), np.zeros((0, 2))
    return np.concatenate(ids), np.concatenate(coords)


def in_memory(song_ids: IdArray, matrix: FloatArray, *, chunk: int = 8192) -> Chunks:
    """Chunks of an array already in memory (an exported index, tests)."""

    def passes() -> Iterator[tuple[IdArray, FloatArray]]:
        for start in range(0, len(matrix), chunk):
            yield song_ids[start : start + chunk], np.asarray(matrix[start : start + chunk], dtype=np.float32)

    return passes
