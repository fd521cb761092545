"""Synthetic "songs" for fingerprint tests: random melodies and chords with harmonics, plus a drum beat."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 32000


@lru_cache(maxsize=32)
def song(seed: int, seconds: float = 30.0, beat: float = 0.25) -> np.ndarray:
    """A reproducible piece: notes of random pitch and length (multiples of half a `beat`, in seconds) in three
    voices with decaying harmonics, and a drum hit on most beats."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    out = np.zeros(total + RATE, dtype=np.float64)
    for voice in range(3):
        at = 0
        while at < total:
            length = int(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]) * beat * RATE)
            if rng.random() < 0.85:  # else a rest
                midi = rng.integers(40 + 12 * voice, 64 + 12 * voice)
                f0 = 440.0 * 2 ** ((midi - 69) / 12)
                t = np.arange(length) / RATE
                wave = np.zeros(length)
                for k in range(1, 7):
                    if f0 * k < 3900:
                        wave += rng.uniform(0.4, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3))
                envelope = np.minimum(1.0, t / 0.01) * np.exp(-2.5 * t / (length / RATE))
                out[at : at + length] += wave * envelope * rng.uniform(0.5, 1.0)
            at += length
    step = int(beat * RATE)
    hit = int(0.04 * RATE)
    for start in range(0, total - hit, step):
        if rng.random() < 0.6:
            out[start : start + hit] += 0.3 * rng.standard_normal(hit) * np.exp(-np.linspace(0, 6, hit))
    out = out[:total]
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def excerpt(samples: np.ndarray, start: float, seconds: float) -> np.ndarray:
    first = round(start * RATE)
    return samples[first : first + round(seconds * RATE)].copy()


def white_noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def pink_noise(n: int, seed: int = 0) -> np.ndarray:
    from fingerprints.management.commands.evaluate_identify import pink_noise as pink

    return pink(n, np.random.default_rng(seed))
