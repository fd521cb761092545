"""`panns-cnn14-meanmax`: Cnn14's window embeddings pooled two ways, their mean and their maximum, concatenated
(4096-d) and L2-normalised. The mean says what a song sounds like overall; the maximum keeps what stands out in a
few windows only (a solo, a drop), which averaging washes out. The network, windows and tags are Cnn14's."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from embeddings.base import Analysis, EmbeddingError, FloatArray, l2_normalise
from embeddings.panns import PannsEmbedder, Windows

NAME = "panns-cnn14-meanmax"
# The PANNs model whose weights and windows this one uses.
BASE = "panns-cnn14"


class MeanMaxEmbedder:
    """Wraps a loaded Cnn14 embedder (sharing its weights) and pools its window embeddings as mean ‖ max."""

    name = NAME

    def __init__(self, inner: PannsEmbedder) -> None:
        self.inner = inner
        self.dim: int = 2 * inner.dim
        self.device: str = inner.device
        self._lock = threading.Lock()

    def embed(self, samples: FloatArray) -> FloatArray:
        return self._pooled([samples])[0]

    def analyse(self, samples: FloatArray) -> Analysis:
        return self.analyse_blocks([samples])

    def analyse_blocks(self, blocks: Iterable[FloatArray]) -> Analysis:
        vector, clipwise = self._pooled(block for block in blocks if np.size(block))
        return Analysis(vector=vector, tags=self.inner.tags_for(clipwise))

    def _pooled(self, blocks: Iterable[FloatArray]) -> tuple[FloatArray, FloatArray]:
        import torch

        inner = self.inner
        windows = Windows(window=inner.window_samples, hop=inner.hop_samples, min_samples=inner.variant.min_samples)
        total = np.zeros(inner.dim, dtype=np.float64)
        peak = np.full(inner.dim, -np.inf, dtype=np.float64)
        clipwise_total = np.zeros(inner.variant.classes_num, dtype=np.float64)
        batch: list[FloatArray] = []

        def run() -> None:
            nonlocal peak
            with self._lock, torch.inference_mode():
                embedding, clipwise = inner.forward(torch.from_numpy(np.stack(batch)).to(inner.device))
            values: Any = embedding.double().cpu().numpy()
            total[:] += values.sum(axis=0)
            peak = np.maximum(peak, values.max(axis=0))
            clipwise_total[:] += clipwise.double().sum(dim=0).cpu().numpy()
            batch.clear()

        for window in windows.of(_checked(block) for block in blocks):
            batch.append(window)
            if len(batch) == inner.batch_size:
                run()
        if batch:
            run()
        mean = total / windows.count
        # Each half is normalised first, so that neither outweighs the other in the dot product.
        vector = l2_normalise(np.concatenate([l2_normalise(mean), l2_normalise(peak)]))
        return vector, (clipwise_total / windows.count).astype(np.float32)


def _checked(samples: FloatArray) -> FloatArray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise EmbeddingError("PANNs models need mono audio (a 1-d array)")
    if not np.all(np.isfinite(audio)):
        raise EmbeddingError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio)
