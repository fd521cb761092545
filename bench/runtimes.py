"""Time Cnn14 under PyTorch, ONNX Runtime and OpenVINO on the same batches, and how far each is from torch float32.

Usage: python bench/runtimes.py [--checkpoint PATH] [--batches 3] [--batch-size 8] [--window-seconds 10]
Without --checkpoint a randomly initialised Cnn14 is used (speed and agreement only). The network is exported to
ONNX once (embeddings.panns_export, the product's exporter); OpenVINO reads the same file. Prints, per runtime and
precision, the audio seconds per wall second and per CPU second of the forward alone (the fairer figure on a
shared host) and the largest cosine distance to torch float32.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from embeddings import panns, panns_export
from embeddings.base import SAMPLE_RATE
from embeddings.cpu import cpu_capabilities

Forward = Callable[[np.ndarray], np.ndarray]


def _batches(count: int, size: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = []
    for _ in range(count):
        tones = np.sin(2 * np.pi * rng.uniform(80, 800, size=(size, 1)) * t)
        out.append((0.3 * tones + 0.1 * rng.standard_normal((size, t.size))).astype(np.float32))
    return out


def _torch(model: torch.nn.Module, precision: str) -> Forward:
    embedder = panns.PannsEmbedder(model, precision=precision)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return embedder.forward(torch.from_numpy(batch))[0].numpy()

    return run


def _onnxruntime(path: Path, threads: int) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["embedding"], {"waveform": batch})[0]


def _openvino(path: Path, threads: int, precision: str) -> Forward:
    import openvino as ov

    hint = {"float32": "f32", "bfloat16": "bf16"}[precision]
    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint}
    )
    return lambda batch: compiled(batch)[0]


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: unlike wall time, barely affected by other processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.max(1.0 - cos))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window-seconds", type=float, default=10.0)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="resonance-runtimes-") as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = Path(scratch) / panns.CHECKPOINT_FILE_NAME
            torch.save({"model": panns.build_cnn14().state_dict()}, checkpoint)
        model = panns.build_cnn14()
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
        model.eval()
        started = time.perf_counter()
        exported = panns_export.exported_model(checkpoint, panns.CNN14.name)
        print(f"exported to {exported.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        candidates: dict[str, Callable[[], Forward]] = {
            "torch float32": lambda: _torch(model, "float32"),
            "torch bfloat16": lambda: _torch(model, "bfloat16"),
        }
        if importlib.util.find_spec("onnxruntime"):
            candidates["onnxruntime float32"] = lambda: _onnxruntime(exported, threads)
        if importlib.util.find_spec("openvino"):
            candidates["openvino float32"] = lambda: _openvino(exported, threads, "float32")
            candidates["openvino bfloat16"] = lambda: _openvino(exported, threads, "bfloat16")
        batches = _batches(args.batches, args.batch_size, args.window_seconds)
        audio = args.batches * args.batch_size * args.window_seconds
        print(f"CPU: {cpu_capabilities().describe()}; {threads} threads; {audio:g} s of audio per runtime")
        reference = [_torch(model, "float32")(batch) for batch in batches]
        for name, make in candidates.items():
            forward = make()
            forward(batches[0][:1])  # the first call compiles or plans
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            outputs = [forward(batch) for batch in batches]
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
            distance = max(_cosine_distance(out, ref) for out, ref in zip(outputs, reference, strict=True))
            print(
                f"{name:<22} {audio / seconds:6.1f}x realtime  {audio / cpu:6.1f} audio s per CPU s"
                f"  max cosine distance to torch float32 {distance:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
