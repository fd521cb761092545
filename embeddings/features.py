"""A weight-free embedding from classic music-information-retrieval features.

Each song becomes the mean and spread of timbre (log-mel, MFCC, spectral shape), harmony (chroma) and
rhythm (onset strength, tempo). Every dimension is standardised with statistics fitted on real music
(`bench/fit_features.py` writes them), each feature family is weighted equally, and the result is
L2-normalised so that a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import librosa
import numpy as np

from embeddings.base import SAMPLE_RATE, Analysis, EmbeddingError, FloatArray, l2_normalise

N_FFT = 2048
HOP = 1024
N_MELS = 64
N_MFCC = 20
CHUNK_FRAMES = 1875  # 60 s at 32 kHz with a 1024-sample hop
STATS_PATH = Path(__file__).resolve().parent / "data" / "feature_stats.npz"

# Feature families and their sizes, in the order they are concatenated.
BLOCKS: tuple[tuple[str, int], ...] = (
    ("log_mel", 2 * N_MELS),
    ("mfcc", 2 * N_MFCC),
    ("chroma", 2 * 12),
    ("contrast", 2 * 7),
    ("spectral", 2 * 6),
    ("rhythm", 4),
)
DIM = sum(size for _, size in BLOCKS)


def _mean_std(frames: np.ndarray) -> np.ndarray:
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)])


def _frame_features(samples: FloatArray) -> dict[str, np.ndarray]:
    """Per-frame features of one stretch of audio (rows are features, columns are frames)."""
    if samples.size < N_FFT:
        samples = np.pad(samples, (0, N_FFT - samples.size))
    spectrum = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel = librosa.feature.melspectrogram(S=spectrum, sr=SAMPLE_RATE, n_mels=N_MELS, fmax=14000)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    magnitude = np.sqrt(spectrum)
    return {
        "log_mel": log_mel,
        "mfcc": librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC),
        "chroma": librosa.feature.chroma_stft(S=spectrum, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP),
        "contrast": librosa.feature.spectral_contrast(S=magnitude, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP),
        "spectral": np.vstack(
            [
                np.log1p(librosa.feature.spectral_centroid(S=magnitude, sr=SAMPLE_RATE)),
                np.log1p(librosa.feature.spectral_bandwidth(S=magnitude, sr=SAMPLE_RATE)),
                np.log1p(librosa.feature.spectral_rolloff(S=magnitude, sr=SAMPLE_RATE)),
                np.log10(librosa.feature.spectral_flatness(S=magnitude) + 1e-10),
                librosa.feature.zero_crossing_rate(samples, frame_length=N_FFT, hop_length=HOP),
                librosa.amplitude_to_db(librosa.feature.rms(S=magnitude, frame_length=N_FFT), ref=1.0),
            ]
        ),
        "onset": librosa.onset.onset_strength(S=log_mel, sr=SAMPLE_RATE)[np.newaxis, :],
    }


def raw_features(samples: FloatArray) -> FloatArray:
    """The unstandardised feature vector of mono audio at SAMPLE_RATE."""
    return raw_features_of_blocks([samples])


def raw_features_of_blocks(blocks: Iterable[FloatArray]) -> FloatArray:
    """`raw_features` of the song the consecutive blocks make up, each minute analysed as soon as it has arrived."""
    # A minute at a time: the spectra of a whole 15-minute song would take most of a gigabyte.
    step = CHUNK_FRAMES * HOP
    chunks: list[dict[str, np.ndarray]] = []
    pending: list[FloatArray] = []
    held = 0
    for block in blocks:
        pending.append(np.asarray(block, dtype=np.float32))
        held += pending[-1].size
        if held >= step:
            buffer = np.concatenate(pending)
            whole = buffer.size - buffer.size % step
            chunks += [_frame_features(buffer[start : start + step]) for start in range(0, whole, step)]
            pending, held = [buffer[whole:]], buffer.size - whole
    if held or not chunks:
        chunks.append(_frame_features(np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)))
    return _summary(chunks)


def _summary(chunks: list[dict[str, np.ndarray]]) -> FloatArray:
    frames = {name: np.concatenate([chunk[name] for chunk in chunks], axis=1) for name in chunks[0]}
    onset = frames["onset"][0]
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP))[0])
    rhythm = np.array([onset.mean(), onset.std(), np.log1p(tempo), float(np.mean(onset > onset.mean() + onset.std()))])
    vector = np.concatenate(
        [_mean_std(frames[name]) for name in ("log_mel", "mfcc", "chroma", "contrast", "spectral")] + [rhythm]
    ).astype(np.float32)
    if vector.shape != (DIM,):
        raise AssertionError(f"feature layout drifted: {vector.shape} != ({DIM},)")
    return vector


def _load_stats() -> tuple[FloatArray, FloatArray]:
    with np.load(STATS_PATH) as stats:
        mean = stats["mean"].astype(np.float32)
        std = stats["std"].astype(np.float32)
    if mean.shape != (DIM,) or std.shape != (DIM,):
        raise EmbeddingError(f"{STATS_PATH} does not match the feature layout; rerun bench/fit_features.py")
    return mean, np.maximum(std, 1e-6)


def _block_weights() -> FloatArray:
    # Equal say for each family, however many dimensions it has.
    return np.concatenate([np.full(size, 1.0 / np.sqrt(size), dtype=np.float32) for _, size in BLOCKS])


class FeatureEmbedder:
    name = "features"
    dim = DIM
    device = "cpu"

    def __init__(self) -> None:
        self._mean, self._std = _load_stats()
        self._weights = _block_weights()

    def embed(self, samples: FloatArray) -> FloatArray:
        return self.analyse_blocks([samples]).vector

    def analyse(self, samples: FloatArray) -> Analysis:
        return self.analyse_blocks([samples])

    def analyse_blocks(self, blocks: Iterable[FloatArray]) -> Analysis:
        total = 0

        def checked() -> Iterator[FloatArray]:
            nonlocal total
            for block in blocks:
                if np.ndim(block) != 1:
                    raise EmbeddingError("expected mono audio as a 1-D array")
                total += np.size(block)
                yield block

        raw = raw_features_of_blocks(checked())
        if total == 0:
            raise EmbeddingError("expected non-empty mono audio")
        standardised = (raw - self._mean) / self._std
        return Analysis(vector=l2_normalise(standardised * self._weights))
