"""A 2-D PCA of many vectors read in chunks: never more than one chunk of them in memory besides the source.

Randomized subspace iteration on the covariance (Halko, Martinsson & Tropp, 2011): one pass for the mean, the total
variance and a strided sample of rows; iterations of a thin (dim x k) basis on the sample; two passes multiplying
every centred row by the basis (a refining iteration, then a Rayleigh-Ritz step for the top two components); and one
pass for the coordinates. Every pass reads the source chunk by chunk (the local
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

# The basis carries more directions than the two kept: the top two converge much faster with them.
_BASIS = 24
# Subspace iterations on a sample of the rows (in memory, cheap), then passes over every row to refine it.
_SAMPLE = 8192
_ITERATIONS = 8
_FULL_PASSES = 2
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
    n, total, sum_squares, sample = _statistics(chunks, dim)
    mean = total / n if n else total
    variance = max(sum_squares - n * float(mean @ mean), 0.0)
    mean32 = mean.astype(np.float32)
    components = np.zeros((2, dim), dtype=np.float32)
    explained = [0.0, 0.0]
    if n >= 2 and dim and variance > 0:
        values, vectors = _top_components(chunks, mean32, sample, dim, seed=seed)
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


def _statistics(chunks: Chunks, dim: int) -> tuple[int, Float64Array, float, FloatArray]:
    """Row count, sum, sum of squared norms, and every `stride`-th row (a sample of at most about _SAMPLE rows)."""
    n, total, sum_squares = 0, np.zeros(dim, dtype=np.float64), 0.0
    picked: list[FloatArray] = []
    stride = 1
    for _, rows in chunks():
        n += len(rows)
        total += rows.sum(axis=0)  # float32 within a chunk, float64 across chunks
        sum_squares += float(np.einsum("ij,ij->i", rows, rows).sum(dtype=np.float64))
        picked.append(np.array(rows[::stride], dtype=np.float32))
        # Thin the sample as rows keep coming, so it stays near _SAMPLE rows spread over the whole pass.
        while sum(len(p) for p in picked) > 2 * _SAMPLE:
            picked = [np.ascontiguousarray(p[::2]) for p in picked]  # copies: views would keep every row
            stride *= 2
    sample = np.concatenate(picked) if picked else np.zeros((0, dim), dtype=np.float32)
    return n, total, sum_squares, sample


def _covariance_times(chunks: Chunks, mean: FloatArray, basis: FloatArray) -> Float64Array:
    """(X - mean)^T (X - mean) @ basis over every chunk, without forming the centred rows."""
    out = np.zeros(basis.shape, dtype=np.float64)
    shift = mean @ basis
    for _, rows in chunks():
        product = rows @ basis - shift  # (rows - mean) @ basis
        out += (rows.T @ product).astype(np.float64) - np.outer(mean, product.sum(axis=0, dtype=np.float64))
    return out


def _top_components(
    chunks: Chunks, mean: FloatArray, sample: FloatArray, dim: int, *, seed: int
) -> tuple[Float64Array, Float64Array]:
    """Eigenpairs of the covariance, largest first: iterations on the sample, then _FULL_PASSES on every row."""
    k = min(_BASIS, dim)
    basis = _orthonormal(np.random.default_rng(seed).standard_normal((dim, k)))
    centred = sample - mean
    for _ in range(_ITERATIONS):
        basis = _orthonormal((centred.T @ (centred @ basis)).astype(np.float64))
    for _ in range(_FULL_PASSES - 1):
        basis = _orthonormal(_covariance_times(chunks, mean, basis))
    image = _covariance_times(chunks, mean, basis)
    small = basis.astype(np.float64).T @ image
    values, vectors = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0.0, None), basis.astype(np.float64) @ vectors[:, order]


def _orthonormal(columns: Float64Array) -> FloatArray:
    """An orthonormal basis of the columns' span (Cholesky QR, twice: a k x k problem, not a dim x k one)."""
    basis = columns
    for _ in range(2):
        gram = basis.T @ basis
        try:
            factor = np.linalg.cholesky(gram + np.eye(len(gram)) * 1e-12 * max(float(np.trace(gram)), 1e-300))
        except np.linalg.LinAlgError:  # (nearly) dependent columns: the slower, always-defined QR
            return np.linalg.qr(columns)[0].astype(np.float32)
        basis = np.linalg.solve(factor, basis.T).T
    return basis.astype(np.float32)


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
