"""`get_embedding_model()`: the one place that knows which embedding backends exist."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from django.conf import settings

from embeddings.base import EmbeddingModel

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[str, EmbeddingModel] = {}


def panns_checkpoint_path() -> Path:
    from embeddings import panns

    return settings.PANNS_CHECKPOINT or settings.PANNS_DATA_DIR / panns.CHECKPOINT_FILE_NAME


def active_model_name() -> str:
    """The configured model; `auto` means PANNs when its checkpoint is on disk, else `features`."""
    configured: str = settings.EMBEDDING_MODEL
    if configured != "auto":
        return configured
    return "panns-cnn14" if panns_checkpoint_path().is_file() else "features"


def get_embedding_model(name: str | None = None) -> EmbeddingModel:
    """The model, loaded once per process and reused by every task."""
    name = name or active_model_name()
    with _lock:
        model = _loaded.get(name)
        if model is None:
            model = _load(name)
            _loaded[name] = model
            logger.info("embedding model %s loaded on %s (%d-d)", model.name, model.device, model.dim)
        return model


def _load(name: str) -> EmbeddingModel:
    if name == "features":
        from embeddings.features import FeatureEmbedder

        return FeatureEmbedder()
    if name == "panns-cnn14":
        from embeddings import panns

        return panns.load_panns(
            panns_checkpoint_path(), device=settings.EMBEDDING_DEVICE, batch_size=settings.EMBEDDING_BATCH_SIZE
        )
    raise ValueError(f"unknown embedding model {name!r}")


def model_dim(name: str) -> int:
    """The vector size of a model, without loading its weights."""
    if name == "features":
        from embeddings.features import DIM

        return DIM
    if name == "panns-cnn14":
        from embeddings import panns

        return panns.EMBEDDING_DIM
    raise ValueError(f"unknown embedding model {name!r}")


def warm_up() -> None:
    try:
        get_embedding_model()
    except Exception:
        # The task that needs the model reports the reason on the song; the worker stays up.
        logger.exception("embedding model failed to load at worker start")


def forget_loaded_models() -> None:
    """Drop cached models (tests switch settings between models)."""
    with _lock:
        _loaded.clear()
