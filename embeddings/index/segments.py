"""Vector segments of the local index: what one segment's files hold, and writing, merging and opening them.

A segment folder holds numpy `.npy` files that every process memory-maps read-only:
`ids.npy` (16-byte song ids), `names.npy` (the object keys, utf-8, concatenated) with `name_offsets.npy` (rows + 1)
and `name_hashes.npy` (64-bit hash of each key, so excluding a file costs one comparison per row),
`vectors.npy` (float32, rows x dim: exact scores), `codes.npy` (int8, rows x dim) and `scales.npy` (float32 per row):
the quarter-size copy that the fast mode scans (row ~= codes * scale). On disk that is 5 x dim + ~70 bytes per vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from derived.segments import BoolArray, CorruptIndex, IdArray, check_shapes, ids_array, open_arrays
from embeddings.base import FloatArray
from embeddings.index import VectorIndexError
from embeddings.models import StoredVector

Int8Array = npt.NDArray[np.int8]
Payload = tuple[str, FloatArray]  # (object key, unit vector)

# Vectors per chunk when a rebuild reads every row, and per copy when merging.
_ROWS_PER_CHUNK = 8192
_FILES = ("ids", "names", "name_offsets", "name_hashes", "vectors", "codes", "scales")


def name_hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def quantize(vectors: FloatArray) -> tuple[Int8Array, FloatArray]:
    """Symmetric int8 codes per row: row ~= codes * scale, with scale = max |row| / 127."""
    peak = np.abs(vectors).max(axis=1) if vectors.shape[1] else np.zeros(len(vectors), dtype=np.float32)
    scales = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    codes = np.rint(vectors / scales[:, None]).clip(-127, 127).astype(np.int8)
    return codes, scales


@dataclass(frozen=True)
class VectorSegment:
    song_ids: IdArray
    names: npt.NDArray[np.uint8]
    name_offsets: npt.NDArray[np.int64]
    name_hashes: npt.NDArray[np.uint64]
    vectors: FloatArray
    codes: Int8Array
    scales: FloatArray
    nbytes: int

    @property
    def merge_bytes(self) -> int:
        return self.nbytes

    def __len__(self) -> int:
        return int(self.song_ids.size)

    def name_at(self, row: int) -> str:
        return bytes(self.names[self.name_offsets[row] : self.name_offsets[row + 1]]).decode()

    def rows_named(self, name: str) -> npt.NDArray[np.intp]:
        rows = np.flatnonzero(self.name_hashes == np.uint64(name_hash(name)))
        return np.asarray([r for r in rows if self.name_at(int(r)) == name], dtype=np.intp)


def _save(folder: Path, name: str, array: npt.ArrayLike) -> None:
    np.save(folder / f"{name}.npy", np.asarray(array), allow_pickle=False)


class VectorCodec:
    """Vectors of one model and size (see `derived.segments.Codec`)."""

    def __init__(self, model: str, dim: int) -> None:
        self.model = model
        self.dim = dim

    def _rows(self) -> Any:
        return StoredVector.objects.filter(model=self.model, dim=self.dim)

    def _decode(self, song_id: UUID, blob: Any) -> FloatArray:
        data = bytes(blob)
        if len(data) != self.dim * 4:
            raise VectorIndexError(
                f"the stored vector of song {song_id} has {len(data)} bytes instead of {self.dim * 4}; "
                "re-embed it with `python manage.py reindex`"
            )
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    def load(self, song_ids: Sequence[UUID]) -> dict[UUID, Payload]:
        rows = self._rows().filter(song_id__in=list(song_ids)).values_list("song_id", "file", "vector")
        return {song_id: (file, self._decode(song_id, blob)) for song_id, file, blob in rows}

    def load_all(self) -> Iterator[list[tuple[UUID, Payload]]]:
        chunk: list[tuple[UUID, Payload]] = []
        rows = self._rows().order_by("pk").values_list("song_id", "file", "vector")
        for song_id, file, blob in rows.iterator(chunk_size=1000):
            chunk.append((song_id, (file, self._decode(song_id, blob))))
            if len(chunk) == _ROWS_PER_CHUNK:
                yield chunk
                chunk = []
        yield chunk

    def write(self, folder: Path, items: Sequence[tuple[UUID, Payload]]) -> None:
        names = [file.encode() for _, (file, _) in items]
        vectors = np.empty((len(items), self.dim), dtype=np.float32)
        for i, (_, (_, vector)) in enumerate(items):
            vectors[i] = vector
        codes, scales = quantize(vectors)
        _save(folder, "ids", ids_array([song_id for song_id, _ in items]))
        _save(folder, "names", np.frombuffer(b"".join(names), dtype=np.uint8))
        _save(folder, "name_offsets", np.cumsum([0] + [len(n) for n in names], dtype=np.int64))
        _save(folder, "name_hashes", np.asarray([name_hash(file) for _, (file, _) in items], dtype=np.uint64))
        _save(folder, "vectors", vectors)
        _save(folder, "codes", codes)
        _save(folder, "scales", scales)

    def merge(self, folder: Path, parts: Sequence[tuple[VectorSegment, BoolArray]]) -> None:
        keep = [np.flatnonzero(alive) for _, alive in parts]
        total = sum(rows.size for rows in keep)
        outputs = {
            "vectors": npy_format.open_memmap(folder / "vectors.npy", "w+", np.float32, (total, self.dim)),
            "codes": npy_format.open_memmap(folder / "codes.npy", "w+", np.int8, (total, self.dim)),
        }
        at = 0
        for (segment, _), rows in zip(parts, keep, strict=True):
            for start in range(0, rows.size, _ROWS_PER_CHUNK):
                chunk = rows[start : start + _ROWS_PER_CHUNK]
                outputs["vectors"][at : at + chunk.size] = segment.vectors[chunk]
                outputs["codes"][at : at + chunk.size] = segment.codes[chunk]
                at += chunk.size
        for output in outputs.values():
            output.flush()
        del outputs
        names = [
            bytes(seg.names[seg.name_offsets[r] : seg.name_offsets[r + 1]])
            for (seg, _), rows in zip(parts, keep, strict=True)
            for r in rows
        ]
        _save(folder, "ids", np.concatenate([seg.song_ids[rows] for (seg, _), rows in zip(parts, keep, strict=True)]))
        _save(folder, "names", np.frombuffer(b"".join(names), dtype=np.uint8))
        _save(folder, "name_offsets", np.cumsum([0] + [len(n) for n in names], dtype=np.int64))
        _save(
            folder,
            "name_hashes",
            np.concatenate([seg.name_hashes[rows] for (seg, _), rows in zip(parts, keep, strict=True)]),
        )
        _save(folder, "scales", np.concatenate([seg.scales[rows] for (seg, _), rows in zip(parts, keep, strict=True)]))

    def open(self, folder: Path) -> VectorSegment:
        arrays, nbytes = open_arrays(folder, _FILES, "vector")
        rows = arrays["ids"].shape[0] if arrays["ids"].ndim == 1 else -1
        expected = {
            "ids": ((rows,), "S16"),
            "name_offsets": ((rows + 1,), np.int64),
            "name_hashes": ((rows,), np.uint64),
            "vectors": ((rows, self.dim), np.float32),
            "codes": ((rows, self.dim), np.int8),
            "scales": ((rows,), np.float32),
        }
        check_shapes(folder, arrays, expected, "vector")
        offsets = arrays["name_offsets"]
        if arrays["names"].ndim != 1 or (rows and int(offsets[-1]) != arrays["names"].size):
            raise CorruptIndex(f"vector segment {folder.name}: names do not match their offsets")
        return VectorSegment(
            song_ids=arrays["ids"],
            names=arrays["names"],
            name_offsets=offsets,
            name_hashes=arrays["name_hashes"],
            vectors=arrays["vectors"],
            codes=arrays["codes"],
            scales=arrays["scales"],
            nbytes=nbytes,
        )
