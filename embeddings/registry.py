"""`get_embedding_model()`: the one place that knows which embedding backends exist."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from django.conf import settings

from embeddings.base import EmbeddingModel
from embeddings.panns_networks import VARIANTS

logger = logging.getLogger(__name__)

FEATURES = "features"
# The PANNs models, most accurate first; `auto` picks the first when its checkpoint is on disk.
PANNS_MODELS = tuple(VARIANTS)
DEFAULT_PANNS_MODEL = PANNS_MODELS[0]
# Cnn14's windows pooled as mean and max (4096-d), on Cnn14's weights; `auto` never picks it.
MEANMAX = "panns-cnn14-meanmax"
MEANMAX_BASE = DEFAULT_PANNS_MODEL

_lock = threading.Lock()
_loaded: dict[str, EmbeddingModel] = {}


def available_models() -> list[str]:
    """Every model name `get_embedding_model` and `model_dim` accept (EMBEDDING_MODEL also takes `auto`)."""
    return [*PANNS_MODELS, MEANMAX, FEATURES]


def configured_panns_model() -> str:
    """The PANNs model that EMBEDDING_MODEL names (its weights' model for meanmax), or panns-cnn14 when it names
    `auto` or `features`."""
    configured: str = settings.EMBEDDING_MODEL
    return configured if configured in PANNS_MODELS else DEFAULT_PANNS_MODEL


def panns_checkpoint_path(name: str | None = None) -> Path:
    """Where the checkpoint of PANNs model `name` (default: the configured one) is expected.

    PANNS_CHECKPOINT applies to the configured PANNs model only; any other reads PANNS_DATA_DIR/<its file>.
    """
    from embeddings import panns

    name = MEANMAX_BASE if name == MEANMAX else name or configured_panns_model()
    variant = panns.get_variant(name)
    override: Path | None = settings.PANNS_CHECKPOINT
    if override is not None and name == configured_panns_model():
        return override
    data_dir: Path = settings.PANNS_DATA_DIR
    return data_dir / variant.checkpoint_file_name


def panns_labels_path(name: str | None = None) -> Path:
    """The AudioSet label CSV: PANNS_LABELS, else class_labels_indices.csv beside the model's checkpoint."""
    from embeddings import panns

    configured: Path | None = settings.PANNS_LABELS
    return configured or panns_checkpoint_path(name).parent / panns.LABELS_FILE_NAME


def active_model_name() -> str:
    """The configured model; `auto` means panns-cnn14 when its checkpoint is on disk, else `features`."""
    configured: str = settings.EMBEDDING_MODEL
    if configured != "auto":
        return configured
    return DEFAULT_PANNS_MODEL if panns_checkpoint_path(DEFAULT_PANNS_MODEL).is_file() else FEATURES


def get_embedding_model(name: str | None = None) -> EmbeddingModel:
    """The model, loaded once per process and reused by every task."""
    name = name or active_model_name()
    if name not in available_models():
        raise ValueError(f"unknown embedding model {name!r}; use one of {', '.join(available_models())}")
    with _lock:
        model = _loaded.get(name)
        if model is None:
            model = _load(name)
            _loaded[name] = model
            logger.info("embedding model %s loaded on %s (%d-d)", model.name, model.device, model.dim)
        return model


def _load(name: str) -> EmbeddingModel:
    if name == FEATURES:
        from embeddings.features import FeatureEmbedder

        return FeatureEmbedder()
    if name == MEANMAX:
        from embeddings.panns import PannsEmbedder
        from embeddings.panns_meanmax import MeanMaxEmbedder

        # One copy of Cnn14's weights per process, whichever of the two pooled views asks first.
        inner = _loaded.get(MEANMAX_BASE) or _load(MEANMAX_BASE)
        _loaded[MEANMAX_BASE] = inner
        assert isinstance(inner, PannsEmbedder)
        return MeanMaxEmbedder(inner)
    from embeddings import panns

    return panns.load_panns(
        panns_checkpoint_path(name),
        variant=name,
        device=settings.EMBEDDING_DEVICE,
        precision=settings.EMBEDDING_PRECISION,
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        labels=panns_labels_path(name),
        max_tags=settings.PANNS_TOP_TAGS,
        tag_min_score=settings.PANNS_TAG_MIN_SCORE,
        runtime=settings.EMBEDDING_RUNTIME,
    )


def model_dim(name: str) -> int:
    """The vector size of a model, without loading its weights."""
    if name == FEATURES:
        from embeddings.features import DIM

        return DIM
    if name in PANNS_MODELS:
        from embeddings import panns

        return panns.get_variant(name).dim
    if name == MEANMAX:
        return 2 * model_dim(MEANMAX_BASE)
    raise ValueError(f"unknown embedding model {name!r}; use one of {', '.join(available_models())}")


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
