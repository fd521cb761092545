"""Synthesised audio for tests: tones, chords, noise and percussion with known structure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from mutagen.easyid3 import EasyID3

RATE = 32000


def _time(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.arange(int(seconds * rate)) / rate


def tone(freq: float, seconds: float = 3.0, *, harmonics: int = 1, rate: int = RATE) -> np.ndarray:
    t = _time(seconds, rate)
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))
    return (0.3 * wave / np.max(np.abs(wave))).astype(np.float32)


def chord(freqs: Sequence[float], seconds: float = 3.0, *, harmonics: int = 4, rate: int = RATE) -> np.ndarray:
    mix = sum(tone(f, seconds, harmonics=harmonics, rate=rate) for f in freqs)
    return (0.3 * mix / np.max(np.abs(mix))).astype(np.float32)


def noise_bursts(seconds: float = 3.0, *, bpm: float = 120, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Percussive clicks of filtered noise on a beat grid."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), dtype=np.float32)
    step = int(rate * 60 / bpm)
    burst = int(0.05 * rate)
    envelope = np.exp(-np.linspace(0, 8, burst))
    for start in range(0, out.size - burst, step):
        out[start : start + burst] += (rng.standard_normal(burst) * envelope).astype(np.float32)
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def write(path: Path, samples: np.ndarray, *, rate: int = RATE, fmt: str | None = None, **tags: str) -> Path:
    """Write audio (MP3 when the suffix says so) and optional ID3 tags (title, artist, album)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, format=fmt or path.suffix.lstrip(".").upper())
    if tags and path.suffix.lower() == ".mp3":
        id3 = EasyID3()
        for key, value in tags.items():
            id3[key] = value
        id3.save(path)
    return path
