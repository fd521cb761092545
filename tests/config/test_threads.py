"""BLAS threads per process: one per web process, a share of the cores per worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _blas_threads(code: str, **env: str) -> list[int]:
    """The thread counts of every BLAS loaded in a new process that ran `code` (and then loaded scipy's BLAS)."""
    script = code + (
        "\nimport scipy.linalg, json\nfrom threadpoolctl import threadpool_info\n"
        "print(json.dumps([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean | {"DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_web_process_runs_blas_on_one_thread_by_default() -> None:
    threads = _blas_threads("import config.wsgi")

    assert len(threads) >= 2  # numpy's OpenBLAS and scipy's, loaded after the app
    assert set(threads) == {1}


def test_web_blas_threads_come_from_settings() -> None:
    assert set(_blas_threads("import config.asgi", WEB_BLAS_THREADS="2")) == {2}


def test_a_worker_process_gives_blas_its_share_of_the_cores() -> None:
    code = (
        "import django\ndjango.setup()\nimport config.celery as c\nimport embeddings.registry as r\n"
        "r.warm_up = lambda: None\nc._worker_processes = 1\nc._warm_up_model()\n"
    )

    assert set(_blas_threads(code, EMBEDDING_THREADS="3")) == {3}
