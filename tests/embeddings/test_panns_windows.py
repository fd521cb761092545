"""The default window layout (10 s windows every 10 s, chosen with bench/windows.py) on short and long songs."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
import torch

from embeddings import panns
from embeddings.base import SAMPLE_RATE


def _music(seconds: float, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.0, 330.0))
    beat = np.exp(-20 * ((t * 2.0) % 1.0)) * rng.standard_normal(t.size)
    return (0.1 * chord * (0.6 + 0.4 * np.sin(2 * np.pi * t / 7)) + 0.2 * beat).astype(np.float32)


@pytest.fixture(scope="module")
def cnn14(tmp_path_factory: pytest.TempPathFactory) -> panns.PannsEmbedder:
    torch.manual_seed(0)
    checkpoint = tmp_path_factory.mktemp("layout") / panns.CHECKPOINT_FILE_NAME
    torch.save({"model": panns.build_cnn14().state_dict()}, checkpoint)
    try:
        return panns.load_panns(checkpoint, device="cpu", batch_size=8, precision="float32")
    finally:
        checkpoint.unlink()  # 330 MB, loaded already


@pytest.fixture(scope="module")
def cnn10() -> panns.PannsEmbedder:
    torch.manual_seed(0)
    return panns.PannsEmbedder(panns.CNN10.build(), variant=panns.CNN10, batch_size=8, precision="float32")


def test_the_default_layout_runs_the_network_over_each_second_once(cnn14: panns.PannsEmbedder) -> None:
    assert (cnn14.window_samples, cnn14.hop_samples) == (10 * SAMPLE_RATE, 10 * SAMPLE_RATE)
    assert cnn14.window_count(40 * SAMPLE_RATE) == 4
    # The last window ends at the song's end, overlapping the one before it rather than being cut short.
    assert panns.window_starts(45 * SAMPLE_RATE, window=cnn14.window_samples, hop=cnn14.hop_samples) == [
        s * SAMPLE_RATE for s in (0, 10, 20, 30, 35)
    ]


@pytest.mark.parametrize(("seconds", "windows"), [(0.3, 1), (10.0, 1), (40.0, 4)])
def test_songs_of_any_length_give_unit_vectors(cnn14: panns.PannsEmbedder, seconds: float, windows: int) -> None:
    song = _music(seconds)

    vector, clipwise = cnn14.embed_with_tags(song)

    assert cnn14.window_count(song.size) == windows
    assert vector.shape == (2048,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert clipwise.shape == (527,) and np.all((clipwise >= 0) & (clipwise <= 1))


def test_a_fifteen_minute_song_gives_a_unit_vector_in_bounded_memory(cnn10: panns.PannsEmbedder) -> None:
    song = _music(900.0, seed=1)
    blocks = (song[start : start + 10 * SAMPLE_RATE] for start in range(0, song.size, 10 * SAMPLE_RATE))

    tracemalloc.start()
    try:
        analysis = cnn10.analyse_blocks(blocks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert cnn10.window_count(song.size) == 90
    assert analysis.vector.shape == (512,) and np.linalg.norm(analysis.vector) == pytest.approx(1.0, abs=1e-5)
    # numpy's own buffers (the cut windows and the sums) stay near one batch, far below the song's 115 MB.
    assert peak < 40_000_000
    assert np.allclose(analysis.vector, cnn10.embed(song), atol=1e-5)
