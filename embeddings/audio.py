"""Decoding audio files into mono float32 samples at the models' rate."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr

from embeddings.base import SAMPLE_RATE, EmbeddingError, FloatArray

# Below this peak amplitude (about -80 dBFS) a file is treated as silence.
SILENCE_PEAK = 1e-4
BLOCK_SECONDS = 10


@dataclass(frozen=True)
class DecodedAudio:
    samples: FloatArray
    sample_rate: int
    truncated: bool

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


def _stream(path: Path, max_seconds: float) -> FloatArray:
    """Decode block by block, mixing to mono and resampling as it goes, so memory stays near the output size."""
    with sf.SoundFile(path) as source:
        rate = source.samplerate
        wanted = math.ceil(max_seconds * rate)
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
        pieces: list[FloatArray] = []
        read = 0
        for block in source.blocks(blocksize=BLOCK_SECONDS * rate, dtype="float32", always_2d=True):
            block = block[: wanted - read]
            read += len(block)
            mono = block.mean(axis=1, dtype=np.float32)
            last = read >= wanted
            pieces.append(resampler.resample_chunk(mono, last=last) if resampler else mono)
            if last:
                break
        else:
            if resampler is not None:
                pieces.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def decode(path: Path, *, max_seconds: float, min_seconds: float) -> DecodedAudio:
    """Decode at most `max_seconds` of `path`; raise EmbeddingError with a reason a person can act on."""
    try:
        try:
            samples = _stream(path, max_seconds + 1.0 / SAMPLE_RATE)
        except (sf.LibsndfileError, RuntimeError):
            with warnings.catch_warnings():
                # librosa warns when it falls back to audioread (ffmpeg) for formats libsndfile lacks.
                warnings.simplefilter("ignore")
                samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True, duration=max_seconds + 1.0 / SAMPLE_RATE)
    except librosa.util.exceptions.ParameterError as exc:
        if "finite" in str(exc):
            raise EmbeddingError("the audio contains NaN or infinite samples") from exc
        raise EmbeddingError(f"the file could not be decoded as audio ({exc})") from exc
    except Exception as exc:  # decoders raise many unrelated types for the same problem: bad bytes
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else "no decoder recognised the format"
        raise EmbeddingError(f"the file could not be decoded as audio ({detail})") from exc
    samples = np.asarray(samples, dtype=np.float32)
    max_samples = int(max_seconds * SAMPLE_RATE)
    truncated = samples.size > max_samples
    samples = samples[:max_samples]
    if samples.size == 0:
        raise EmbeddingError("the file contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise EmbeddingError("the audio contains NaN or infinite samples")
    seconds = samples.size / SAMPLE_RATE
    if seconds < min_seconds:
        raise EmbeddingError(f"the audio is {seconds:.2f} s long; at least {min_seconds:g} s is needed")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise EmbeddingError("the audio is silent")
    return DecodedAudio(samples=samples, sample_rate=SAMPLE_RATE, truncated=truncated)
