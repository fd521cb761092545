"""The reference `bench/ingest.py --peer` compares against: the plain PANNs approach, one Cnn14 pass per song.

This is what panns_inference does: decode the whole file, then run the network's own forward once over the
whole waveform, in float32, with no windows. It runs in a child process, so that its memory (a whole song's
activations at once) does not count in the product's peak RSS, with the same weights and thread count.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PeerResult:
    tracks: int = 0
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0
    model_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    failed: list[str] = field(default_factory=list)

    @property
    def realtime_model_only(self) -> float:
        return self.audio_seconds / self.model_seconds if self.model_seconds else 0.0

    @property
    def realtime_with_decode(self) -> float:
        total = self.model_seconds + self.decode_seconds
        return self.audio_seconds / total if total else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peer(
    checkpoint: str,
    variant: str,
    files: list[str],
    threads: int,
    max_seconds: float,
    min_seconds: float,
    results: multiprocessing.Queue,
) -> None:
    import torch

    from embeddings import panns
    from embeddings.audio import decode
    from embeddings.base import EmbeddingError

    torch.set_num_threads(threads)
    spec = panns.get_variant(variant)
    model = spec.build()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"], strict=True)
    model.eval()
    with torch.inference_mode():
        model(torch.zeros(1, spec.min_samples))  # the first call sets up kernels; the product's load does the same
    out = PeerResult()
    cpu_started = _cpu_seconds()
    for path in files:
        started = time.perf_counter()
        try:
            audio = decode(Path(path), max_seconds=max_seconds, min_seconds=min_seconds)
        except EmbeddingError as exc:
            out.failed.append(f"{Path(path).name}: {exc}")
            continue
        decoded = time.perf_counter()
        samples = torch.from_numpy(audio.samples)
        if samples.numel() < spec.min_samples:
            samples = torch.nn.functional.pad(samples, (0, spec.min_samples - samples.numel()))
        with torch.inference_mode():
            model(samples[None, :])
        out.decode_seconds += decoded - started
        out.model_seconds += time.perf_counter() - decoded
        out.audio_seconds += audio.seconds
        out.tracks += 1
    out.cpu_seconds = _cpu_seconds() - cpu_started
    out.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put(out)


def run_peer(
    checkpoint: Path, variant: str, files: list[Path], *, threads: int, max_seconds: float, min_seconds: float
) -> PeerResult:
    """Time the one-pass float32 reference on `files` in a fresh process."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    args = (str(checkpoint), variant, [str(p) for p in files], threads, max_seconds, min_seconds, results)
    process = context.Process(target=_peer, args=args)
    process.start()
    while True:
        try:
            result: PeerResult = results.get(timeout=1.0)
            break
        except queue.Empty:
            if not process.is_alive():
                raise SystemExit(f"the one-pass reference failed (exit code {process.exitcode})") from None
    process.join()
    return result
