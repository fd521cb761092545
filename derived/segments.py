"""Segments of a derived index: immutable folders of `.npy` files that every process maps read-only.

A kind of index (fingerprints, vectors) says what its segments hold and how to write, open and merge them through a
`Codec`; `store.SegmentStore` keeps the live set of segments in step with the database and hands out `Snapshot`s.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.bytes_]
BoolArray = npt.NDArray[np.bool_]


class CorruptIndex(Exception):
    """A manifest or segment is missing or damaged; the index is rebuilt from the database."""


def ids_array(song_ids: Sequence[UUID]) -> IdArray:
    """Song ids as one array of 16-byte values (sortable, comparable, stored as-is)."""
    if not song_ids:
        return np.empty(0, dtype="S16")
    return np.frombuffer(b"".join(song_id.bytes for song_id in song_ids), dtype="S16").copy()


def song_id_at(ids: IdArray, row: int) -> UUID:
    # Indexing an S16 array strips trailing zero bytes; a one-row slice's bytes keep all sixteen.
    return UUID(bytes=ids[row : row + 1].tobytes())


def open_arrays(folder: Path, names: Sequence[str], what: str) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """A segment's `.npy` files mapped read-only, and their bytes on disk; CorruptIndex if one is unreadable."""
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in names}
        nbytes = sum((folder / f"{name}.npy").stat().st_size for name in names)
    except (OSError, ValueError) as exc:
        raise CorruptIndex(f"{what} segment {folder.name}: {exc}") from exc
    return arrays, nbytes


def release(array: npt.NDArray[Any]) -> None:
    """Drop a mapped array's pages from this process (the page cache keeps them for every process on the host).

    A lookup reads a few entries here and there in a file of gigabytes; left mapped, every page it touched (and the
    pages the kernel maps around each fault) would stay in the process and count against its memory, growing with
    the lookups it served. Arrays that are not file mappings are left alone.
    """
    handle = getattr(array, "_mmap", None)
    if isinstance(handle, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


def check_shapes(
    folder: Path, arrays: dict[str, npt.NDArray[Any]], expected: Mapping[str, tuple[tuple[int, ...], Any]], what: str
) -> None:
    """CorruptIndex unless every array has the shape and dtype its segment's counts imply."""
    for name, (shape, dtype) in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype != np.dtype(dtype):
            raise CorruptIndex(f"{what} segment {folder.name}: {name} is {arrays[name].shape} {arrays[name].dtype}")


class Segment(Protocol):
    @property
    def song_ids(self) -> IdArray:
        """The song of each row, in row order."""
        ...

    @property
    def nbytes(self) -> int:
        """Bytes on disk: what merging it costs."""
        ...

    @property
    def merge_bytes(self) -> int:
        """What the merge policy counts against MAX_SEGMENT_BYTES: `nbytes`, or more where the format bounds a
        segment by something else (fingerprint positions are 32-bit frames)."""
        ...


S = TypeVar("S", bound=Segment)
P = TypeVar("P")


class Codec(Protocol[S, P]):
    """What one kind of index stores: how to read songs' data from the database and write, open and merge segments."""

    def load(self, song_ids: Sequence[UUID]) -> dict[UUID, P]:
        """The current data of these songs; a song without any (deleted) is absent."""
        ...

    def load_all(self) -> Iterator[list[tuple[UUID, P]]]:
        """Every song's data, in chunks that fit in memory (a rebuild)."""
        ...

    def write(self, folder: Path, items: Sequence[tuple[UUID, P]]) -> None:
        """A segment of these songs, in this order, written into the empty folder."""
        ...

    def merge(self, folder: Path, parts: Sequence[tuple[S, BoolArray]]) -> None:
        """A segment of the live rows (mask) of the parts, in order, written into the empty folder."""
        ...

    def open(self, folder: Path) -> S:
        """The segment in the folder, mapped read-only; CorruptIndex when its files do not add up."""
        ...


@dataclass(frozen=True)
class Part(Generic[S]):
    name: str
    segment: S
    alive: BoolArray


@dataclass(frozen=True)
class Snapshot(Generic[S]):
    """What one lookup reads: the live segments with their alive rows, fixed for as long as it is held."""

    parts: tuple[Part[S], ...]

    @property
    def live_rows(self) -> int:
        return sum(int(part.alive.sum()) for part in self.parts)
