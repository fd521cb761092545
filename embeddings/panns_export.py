"""A PANNs network exported to ONNX once per checkpoint, cached beside it, and run with OpenVINO.

OpenVINO was kept over ONNX Runtime by measurement (bench/runtimes.py, audio seconds per CPU second on a 2-core
AVX-512 BF16 host): float32 18.2 against ONNX Runtime's 17.3 and torch's 11.9; bfloat16 31.1 against torch's 19.9.

The file is named after a digest of the checkpoint's bytes, so other weights never load a stale export. It is
written to a temporary name and moved into place with os.replace, under a lock file so that the worker
processes of a host export it once; an export that dies half-way leaves only a `.partial` file, which nothing
loads and the next export removes. A cached file that does not load is exported again. Nothing happens at
import time: the first `load_panns` with EMBEDDING_RUNTIME=openvino exports, in a child process, so that a
worker's memory never holds the traced graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock

from embeddings.base import FloatArray, ModelUnavailable
from embeddings.panns_networks import first_line

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Part of the cache key: bump it whenever the exported graph would change (network code, opset, outputs).
EXPORT_FORMAT = "panns-onnx-1"
OPSET = 17
PARTIAL_SUFFIX = ".partial"
# Cnn14 exports in about a minute on two cores; a child still running after this is stuck.
EXPORT_TIMEOUT_SECONDS = 1800
RUNTIMES = ("torch", "openvino")
# OpenVINO's names for the precisions the conv stack may run in.
_HINTS = {"float32": "f32", "bfloat16": "bf16"}


def checkpoint_digest(checkpoint: Path) -> str:
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    with open(checkpoint, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def export_path(checkpoint: Path) -> Path:
    """Where the export of `checkpoint` is cached: beside it, named after its digest."""
    return checkpoint.with_name(f"{checkpoint.name}.{checkpoint_digest(checkpoint)}.onnx")


def _with_outputs(model: torch.nn.Module) -> torch.nn.Module:
    """The network returning (embedding, clipwise) rather than a dict, which the exporter cannot name."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = model

        def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.network(waveform)
            return out["embedding"], out["clipwise_output"]

    return Exported().eval()


def export(model: torch.nn.Module, target: str) -> None:
    """Write `model` to `target` as ONNX, with the batch size and the clip length left free."""
    import torch

    example = torch.zeros(1, 10 * 32000)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs more packages.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _with_outputs(model),
            (example,),
            target,
            input_names=["waveform"],
            output_names=["embedding", "clipwise"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _remove_partials(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        stale.unlink(missing_ok=True)


def _export_atomically(checkpoint: Path, variant: str, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    os.close(handle)
    try:
        _run_export(checkpoint, variant, Path(temporary))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _run_export(checkpoint: Path, variant: str, target: Path) -> None:
    """Export in a child process: tracing the network peaks near 1 GB above the worker, and that memory is freed."""
    command = [sys.executable, "-m", "embeddings.panns_export", str(checkpoint), variant, str(target)]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        # This interpreter on this module, with paths of our own: nothing untrusted reaches the command line.
        result = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS, env=env)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise ModelUnavailable(f"exporting {checkpoint.name} to ONNX took over {EXPORT_TIMEOUT_SECONDS} s") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise ModelUnavailable(f"exporting {checkpoint.name} to ONNX failed: {lines[-1]}")


def exported_model(checkpoint: Path, variant: str, *, refresh: bool = False) -> Path:
    """The cached export of `checkpoint` (weights of `variant`), exported now if it is not there yet."""
    path = export_path(checkpoint)
    with FileLock(path.parent / f".{path.name}.lock"):
        if refresh:
            path.unlink(missing_ok=True)
        if not path.is_file():
            # Under the lock nobody else is exporting, so any partial file is left from a process that died.
            _remove_partials(path)
            logger.info("exporting %s to ONNX (once per checkpoint) ...", checkpoint.name)
            _export_atomically(checkpoint, variant, path)
    return path


class OpenVinoRunner:
    """Runs an exported PANNs network with OpenVINO: (batch, samples) float32 -> (embedding, clipwise) float32."""

    def __init__(self, source: Path, *, threads: int, precision: str) -> None:
        import openvino

        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": _HINTS[precision]}
        self._compiled = openvino.Core().compile_model(str(source), "CPU", config)

    def __call__(self, waveforms: FloatArray) -> tuple[FloatArray, FloatArray]:
        outputs = self._compiled(waveforms)
        embedding, clipwise = outputs[self._compiled.output(0)], outputs[self._compiled.output(1)]
        return np.asarray(embedding, dtype=np.float32), np.asarray(clipwise, dtype=np.float32)


def openvino_runner(checkpoint: Path, variant: str, *, threads: int, precision: str) -> OpenVinoRunner:
    """An OpenVINO model for `checkpoint` (weights of `variant`), exporting (and caching) it first when needed."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailable(
            "EMBEDDING_RUNTIME=openvino needs the openvino package; install the project requirements, "
            "or set EMBEDDING_RUNTIME=torch"
        ) from exc
    if precision not in _HINTS:
        raise ModelUnavailable(f"EMBEDDING_RUNTIME=openvino runs float32 or bfloat16, not {precision}")
    try:
        path = exported_model(checkpoint, variant)
    except OSError as exc:
        # A read-only model folder: export for this process only, through a temporary folder.
        logger.warning("cannot cache the ONNX export beside %s (%s); exporting for this process", checkpoint, exc)
        with tempfile.TemporaryDirectory(prefix="resonance-onnx-") as scratch:
            _run_export(checkpoint, variant, Path(scratch) / "model.onnx")
            return OpenVinoRunner(Path(scratch) / "model.onnx", threads=threads, precision=precision)
    try:
        return OpenVinoRunner(path, threads=threads, precision=precision)
    except Exception as exc:  # OpenVINO raises its own exception types for a damaged file
        logger.warning("the cached ONNX export %s does not load (%s); exporting it again", path, first_line(exc))
        return OpenVinoRunner(exported_model(checkpoint, variant, refresh=True), threads=threads, precision=precision)


def main(argv: list[str]) -> None:
    """`python -m embeddings.panns_export CHECKPOINT VARIANT TARGET`: what `_run_export` runs in its child."""
    import torch

    from embeddings.panns_networks import get_variant

    checkpoint, variant, target = argv
    spec = get_variant(variant)
    model = spec.build()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"], strict=True)
    export(model, target)


if __name__ == "__main__":
    main(sys.argv[1:])
