"""PANNs (AudioSet-trained) song embeddings: Cnn14 (2048-d) or Cnn10 (512-d), averaged over the whole song.

Each song is cut into back-to-back 10 s windows (the last one ending at the song's end); the network's
embedding and its 527 AudioSet class probabilities are averaged over the windows. The mean probabilities
become the song's sound tags when a label file names the classes. Weights are read from a local checkpoint;
nothing here downloads (`panns_download`, run by `python manage.py fetch_model`, does). This module loads;
the embedder is in `panns_embedder`, the networks in `panns_networks`, the windows in `panns_windows`, the
label file handling in `panns_labels`, the exported runtime in `panns_export`; callers import from here.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.base import ModelUnavailable
from embeddings.panns_download import fetch_checkpoint, fetch_labels
from embeddings.panns_embedder import PannsEmbedder
from embeddings.panns_export import RUNTIMES
from embeddings.panns_labels import LABELS_FILE_NAME, LABELS_URL, LabelFileError, read_labels
from embeddings.panns_networks import (
    CLASSES_NUM,
    CNN10,
    CNN14,
    PRECISIONS,
    VARIANTS,
    PannsVariant,
    build_cnn10,
    build_cnn14,
    first_line,
    get_variant,
    load_cnn10_class,
    load_cnn14_class,
    resolve_device,
    resolve_precision,
)
from embeddings.panns_windows import Windows, window_starts

if TYPE_CHECKING:
    pass


__all__ = [
    "CHECKPOINT_FILE_NAME",
    "CHECKPOINT_MD5",
    "CHECKPOINT_MIN_BYTES",
    "CHECKPOINT_URL",
    "CLASSES_NUM",
    "CNN10",
    "CNN14",
    "EMBEDDING_DIM",
    "LABELS_FILE_NAME",
    "LABELS_URL",
    "MODEL_NAME",
    "PRECISIONS",
    "VARIANTS",
    "LabelFileError",
    "PannsEmbedder",
    "PannsVariant",
    "Windows",
    "build_cnn10",
    "build_cnn14",
    "default_batch_size",
    "fetch_checkpoint",
    "fetch_labels",
    "get_variant",
    "load_cnn10_class",
    "load_cnn14_class",
    "load_panns",
    "read_labels",
    "resolve_device",
    "resolve_precision",
    "resolve_runtime",
    "window_starts",
]

logger = logging.getLogger(__name__)

# Cnn14's names, kept for callers written before there were several variants.
MODEL_NAME = CNN14.name
EMBEDDING_DIM = CNN14.dim
CHECKPOINT_FILE_NAME = CNN14.checkpoint_file_name
CHECKPOINT_URL = CNN14.url
CHECKPOINT_MD5 = CNN14.md5
CHECKPOINT_MIN_BYTES = CNN14.min_bytes


# Reasons for "no tags" already logged, so that each is logged once per process.
_told: set[str] = set()


# --- Loading ---------------------------------------------------------------------------------------


def load_panns(
    checkpoint: Path,
    *,
    device: str,
    batch_size: int = 0,
    variant: str | PannsVariant = CNN14,
    precision: str = "auto",
    labels: Path | None = None,
    max_tags: int = 5,
    tag_min_score: float = 0.05,
    runtime: str = "torch",
    threads: int | None = None,
) -> PannsEmbedder:
    """A ready embedder from a local checkpoint of `variant`; never downloads.

    `labels` is the AudioSet label CSV (default: class_labels_indices.csv beside the checkpoint);
    without a valid one the embedder gives no tags. `runtime="openvino"` runs the network exported to ONNX
    (cached beside the checkpoint, see panns_export) with OpenVINO on the CPU, with `threads` threads.
    """
    import torch

    spec = get_variant(variant) if isinstance(variant, str) else variant
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelUnavailable(f"the PANNs checkpoint {checkpoint} does not exist; {spec.fix_hint}")
    resolved_device = resolve_device(device)
    batch_size = batch_size or default_batch_size(resolved_device)
    runtime = resolve_runtime(runtime, resolved_device)
    resolved_precision = _runtime_precision(runtime, precision, resolved_device)
    try:
        # weights_only: a checkpoint is data and must not be able to run code while unpickling.
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} could not be read ({first_line(exc)}); it is damaged or not a "
            f"PyTorch checkpoint. Delete it and {spec.fix_hint}"
        ) from exc
    weights = state.get("model") if isinstance(state, Mapping) else None
    if not isinstance(weights, Mapping):
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} has no 'model' weights; it is not {spec.checkpoint_file_name}. "
            f"Delete it and {spec.fix_hint}"
        )
    _refuse_another_variant(checkpoint, weights, spec)
    model = spec.build()
    try:
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} does not fit the {spec.network} network ({first_line(exc)}); "
            f"it is not {spec.checkpoint_file_name}. Delete it and {spec.fix_hint}"
        ) from exc
    del state, weights
    runner = None
    network: torch.nn.Module | None = model
    del model
    if runtime == "openvino":
        from embeddings.cpu import current_threads
        from embeddings.panns_export import openvino_runner

        # The torch weights only served to check the checkpoint: freed before OpenVINO compiles its own copy.
        network = None
        runner = openvino_runner(
            checkpoint, spec.name, threads=threads or current_threads(), precision=resolved_precision
        )
    embedder = PannsEmbedder(
        network,
        variant=spec,
        device=resolved_device,
        precision=resolved_precision,
        batch_size=batch_size,
        labels=_labels_or_none(labels or checkpoint.parent / LABELS_FILE_NAME, spec),
        max_tags=max_tags,
        tag_min_score=tag_min_score,
        runner=runner,
        share_batches=resolved_device.startswith("cuda"),
    )
    _try_once(embedder)
    return embedder


def default_batch_size(device: str) -> int:
    """Windows per forward pass when EMBEDDING_BATCH_SIZE is 0: two on a CPU, which run fastest and lightest there
    (bench/ingest.py --batch-size 1/2/4/8, OpenVINO bfloat16: 59.7x, 66.4x, 55.1x, 58.9x realtime), eight on a GPU."""
    return 8 if device.startswith("cuda") else 2


def resolve_runtime(setting: str, device: str) -> str:
    """Turn EMBEDDING_RUNTIME (`auto` or a runtime's name) into the runtime that runs the network on `device`.

    `auto`: OpenVINO on a CPU, where it runs Cnn14 1.5-1.6 times as fast as torch (bench/runtimes.py), when the
    package is installed; torch on a GPU.
    """
    value = setting.strip().lower()
    if value != "auto":
        return value
    if device != "cpu" or importlib.util.find_spec("openvino") is None:
        return "torch"
    return "openvino"


def _runtime_precision(runtime: str, precision: str, device: str) -> str:
    if runtime not in RUNTIMES:
        raise ModelUnavailable(f"EMBEDDING_RUNTIME={runtime!r} is not a runtime; use auto, {' or '.join(RUNTIMES)}")
    if runtime != "torch" and device != "cpu":
        raise ModelUnavailable(f"EMBEDDING_RUNTIME={runtime} runs on a CPU: set EMBEDDING_DEVICE=cpu or runtime torch")
    return resolve_precision(precision, device)


def _refuse_another_variant(checkpoint: Path, weights: Mapping[str, Any], spec: PannsVariant) -> None:
    if spec.fits(weights):
        return
    for other in VARIANTS.values():
        if other is not spec and other.fits(weights):
            raise ModelUnavailable(
                f"the PANNs checkpoint {checkpoint} holds {other.network} weights ({other.checkpoint_file_name}), "
                f"not the {spec.network} network that EMBEDDING_MODEL={spec.name} needs; set "
                f"EMBEDDING_MODEL={other.name}, or {spec.fix_hint}"
            )


def _labels_or_none(path: Path, spec: PannsVariant) -> list[str] | None:
    try:
        return read_labels(path, classes_num=spec.classes_num)
    except LabelFileError as exc:
        reason = f"{spec.name} songs get no sound tags: {exc} (run `python manage.py fetch_model` or set PANNS_LABELS)"
        if reason not in _told:
            _told.add(reason)
            logger.info("%s", reason)
        return None


def _try_once(embedder: PannsEmbedder) -> None:
    """Run one short clip, so that an unusable device or precision fails at load, not on the first song."""
    try:
        embedder.run_batch(np.zeros((1, embedder.variant.min_samples), dtype=np.float32))
    except (RuntimeError, NotImplementedError) as exc:
        raise ModelUnavailable(
            f"{embedder.name} cannot run in {embedder.precision} on {embedder.device} ({first_line(exc)}); "
            "set EMBEDDING_PRECISION=float32 or auto, or another EMBEDDING_DEVICE"
        ) from exc
