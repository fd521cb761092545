"""The PANNs Cnn14 embedder: safe loading, whole-song embeddings, and the checkpoint download."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from embeddings import panns, panns_networks
from embeddings.base import SAMPLE_RATE, EmbeddingError, ModelUnavailable, Tag

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def tone(seconds: float, freq: float = 440.0) -> np.ndarray[Any, np.dtype[np.float32]]:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A randomly initialised Cnn14 saved the way the released checkpoint is."""
    torch.manual_seed(0)
    model = panns.build_cnn14()
    path = tmp_path_factory.mktemp("panns") / panns.CHECKPOINT_FILE_NAME
    torch.save({"model": model.state_dict()}, path)
    yield path
    # 330 MB; pytest keeps old temp folders around.
    path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def embedder(checkpoint: Path) -> panns.PannsEmbedder:
    # float32 explicitly: `auto` picks bfloat16 on hosts that run it natively.
    return panns.load_panns(checkpoint, device="cpu", batch_size=4, precision="float32")


def save_random_checkpoint(variant: panns.PannsVariant, path: Path, *, seed: int = 0) -> Path:
    """A randomly initialised network saved the way the released checkpoints are."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": variant.build().state_dict()}, path)
    return path


def write_labels(path: Path, count: int = 527) -> list[str]:
    """An AudioSet-format label file; some names hold commas and quotes, as the real one's do."""
    names = [f'Sound {i}, "variant" {i % 7}' if i % 3 == 0 else f"Sound {i}" for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, f"/m/{i:05x}", name] for i, name in enumerate(names))
    return names


@pytest.fixture(scope="session")
def cnn10_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Cnn10 (25 MB)."""
    return save_random_checkpoint(panns.CNN10, tmp_path_factory.mktemp("cnn10") / panns.CNN10.checkpoint_file_name)


@pytest.fixture(scope="session")
def cnn10(cnn10_checkpoint: Path) -> panns.PannsEmbedder:
    return panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=4, precision="float32")


def cosine_distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- Embedding -------------------------------------------------------------------------------------


def test_embeds_a_tone_as_a_unit_vector(embedder: panns.PannsEmbedder) -> None:
    vector, tags = embedder.embed_with_tags(tone(3.0))

    assert embedder.name == "panns-cnn14" and embedder.dim == 2048 and embedder.device == "cpu"
    assert vector.shape == (2048,) and vector.dtype == np.float32
    assert np.all(np.isfinite(vector))
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert tags.shape == (527,) and tags.dtype == np.float32
    assert np.all((tags >= 0) & (tags <= 1))
    assert embedder.last_clipwise is not None and np.array_equal(embedder.last_clipwise, tags)


def test_same_audio_gives_identical_vectors(embedder: panns.PannsEmbedder) -> None:
    audio = tone(2.0, freq=330.0)

    assert np.array_equal(embedder.embed(audio), embedder.embed(audio.copy()))


def test_windows_cover_the_whole_song() -> None:
    window, hop = 10 * SAMPLE_RATE, 5 * SAMPLE_RATE

    assert panns.window_starts(3 * SAMPLE_RATE, window=window, hop=hop) == [0]
    assert panns.window_starts(40 * SAMPLE_RATE, window=window, hop=hop) == [s * SAMPLE_RATE for s in range(0, 31, 5)]
    # The last window is pulled back to end exactly at the end of the song.
    assert panns.window_starts(12 * SAMPLE_RATE, window=window, hop=hop) == [0, 2 * SAMPLE_RATE]


def test_a_long_song_is_embedded_from_every_window(embedder: panns.PannsEmbedder) -> None:
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(20 * SAMPLE_RATE)).astype(np.float32)
    song = np.concatenate([tone(20.0), noise])

    whole = embedder.embed(song)
    opening = embedder.embed(song[: 10 * SAMPLE_RATE])

    assert embedder.window_count(song.size) == 4
    assert whole.shape == (2048,) and np.linalg.norm(whole) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(whole, opening, atol=1e-4)


def test_a_clip_shorter_than_a_second_is_padded(embedder: panns.PannsEmbedder) -> None:
    vector = embedder.embed(tone(0.3))

    assert embedder.window_count(round(0.3 * SAMPLE_RATE)) == 1
    assert vector.shape == (2048,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "samples",
    [np.zeros((2, SAMPLE_RATE), dtype=np.float32), np.zeros(0, dtype=np.float32), np.full(SAMPLE_RATE, np.nan)],
    ids=["stereo", "empty", "nan"],
)
def test_unusable_audio_is_an_embedding_error(embedder: panns.PannsEmbedder, samples: Any) -> None:
    with pytest.raises(EmbeddingError):
        embedder.embed(samples)


def test_the_autocast_forward_computes_what_the_network_does(
    embedder: panns.PannsEmbedder, cnn10: panns.PannsEmbedder
) -> None:
    # PannsEmbedder.forward re-states the networks' forward to keep the front end in float32.
    waveforms = torch.from_numpy(np.stack([tone(3.0), tone(3.0, freq=1000.0)]))
    for model in (embedder, cnn10):
        with torch.inference_mode():
            reference = model._model(waveforms)
            embedding, clipwise = model.forward(waveforms)

        assert torch.equal(embedding, reference["embedding"])
        assert torch.equal(clipwise, reference["clipwise_output"])


# Measured on random-weight Cnn14 and Cnn10 with these clips: at most 2e-5. The bound leaves 50x room.
BFLOAT16_COSINE_BOUND = 1e-3


def test_bfloat16_embeddings_stay_within_the_documented_distance_of_float32(
    embedder: panns.PannsEmbedder, cnn10: panns.PannsEmbedder
) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    clips = [
        tone(5.0, freq=220.0),
        (0.3 * rng.standard_normal(t.size)).astype(np.float32),
        (0.4 * np.sin(2 * np.pi * 110 * t) * np.sin(2 * np.pi * 0.5 * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        ),
    ]
    for full in (embedder, cnn10):
        half = panns.PannsEmbedder(full._model, variant=full.variant, precision="bfloat16", batch_size=4)
        for clip in clips:
            exact, exact_clipwise = full.embed_with_tags(clip)
            approximate, approximate_clipwise = half.embed_with_tags(clip)

            assert approximate.dtype == np.float32 and np.linalg.norm(approximate) == pytest.approx(1.0, abs=1e-5)
            assert cosine_distance(exact, approximate) <= BFLOAT16_COSINE_BOUND
            assert np.max(np.abs(exact_clipwise - approximate_clipwise)) < 0.02


# --- Cnn10 -----------------------------------------------------------------------------------------


def test_cnn10_has_the_official_state_dict_keys() -> None:
    keys = set(panns.build_cnn10().state_dict())
    expected = {
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
        *(f"bn0.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
        *(
            f"conv_block{block}.{layer}"
            for block in range(1, 5)
            for layer in (
                "conv1.weight",
                "conv2.weight",
                *(f"bn{n}.{name}" for n in (1, 2) for name in ("weight", "bias", "running_mean", "running_var")),
                "bn1.num_batches_tracked",
                "bn2.num_batches_tracked",
            )
        ),
        "fc1.weight",
        "fc1.bias",
        "fc_audioset.weight",
        "fc_audioset.bias",
    }

    assert keys == expected
    state = panns.build_cnn10().state_dict()
    assert tuple(state["conv_block4.conv2.weight"].shape) == (512, 512, 3, 3)
    assert tuple(state["fc1.weight"].shape) == (512, 512)
    assert tuple(state["fc_audioset.weight"].shape) == (527, 512)


def test_cnn10_loads_strictly_and_gives_512_d_unit_vectors(cnn10: panns.PannsEmbedder) -> None:
    vector, clipwise = cnn10.embed_with_tags(tone(12.0))

    assert cnn10.name == "panns-cnn10" and cnn10.dim == 512 and cnn10.precision == "float32"
    assert vector.shape == (512,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert clipwise.shape == (527,) and np.all((clipwise >= 0) & (clipwise <= 1))
    assert cnn10.window_count(12 * SAMPLE_RATE) == 2


def test_cnn10_pads_a_clip_of_a_third_of_a_second(cnn10: panns.PannsEmbedder) -> None:
    analysis = cnn10.analyse(tone(0.3))

    assert cnn10.window_count(round(0.3 * SAMPLE_RATE)) == 1
    assert analysis.vector.shape == (512,) and np.linalg.norm(analysis.vector) == pytest.approx(1.0, abs=1e-5)
    assert analysis.tags == []


def test_a_checkpoint_of_the_other_variant_names_the_right_setting(checkpoint: Path, cnn10_checkpoint: Path) -> None:
    with pytest.raises(ModelUnavailable) as cnn14_as_cnn10:
        panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2)
    with pytest.raises(ModelUnavailable) as cnn10_as_cnn14:
        panns.load_panns(cnn10_checkpoint, variant="panns-cnn14", device="cpu", batch_size=2)

    message = str(cnn14_as_cnn10.value)
    assert str(checkpoint) in message and "holds Cnn14 weights" in message
    assert "EMBEDDING_MODEL=panns-cnn14" in message and "fetch_model --model panns-cnn10" in message
    message = str(cnn10_as_cnn14.value)
    assert "holds Cnn10 weights" in message and "EMBEDDING_MODEL=panns-cnn10" in message


def test_a_damaged_cnn10_checkpoint_does_not_fit(tmp_path: Path) -> None:
    state = panns.build_cnn10().state_dict()
    state["conv_block2.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    broken = tmp_path / panns.CNN10.checkpoint_file_name
    torch.save({"model": state}, broken)

    with pytest.raises(ModelUnavailable, match="does not fit the Cnn10 network"):
        panns.load_panns(broken, variant="panns-cnn10", device="cpu", batch_size=2)


# --- Tags ------------------------------------------------------------------------------------------


def test_tags_are_the_most_probable_named_classes(cnn10_checkpoint: Path, tmp_path: Path) -> None:
    names = write_labels(tmp_path / "labels.csv")
    model = panns.load_panns(
        cnn10_checkpoint,
        variant="panns-cnn10",
        device="cpu",
        batch_size=4,
        labels=tmp_path / "labels.csv",
        max_tags=5,
        tag_min_score=0.0,
    )

    analysis = model.analyse(tone(4.0, freq=660.0))

    clipwise = model.last_clipwise
    assert clipwise is not None
    best = np.argsort(-clipwise, kind="stable")[:5]
    assert analysis.tags == [Tag(label=names[i], score=float(clipwise[i])) for i in best]
    assert [tag.score for tag in analysis.tags] == sorted((tag.score for tag in analysis.tags), reverse=True)
    assert np.array_equal(analysis.vector, model.embed(tone(4.0, freq=660.0)))


def test_tags_below_the_minimum_score_are_left_out(embedder: panns.PannsEmbedder, tmp_path: Path) -> None:
    names = write_labels(tmp_path / "labels.csv")
    clipwise = embedder.embed_with_tags(tone(4.0))[1]
    third = float(np.sort(clipwise)[::-1][2])
    model = panns.PannsEmbedder(embedder._model, labels=names, max_tags=10, tag_min_score=third)

    tags = model.analyse(tone(4.0)).tags

    assert len(tags) == 3 and tags[-1].score == pytest.approx(third)
    assert panns.PannsEmbedder(embedder._model, labels=names, max_tags=0).analyse(tone(4.0)).tags == []


def test_a_label_file_beside_the_checkpoint_is_found(cnn10_checkpoint: Path, tmp_path: Path) -> None:
    beside = tmp_path / cnn10_checkpoint.name
    beside.symlink_to(cnn10_checkpoint)
    names = write_labels(tmp_path / panns.LABELS_FILE_NAME)

    model = panns.load_panns(beside, variant="panns-cnn10", device="cpu", batch_size=2, tag_min_score=0.0)

    assert model.labels == names
    tags = model.analyse(tone(2.0)).tags
    assert len(tags) == 5 and all(tag.label in names for tag in tags)


def test_no_label_file_means_no_tags_and_one_log_line(
    cnn10_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nowhere.csv"
    caplog.set_level(logging.INFO, logger="embeddings.panns")

    first = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, labels=missing)
    second = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, labels=missing)

    assert first.labels is None and first.analyse(tone(2.0)).tags == []
    assert second.analyse(tone(2.0)).tags == []
    said = [record for record in caplog.records if "no sound tags" in record.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO and str(missing) in said[0].getMessage()


@pytest.mark.parametrize("count", [526, 528])
def test_a_label_file_of_the_wrong_length_gives_no_tags(cnn10_checkpoint: Path, tmp_path: Path, count: int) -> None:
    labels = tmp_path / "labels.csv"
    write_labels(labels, count)

    with pytest.raises(panns.LabelFileError, match="527"):
        panns.read_labels(labels, classes_num=527)
    model = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, labels=labels)
    assert model.labels is None and model.analyse(tone(1.0)).tags == []


def test_reading_an_audioset_label_file(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    # The real file's layout: a header, quoted names with commas; here with a byte-order mark and CRLF too.
    rows = ['0,/m/09x0r,"Speech"', '1,/m/05zppz,"Male speech, man speaking"', '2,/m/02zsn,"Female speech"']
    good.write_bytes(("\ufeffindex,mid,display_name\r\n" + "\r\n".join(rows) + "\r\n").encode())

    assert panns.read_labels(good, classes_num=3) == ["Speech", "Male speech, man speaking", "Female speech"]
    for name, text in {
        "no_header.csv": "0,/m/1,A\n1,/m/2,B\n",
        "repeated.csv": "index,mid,display_name\n0,/m/1,A\n0,/m/2,B\n",
        "empty_name.csv": "index,mid,display_name\n0,/m/1,A\n1,/m/2,\n",
        "not_a_number.csv": "index,mid,display_name\n0,/m/1,A\nx,/m/2,B\n",
        "out_of_range.csv": "index,mid,display_name\n0,/m/1,A\n2,/m/2,B\n",
    }.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(panns.LabelFileError):
            panns.read_labels(tmp_path / name, classes_num=2)
    with pytest.raises(panns.LabelFileError, match="no label file"):
        panns.read_labels(tmp_path / "absent.csv", classes_num=2)


# --- Loading ---------------------------------------------------------------------------------------


def test_a_missing_checkpoint_says_how_to_get_one(tmp_path: Path) -> None:
    missing = tmp_path / "models" / panns.CHECKPOINT_FILE_NAME

    with pytest.raises(ModelUnavailable) as error:
        panns.load_panns(missing, device="cpu", batch_size=2)

    message = str(error.value)
    assert str(missing) in message
    assert "python manage.py fetch_model" in message
    assert "PANNS_CHECKPOINT" in message and "EMBEDDING_MODEL=features" in message


def test_a_corrupt_checkpoint_is_model_unavailable(tmp_path: Path) -> None:
    corrupt = tmp_path / panns.CHECKPOINT_FILE_NAME
    corrupt.write_bytes(np.random.default_rng(1).bytes(4096))

    with pytest.raises(ModelUnavailable, match="could not be read") as error:
        panns.load_panns(corrupt, device="cpu", batch_size=2)

    assert str(corrupt) in str(error.value)


def test_a_checkpoint_of_another_network_is_model_unavailable(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    no_model = tmp_path / "no_model.pth"
    torch.save({"weights": {}}, no_model)

    with pytest.raises(ModelUnavailable, match="does not fit the Cnn14 network"):
        panns.load_panns(other, device="cpu", batch_size=2)
    with pytest.raises(ModelUnavailable, match="has no 'model' weights"):
        panns.load_panns(no_model, device="cpu", batch_size=2)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert panns.resolve_device("auto") == "cpu"
    assert panns.resolve_device(" CPU ") == "cpu"
    with pytest.raises(ModelUnavailable, match="CUDA is not available"):
        panns.resolve_device("cuda:0")
    with pytest.raises(ModelUnavailable, match="not a device"):
        panns.resolve_device("tpu")


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert panns.resolve_precision("auto", "cuda:1") == "float16"
    assert panns.resolve_precision(" BFloat16 ", "cpu") == "bfloat16"
    assert panns.resolve_precision("float16", "cuda") == "float16"
    with pytest.raises(ModelUnavailable, match="needs a GPU"):
        panns.resolve_precision("float16", "cpu")
    with pytest.raises(ModelUnavailable, match="not a precision"):
        panns.resolve_precision("int8", "cpu")


def test_load_panns_runs_in_the_asked_precision(cnn10_checkpoint: Path) -> None:
    model = panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, precision="bfloat16")

    assert model.precision == "bfloat16"
    assert model.embed(tone(1.5)).dtype == np.float32
    with pytest.raises(ModelUnavailable, match="needs a GPU"):
        panns.load_panns(cnn10_checkpoint, variant="panns-cnn10", device="cpu", batch_size=2, precision="float16")


def _forbidden(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("loading the network must not start a process")


def test_loading_the_network_class_writes_nothing_and_runs_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(os, "system", _forbidden)
    monkeypatch.setattr(subprocess, "Popen", _forbidden)
    # Forget the earlier import so that this one really executes models.py.
    panns_networks.forget_network_code()
    for name in [name for name in sys.modules if name.startswith(panns_networks._PACKAGE_ALIAS)]:
        monkeypatch.delitem(sys.modules, name)

    cnn14 = panns.load_cnn14_class()
    cnn10 = panns.load_cnn10_class()

    assert cnn14.__name__ == "Cnn14" and issubclass(cnn14, torch.nn.Module)
    assert cnn10.__name__ == "Cnn10" and issubclass(cnn10, torch.nn.Module)
    assert panns.load_cnn14_class() is cnn14 and panns.load_cnn10_class() is cnn10
    assert "panns_inference" not in sys.modules
    assert list(home.iterdir()) == []
    assert not (Path.home() / "panns_data").exists()


def test_a_fresh_interpreter_loads_the_network_without_touching_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import sys; from embeddings import panns; panns.load_cnn14_class(); panns.load_cnn10_class(); "
        "assert 'panns_inference' not in sys.modules, 'the real package ran'; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib was left imported'"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("XDG_", "MPLCONFIGDIR"))}
    env["HOME"] = str(home)

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []


# --- Downloading -----------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server: its base URL and the folder it serves."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on a port just released by bind without listen.
    return f"http://127.0.0.1:{port}/{panns.CHECKPOINT_FILE_NAME}"


PAYLOAD = np.random.default_rng(2).bytes(300_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()


def test_fetch_installs_a_verified_file_atomically(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "weights.pth").write_bytes(PAYLOAD)
    dest = tmp_path / "models" / "nested" / panns.CHECKPOINT_FILE_NAME

    result = panns.fetch_checkpoint(dest, url=f"{base}/weights.pth", md5=PAYLOAD_MD5.upper(), min_bytes=100_000)

    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]
    assert dest.stat().st_mode & 0o777 == 0o644


def test_fetch_rejects_a_wrong_checksum(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "weights.pth").write_bytes(PAYLOAD)
    dest = tmp_path / "models" / panns.CHECKPOINT_FILE_NAME

    with pytest.raises(ModelUnavailable, match="MD5"):
        panns.fetch_checkpoint(dest, url=f"{base}/weights.pth", md5="0" * 32, min_bytes=100_000)

    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_fetch_rejects_a_short_file(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "weights.pth").write_bytes(PAYLOAD)
    dest = tmp_path / panns.CHECKPOINT_FILE_NAME

    with pytest.raises(ModelUnavailable, match="only 300000 bytes"):
        panns.fetch_checkpoint(dest, url=f"{base}/weights.pth", md5=PAYLOAD_MD5)

    assert list(tmp_path.iterdir()) == [root]


def test_fetch_reports_http_errors(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, _ = web
    dest = tmp_path / "models" / panns.CHECKPOINT_FILE_NAME

    with pytest.raises(ModelUnavailable, match="HTTP 404"):
        panns.fetch_checkpoint(dest, url=f"{base}/missing.pth", md5=PAYLOAD_MD5, min_bytes=1)

    assert list(dest.parent.iterdir()) == []


def test_fetch_offline_fails_fast_and_says_where_the_file_goes(tmp_path: Path, closed_url: str) -> None:
    dest = tmp_path / "models" / panns.CHECKPOINT_FILE_NAME

    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as error:
        panns.fetch_checkpoint(dest, url=closed_url, timeout=5)

    assert time.monotonic() - started < 5
    message = str(error.value)
    assert str(dest) in message and closed_url in message
    assert list(dest.parent.iterdir()) == []


def test_fetch_only_downloads_over_http(tmp_path: Path) -> None:
    dest = tmp_path / panns.CHECKPOINT_FILE_NAME
    source = tmp_path / "local.pth"
    source.write_bytes(PAYLOAD)

    with pytest.raises(ModelUnavailable, match="not an http"):
        panns.fetch_checkpoint(dest, url=source.as_uri(), md5=PAYLOAD_MD5, min_bytes=1)

    assert not dest.exists()


def test_fetch_never_overwrites_an_existing_file(tmp_path: Path, closed_url: str) -> None:
    dest = tmp_path / panns.CHECKPOINT_FILE_NAME
    dest.write_bytes(b"keep me")

    assert panns.fetch_checkpoint(dest, url=closed_url) == dest
    assert dest.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [dest]


# --- The fetch_model command -----------------------------------------------------------------------


def test_fetch_model_offline_is_a_command_error(tmp_path: Path, closed_url: str) -> None:
    dest = tmp_path / panns.CHECKPOINT_FILE_NAME

    with pytest.raises(CommandError) as error:
        call_command("fetch_model", dest=dest, url=closed_url, stdout=io.StringIO())

    assert str(dest) in str(error.value)
    assert not dest.exists()


def test_fetch_model_reports_bad_downloads_and_arguments(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "weights.pth").write_bytes(PAYLOAD)
    dest = tmp_path / "models" / panns.CHECKPOINT_FILE_NAME
    out = io.StringIO()

    with pytest.raises(CommandError, match="only 300000 bytes"):
        call_command("fetch_model", dest=dest, url=f"{base}/weights.pth", md5=PAYLOAD_MD5, stdout=out)
    with pytest.raises(CommandError, match="not an MD5 checksum"):
        call_command("fetch_model", dest=dest, md5="abc", stdout=out)
    assert not dest.exists()


def test_fetch_model_leaves_the_configured_checkpoint_alone(tmp_path: Path, settings: Any) -> None:
    present = tmp_path / panns.CHECKPOINT_FILE_NAME
    present.write_bytes(b"already here")
    settings.PANNS_CHECKPOINT = present
    out = io.StringIO()

    call_command("fetch_model", url="http://127.0.0.1:9/never-used", no_labels=True, stdout=out)

    assert "already" in out.getvalue() and str(present) in out.getvalue()
    assert present.read_bytes() == b"already here"
    assert list(tmp_path.iterdir()) == [present]


def test_fetch_model_for_cnn10_offline_fails_fast_naming_the_path(
    settings: Any, tmp_path: Path, closed_url: str
) -> None:
    expected = settings.PANNS_DATA_DIR / panns.CNN10.checkpoint_file_name

    started = time.monotonic()
    with pytest.raises(CommandError) as error:
        call_command("fetch_model", model="panns-cnn10", url=closed_url, timeout=5, stdout=io.StringIO())

    assert time.monotonic() - started < 5
    assert str(expected) in str(error.value) and closed_url in str(error.value)
    assert not expected.exists()


def test_fetch_model_defaults_to_the_configured_panns_model(settings: Any, closed_url: str) -> None:
    settings.EMBEDDING_MODEL = "panns-cnn10"
    out = io.StringIO()

    with pytest.raises(CommandError, match=panns.CNN10.checkpoint_file_name):
        call_command("fetch_model", url=closed_url, stdout=out)

    assert "panns-cnn10" in out.getvalue()


@pytest.fixture
def cnn10_payload(web: tuple[str, Path]) -> tuple[str, str]:
    """A file as large as Cnn10's checkpoint, served at the returned URL with the returned MD5."""
    base, root = web
    payload = PAYLOAD * (panns.CNN10.min_bytes // len(PAYLOAD) + 1)
    (root / "cnn10.pth").write_bytes(payload)
    return f"{base}/cnn10.pth", hashlib.md5(payload, usedforsecurity=False).hexdigest()


def _label_csv(count: int = 527) -> bytes:
    rows = "".join(f'{i},/m/{i:05x},"Sound {i}, loud"\n' for i in range(count))
    return ("index,mid,display_name\n" + rows).encode()


def test_fetch_model_installs_the_checkpoint_and_the_labels_beside_it(
    settings: Any, web: tuple[str, Path], cnn10_payload: tuple[str, str]
) -> None:
    base, root = web
    (root / "labels.csv").write_bytes(_label_csv())
    url, md5 = cnn10_payload
    out = io.StringIO()

    call_command(
        "fetch_model",
        model="panns-cnn10",
        url=url,
        md5=md5,
        labels_url=f"{base}/labels.csv",
        stdout=out,
        stderr=io.StringIO(),
    )

    data_dir = settings.PANNS_DATA_DIR
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(
        [panns.CNN10.checkpoint_file_name, panns.LABELS_FILE_NAME]
    )
    assert panns.read_labels(data_dir / panns.LABELS_FILE_NAME, classes_num=527)[1] == "Sound 1, loud"
    assert (data_dir / panns.LABELS_FILE_NAME).stat().st_mode & 0o777 == 0o644


def test_fetch_model_only_warns_when_the_labels_fail(
    settings: Any, web: tuple[str, Path], cnn10_payload: tuple[str, str], closed_url: str
) -> None:
    base, root = web
    (root / "short.csv").write_bytes(_label_csv(100))
    url, md5 = cnn10_payload
    out, err = io.StringIO(), io.StringIO()
    common = {"model": "panns-cnn10", "url": url, "md5": md5, "stdout": out, "stderr": err}

    call_command("fetch_model", labels_url=closed_url, **common)
    call_command("fetch_model", labels_url=f"{base}/short.csv", **common)

    data_dir = settings.PANNS_DATA_DIR
    assert [p.name for p in data_dir.iterdir()] == [panns.CNN10.checkpoint_file_name]
    assert "already" in out.getvalue()
    warnings = err.getvalue()
    assert warnings.count("no sound tags") == 2 and closed_url in warnings and "names 100 classes" in warnings


def test_fetch_labels_never_overwrites(tmp_path: Path, closed_url: str) -> None:
    dest = tmp_path / panns.LABELS_FILE_NAME
    dest.write_text("mine")

    assert panns.fetch_labels(dest, url=closed_url) == dest
    assert dest.read_text() == "mine"


def test_fetch_labels_refuses_something_huge(tmp_path: Path, web: tuple[str, Path]) -> None:
    base, root = web
    (root / "big.csv").write_bytes(b"x" * 1_200_000)
    dest = tmp_path / "models" / panns.LABELS_FILE_NAME

    with pytest.raises(ModelUnavailable, match="far more than expected"):
        panns.fetch_labels(dest, url=f"{base}/big.csv")

    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("seconds", [0.3, 3.0, 10.0, 12.0, 37.3, 40.0])
def test_windows_cut_from_blocks_are_the_windows_of_the_whole_song(seconds: float) -> None:
    window, hop, minimum = 10 * SAMPLE_RATE, 5 * SAMPLE_RATE, SAMPLE_RATE
    rng = np.random.default_rng(int(seconds * 10))
    song = rng.standard_normal(round(seconds * SAMPLE_RATE)).astype(np.float32)
    padded = np.pad(song, (0, max(0, minimum - song.size)))
    length = min(padded.size, window)
    expected = [padded[start : start + length] for start in panns.window_starts(padded.size, window=window, hop=hop)]

    windows = panns.Windows(window=window, hop=hop, min_samples=minimum)
    cuts = [0, *sorted(rng.integers(0, song.size, size=6)), song.size]
    got = [w for a, b in itertools.pairwise(cuts) for w in windows.feed(song[a:b])] + windows.finish()

    assert len(got) == len(expected) == windows.count
    for mine, theirs in zip(got, expected, strict=True):
        assert np.array_equal(mine, theirs)


def test_a_song_embedded_block_by_block_equals_the_whole_song(cnn10: panns.PannsEmbedder, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    song = np.concatenate([tone(14.0), (0.2 * rng.standard_normal(9 * SAMPLE_RATE)).astype(np.float32)])
    blocks = np.array_split(song, [SAMPLE_RATE, 7 * SAMPLE_RATE, 19 * SAMPLE_RATE])

    whole = cnn10.analyse(song)
    streamed = cnn10.analyse_blocks(iter(blocks))

    assert np.allclose(streamed.vector, whole.vector, atol=1e-6)
    assert streamed.tags == whole.tags
