"""PANNs Cnn14 (AudioSet-trained) song embeddings: 2048-d, averaged over the whole song.

The Cnn14 network comes from the `panns-inference` package, but that package's `__init__` downloads a
label file with `wget` into ~/panns_data and its `AudioTagging` overwrites small checkpoints, so only
its `models.py` is loaded here and the weights are read from a local file. Nothing in this module
downloads anything except `fetch_checkpoint`, which `python manage.py fetch_model` runs on request.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings.base import SAMPLE_RATE, EmbeddingError, FloatArray, ModelUnavailable, l2_normalise

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MODEL_NAME = "panns-cnn14"
EMBEDDING_DIM = 2048
CLASSES_NUM = 527
CHECKPOINT_FILE_NAME = "Cnn14_mAP=0.431.pth"
CHECKPOINT_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
CHECKPOINT_MD5 = "541141fa2ee191a88f24a3219fff024e"
# The real file is about 327 MB; anything much smaller is a truncated download or an error page.
CHECKPOINT_MIN_BYTES = 300_000_000

# The hyper-parameters the released checkpoint was trained with.
CNN14_CONFIG: Mapping[str, int] = {
    "sample_rate": SAMPLE_RATE,
    "window_size": 1024,
    "hop_size": 320,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 14000,
    "classes_num": CLASSES_NUM,
}

# Cnn14 was trained on 10 s AudioSet clips; half-overlapping windows cover a whole song evenly.
WINDOW_SECONDS = 10.0
HOP_SECONDS = 5.0
# Five 2x time poolings fail on inputs shorter than about a second.
MIN_SAMPLES = SAMPLE_RATE

_FIX_HINT = (
    "run `python manage.py fetch_model` (needs internet) or set PANNS_CHECKPOINT to a downloaded "
    f"{CHECKPOINT_FILE_NAME}, or set EMBEDDING_MODEL=features"
)
# The private name under which panns_inference's modules are loaded, so its real __init__ never runs.
_PACKAGE_ALIAS = "_resonance_panns_inference"
_import_lock = threading.Lock()


# --- Loading the network class ---------------------------------------------------------------------


def load_cnn14_class() -> type[torch.nn.Module]:
    """The `Cnn14` class from panns-inference, imported without running the package's `__init__`."""
    with _import_lock:
        return _import_cnn14_class()


@functools.cache
def _import_cnn14_class() -> type[torch.nn.Module]:
    # find_spec on a top-level package locates it without executing it.
    spec = importlib.util.find_spec("panns_inference")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelUnavailable(
            "the panns-inference package is not installed; install the project requirements, "
            "or set EMBEDDING_MODEL=features"
        )
    package = sys.modules.get(_PACKAGE_ALIAS)
    if package is None:
        package = types.ModuleType(_PACKAGE_ALIAS)
        package.__path__ = locations
        sys.modules[_PACKAGE_ALIAS] = package
    try:
        with _matplotlib_stand_in():
            models = importlib.import_module(f"{_PACKAGE_ALIAS}.models")
    except ImportError as exc:
        raise ModelUnavailable(
            f"the PANNs network code could not be imported ({_first_line(exc)}); reinstall the project "
            "requirements (panns-inference, torchlibrosa), or set EMBEDDING_MODEL=features"
        ) from exc
    cnn14: type[torch.nn.Module] = models.Cnn14
    return cnn14


@contextlib.contextmanager
def _matplotlib_stand_in() -> Iterator[None]:
    """Let models.py run its unused `import matplotlib.pyplot` without matplotlib writing caches into HOME."""
    added: list[str] = []
    if "matplotlib.pyplot" not in sys.modules:
        pyplot = types.ModuleType("matplotlib.pyplot")
        if "matplotlib" not in sys.modules:
            parent = types.ModuleType("matplotlib")
            parent.__path__ = []
            parent.pyplot = pyplot  # type: ignore[attr-defined]
            sys.modules["matplotlib"] = parent
            added.append("matplotlib")
        sys.modules["matplotlib.pyplot"] = pyplot
        added.append("matplotlib.pyplot")
    try:
        yield
    finally:
        # Later real imports of matplotlib must get the real package.
        for name in added:
            sys.modules.pop(name, None)


def build_cnn14() -> torch.nn.Module:
    """A Cnn14 with the checkpoint's hyper-parameters and freshly initialised weights."""
    return load_cnn14_class()(**CNN14_CONFIG)


# --- Devices ---------------------------------------------------------------------------------------


def resolve_device(setting: str) -> str:
    """Turn EMBEDDING_DEVICE (`auto`, `cpu`, `cuda`, `cuda:N`) into a device PyTorch can use here."""
    import torch

    value = setting.strip().lower()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if match is None:
        raise ModelUnavailable(f"EMBEDDING_DEVICE={setting!r} is not a device; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ModelUnavailable(
            f"EMBEDDING_DEVICE={setting!r} asks for a GPU, but CUDA is not available to PyTorch "
            f"{torch.__version__} on this machine; set EMBEDDING_DEVICE=cpu or auto"
        )
    if match.group(1) is not None:
        index = int(match.group(1))
        count = torch.cuda.device_count()
        if index >= count:
            raise ModelUnavailable(
                f"EMBEDDING_DEVICE={setting!r} names GPU {index}, but only {count} GPU(s) are visible; "
                "use cuda, a visible cuda:N, or auto"
            )
    return value


# --- The embedder ----------------------------------------------------------------------------------


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


class PannsEmbedder:
    """Embeds whole songs with an already-built Cnn14: mean of its 2048-d embedding over 10 s windows."""

    name: str = MODEL_NAME
    dim: int = EMBEDDING_DIM

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        window_seconds: float = WINDOW_SECONDS,
        hop_seconds: float = HOP_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.device = device
        self.batch_size = batch_size
        self.window_samples = round(window_seconds * SAMPLE_RATE)
        self.hop_samples = round(hop_seconds * SAMPLE_RATE)
        if self.window_samples < MIN_SAMPLES or self.hop_samples < 1:
            raise ValueError("windows must be at least 1 s long and the hop positive")
        self._model = model.to(device)
        self._model.eval()
        # One inference at a time: bounds GPU memory and keeps `last_clipwise` consistent.
        self._lock = threading.Lock()
        self.last_clipwise: FloatArray | None = None

    def window_count(self, num_samples: int) -> int:
        """How many windows a clip of `num_samples` is split into."""
        return len(window_starts(max(num_samples, MIN_SAMPLES), window=self.window_samples, hop=self.hop_samples))

    def embed(self, samples: FloatArray) -> FloatArray:
        vector, _ = self.embed_with_tags(samples)
        return vector

    def embed_with_tags(self, samples: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The unit embedding and the mean AudioSet (527-class) probabilities over the song's windows."""
        import torch

        audio = _validated(samples)
        if audio.size < MIN_SAMPLES:
            audio = np.pad(audio, (0, MIN_SAMPLES - audio.size))
        window = min(audio.size, self.window_samples)
        starts = window_starts(audio.size, window=self.window_samples, hop=self.hop_samples)
        embedding_sum = np.zeros(EMBEDDING_DIM, dtype=np.float64)
        clipwise_sum = np.zeros(CLASSES_NUM, dtype=np.float64)
        with self._lock, torch.inference_mode():
            self._model.eval()
            for first in range(0, len(starts), self.batch_size):
                # Slice per batch so a long song never holds every window in memory at once.
                batch = np.stack([audio[start : start + window] for start in starts[first : first + self.batch_size]])
                output = self._model(torch.from_numpy(batch).to(self.device))
                embedding_sum += _summed(output["embedding"], EMBEDDING_DIM)
                clipwise_sum += _summed(output["clipwise_output"], CLASSES_NUM)
            vector = l2_normalise(embedding_sum / len(starts))
            clipwise = (clipwise_sum / len(starts)).astype(np.float32)
            self.last_clipwise = clipwise
        return vector, clipwise


def _validated(samples: FloatArray) -> FloatArray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise EmbeddingError(f"expected mono audio as a 1-D array, got shape {audio.shape}")
    if audio.size == 0:
        raise EmbeddingError("the audio is empty")
    if not np.all(np.isfinite(audio)):
        raise EmbeddingError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio)


def _summed(batch_output: torch.Tensor, width: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    if batch_output.ndim != 2 or batch_output.shape[1] != width:
        raise RuntimeError(f"the network returned shape {tuple(batch_output.shape)}, expected (batch, {width})")
    # Summing in float64 keeps the mean over hundreds of windows free of float32 rounding drift.
    summed: np.ndarray[Any, np.dtype[np.float64]] = batch_output.double().sum(dim=0).cpu().numpy()
    return summed


# --- Loading the weights ---------------------------------------------------------------------------


def load_panns(checkpoint: Path, *, device: str, batch_size: int) -> PannsEmbedder:
    """A ready embedder from a local Cnn14 checkpoint; never downloads."""
    import torch

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelUnavailable(f"the PANNs checkpoint {checkpoint} does not exist; {_FIX_HINT}")
    resolved = resolve_device(device)
    try:
        # weights_only: a checkpoint is data and must not be able to run code while unpickling.
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} could not be read ({_first_line(exc)}); it is damaged or not a "
            f"PyTorch checkpoint. Delete it and {_FIX_HINT}"
        ) from exc
    weights = state.get("model") if isinstance(state, Mapping) else None
    if not isinstance(weights, Mapping):
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} has no 'model' weights; it is not {CHECKPOINT_FILE_NAME}. "
            f"Delete it and {_FIX_HINT}"
        )
    model = build_cnn14()
    try:
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelUnavailable(
            f"the PANNs checkpoint {checkpoint} does not fit the Cnn14 network ({_first_line(exc)}); "
            f"it is not {CHECKPOINT_FILE_NAME}. Delete it and {_FIX_HINT}"
        ) from exc
    return PannsEmbedder(model, device=resolved, batch_size=batch_size)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    if len(detail) > limit:
        detail = detail[:limit] + "..."
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --- Downloading the weights -----------------------------------------------------------------------


def fetch_checkpoint(
    dest: Path,
    *,
    url: str = CHECKPOINT_URL,
    md5: str = CHECKPOINT_MD5,
    min_bytes: int = CHECKPOINT_MIN_BYTES,
    timeout: float = 30,
) -> Path:
    """Download the checkpoint to `dest`, verified and atomically; an existing `dest` is left alone."""
    dest = Path(dest)
    if dest.exists():
        if dest.is_file() and dest.stat().st_size < min_bytes:
            logger.warning("%s exists but is only %d bytes; leaving it untouched", dest, dest.stat().st_size)
        return dest
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ModelUnavailable(f"{url!r} is not an http(s) URL; copy a local file to {dest} instead")
    expected_md5 = md5.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", expected_md5):
        raise ValueError(f"{md5!r} is not an MD5 checksum (32 hex digits)")
    manual = (
        f"On a machine with internet, download {url} and copy it to {dest} "
        f"(or set PANNS_CHECKPOINT to where you put it), or set EMBEDDING_MODEL=features"
    )
    temp_path: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A temp file beside dest makes the final rename atomic: dest is either absent or complete.
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False) as out:
            temp_path = Path(out.name)
            size, digest = _download(url, out, timeout=timeout, dest=dest, manual=manual)
            out.flush()
            os.fsync(out.fileno())
        if size < min_bytes:
            raise ModelUnavailable(
                f"the download from {url} is only {size} bytes, expected at least {min_bytes}; "
                f"it was cut short or the server sent an error page. {manual}"
            )
        if digest != expected_md5:
            raise ModelUnavailable(
                f"the download from {url} has MD5 {digest}, expected {expected_md5}; the file is corrupt "
                f"or not {CHECKPOINT_FILE_NAME}. {manual}"
            )
        # NamedTemporaryFile creates 0600; web and worker may run as different users.
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, dest)
    except BaseException as exc:
        if temp_path is not None:
            temp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ModelUnavailable(f"cannot write the checkpoint to {dest} ({_first_line(exc)}). {manual}") from exc
        raise
    logger.info("PANNs checkpoint installed at %s (%d bytes)", dest, size)
    return dest


def _download(url: str, out: Any, *, timeout: float, dest: Path, manual: str) -> tuple[int, str]:
    """Stream `url` into `out`; returns the byte count and MD5 hex digest."""
    from tqdm import tqdm

    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    # The scheme was checked to be http(s) by fetch_checkpoint.
    request = urllib.request.Request(url, headers={"User-Agent": "resonance-fetch-model"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length_header = response.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, file=sys.stderr
            ) as progress:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise ModelUnavailable(f"downloading {url} failed: HTTP {exc.code} {exc.reason}. {manual}") from exc
    except urllib.error.URLError as exc:
        reason = _first_line(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
        raise ModelUnavailable(f"cannot reach {url} ({reason}); no internet? {manual}") from exc
    except OSError as exc:
        # Timeouts and dropped connections while reading the body.
        raise ModelUnavailable(f"downloading {url} failed ({_first_line(exc)}). {manual}") from exc
    if total is not None and size != total:
        raise ModelUnavailable(f"the download from {url} stopped at {size} of {total} bytes. {manual}")
    return size, digest.hexdigest()
