from __future__ import annotations

import itertools

import numpy as np
import pytest

from embeddings.base import EmbeddingError
from embeddings.features import DIM, FeatureEmbedder
from tests import audio


@pytest.fixture(scope="module")
def embedder() -> FeatureEmbedder:
    return FeatureEmbedder()


def test_it_gives_a_deterministic_unit_vector(embedder: FeatureEmbedder) -> None:
    samples = audio.chord([220, 277, 330], 3.0)

    first = embedder.embed(samples)
    second = embedder.embed(samples)

    assert first.shape == (DIM,)
    assert first.dtype == np.float32
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(first, second)


def test_similar_sounds_are_closer_than_different_ones(embedder: FeatureEmbedder) -> None:
    chord_a = embedder.embed(audio.chord([220, 277, 330], 4.0))
    chord_b = embedder.embed(audio.chord([196, 247, 294], 4.0))
    drums = embedder.embed(audio.noise_bursts(4.0))

    assert float(chord_a @ chord_b) > float(chord_a @ drums) + 0.2


def test_a_very_short_clip_still_embeds(embedder: FeatureEmbedder) -> None:
    assert np.linalg.norm(embedder.embed(audio.tone(440, 0.05))) == pytest.approx(1.0, abs=1e-5)


def test_it_refuses_empty_audio(embedder: FeatureEmbedder) -> None:
    with pytest.raises(EmbeddingError):
        embedder.embed(np.zeros(0, dtype=np.float32))


def test_a_song_analysed_block_by_block_equals_the_whole_song(embedder: FeatureEmbedder) -> None:
    rng = np.random.default_rng(3)
    song = np.concatenate(
        [audio.chord([220, 277, 330], 70.0), (0.2 * rng.standard_normal(65 * audio.RATE)).astype(np.float32)]
    )
    cuts = [0, 7 * audio.RATE, 61 * audio.RATE + 5, 119 * audio.RATE, song.size]

    streamed = embedder.analyse_blocks(song[a:b] for a, b in itertools.pairwise(cuts))

    assert np.allclose(streamed.vector, embedder.embed(song), atol=1e-6)
