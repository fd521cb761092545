"""What the host's CPU can do natively (for choosing a precision), and how many threads each worker process gets."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuCapabilities:
    """The vector extensions that decide how fast a network runs, as the kernel reports them."""

    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx: bool

    @property
    def native_bfloat16(self) -> bool:
        """Whether bfloat16 matrix products run in hardware; elsewhere PyTorch emulates them, slower than float32."""
        return self.avx512_bf16 or self.amx

    def describe(self) -> str:
        names = {"AVX2": self.avx2, "AVX-512": self.avx512, "AVX512_BF16": self.avx512_bf16, "AMX": self.amx}
        have = [name for name, present in names.items() if present] or ["none of AVX2/AVX-512/BF16/AMX"]
        return f"{', '.join(have)}; native bfloat16: {'yes' if self.native_bfloat16 else 'no'}"


def parse_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (every core of a host has the same)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def capabilities_from_flags(flags: frozenset[str]) -> CpuCapabilities:
    return CpuCapabilities(
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_bf16" in flags and "amx_tile" in flags,
    )


def read_cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        # No /proc (another OS, a sandbox): claim nothing, so that nothing is chosen that might be emulated.
        return ""


@functools.cache
def cpu_capabilities() -> CpuCapabilities:
    """This host's capabilities, read once per process."""
    return capabilities_from_flags(parse_flags(read_cpuinfo()))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_per_process(processes: int, *, configured: int = 0, cores: int | None = None) -> int:
    """Threads for one of `processes` worker processes sharing the host: `configured`, else cores / processes."""
    if configured > 0:
        return configured
    return max(1, (cores or usable_cores()) // max(1, processes))


def set_threads(count: int) -> None:
    """Give torch (and the exported runtimes, which read `current_threads`) `count` compute threads."""
    import torch

    global _threads
    _threads = count
    torch.set_num_threads(count)
    logger.info("embedding models use %d compute threads in this process", count)


_threads = 0


def current_threads() -> int:
    """The threads `set_threads` gave this process, or torch's own count when it was never called."""
    if _threads:
        return _threads
    import torch

    return int(torch.get_num_threads())
