"""Clip searches answered by a real Celery worker over Redis: the web process never loads the neural model."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from config.celery import app as celery_app
from embeddings import registry
from embeddings.index import get_vector_index
from tests import audio
from tests.factories import SongFactory
from tests.services import REAL_STACK, RedisServer

pytestmark = REAL_STACK

CNN14_DIM = 2048


def _use_result_backend(url: str) -> None:
    celery_app.conf.update(result_backend=url)
    # The app keeps the backend it made first (shared when thread-safe, else per thread): drop both.
    celery_app._backend_cache = None  # type: ignore[attr-defined]
    celery_app._local.__dict__.pop("backend", None)  # type: ignore[attr-defined]


@pytest.fixture
def results_in_redis(redis: RedisServer) -> Iterator[RedisServer]:
    previous = celery_app.conf.result_backend
    _use_result_backend(redis.url)
    yield redis
    _use_result_backend(previous)


@pytest.fixture
def random_cnn14(tmp_path: Path) -> Path:
    """A random-weight Cnn14 checkpoint, made in another process so that this one never builds the network."""
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    code = (
        "import sys, torch; from embeddings import panns; torch.manual_seed(0); "
        "torch.save({'model': panns.build_cnn14().state_dict()}, sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(__file__).resolve().parents[2])
    return path


def _torch_modules_here() -> list[object]:
    if "torch" not in sys.modules:
        return []
    module_type = sys.modules["torch"].nn.Module
    gc.collect()
    found = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, module_type):
                found.append(obj)
        except ReferenceError:  # a weak proxy whose object is gone
            continue
    return found


def _post(api, clip: Path):
    with open(clip, "rb") as handle:
        return api.post("/api/search/similar/", {"clip": handle, "limit": 3}, format="multipart")


def test_a_panns_clip_search_is_answered_by_a_worker_and_loads_no_model_in_the_web_process(
    workers: Callable[..., subprocess.Popen[bytes]],
    results_in_redis: RedisServer,
    api,
    settings,
    random_cnn14,
    tmp_path,
) -> None:
    settings.EMBEDDING_MODEL = "panns-cnn14"
    settings.PANNS_CHECKPOINT = random_cnn14
    settings.CLIP_ANALYSIS_TIMEOUT_SECONDS = 240  # the worker loads the network first, on two busy cores
    rng = np.random.default_rng(0)
    songs = []
    for _ in range(4):
        song = SongFactory.create(embedding_model="panns-cnn14")
        vector = rng.normal(size=CNN14_DIM).astype(np.float32)
        get_vector_index("panns-cnn14", CNN14_DIM).upsert(song.id, song.object_key, vector / np.linalg.norm(vector))
        songs.append(song)
    workers(EMBEDDING_MODEL="panns-cnn14", PANNS_CHECKPOINT=str(random_cnn14))
    clip = audio.write(tmp_path / "query.mp3", audio.chord([220, 277, 330], 3.0))

    response = _post(api, clip)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model"] == "panns-cnn14"
    results = body["results"]
    assert len(results) == 3
    assert {hit["song"]["id"] for hit in results} <= {str(song.id) for song in songs}
    scores = [hit["score"] for hit in results]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert registry._loaded == {}, "the web process loaded an embedding model"
    assert _torch_modules_here() == [], "a torch module lives in the web process"
    log = (tmp_path / "worker.log").read_text()
    assert "catalog.analyse_clip" in log and "succeeded" in log

    # A second clip is answered by the warm worker, well within the analysis of a few seconds of audio.
    started = time.monotonic()
    assert _post(api, clip).status_code == 200
    assert time.monotonic() - started < 60


def test_with_redis_up_but_no_worker_a_clip_search_answers_503_within_its_timeout(
    results_in_redis: RedisServer, api, settings, tmp_path
) -> None:
    settings.CLIP_ANALYSIS_TIMEOUT_SECONDS = 1.0
    clip = audio.write(tmp_path / "query.mp3", audio.chord([220, 277, 330], 2.0))

    started = time.monotonic()
    response = _post(api, clip)

    assert response.status_code == 503
    assert "No analysis worker answered within 1 s" in response.json()["detail"]
    assert time.monotonic() - started < 6
