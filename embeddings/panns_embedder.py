"""The PANNs embedder: a song's windows through the network, their embeddings and class probabilities averaged."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.base import SAMPLE_RATE, Analysis, EmbeddingError, FloatArray, Tag, l2_normalise
from embeddings.panns_batching import SharedBatches, Slot
from embeddings.panns_labels import top_tags
from embeddings.panns_networks import CNN14, PRECISIONS, PannsVariant
from embeddings.panns_windows import Windows, window_starts

if TYPE_CHECKING:
    import torch

# A network exported to another runtime: (batch, samples) float32 -> (embedding, clipwise) float32.
Runner = Callable[[FloatArray], tuple[FloatArray, FloatArray]]

# The networks were trained on 10 s AudioSet clips. Windows that do not overlap run the network over each second
# once: twice as fast as the former 5 s hop, and the song vectors keep >= 0.99 cosine to it (bench/windows.py).
WINDOW_SECONDS = 10.0
HOP_SECONDS = 10.0
MIN_SAMPLES = SAMPLE_RATE


class PannsEmbedder:
    """Embeds whole songs with an already-built PANNs network: the mean of its embedding over 10 s windows."""

    def __init__(
        self,
        model: torch.nn.Module | None,
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
        runner: Runner | None = None,
        share_batches: bool = False,
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
        # An exported network (EMBEDDING_RUNTIME=openvino) that runs the batches instead of torch.
        self._runner = runner
        self.runtime = "torch" if runner is None else "openvino"
        # Songs analysed at once on several threads fill shared batches (on a GPU; see panns_batching).
        self.shared: SharedBatches | None = SharedBatches(self.run_batch, batch_size) if share_batches else None
        # With a runner the torch weights are not needed after the export: dropping them saves their memory.
        self._model: Any = None
        if runner is None:
            if model is None:
                raise ValueError("a PANNs embedder needs a torch model or a runner")
            self._model = model.to(device).eval()
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

        windows = Windows(window=self.window_samples, hop=self.hop_samples, min_samples=self.variant.min_samples)
        embedding_sum = np.zeros(self.dim, dtype=np.float64)
        clipwise_sum = np.zeros(self.variant.classes_num, dtype=np.float64)
        batch: list[FloatArray] = []

        def run() -> None:
            # The lock is held per batch, not while waiting for the next decoded block.
            with self._lock:
                embedding, clipwise = self.run_batch(np.stack(batch))
            nonlocal embedding_sum, clipwise_sum
            embedding_sum += _summed(embedding, self.dim)
            clipwise_sum += _summed(clipwise, self.variant.classes_num)
            batch.clear()

        if self.shared is not None:
            embedding_sum, clipwise_sum = self._pooled_shared(windows.of(blocks), self.shared)
        else:
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

    def _pooled_shared(
        self, windows: Iterable[FloatArray], shared: SharedBatches
    ) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
        embedding_sum = np.zeros(self.dim, dtype=np.float64)
        clipwise_sum = np.zeros(self.variant.classes_num, dtype=np.float64)
        waiting: deque[Slot] = deque()

        def take_oldest() -> None:
            embedding, clipwise = shared.result(waiting.popleft())
            embedding_sum[:] += embedding
            clipwise_sum[:] += clipwise

        for window in windows:
            waiting.append(shared.submit(window))
            # A bounded number of this song's windows waits for the device, so a long song never queues whole.
            while len(waiting) > 2 * self.batch_size:
                take_oldest()
        while waiting:
            take_oldest()
        return embedding_sum, clipwise_sum

    def run_batch(self, waveforms: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(batch, samples) float32 -> float32 embeddings and clipwise probabilities, as numpy arrays."""
        if self._runner is not None:
            return self._runner(waveforms)
        import torch

        with torch.inference_mode():
            self._model.eval()
            embedding, clipwise = self.forward(torch.from_numpy(waveforms).to(self.device))
        return embedding.cpu().numpy(), clipwise.cpu().numpy()

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


def _summed(batch_output: FloatArray, width: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    if batch_output.ndim != 2 or batch_output.shape[1] != width:
        raise RuntimeError(f"the network returned shape {tuple(batch_output.shape)}, expected (batch, {width})")
    # Summing in float64 keeps the mean over hundreds of windows free of float32 rounding drift.
    summed: np.ndarray[Any, np.dtype[np.float64]] = batch_output.astype(np.float64).sum(axis=0)
    return summed
