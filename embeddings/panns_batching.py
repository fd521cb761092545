"""Windows of several songs embedded at once, run through the network in shared batches (for GPUs).

On a GPU one song's windows rarely fill a batch while its decoder keeps up, so the device idles between small
batches. When several songs are analysed on threads of one process (a worker with `--pool threads`), each
decoding on its own thread, their windows go into one queue: whoever finds a batch full runs it, and a song
that needs its results runs whatever is queued. No thread waits on a timer, and a batch only ever holds
windows of one length (a song shorter than a window is batched with its own kind).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from embeddings.base import FloatArray

Runner = Callable[[FloatArray], tuple[FloatArray, FloatArray]]
_RUN = np.zeros(0, dtype=np.float32)  # what a slot holds once its window has been through the network


class Slot:
    """One window waiting for the network, then its embedding and clipwise output."""

    __slots__ = ("clipwise", "done", "embedding", "error", "window")

    def __init__(self, window: FloatArray) -> None:
        self.window = window
        self.embedding: FloatArray | None = None
        self.clipwise: FloatArray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class SharedBatches:
    """A queue of windows from any number of songs, run `batch_size` at a time by the threads that feed it."""

    def __init__(self, run_batch: Runner, batch_size: int) -> None:
        self._run_batch = run_batch
        self.batch_size = batch_size
        self._queue: deque[Slot] = deque()
        self._queue_lock = threading.Lock()
        # One batch on the device at a time: bounds its memory.
        self._device_lock = threading.Lock()
        self.batches_run = 0

    def submit(self, window: FloatArray) -> Slot:
        slot = Slot(window)
        with self._queue_lock:
            self._queue.append(slot)
            full = sum(1 for queued in self._queue if queued.window.size == window.size)
        if full >= self.batch_size:
            self.run_queued(size=window.size)
        return slot

    def result(self, slot: Slot) -> tuple[FloatArray, FloatArray]:
        """The window's outputs, running queued batches (this song's or others') until it has them."""
        while not slot.done.is_set():
            # Queued: this runs it (or an older batch first). In another thread's batch: this waits for that batch.
            self.run_queued()
        if slot.error is not None:
            raise slot.error
        assert slot.embedding is not None and slot.clipwise is not None
        return slot.embedding, slot.clipwise

    def run_queued(self, size: int | None = None) -> None:
        """Run one batch: up to `batch_size` queued windows of `size` samples (default: the oldest window's)."""
        with self._device_lock:
            with self._queue_lock:
                if not self._queue:
                    return
                size = self._queue[0].window.size if size is None else size
                batch = [slot for slot in self._queue if slot.window.size == size][: self.batch_size]
                if not batch:
                    return
                for slot in batch:
                    self._queue.remove(slot)
            try:
                embedding, clipwise = self._run_batch(np.stack([slot.window for slot in batch]))
            except BaseException as exc:
                for slot in batch:
                    slot.error, slot.window = exc, _RUN
                    slot.done.set()
                raise
            self.batches_run += 1
            for row, slot in enumerate(batch):
                slot.embedding, slot.clipwise, slot.window = embedding[row], clipwise[row], _RUN
                slot.done.set()
