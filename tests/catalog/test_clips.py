"""Clip analysis handed to the workers: inline or through storage, cleaned up, and a 503 when nobody answers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from catalog import clips
from catalog.storage import get_storage
from embeddings import registry
from embeddings.audio import decode
from embeddings.index import get_vector_index
from embeddings.registry import model_dim
from tests import audio
from tests.factories import SongFactory

pytestmark = pytest.mark.django_db

DIM = model_dim("features")


def _indexed_song(vector: np.ndarray, **fields: str):
    song = SongFactory.create(embedding_model="features", **fields)
    get_vector_index("features", DIM).upsert(song.id, song.object_key, vector / np.linalg.norm(vector))
    return song


def _post(api, clip: Path):
    with open(clip, "rb") as handle:
        return api.post("/api/search/similar/", {"clip": handle, "limit": 3}, format="multipart")


def test_a_clip_search_with_no_worker_answers_503_within_its_timeout(api, settings, tmp_path: Path) -> None:
    settings.CLIP_ANALYSIS_TIMEOUT_SECONDS = 0.5
    clip = audio.write(tmp_path / "query.mp3", audio.chord([220, 277, 330], 2.0))

    started = time.monotonic()
    response = _post(api, clip)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert "No analysis worker answered within 0.5 s" in response.json()["detail"]
    assert elapsed < 5, elapsed
    assert registry._loaded == {}, "the web process loaded a model"


def test_a_large_clip_goes_through_storage_and_is_deleted_after(api, eager_celery, settings, tmp_path) -> None:
    settings.CLIP_INLINE_MAX_KB = 0
    rng = np.random.default_rng(0)
    songs = [_indexed_song(rng.normal(size=DIM).astype(np.float32)) for _ in range(3)]
    clip = audio.write(tmp_path / "query.mp3", audio.noise_bursts(3.0, bpm=120, seed=1))
    uploads: list[str] = []
    storage = get_storage()
    original_put = type(storage).put

    def recording_put(self, key, source, *, content_type):
        uploads.append(key)
        return original_put(self, key, source, content_type=content_type)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(storage), "put", recording_put)
        response = _post(api, clip)

    assert response.status_code == 200, response.json()
    assert {hit["song"]["id"] for hit in response.json()["results"]} == {str(song.id) for song in songs}
    assert len(uploads) == 1 and uploads[0].startswith(clips.CLIP_PREFIX) and uploads[0].endswith(".mp3")
    assert list(storage.list_keys(clips.CLIP_PREFIX)) == []


def test_the_worker_vector_is_what_the_search_uses(settings, eager_celery, tmp_path: Path) -> None:
    clip = audio.write(tmp_path / "query.wav", audio.chord([262, 330, 392], 2.0), fmt="wav")

    model, vector = clips.clip_vector(clip)

    samples = decode(clip, max_seconds=settings.SIMILAR_CLIP_MAX_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
    expected = registry.get_embedding_model("features").embed(samples.samples)
    assert model == "features"
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_a_worker_on_another_model_is_reported_not_used(settings) -> None:
    answer = clips.analyse("panns-cnn14", {"inline": "", "suffix": ".mp3"})  # this worker runs `features`

    assert answer == {"model": "features"}
    with pytest.raises(clips.ServiceUnavailable, match="restart the workers with the same EMBEDDING_MODEL"):
        clips._vector_of(answer, "panns-cnn14")


def test_an_undecodable_clip_is_a_clear_400_from_the_worker(api, eager_celery, tmp_path: Path) -> None:
    bogus = tmp_path / "query.mp3"
    bogus.write_bytes(b"not audio at all" * 50)

    response = _post(api, bogus)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The clip cannot be used:")
