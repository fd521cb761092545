"""Clip analysis on the workers: the web process hands a query clip to the `clips` queue and waits for its vector.

The neural model lives only in worker processes (on a GPU where there is one). A clip up to CLIP_INLINE_MAX_KB
travels base64-encoded inside the task message; a larger one is put in the object store under `clips/<random>` for
the worker to fetch, and deleted once answered or given up on. The task expires with the wait, so a worker that
comes up late never analyses a clip nobody waits for. No answer within CLIP_ANALYSIS_TIMEOUT_SECONDS is a 503
that says so, never a hung request.
"""

from __future__ import annotations

import base64
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from django.conf import settings

from catalog.errors import InvalidClip, ServiceUnavailable
from catalog.storage import StorageError, StorageUnavailable, get_storage
from embeddings.audio import decode
from embeddings.base import EmbeddingError, FloatArray, ModelUnavailable
from embeddings.registry import active_model_name, get_embedding_model

logger = logging.getLogger(__name__)

CLIP_PREFIX = "clips/"


class ClipAnswer(TypedDict, total=False):
    model: str
    vector: str  # base64 of little-endian float32
    error: str  # "invalid" (the clip) or "unavailable" (the worker's model or storage)
    detail: str
    seconds: float  # the worker's decode and embedding time (logs, benchmarks)


def clip_vector(path: Path) -> tuple[str, FloatArray]:
    """The active model's vector of the clip at `path`, computed by a worker: (model name, unit vector)."""
    from catalog.tasks import analyse_clip_task

    model = active_model_name()
    suffix = path.suffix.lower()[:10]
    timeout: float = settings.CLIP_ANALYSIS_TIMEOUT_SECONDS
    key = None
    if path.stat().st_size <= settings.CLIP_INLINE_MAX_KB * 1024:
        clip: dict[str, str] = {"inline": base64.b64encode(path.read_bytes()).decode("ascii"), "suffix": suffix}
    else:
        key = f"{CLIP_PREFIX}{uuid.uuid4().hex}{suffix}"
        try:
            get_storage().put(key, path, content_type="application/octet-stream")
        except (StorageUnavailable, StorageError) as exc:
            raise ServiceUnavailable(f"The clip could not be handed to the analysis workers: {exc}") from exc
        clip = {"key": key, "suffix": suffix}
    try:
        answer = _ask_worker(analyse_clip_task, model, clip, timeout)
    finally:
        if key is not None:
            _forget_clip(key)
    return model, _vector_of(answer, model)


def _ask_worker(task: Any, model: str, clip: dict[str, str], timeout: float) -> ClipAnswer:
    from celery.exceptions import TimeoutError as ResultTimeout
    from kombu.exceptions import OperationalError

    try:
        result = task.apply_async(args=[model, clip], expires=timeout)
    except OperationalError as exc:
        raise ServiceUnavailable(f"The clip analysis queue is unreachable right now: {exc}") from exc
    try:
        # The web process is never inside a task; Celery's guard against that is one global flag, which an eager
        # task running on another thread (tests, CELERY_TASK_ALWAYS_EAGER) would set for this one too.
        answer: ClipAnswer = result.get(timeout=timeout, interval=0.02, propagate=True, disable_sync_subtasks=False)
    except ResultTimeout:
        raise ServiceUnavailable(
            f"No analysis worker answered within {timeout:g} s; the workers may be down or busy. Try again shortly."
        ) from None
    except OperationalError as exc:
        raise ServiceUnavailable(f"The clip analysis results are unreachable right now: {exc}") from exc
    except Exception as exc:  # the task itself failed on the worker (a bug there, not the clip's fault)
        raise ServiceUnavailable(f"The clip analysis failed on the worker ({type(exc).__name__}: {exc}).") from exc
    finally:
        try:
            result.forget()
        except Exception:  # a result left behind expires by itself (result_expires)
            logger.debug("could not delete the clip result %s", result.id, exc_info=True)
    return answer


def _vector_of(answer: ClipAnswer, model: str) -> FloatArray:
    if answer.get("error") == "invalid":
        raise InvalidClip(f"The clip cannot be used: {answer.get('detail', 'unreadable audio')}.")
    if answer.get("error"):
        raise ServiceUnavailable(f"The embedding model is not available: {answer.get('detail', '')}")
    if answer.get("model") != model:
        raise ServiceUnavailable(
            f"The analysis worker runs {answer.get('model')!r}, but the catalog uses {model!r}; "
            "restart the workers with the same EMBEDDING_MODEL as the web."
        )
    return np.frombuffer(base64.b64decode(answer["vector"]), dtype="<f4").astype(np.float32)


def _forget_clip(key: str) -> None:
    try:
        get_storage().delete(key)
    except (StorageUnavailable, StorageError):
        logger.warning("could not delete the query clip %s from storage", key, exc_info=True)


def analyse(model: str, clip: dict[str, str]) -> ClipAnswer:
    """Worker side: decode the clip and embed it with this worker's model; errors are answers, never raised."""
    active = active_model_name()
    if active != model:
        return {"model": active}
    started = time.perf_counter()
    suffix = clip.get("suffix", "")
    with tempfile.TemporaryDirectory(prefix="clip-") as folder:
        path = Path(folder) / f"clip{suffix}"
        try:
            if "inline" in clip:
                path.write_bytes(base64.b64decode(clip["inline"]))
            else:
                get_storage().download(clip["key"], path)
        except StorageError as exc:
            return {"error": "invalid", "detail": f"the clip was not found in storage ({exc})"}
        except StorageUnavailable as exc:
            return {"error": "unavailable", "detail": f"storage is unreachable from the worker: {exc}"}
        try:
            audio = decode(path, max_seconds=settings.SIMILAR_CLIP_MAX_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
            embedder = get_embedding_model(model)
            vector = embedder.embed(audio.samples)
        except EmbeddingError as exc:
            return {"error": "invalid", "detail": str(exc)}
        except ModelUnavailable as exc:
            return {"error": "unavailable", "detail": str(exc)}
    encoded = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return {"model": embedder.name, "vector": encoded, "seconds": round(time.perf_counter() - started, 4)}
