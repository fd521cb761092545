"""How a song is cut into the windows a PANNs network sees, including a song that arrives block by block."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from embeddings.base import EmbeddingError, FloatArray


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
