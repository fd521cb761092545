"""The PANNs Cnn14 embedder: safe loading, whole-song embeddings, and the checkpoint download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
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

from embeddings import panns
from embeddings.base import SAMPLE_RATE, EmbeddingError, ModelUnavailable

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
    return panns.load_panns(checkpoint, device="cpu", batch_size=4)


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

    assert embedder.window_count(song.size) == 7
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
    panns._import_cnn14_class.cache_clear()
    for name in [name for name in sys.modules if name.startswith(panns._PACKAGE_ALIAS)]:
        monkeypatch.delitem(sys.modules, name)

    cnn14 = panns.load_cnn14_class()

    assert cnn14.__name__ == "Cnn14" and issubclass(cnn14, torch.nn.Module)
    assert panns.load_cnn14_class() is cnn14
    assert "panns_inference" not in sys.modules
    assert list(home.iterdir()) == []
    assert not (Path.home() / "panns_data").exists()


def test_a_fresh_interpreter_loads_the_network_without_touching_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import sys; from embeddings import panns; panns.load_cnn14_class(); "
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

    call_command("fetch_model", url="http://127.0.0.1:9/never-used", stdout=out)

    assert "already" in out.getvalue() and str(present) in out.getvalue()
    assert present.read_bytes() == b"already here"
