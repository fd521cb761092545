"""`panns-cnn14-meanmax`: mean and max of Cnn14's window embeddings, 4096-d, on a random Cnn14 checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embeddings import panns, registry  # noqa: E402
from embeddings.base import EmbeddingError  # noqa: E402
from embeddings.index import get_vector_index  # noqa: E402
from embeddings.panns_meanmax import MeanMaxEmbedder  # noqa: E402
from tests.fingerprints import music  # noqa: E402


@pytest.fixture(scope="module")
def cnn14_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("meanmax") / panns.CHECKPOINT_FILE_NAME
    torch.save({"model": panns.build_cnn14().state_dict()}, path)
    yield path
    path.unlink(missing_ok=True)  # 330 MB


@pytest.fixture
def meanmax(settings: Any, cnn14_weights: Path) -> MeanMaxEmbedder:
    settings.EMBEDDING_MODEL = "panns-cnn14-meanmax"
    settings.PANNS_CHECKPOINT = cnn14_weights
    settings.EMBEDDING_BATCH_SIZE = 2
    model = registry.get_embedding_model()
    assert isinstance(model, MeanMaxEmbedder)
    return model


def _halves(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return vector[:2048], vector[2048:]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_it_is_the_mean_and_the_max_of_the_window_embeddings(meanmax: MeanMaxEmbedder) -> None:
    song = music.song(4, 16.0)  # 10 s windows every 5 s: 3 windows
    inner = meanmax.inner
    starts = panns.window_starts(song.size, window=inner.window_samples, hop=inner.hop_samples)
    windows = np.stack([song[s : s + inner.window_samples] for s in starts])
    with torch.inference_mode():
        output, _ = inner.forward(torch.from_numpy(windows))
    each: np.ndarray = output.double().numpy()

    vector = meanmax.embed(song)

    assert vector.shape == (4096,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    mean, peak = _halves(vector)
    assert np.allclose(_unit(mean), _unit(each.mean(axis=0)), atol=1e-5)
    assert np.allclose(_unit(peak), _unit(each.max(axis=0)), atol=1e-5)
    assert np.linalg.norm(mean) == pytest.approx(np.linalg.norm(peak), abs=1e-5)  # each half counts the same
    # The mean half points where the 2048-d Cnn14 embedding does.
    assert float(_unit(mean) @ inner.embed(song)) == pytest.approx(1.0, abs=1e-5)


def test_blocks_give_the_vector_of_the_whole_song(meanmax: MeanMaxEmbedder) -> None:
    song = music.song(5, 12.0)
    blocks = np.array_split(song, 7)

    assert np.allclose(meanmax.analyse_blocks(blocks).vector, meanmax.embed(song), atol=1e-6)


def test_it_shares_cnn14s_weights_and_is_sized_4096_everywhere(meanmax: MeanMaxEmbedder) -> None:
    assert registry.get_embedding_model("panns-cnn14") is meanmax.inner
    assert registry.model_dim("panns-cnn14-meanmax") == meanmax.dim == 4096
    assert registry.panns_checkpoint_path("panns-cnn14-meanmax") == registry.panns_checkpoint_path("panns-cnn14")


@pytest.mark.django_db
def test_the_index_holds_and_finds_4096_d_vectors(meanmax: MeanMaxEmbedder) -> None:
    import uuid

    index = get_vector_index(meanmax.name, registry.model_dim(meanmax.name))
    ids = [uuid.uuid4() for _ in range(3)]
    vectors = [meanmax.embed(music.song(seed, 3.0)) for seed in (6, 7, 8)]
    for song_id, vector in zip(ids, vectors, strict=True):
        index.upsert(song_id, f"uploads/{song_id}.mp3", vector)

    assert index.search(vectors[1], 1)[0].song_id == ids[1]
    with pytest.raises(Exception, match="4096"):
        index.upsert(uuid.uuid4(), "x.mp3", vectors[0][:2048])


def test_unusable_audio_is_an_embedding_error(meanmax: MeanMaxEmbedder) -> None:
    with pytest.raises(EmbeddingError):
        meanmax.embed(np.zeros((2, 32000), dtype=np.float32))
    with pytest.raises(EmbeddingError):
        meanmax.embed(np.full(32000, np.nan, dtype=np.float32))
