"""PANNs (AudioSet-trained) song embeddings: Cnn14 (2048-d) or Cnn10 (512-d), averaged over the whole song.

Each song is cut into 10 s windows every 5 s; the network's embedding and its 527 AudioSet class
probabilities are averaged over the windows. The mean probabilities become the song's sound tags
when a label file names the classes. Weights are read from a local checkpoint; nothing here downloads
(`panns_download`, run by `python manage.py fetch_model`, does). The network code is in
`panns_networks`, the label file handling in `panns_labels`; this module re-exports what callers use.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.base import SAMPLE_RATE, Analysis, EmbeddingError, FloatArray, ModelUnavailable, Tag, l2_normalise
from embeddings.panns_download import fetch_checkpoint, fetch_labels
from embeddings.panns_labels import LABELS_FILE_NAME, LABELS_URL, LabelFileError, read_labels, top_tags
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

if TYPE_CHECKING:
    import torch

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
    "fetch_checkpoint",
    "fetch_labels",
    "get_variant",
    "load_cnn10_class",
    "load_cnn14_class",
    "load_panns",
    "read_labels",
    "resolve_device",
    "resolve_precision",
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

# The networks were trained on 10 s AudioSet clips; half-overlapping windows cover a whole song evenly.
WINDOW_SECONDS = 10.0
HOP_SECONDS = 5.0
MIN_SAMPLES = SAMPLE_RATE

# Reasons for "no tags" already logged, so that each is logged once per process.
_told: set[str] = set()


def window_starts(num_samples: int, *, window: int, hop: int) -> list[int]:
    """Start offsets of `window`-long windows every `hop` samples, the last one ending at the end."""
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


class Windows:
    """Cuts samples that arrive block by block into exactly the windows `window_starts` gives for the whole song.

    Only the samples a later window may still need are kept, so a long song never sits here whole.
    """

    def __init__(self, *, window: int, hop: int, min_samples: int) -> None:
        self.window, self.hop, self.min_samples = window, hop, min_samples
        self.count = 0
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # song position of _buffer[0]
        self._total = 0
        self._next = 0  # start of the next hop-aligned window
        self._last = -1  # start of the last window handed out

    def feed(self, block: FloatArray) -> list[FloatArray]:
        self._buffer = np.concatenate([self._buffer, np.asarray(block, dtype=np.float32)])
        self._total += block.size
        out: list[FloatArray] = []
        while self._next + self.window <= self._total:
            out.append(self._cut(self._next, self.window))
            self._next += self.hop
        # The closing window ends at the song's end, so it may reach back up to one window from here.
        keep_from = max(self._offset, min(self._next, self._total - self.window))
        self._buffer = self._buffer[keep_from - self._offset :]
        self._offset = keep_from
        return out

    def of(self, blocks: Iterable[FloatArray]) -> Iterator[FloatArray]:
        """Every window of the song the blocks make up, each as soon as its samples have arrived."""
        for block in blocks:
            yield from self.feed(block)
        yield from self.finish()

    def finish(self) -> list[FloatArray]:
        """The windows left once the song has ended: the one ending at the end, or the whole (padded) clip."""
        if self._total == 0:
            raise EmbeddingError("the audio is empty")
        if self._total < self.min_samples:
            self._buffer = np.pad(self._buffer, (0, self.min_samples - self._total))
            self._total = self.min_samples
        length = min(self._total, self.window)
        starts = window_starts(self._total, window=self.window, hop=self.hop)
        return [self._cut(start, length) for start in starts if start > self._last]

    def _cut(self, start: int, length: int) -> FloatArray:
        self._last = start
        self.count += 1
        return self._buffer[start - self._offset : start - self._offset + length]


class PannsEmbedder:
    """Embeds whole songs with an already-built PANNs network: the mean of its embedding over 10 s windows."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        variant: PannsVariant = CNN14,
        device: str = "cpu",
        precision: str = "float32",
        batch_size: int = 8,
        window_seconds: float = WINDOW_SECONDS,
        hop_seconds: float = HOP_SECONDS,
        labels: Sequence[str] | None = None,
        max_tags: int = 5,
        tag_min_score: float = 0.05,
    ) -> None:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if labels is not None and len(labels) != variant.classes_num:
            raise ValueError(f"{len(labels)} labels for a network with {variant.classes_num} classes")
        self.variant = variant
        self.name: str = variant.name
        self.dim: int = variant.dim
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.window_samples = round(window_seconds * SAMPLE_RATE)
        self.hop_samples = round(hop_seconds * SAMPLE_RATE)
        if self.window_samples < variant.min_samples or self.hop_samples < 1:
            raise ValueError("windows must be at least 1 s long and the hop positive")
        self.labels: list[str] | None = list(labels) if labels is not None else None
        self.max_tags = max_tags
        self.tag_min_score = tag_min_score
        self._dtype: torch.dtype = getattr(torch, precision)
        self._model = model.to(device)
        self._model.eval()
        # One inference at a time: bounds GPU memory and keeps `last_clipwise` consistent.
        self._lock = threading.Lock()
        self.last_clipwise: FloatArray | None = None

    def window_count(self, num_samples: int) -> int:
        """How many windows a clip of `num_samples` is split into."""
        length = max(num_samples, self.variant.min_samples)
        return len(window_starts(length, window=self.window_samples, hop=self.hop_samples))

    def embed(self, samples: FloatArray) -> FloatArray:
        vector, _ = self.embed_with_tags(samples)
        return vector

    def analyse(self, samples: FloatArray) -> Analysis:
        """The embedding and the song's most probable AudioSet classes (none without a label file)."""
        vector, clipwise = self.embed_with_tags(samples)
        return Analysis(vector=vector, tags=self.tags_for(clipwise))

    def tags_for(self, clipwise: FloatArray) -> list[Tag]:
        if self.labels is None:
            return []
        return top_tags(clipwise, self.labels, limit=self.max_tags, min_score=self.tag_min_score)

    def analyse_blocks(self, blocks: Iterable[FloatArray]) -> Analysis:
        """`analyse` on a song that arrives in consecutive blocks: windows run through the model as they fill."""
        vector, clipwise = self._pooled(_validated(block) for block in blocks if np.size(block))
        return Analysis(vector=vector, tags=self.tags_for(clipwise))

    def embed_with_tags(self, samples: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The unit embedding and the mean AudioSet (527-class) probabilities over the song's windows."""
        return self._pooled([_validated(samples)])

    def _pooled(self, blocks: Iterable[FloatArray]) -> tuple[FloatArray, FloatArray]:
        import torch

        windows = Windows(window=self.window_samples, hop=self.hop_samples, min_samples=self.variant.min_samples)
        embedding_sum = np.zeros(self.dim, dtype=np.float64)
        clipwise_sum = np.zeros(self.variant.classes_num, dtype=np.float64)
        batch: list[FloatArray] = []

        def run() -> None:
            # The lock is held per batch, not while waiting for the next decoded block.
            with self._lock, torch.inference_mode():
                self._model.eval()
                embedding, clipwise = self.forward(torch.from_numpy(np.stack(batch)).to(self.device))
            nonlocal embedding_sum, clipwise_sum
            embedding_sum += _summed(embedding, self.dim)
            clipwise_sum += _summed(clipwise, self.variant.classes_num)
            batch.clear()

        for window in windows.of(blocks):
            batch.append(window)
            if len(batch) == self.batch_size:
                run()
        if batch:
            run()
        vector = l2_normalise(embedding_sum / windows.count)
        clipwise_mean = (clipwise_sum / windows.count).astype(np.float32)
        with self._lock:
            self.last_clipwise = clipwise_mean
        return vector, clipwise_mean

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) -> float32 embeddings and clipwise probabilities, in eval mode.

        The same computation as the network's own forward, but with the log-mel front end always in
        float32 (a log of small powers loses too much in 16 bits) and only the conv stack and the
        head under autocast when the precision is float16 or bfloat16.
        """
        import torch
        import torch.nn.functional as F

        # The layers are attributes of modules the type checker cannot see into.
        model: Any = self._model
        x = model.logmel_extractor(model.spectrogram_extractor(waveforms))
        x = model.bn0(x.transpose(1, 3)).transpose(1, 3)
        with self._autocast():
            for number, pool in enumerate(self.variant.pools, start=1):
                x = getattr(model, f"conv_block{number}")(x, pool_size=pool, pool_type="avg")
            x = torch.mean(x, dim=3)
            x = torch.amax(x, dim=2) + torch.mean(x, dim=2)
            embedding = F.relu(model.fc1(x))
            clipwise = torch.sigmoid(model.fc_audioset(embedding))
        return embedding.float(), clipwise.float()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self._dtype)


def _validated(samples: FloatArray) -> FloatArray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise EmbeddingError(f"expected mono audio as a 1-D array, got shape {audio.shape}")
    if audio.size == 0:
        raise EmbeddingError("the audio is empty")
    if not np.all(np.isfinite(audio)):
        raise EmbeddingError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio)


def _summed(batch_output: torch.Tensor, width: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    if batch_output.ndim != 2 or batch_output.shape[1] != width:
        raise RuntimeError(f"the network returned shape {tuple(batch_output.shape)}, expected (batch, {width})")
    # Summing in float64 keeps the mean over hundreds of windows free of float32 rounding drift.
    summed: np.ndarray[Any, np.dtype[np.float64]] = batch_output.double().sum(dim=0).cpu().numpy()
    return summed


# --- Loading ---------------------------------------------------------------------------------------


def load_panns(
    checkpoint: Path,
    *,
    device: str,
    batch_size: int,
    variant: str | PannsVariant = CNN14,
    precision: str = "auto",
    labels: Path | None = None,
    max_tags: int = 5,
    tag_min_score: float = 0.05,
) -> PannsEmbedder:
    """A ready embedder from a local checkpoint of `variant`; never downloads.

    `labels` is the AudioSet label CSV (default: class_labels_indices.csv beside the checkpoint);
    without a valid one the embedder gives no tags.
    """
    import torch

    spec = get_variant(variant) if isinstance(variant, str) else variant
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelUnavailable(f"the PANNs checkpoint {checkpoint} does not exist; {spec.fix_hint}")
    resolved_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, resolved_device)
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
    embedder = PannsEmbedder(
        model,
        variant=spec,
        device=resolved_device,
        precision=resolved_precision,
        batch_size=batch_size,
        labels=_labels_or_none(labels or checkpoint.parent / LABELS_FILE_NAME, spec),
        max_tags=max_tags,
        tag_min_score=tag_min_score,
    )
    _try_once(embedder)
    return embedder


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
    import torch

    try:
        with torch.inference_mode():
            embedder.forward(torch.zeros(1, embedder.variant.min_samples, device=embedder.device))
    except (RuntimeError, NotImplementedError) as exc:
        raise ModelUnavailable(
            f"{embedder.name} cannot run in {embedder.precision} on {embedder.device} ({first_line(exc)}); "
            "set EMBEDDING_PRECISION=float32 or auto, or another EMBEDDING_DEVICE"
        ) from exc
