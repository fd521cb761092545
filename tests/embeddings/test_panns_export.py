"""The exported network: cached once per checkpoint beside it, atomically; under OpenVINO as exact as torch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embeddings import panns, panns_export
from embeddings.base import SAMPLE_RATE, ModelUnavailable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The stated bound for EMBEDDING_RUNTIME=openvino in float32 against torch float32 (measured: 6e-8, random weights).
ONNX_COSINE_BOUND = 1e-4


def _checkpoint(variant: panns.PannsVariant, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / variant.checkpoint_file_name
    torch.save({"model": variant.build().state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def cnn10_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(panns.CNN10, tmp_path_factory.mktemp("export-cnn10"))


def _clips() -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    rng = np.random.default_rng(5)
    t = np.arange(round(23.5 * SAMPLE_RATE)) / SAMPLE_RATE
    music = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.3 * t)) + 0.05 * rng.standard_normal(t.size)
    return [music.astype(np.float32), (0.2 * rng.standard_normal(round(0.4 * SAMPLE_RATE))).astype(np.float32)]


def _cosine_distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("variant", [panns.CNN14, panns.CNN10], ids=["cnn14", "cnn10"])
def test_onnx_embeddings_match_torch_float32(variant: panns.PannsVariant, tmp_path: Path) -> None:
    checkpoint = _checkpoint(variant, tmp_path / "models")
    exact = panns.load_panns(checkpoint, variant=variant, device="cpu", batch_size=2, precision="float32")
    exported = panns.load_panns(
        checkpoint, variant=variant, device="cpu", batch_size=2, runtime="openvino", precision="float32", threads=2
    )

    assert (exported.runtime, exported.precision) == ("openvino", "float32")
    for clip in _clips():
        vector, clipwise = exported.embed_with_tags(clip)
        reference, reference_clipwise = exact.embed_with_tags(clip)

        assert vector.shape == (variant.dim,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert _cosine_distance(vector, reference) <= ONNX_COSINE_BOUND
        assert np.max(np.abs(clipwise - reference_clipwise)) < 1e-4
    # 330 MB each for Cnn14; pytest keeps old temp folders around.
    panns_export.export_path(checkpoint).unlink()
    checkpoint.unlink()


def test_the_export_is_cached_beside_the_checkpoint_and_reused(
    cnn10_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")
    cached = panns_export.export_path(cnn10_checkpoint)
    assert cached.parent == cnn10_checkpoint.parent and cached.is_file()
    written = cached.stat().st_mtime_ns

    def no_second_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checkpoint was exported again")

    monkeypatch.setattr(panns_export, "_run_export", no_second_export)
    second = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")

    assert cached.stat().st_mtime_ns == written
    clip = _clips()[0]
    assert np.array_equal(first.embed(clip), second.embed(clip))
    assert not [name for name in _folder_names(cached.parent) if name.endswith(panns_export.PARTIAL_SUFFIX)]


def test_other_weights_get_their_own_export(tmp_path: Path) -> None:
    one = _checkpoint(panns.CNN10, tmp_path / "a", seed=1)
    two = _checkpoint(panns.CNN10, tmp_path / "b", seed=2)
    assert one.name == two.name

    assert panns_export.export_path(one).name != panns_export.export_path(two).name


def test_an_export_interrupted_half_way_leaves_nothing_that_is_loaded(tmp_path: Path) -> None:
    checkpoint = _checkpoint(panns.CNN10, tmp_path / "models")
    # A process that dies (SIGKILL: no clean-up runs) after writing half of a real export.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import torch\n"
        "from embeddings import panns, panns_export\n"
        "real = panns_export._run_export\n"
        "def half(checkpoint, variant, target):\n"
        "    real(checkpoint, variant, target)\n"
        "    data = Path(target).read_bytes()\n"
        "    Path(target).write_bytes(data[: len(data) // 2])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "panns_export._run_export = half\n"
        f"panns.load_panns(Path({str(checkpoint)!r}), variant='panns-cnn10', device='cpu', batch_size=2,"
        " runtime='openvino')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, timeout=300)

    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    cached = panns_export.export_path(checkpoint)
    assert not cached.exists()
    partials = [name for name in _folder_names(checkpoint.parent) if name.endswith(panns_export.PARTIAL_SUFFIX)]
    assert len(partials) == 1

    model = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")
    exact = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, precision="float32")

    assert cached.is_file()
    assert not [name for name in _folder_names(checkpoint.parent) if name.endswith(panns_export.PARTIAL_SUFFIX)]
    clip = _clips()[0]
    assert _cosine_distance(model.embed(clip), exact.embed(clip)) <= ONNX_COSINE_BOUND


def test_an_export_that_fails_in_process_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = _checkpoint(panns.CNN10, tmp_path / "models")

    def interrupted(checkpoint: Path, variant: str, target: Path) -> None:
        target.write_bytes(b"\x08\x07half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(panns_export, "_run_export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")

    assert [name for name in _folder_names(checkpoint.parent) if not name.endswith(".lock")] == [checkpoint.name]


def test_a_damaged_cached_export_is_exported_again(cnn10_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    checkpoint = folder / cnn10_checkpoint.name
    checkpoint.write_bytes(cnn10_checkpoint.read_bytes())
    cached = panns_export.export_path(checkpoint)
    cached.write_bytes(b"not an onnx model")

    model = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")

    assert cached.stat().st_size > 1_000_000
    assert model.embed(_clips()[0]).shape == (512,)


def test_a_model_folder_that_cannot_be_written_still_runs_the_export(
    cnn10_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    checkpoint = folder / cnn10_checkpoint.name
    checkpoint.write_bytes(cnn10_checkpoint.read_bytes())

    def read_only(checkpoint: Path, variant: str, *, refresh: bool = False) -> Path:
        raise PermissionError(13, "Permission denied", str(checkpoint.parent))

    monkeypatch.setattr(panns_export, "exported_model", read_only)
    model = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino")
    exact = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, precision="float32")

    assert _folder_names(folder) == [checkpoint.name]
    assert _cosine_distance(model.embed(_clips()[0]), exact.embed(_clips()[0])) <= ONNX_COSINE_BOUND


def test_the_export_runs_in_a_child_process_and_a_failure_is_a_clear_error(tmp_path: Path) -> None:
    checkpoint = _checkpoint(panns.CNN10, tmp_path / "models")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from embeddings import panns\n"
        f"panns.load_panns(Path({str(checkpoint)!r}), variant='panns-cnn10', device='cpu', batch_size=2,"
        " runtime='openvino')\n"
        "print('torch.onnx' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, timeout=300)

    # The worker never traced the network itself: its memory holds the compiled model only.
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip().splitlines()[-1] == "False"
    assert panns_export.export_path(checkpoint).is_file()
    with pytest.raises(ModelUnavailable, match="to ONNX failed"):
        panns_export._run_export(tmp_path / "missing.pth", "panns-cnn10", tmp_path / "out.onnx")


def test_the_openvino_runtime_refuses_what_it_cannot_do(cnn10_checkpoint: Path) -> None:
    with pytest.raises(ModelUnavailable, match="needs a GPU"):
        panns.load_panns(
            cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="openvino", precision="float16"
        )
    with pytest.raises(ModelUnavailable, match="not a runtime"):
        panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, runtime="tvm")


def test_importing_the_embeddings_exports_nothing(tmp_path: Path) -> None:
    checkpoint = tmp_path / panns.CNN10.checkpoint_file_name
    checkpoint.write_bytes(b"")
    script = "import embeddings.panns, embeddings.panns_export, embeddings.registry"
    env = {**os.environ, "PANNS_CHECKPOINT": str(checkpoint), "EMBEDDING_RUNTIME": "openvino"}

    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr.decode()
    assert _folder_names(tmp_path) == [checkpoint.name]
