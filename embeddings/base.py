"""The embedding model protocol shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Every model in the product consumes audio at this rate; the pipeline decodes once at it.
SAMPLE_RATE = 32000


class EmbeddingError(Exception):
    """The audio cannot be embedded (a property of the input, not a transient failure)."""


class ModelUnavailable(Exception):
    """The configured model cannot be loaded (missing weights, bad device); says how to fix it."""


@dataclass(frozen=True)
class Tag:
    """A sound class the model recognised in the song (e.g. an AudioSet label) and its probability."""

    label: str
    score: float


@dataclass(frozen=True)
class Analysis:
    vector: FloatArray
    tags: list[Tag] = field(default_factory=list)


class EmbeddingModel(Protocol):
    name: str
    dim: int
    device: str

    def embed(self, samples: FloatArray) -> FloatArray:
        """Embed mono float32 audio at SAMPLE_RATE into an L2-normalised float32 vector of `dim`."""
        ...

    def analyse(self, samples: FloatArray) -> Analysis:
        """The embedding plus the top tags, when the model has named classes (else no tags)."""
        ...

    def analyse_blocks(self, blocks: Iterable[FloatArray]) -> Analysis:
        """`analyse` of the song the consecutive blocks make up; a model may start before the last block arrives."""
        ...


def l2_normalise(vector: npt.NDArray[np.floating]) -> FloatArray:
    vector = np.asarray(vector, dtype=np.float32)
    if not np.all(np.isfinite(vector)):
        raise EmbeddingError("the embedding contains NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm < 1e-12:
        raise EmbeddingError("the embedding is all zeros; the audio carries no usable signal")
    return (vector / norm).astype(np.float32)
