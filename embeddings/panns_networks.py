"""The PANNs networks (Cnn14, Cnn10), their released checkpoints, and where and how precisely they run.

The network code comes from the `panns-inference` package, but that package's `__init__` downloads a
label file with `wget` into ~/panns_data, so only its `models.py` is loaded, under a private name.
It ships Cnn14 only; Cnn10 is defined here from the same building blocks, with the state_dict key
names of the official release so that its checkpoint loads strictly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import re
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embeddings.base import SAMPLE_RATE, ModelUnavailable
from embeddings.cpu import cpu_capabilities

if TYPE_CHECKING:
    import torch

CLASSES_NUM = 527

# The front end every released PANNs checkpoint was trained with (32 kHz log-mel, 64 bands).
FRONT_END: Mapping[str, int] = {
    "sample_rate": SAMPLE_RATE,
    "window_size": 1024,
    "hop_size": 320,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 14000,
    "classes_num": CLASSES_NUM,
}

# The private name under which panns_inference's modules are loaded, so its real __init__ never runs.
_PACKAGE_ALIAS = "_resonance_panns_inference"
_import_lock = threading.Lock()


@dataclass(frozen=True)
class PannsVariant:
    """One released PANNs network and its checkpoint."""

    name: str  # the EMBEDDING_MODEL value
    network: str  # the class name in the PANNs code
    dim: int  # the embedding size (fc1's width)
    # The (time, frequency) average-pooling size after each ConvBlock, in order.
    pools: tuple[tuple[int, int], ...]
    checkpoint_file_name: str
    url: str
    md5: str
    # Anything much smaller than the real file is a truncated download or an error page.
    min_bytes: int
    size_text: str
    classes_num: int = CLASSES_NUM
    # Shorter clips are zero-padded: the time poolings fail on a few frames.
    min_samples: int = SAMPLE_RATE

    def build(self) -> torch.nn.Module:
        """The network with the checkpoint's hyper-parameters and freshly initialised weights."""
        network_class = load_cnn14_class() if self.network == "Cnn14" else load_cnn10_class()
        return network_class(**FRONT_END)

    def fits(self, weights: Mapping[str, Any]) -> bool:
        """Whether a state_dict has this network's depth and width (a cheap look, not a strict load)."""
        fc1 = weights.get("fc1.weight")
        last = len(self.pools)
        return (
            tuple(getattr(fc1, "shape", ())) == (self.dim, self.dim)
            and f"conv_block{last}.conv1.weight" in weights
            and f"conv_block{last + 1}.conv1.weight" not in weights
        )

    @property
    def fix_hint(self) -> str:
        return (
            f"run `python manage.py fetch_model --model {self.name}` (needs internet) or set PANNS_CHECKPOINT "
            f"to a downloaded {self.checkpoint_file_name}, or set EMBEDDING_MODEL=features"
        )


CNN14 = PannsVariant(
    name="panns-cnn14",
    network="Cnn14",
    dim=2048,
    pools=((2, 2),) * 5 + ((1, 1),),
    checkpoint_file_name="Cnn14_mAP=0.431.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    md5="541141fa2ee191a88f24a3219fff024e",
    min_bytes=300_000_000,
    size_text="about 330 MB",
)
CNN10 = PannsVariant(
    name="panns-cnn10",
    network="Cnn10",
    dim=512,
    pools=((2, 2),) * 4,
    checkpoint_file_name="Cnn10_mAP=0.380.pth",
    url="https://zenodo.org/record/3987831/files/Cnn10_mAP%3D0.380.pth?download=1",
    md5="bfb1f1f9968938fa8ef4012b8471f5f6",
    min_bytes=15_000_000,
    size_text="about 20 MB",
)
VARIANTS: Mapping[str, PannsVariant] = {variant.name: variant for variant in (CNN14, CNN10)}


def get_variant(name: str) -> PannsVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown PANNs model {name!r}; use one of {', '.join(VARIANTS)}") from None


# --- Loading the network code ----------------------------------------------------------------------


def load_cnn14_class() -> type[torch.nn.Module]:
    """The `Cnn14` class from panns-inference, imported without running the package's `__init__`."""
    with _import_lock:
        return _import_cnn14_class()


def load_cnn10_class() -> type[torch.nn.Module]:
    """Cnn10 (four ConvBlocks, 64-128-256-512 channels) built from panns-inference's blocks."""
    with _import_lock:
        return _define_cnn10_class()


def build_cnn14() -> torch.nn.Module:
    return CNN14.build()


def build_cnn10() -> torch.nn.Module:
    return CNN10.build()


@functools.cache
def _import_cnn14_class() -> type[torch.nn.Module]:
    cnn14: type[torch.nn.Module] = _import_models_module().Cnn14
    return cnn14


@functools.cache
def _define_cnn10_class() -> type[torch.nn.Module]:
    import torch
    import torch.nn.functional as F

    models = _import_models_module()

    class Cnn10(torch.nn.Module):
        """The released Cnn10: the attribute names are the checkpoint's state_dict keys."""

        def __init__(
            self,
            sample_rate: int,
            window_size: int,
            hop_size: int,
            mel_bins: int,
            fmin: int,
            fmax: int,
            classes_num: int,
        ) -> None:
            super().__init__()
            self.spectrogram_extractor = models.Spectrogram(
                n_fft=window_size,
                hop_length=hop_size,
                win_length=window_size,
                window="hann",
                center=True,
                pad_mode="reflect",
                freeze_parameters=True,
            )
            self.logmel_extractor = models.LogmelFilterBank(
                sr=sample_rate,
                n_fft=window_size,
                n_mels=mel_bins,
                fmin=fmin,
                fmax=fmax,
                ref=1.0,
                amin=1e-10,
                top_db=None,
                freeze_parameters=True,
            )
            # The training-only SpecAugmentation holds no weights, so leaving it out changes no key.
            self.bn0 = torch.nn.BatchNorm2d(mel_bins)
            self.conv_block1 = models.ConvBlock(in_channels=1, out_channels=64)
            self.conv_block2 = models.ConvBlock(in_channels=64, out_channels=128)
            self.conv_block3 = models.ConvBlock(in_channels=128, out_channels=256)
            self.conv_block4 = models.ConvBlock(in_channels=256, out_channels=512)
            self.fc1 = torch.nn.Linear(512, 512, bias=True)
            self.fc_audioset = torch.nn.Linear(512, classes_num, bias=True)
            models.init_bn(self.bn0)
            models.init_layer(self.fc1)
            models.init_layer(self.fc_audioset)

        def forward(self, input: torch.Tensor, mixup_lambda: object = None) -> dict[str, torch.Tensor]:
            """Inference as in the PANNs code: (batch, samples) -> embedding and clipwise probabilities."""
            x = self.logmel_extractor(self.spectrogram_extractor(input))
            x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
            for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
                x = F.dropout(block(x, pool_size=(2, 2), pool_type="avg"), p=0.2, training=self.training)
            x = torch.mean(x, dim=3)
            x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
            x = F.dropout(x, p=0.5, training=self.training)
            x = F.relu_(self.fc1(x))
            embedding = F.dropout(x, p=0.5, training=self.training)
            return {"clipwise_output": torch.sigmoid(self.fc_audioset(x)), "embedding": embedding}

    return Cnn10


@functools.cache
def _import_models_module() -> types.ModuleType:
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
            return importlib.import_module(f"{_PACKAGE_ALIAS}.models")
    except ImportError as exc:
        raise ModelUnavailable(
            f"the PANNs network code could not be imported ({first_line(exc)}); reinstall the project "
            "requirements (panns-inference, torchlibrosa), or set EMBEDDING_MODEL=features"
        ) from exc


def forget_network_code() -> None:
    """Drop the imported network code so that the next use imports it afresh (tests)."""
    for cached in (_import_models_module, _import_cnn14_class, _define_cnn10_class):
        cached.cache_clear()


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


# --- Devices and precision -------------------------------------------------------------------------


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


PRECISIONS = ("float32", "float16", "bfloat16")


def resolve_precision(setting: str, device: str) -> str:
    """Turn EMBEDDING_PRECISION (`auto` or a dtype name) into the dtype the conv stack runs in on `device`."""
    value = setting.strip().lower()
    if value == "auto":
        if device.startswith("cuda"):
            return "float16"
        # Where bfloat16 is emulated it is far slower than float32 (under 0.4x realtime on an AVX2-only host).
        return "bfloat16" if cpu_capabilities().native_bfloat16 else "float32"
    if value not in PRECISIONS:
        raise ModelUnavailable(f"EMBEDDING_PRECISION={setting!r} is not a precision; use auto, {', '.join(PRECISIONS)}")
    if value == "float16" and not device.startswith("cuda"):
        # PyTorch runs float16 convolutions on a CPU through slow fallbacks (20x slower than float32 here).
        raise ModelUnavailable(
            "EMBEDDING_PRECISION=float16 needs a GPU; on a CPU use bfloat16 (faster where the CPU supports it), "
            "float32 or auto"
        )
    return value


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    if len(detail) > limit:
        detail = detail[:limit] + "..."
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
