"""Decoding audio files into mono float32 samples at the models' rate.

`decode()` returns the whole song; `decode_in_background()` decodes on a thread and hands out blocks as they are
ready, so a model can embed the start of a song while the rest is still being decoded.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
# Decoded blocks the background decoder may run ahead of the model (10 s each, 1.3 MB at 32 kHz).
AHEAD_BLOCKS = 6


@dataclass(frozen=True)
class DecodedAudio:
    samples: FloatArray
    sample_rate: int
    truncated: bool

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


def _stream(path: Path) -> Iterator[FloatArray]:
    """Decode block by block, mixing to mono and resampling as it goes, so memory stays near the output size."""
    with sf.SoundFile(path) as source:
        rate = source.samplerate
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
        for block in source.blocks(blocksize=BLOCK_SECONDS * rate, dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float32)
            yield resampler.resample_chunk(mono, last=False) if resampler else mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _fallback(path: Path, seconds: float) -> FloatArray:
    with warnings.catch_warnings():
        # librosa warns when it falls back to audioread (ffmpeg) for formats libsndfile lacks.
        warnings.simplefilter("ignore")
        samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True, duration=seconds)
    return np.asarray(samples, dtype=np.float32)


def _blocks(path: Path, max_samples: int) -> Iterator[FloatArray]:
    """The file's samples at SAMPLE_RATE in blocks, one sample past `max_samples` at most (that one says "cut")."""
    wanted = max_samples + 1
    sent = 0
    try:
        try:
            for block in _stream(path):
                block = block[: wanted - sent]
                if block.size:
                    sent += block.size
                    yield block
                if sent >= wanted:
                    return
        except (sf.LibsndfileError, RuntimeError):
            # libsndfile lacks the format (or gave up mid-file): decode it all with librosa, skipping what was sent.
            rest = _fallback(path, wanted / SAMPLE_RATE)[sent:wanted]
            if rest.size:
                yield rest
    except librosa.util.exceptions.ParameterError as exc:
        if "finite" in str(exc):
            raise EmbeddingError("the audio contains NaN or infinite samples") from exc
        raise EmbeddingError(f"the file could not be decoded as audio ({exc})") from exc
    except Exception as exc:  # decoders raise many unrelated types for the same problem: bad bytes
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else "no decoder recognised the format"
        raise EmbeddingError(f"the file could not be decoded as audio ({detail})") from exc


def _checked(samples: FloatArray, *, max_samples: int, min_seconds: float) -> DecodedAudio:
    """The decoded song cut to `max_samples`, or EmbeddingError with a reason a person can act on."""
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


def _joined(pieces: list[FloatArray]) -> FloatArray:
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def decode(path: Path, *, max_seconds: float, min_seconds: float) -> DecodedAudio:
    """Decode at most `max_seconds` of `path`; raise EmbeddingError with a reason a person can act on."""
    max_samples = int(max_seconds * SAMPLE_RATE)
    return _checked(_joined(list(_blocks(path, max_samples))), max_samples=max_samples, min_seconds=min_seconds)


_DONE = object()


class BackgroundDecode:
    """A decode running on its own thread; `blocks()` yields samples as they come, `result()` the checked song."""

    def __init__(self, path: Path, *, max_seconds: float, min_seconds: float, ahead: int = AHEAD_BLOCKS) -> None:
        self._max_samples = int(max_seconds * SAMPLE_RATE)
        self._min_seconds = min_seconds
        self._pieces: list[FloatArray] = []
        self._error: EmbeddingError | None = None
        self._handoff: queue.Queue[object] = queue.Queue(maxsize=ahead)
        self._stopped = threading.Event()
        self._finished = threading.Event()
        self._drained = False
        self._result: DecodedAudio | EmbeddingError | None = None
        self._started = time.perf_counter()
        self.seconds_spent = 0.0
        self._thread = threading.Thread(target=self._run, args=(path,), name="decode", daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        sent = 0
        try:
            for block in _blocks(path, self._max_samples):
                self._pieces.append(block)
                # Never hand the model samples past the cap; the extra one only tells result() the song was cut.
                usable = block[: max(0, self._max_samples - sent)]
                sent += block.size
                if usable.size and not self._put(usable):
                    return
        except EmbeddingError as exc:
            self._error = exc
        finally:
            self.seconds_spent = time.perf_counter() - self._started
            self._finished.set()
            self._put(_DONE)

    def _put(self, item: object) -> bool:
        """Hand an item to the consumer; False once the consumer has gone (so the thread can end)."""
        while not self._stopped.is_set():
            try:
                self._handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    @property
    def finished(self) -> bool:
        """Whether the decoder has read all it will read (the model may still have blocks to take)."""
        return self._finished.is_set()

    def blocks(self) -> Iterator[FloatArray]:
        """Decoded samples in order, at most `max_seconds` of them; raises the decoder's EmbeddingError."""
        while not self._drained:
            item = self._handoff.get()
            if item is _DONE:
                self._drained = True
                break
            yield item  # type: ignore[misc]
        if self._error is not None:
            raise self._error

    def result(self) -> DecodedAudio:
        """Wait for the decode to end; the whole song, checked as `decode()` checks it (once: later calls repeat it)."""
        if self._result is None:
            try:
                for _ in self.blocks():
                    pass  # blocks nobody took: the decoder must not wait on a full hand-off forever
                self._result = _checked(
                    _joined(self._pieces), max_samples=self._max_samples, min_seconds=self._min_seconds
                )
            except EmbeddingError as exc:
                self._result = exc
        if isinstance(self._result, EmbeddingError):
            raise self._result
        return self._result

    def stop(self) -> None:
        """Let the thread go (it stops at its next block); safe to call at any time, and more than once."""
        self._stopped.set()
        self._thread.join()


@contextmanager
def decode_in_background(path: Path, *, max_seconds: float, min_seconds: float) -> Iterator[BackgroundDecode]:
    """Start decoding `path` on a thread; the thread is stopped when the block ends, however it ends."""
    decoding = BackgroundDecode(path, max_seconds=max_seconds, min_seconds=min_seconds)
    try:
        yield decoding
    finally:
        decoding.stop()
