"""gunicorn's hooks: what the app loads is frozen before workers fork, so their full collections skip it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _after_hooks(*hooks: str, **env: str) -> dict[str, int]:
    """Objects frozen and still tracked in a new process that ran gunicorn.conf.py's `hooks` in order."""
    calls = "\n".join(f"conf[{hook!r}](*([None] * conf[{hook!r}].__code__.co_argcount))" for hook in hooks)
    script = (
        "import gc, json, runpy\nimport django\ndjango.setup()\n"
        "conf = runpy.run_path('gunicorn.conf.py')\n"
        f"{calls}\n"
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'tracked': len(gc.get_objects())}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_preloaded_app_is_frozen_before_a_worker_forks() -> None:
    counts = _after_hooks("on_starting", "pre_fork")

    # The request path's modules were loaded and frozen: a worker's full collection walks what is left.
    assert counts["frozen"] > 50_000
    assert counts["tracked"] < counts["frozen"] / 4


def test_a_worker_that_loaded_the_app_itself_freezes_it_once_loaded() -> None:
    before = _after_hooks(WEB_PRELOAD="false")
    after = _after_hooks("post_worker_init", WEB_PRELOAD="false")

    assert before["frozen"] == 0
    assert after["frozen"] > 0 and after["tracked"] < after["frozen"] / 4
