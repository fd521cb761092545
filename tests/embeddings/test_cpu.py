"""CPU capability detection, the precision `auto` picks from it, and the threads each worker process gets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from embeddings import cpu, panns

# Trimmed /proc/cpuinfo texts of real hosts: the flags line is what matters.
AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n\nprocessor\t: 1\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
AMX = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
AVX512_NO_BF16 = "processor\t: 0\nflags\t\t: avx2 avx512f avx512bw avx512_vnni\n"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Make the process read the given text as /proc/cpuinfo."""

    def pretend(text: str) -> None:
        fake = tmp_path / "cpuinfo"
        fake.write_text(text)
        monkeypatch.setattr(cpu, "CPUINFO", fake)
        cpu.cpu_capabilities.cache_clear()

    yield pretend
    cpu.cpu_capabilities.cache_clear()


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (AVX2_ONLY, "float32"),
        (AVX512_NO_BF16, "float32"),
        (AVX512_BF16, "bfloat16"),
        (AMX, "bfloat16"),
        ("", "float32"),
    ],
    ids=["avx2-only", "avx512-without-bf16", "avx512-bf16", "amx", "no-cpuinfo"],
)
def test_auto_precision_is_bfloat16_only_where_the_cpu_runs_it_natively(
    host: Callable[[str], None], cpuinfo: str, expected: str
) -> None:
    host(cpuinfo)

    assert panns.resolve_precision("auto", "cpu") == expected
    # A GPU keeps float16 whatever its host CPU is; an explicit choice is never overridden.
    assert panns.resolve_precision("auto", "cuda") == "float16"
    assert panns.resolve_precision("float32", "cpu") == "float32"
    assert panns.resolve_precision("bfloat16", "cpu") == "bfloat16"


def test_an_unreadable_cpuinfo_claims_no_capability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "CPUINFO", tmp_path / "absent")
    cpu.cpu_capabilities.cache_clear()
    try:
        caps = cpu.cpu_capabilities()
    finally:
        cpu.cpu_capabilities.cache_clear()

    assert caps == cpu.CpuCapabilities(avx2=False, avx512=False, avx512_bf16=False, amx=False)
    assert not caps.native_bfloat16


def test_capabilities_are_described_for_benchmark_reports(host: Callable[[str], None]) -> None:
    host(AVX512_BF16)
    assert cpu.cpu_capabilities().describe() == "AVX2, AVX-512, AVX512_BF16; native bfloat16: yes"
    host(AVX2_ONLY)
    assert cpu.cpu_capabilities().describe() == "AVX2; native bfloat16: no"
    host(AMX)
    assert cpu.cpu_capabilities().amx and cpu.cpu_capabilities().describe().endswith("AMX; native bfloat16: yes")


def test_amx_needs_its_tile_registers_too() -> None:
    assert not cpu.capabilities_from_flags(frozenset({"amx_bf16"})).amx
    assert cpu.capabilities_from_flags(frozenset({"amx_bf16", "amx_tile"})).native_bfloat16


def test_auto_precision_loads_bfloat16_on_a_bf16_host_and_float32_elsewhere(
    host: Callable[[str], None], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / panns.CNN10.checkpoint_file_name
    torch.save({"model": panns.CNN10.build().state_dict()}, checkpoint)

    host(AVX512_BF16)
    fast = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2)
    host(AVX2_ONLY)
    exact = panns.load_panns(checkpoint, variant="panns-cnn10", device="cpu", batch_size=2)

    assert (fast.precision, exact.precision) == ("bfloat16", "float32")


@pytest.mark.parametrize(
    ("processes", "cores", "configured", "expected"),
    [(1, 2, 0, 2), (2, 2, 0, 1), (3, 2, 0, 1), (2, 16, 0, 8), (4, 16, 3, 3)],
)
def test_worker_processes_share_the_cores(processes: int, cores: int, configured: int, expected: int) -> None:
    assert cpu.threads_per_process(processes, configured=configured, cores=cores) == expected


def test_set_threads_reaches_torch_and_the_exported_runtimes() -> None:
    before = torch.get_num_threads()
    try:
        cpu.set_threads(1)
        assert torch.get_num_threads() == 1 and cpu.current_threads() == 1
    finally:
        cpu.set_threads(before)


@pytest.mark.parametrize(
    ("pool", "concurrency", "expected"),
    [("prefork", 2, 2), ("prefork", "4", 4), ("solo", 1, 1), ("threads", 8, 1), ("celery.concurrency.prefork", 3, 3)],
)
def test_only_a_prefork_worker_splits_the_cores(pool: str, concurrency: object, expected: int) -> None:
    from config.celery import worker_processes

    assert worker_processes(pool, concurrency) == expected


def test_each_worker_process_gets_its_share_of_the_cores_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    from types import SimpleNamespace

    from config import celery, threads
    from embeddings import registry

    seen: list[int] = []
    blas: list[int] = []
    monkeypatch.setattr(registry, "warm_up", lambda: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(threads, "limit_blas", blas.append)
    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(celery, "_worker_processes", 1)
    before = torch.get_num_threads()
    try:
        celery._count_worker_processes(sender=SimpleNamespace(pool_cls="prefork", concurrency=2))
        celery._warm_up_model()
        settings.EMBEDDING_THREADS = 3  # type: ignore[attr-defined]
        celery._warm_up_model()
    finally:
        cpu.set_threads(before)

    assert seen == [1, 3]
    assert blas == [1, 3]
