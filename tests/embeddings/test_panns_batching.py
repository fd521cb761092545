"""Windows of several songs share the network's batches (the GPU path), and each song still gets its own vector."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embeddings import panns
from embeddings.base import SAMPLE_RATE
from embeddings.panns_batching import SharedBatches


def _window(value: float, size: int = 4) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.full(size, value, dtype=np.float32)


class Recorder:
    """A stand-in network: the embedding of a window is its samples, and every batch is written down."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []

    def __call__(self, batch: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        self.batches.append([float(row[0]) for row in batch])
        return batch.copy(), batch[:, :2].copy()


def test_windows_of_two_songs_fill_one_batch() -> None:
    network = Recorder()
    shared = SharedBatches(network, batch_size=4)

    first = [shared.submit(_window(v)) for v in (1.0, 2.0, 3.0)]
    second = [shared.submit(_window(v)) for v in (10.0, 20.0)]

    assert network.batches == [[1.0, 2.0, 3.0, 10.0]]
    assert [shared.result(slot)[0][0] for slot in second] == [10.0, 20.0]
    assert network.batches == [[1.0, 2.0, 3.0, 10.0], [20.0]]
    assert [shared.result(slot)[0][0] for slot in first] == [1.0, 2.0, 3.0]


def test_a_batch_holds_windows_of_one_length_only() -> None:
    network = Recorder()
    shared = SharedBatches(network, batch_size=3)

    short = shared.submit(_window(7.0, size=2))  # a song shorter than one window
    longs = [shared.submit(_window(v)) for v in (1.0, 2.0, 3.0)]

    assert network.batches == [[1.0, 2.0, 3.0]]
    assert shared.result(short)[0].tolist() == [7.0, 7.0]
    assert [shared.result(slot)[0][0] for slot in longs] == [1.0, 2.0, 3.0]
    assert network.batches == [[1.0, 2.0, 3.0], [7.0]]


def test_a_failing_batch_fails_every_song_in_it() -> None:
    def broken(batch: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        raise RuntimeError("CUDA out of memory")

    shared = SharedBatches(broken, batch_size=8)
    one, other = shared.submit(_window(1.0)), shared.submit(_window(2.0))

    with pytest.raises(RuntimeError, match="out of memory"):
        shared.result(one)
    with pytest.raises(RuntimeError, match="out of memory"):
        shared.result(other)


@pytest.fixture(scope="module")
def cnn10_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return panns.CNN10.build()


def _song(seed: int, seconds: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_songs_analysed_together_get_the_vectors_they_get_alone(cnn10_model: torch.nn.Module) -> None:
    alone = panns.PannsEmbedder(cnn10_model, variant=panns.CNN10, batch_size=4)
    together = panns.PannsEmbedder(cnn10_model, variant=panns.CNN10, batch_size=4, share_batches=True)
    songs = [_song(1, 47.0), _song(2, 31.0), _song(3, 0.6)]
    # Every song has handed over its first block before any goes on, so their windows interleave in the queue.
    started = threading.Barrier(len(songs))

    def blocks(song: np.ndarray[Any, Any]) -> Any:
        pieces = np.array_split(song, max(1, song.size // (7 * SAMPLE_RATE)))
        yield pieces[0]
        started.wait(timeout=60)
        yield from pieces[1:]

    results: dict[int, Any] = {}

    def analyse(number: int) -> None:
        results[number] = together.analyse_blocks(blocks(songs[number]))

    threads = [threading.Thread(target=analyse, args=(n,)) for n in range(len(songs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert together.shared is not None
    windows = sum(alone.window_count(song.size) for song in songs)
    assert together.shared.batches_run < windows  # batches were shared, not one per window
    for number, song in enumerate(songs):
        assert np.allclose(results[number].vector, alone.embed(song), atol=1e-5)


def test_a_gpu_embedder_shares_batches_and_a_cpu_one_does_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cnn10_model: torch.nn.Module
) -> None:
    checkpoint = tmp_path / panns.CNN10.checkpoint_file_name
    torch.save({"model": cnn10_model.state_dict()}, checkpoint)
    cpu = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, precision="float32")
    assert cpu.shared is None

    # No GPU here: PyTorch is told it has one, and nothing is run or moved, to see what loading picks for it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(panns, "_try_once", lambda embedder: None)
    gpu = panns.load_panns(checkpoint, variant="panns-cnn10", device="cuda", batch_size=2)

    assert (gpu.device, gpu.precision) == ("cuda", "float16") and gpu.shared is not None
    assert gpu.shared.batch_size == 2
