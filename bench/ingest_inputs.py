"""Inputs for bench/ingest.py, prepared in a child process so that their memory does not count in the peak RSS."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_synthetic(folder: str, count: int, seconds: float) -> None:
    """MP3s at 44.1 kHz stereo, like most real files: chords, a beat and noise that change every few seconds."""
    import soundfile as sf

    rate = 44100
    for number in range(count):
        rng = np.random.default_rng(number)
        t = np.arange(int(seconds * rate)) / rate
        root = rng.uniform(80, 300)
        mix = sum(np.sin(2 * np.pi * root * ratio * t + rng.uniform(0, 6)) for ratio in (1, 1.25, 1.5, 2))
        beat = np.exp(-20 * ((t * rng.uniform(1.5, 2.5)) % 1.0)) * rng.standard_normal(t.size)
        swell = 0.6 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(5, 20))
        mono = 0.15 * mix * swell + 0.2 * beat
        stereo = np.stack([mono, np.roll(mono, 200)], axis=1) / np.max(np.abs(mono)) * 0.8
        sf.write(Path(folder) / f"synthetic-{number:03d}.mp3", stereo.astype(np.float32), rate, format="MP3")


def write_random_checkpoint(name: str, path: str) -> None:
    import torch

    from embeddings import panns

    torch.manual_seed(0)
    torch.save({"model": panns.get_variant(name).build().state_dict()}, path)


def in_child(target: Callable[..., None], *args: object) -> None:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"preparing the inputs failed (exit code {process.exitcode})")
