"""Which embedding model the settings select, where its files are expected, and loading it once."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embeddings import panns, registry
from embeddings.base import ModelUnavailable
from embeddings.features import DIM as FEATURES_DIM
from embeddings.features import FeatureEmbedder
from tests import audio
from tests.embeddings.test_panns import save_random_checkpoint, write_labels


@pytest.fixture(scope="module")
def cnn10_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_checkpoint(panns.CNN10, tmp_path_factory.mktemp("weights") / "cnn10.pth")


def test_the_models_and_their_sizes() -> None:
    assert registry.available_models() == ["panns-cnn14", "panns-cnn10", "panns-cnn14-meanmax", "features"]
    assert registry.model_dim("panns-cnn14-meanmax") == 4096
    assert registry.model_dim("panns-cnn14") == 2048
    assert registry.model_dim("panns-cnn10") == 512
    assert registry.model_dim("features") == FEATURES_DIM


@pytest.mark.parametrize("name", ["auto", "panns-cnn6", "PANNS-CNN14", ""])
def test_an_unknown_model_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        registry.model_dim(name)
    if name:
        with pytest.raises(ValueError, match="unknown embedding model"):
            registry.get_embedding_model(name)


def test_auto_picks_cnn14_only_when_its_checkpoint_is_on_disk(settings: Any) -> None:
    settings.EMBEDDING_MODEL = "auto"
    data_dir: Path = settings.PANNS_DATA_DIR
    data_dir.mkdir(parents=True)

    assert registry.active_model_name() == "features"
    # A Cnn10 checkpoint or a folder named like the Cnn14 one does not count.
    (data_dir / panns.CNN10.checkpoint_file_name).write_bytes(b"weights")
    (data_dir / panns.CNN14.checkpoint_file_name).mkdir()
    assert registry.active_model_name() == "features"
    (data_dir / panns.CNN14.checkpoint_file_name).rmdir()
    (data_dir / panns.CNN14.checkpoint_file_name).write_bytes(b"weights")
    assert registry.active_model_name() == "panns-cnn14"


def test_auto_follows_panns_checkpoint(settings: Any, tmp_path: Path) -> None:
    settings.EMBEDDING_MODEL = "auto"
    settings.PANNS_CHECKPOINT = tmp_path / "elsewhere.pth"

    assert registry.active_model_name() == "features"
    settings.PANNS_CHECKPOINT.write_bytes(b"weights")
    assert registry.active_model_name() == "panns-cnn14"


def test_explicit_choices_are_taken_as_they_are(settings: Any) -> None:
    for name in registry.available_models():
        settings.EMBEDDING_MODEL = name
        assert registry.active_model_name() == name


def test_panns_checkpoint_overrides_only_the_configured_panns_model(settings: Any, tmp_path: Path) -> None:
    data_dir: Path = settings.PANNS_DATA_DIR
    override = tmp_path / "mine.pth"
    settings.PANNS_CHECKPOINT = override

    settings.EMBEDDING_MODEL = "panns-cnn10"
    assert registry.panns_checkpoint_path() == override
    assert registry.panns_checkpoint_path("panns-cnn10") == override
    assert registry.panns_checkpoint_path("panns-cnn14") == data_dir / "Cnn14_mAP=0.431.pth"

    settings.EMBEDDING_MODEL = "features"
    assert registry.panns_checkpoint_path() == override
    assert registry.panns_checkpoint_path("panns-cnn10") == data_dir / "Cnn10_mAP=0.380.pth"

    settings.PANNS_CHECKPOINT = None
    assert registry.panns_checkpoint_path() == data_dir / "Cnn14_mAP=0.431.pth"
    with pytest.raises(ValueError, match="unknown PANNs model"):
        registry.panns_checkpoint_path("features")


def test_the_label_file_is_beside_the_checkpoint_unless_configured(settings: Any, tmp_path: Path) -> None:
    settings.PANNS_CHECKPOINT = tmp_path / "weights" / "mine.pth"

    assert registry.panns_labels_path() == tmp_path / "weights" / "class_labels_indices.csv"
    assert registry.panns_labels_path("panns-cnn10") == settings.PANNS_DATA_DIR / "class_labels_indices.csv"
    settings.PANNS_LABELS = tmp_path / "names.csv"
    assert registry.panns_labels_path("panns-cnn10") == tmp_path / "names.csv"


def test_a_missing_cnn10_checkpoint_says_where_and_how(settings: Any) -> None:
    settings.EMBEDDING_MODEL = "panns-cnn10"

    with pytest.raises(ModelUnavailable) as error:
        registry.get_embedding_model()

    message = str(error.value)
    assert str(settings.PANNS_DATA_DIR / panns.CNN10.checkpoint_file_name) in message
    assert "python manage.py fetch_model --model panns-cnn10" in message


def test_cnn10_is_loaded_once_with_the_configured_settings(settings: Any, cnn10_weights: Path) -> None:
    data_dir: Path = settings.PANNS_DATA_DIR
    data_dir.mkdir(parents=True)
    (data_dir / panns.CNN10.checkpoint_file_name).symlink_to(cnn10_weights)
    names = write_labels(data_dir / panns.LABELS_FILE_NAME)
    settings.EMBEDDING_MODEL = "panns-cnn10"
    settings.EMBEDDING_DEVICE = "cpu"
    settings.EMBEDDING_PRECISION = "bfloat16"
    settings.EMBEDDING_BATCH_SIZE = 3
    settings.EMBEDDING_RUNTIME = "auto"  # the default
    settings.PANNS_TOP_TAGS = 2
    settings.PANNS_TAG_MIN_SCORE = 0.0

    model = registry.get_embedding_model()
    analysis = model.analyse(audio.chord([220, 277, 330], 3.0))

    assert isinstance(model, panns.PannsEmbedder)
    assert (model.name, model.dim, model.device, model.precision, model.batch_size, model.runtime) == (
        "panns-cnn10",
        512,
        "cpu",
        "bfloat16",
        3,
        "openvino",
    )
    assert registry.get_embedding_model() is model and registry.get_embedding_model("panns-cnn10") is model
    assert analysis.vector.shape == (512,) and np.linalg.norm(analysis.vector) == pytest.approx(1.0, abs=1e-5)
    assert len(analysis.tags) == 2 and all(tag.label in names for tag in analysis.tags)


def test_the_auto_runtime_is_openvino_on_a_cpu_and_torch_on_a_gpu_or_without_openvino(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert panns.resolve_runtime("auto", "cpu") == "openvino"
    assert panns.resolve_runtime("auto", "cuda:0") == "torch"
    assert panns.resolve_runtime("torch", "cpu") == "torch" and panns.resolve_runtime("openvino", "cpu") == "openvino"

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "openvino" else real(name))
    assert panns.resolve_runtime("auto", "cpu") == "torch"


def test_the_default_batch_is_two_windows_on_a_cpu_and_eight_on_a_gpu(settings: Any, cnn10_weights: Path) -> None:
    assert (panns.default_batch_size("cpu"), panns.default_batch_size("cuda:1")) == (2, 8)
    settings.EMBEDDING_MODEL = "panns-cnn10"
    settings.PANNS_CHECKPOINT = cnn10_weights
    settings.EMBEDDING_BATCH_SIZE = 0  # the default

    model = registry.get_embedding_model()

    assert isinstance(model, panns.PannsEmbedder) and (model.device, model.batch_size) == ("cpu", 2)


def test_float16_on_a_cpu_is_refused_at_load(settings: Any, cnn10_weights: Path) -> None:
    settings.EMBEDDING_DEVICE = "cpu"
    settings.EMBEDDING_PRECISION = "float16"
    settings.PANNS_CHECKPOINT = cnn10_weights
    settings.EMBEDDING_MODEL = "panns-cnn10"

    with pytest.raises(ModelUnavailable, match="float16 needs a GPU"):
        registry.get_embedding_model()


def test_features_have_no_tags() -> None:
    model = registry.get_embedding_model("features")

    assert isinstance(model, FeatureEmbedder)
    assert model.analyse(audio.chord([220, 277, 330], 2.0)).tags == []
