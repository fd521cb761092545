"""Segment files: mapped read-only, released from a process, checked before they are served."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from derived.segments import CorruptIndex, check_shapes, ids_array, open_arrays, release, song_id_at
from tests.derived.memory import mapped_kb


def test_song_ids_keep_their_trailing_zero_bytes() -> None:
    ids = [uuid.UUID(bytes=b"\x01" * 15 + b"\x00"), uuid.UUID(int=0), uuid.uuid4()]

    stored = ids_array(ids)

    assert [song_id_at(stored, row) for row in range(len(ids))] == ids


def test_an_unreadable_file_is_reported_as_a_corrupt_segment(tmp_path: Path) -> None:
    np.save(tmp_path / "ids.npy", np.zeros(4, dtype=np.uint32))
    (tmp_path / "positions.npy").write_bytes(b"not an array")

    with pytest.raises(CorruptIndex, match="vector segment"):
        open_arrays(tmp_path, ["ids", "positions"], "vector")


def test_an_array_of_the_wrong_shape_is_reported_as_a_corrupt_segment(tmp_path: Path) -> None:
    np.save(tmp_path / "ids.npy", np.zeros(4, dtype=np.uint32))
    arrays, nbytes = open_arrays(tmp_path, ["ids"], "vector")
    assert nbytes == (tmp_path / "ids.npy").stat().st_size

    check_shapes(tmp_path, arrays, {"ids": ((4,), np.uint32)}, "vector")
    with pytest.raises(CorruptIndex, match="ids is"):
        check_shapes(tmp_path, arrays, {"ids": ((5,), np.uint32)}, "vector")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_released_pages_leave_the_process_and_the_array_still_reads(tmp_path: Path) -> None:
    values = np.arange(8 << 20, dtype=np.uint32)  # 32 MB
    np.save(tmp_path / "positions.npy", values)
    arrays, _ = open_arrays(tmp_path, ["positions"], "test")
    mapped = arrays["positions"]
    assert int(mapped[::1024].sum(dtype=np.int64)) == int(values[::1024].sum(dtype=np.int64))
    before = mapped_kb(tmp_path / "positions.npy")

    release(mapped)

    assert before > 16_000  # every page was read once
    assert mapped_kb(tmp_path / "positions.npy") < 1_000
    assert int(mapped[12345]) == 12345 and int(mapped[-1]) == values[-1]
