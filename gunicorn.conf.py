"""gunicorn settings, read from the working directory by `gunicorn config.wsgi` (see README, "Scale")."""

from __future__ import annotations

import gc
from typing import Any

from config.env import env_bool

# The app and its libraries load once in the master and forked workers share those pages (copy on write).
preload_app = env_bool("WEB_PRELOAD", True)


def on_starting(server: Any) -> None:
    if preload_app:
        from config.warm import preload

        preload()
        gc.collect()  # nothing left to free is frozen with the rest (see pre_fork)


def pre_fork(server: Any, worker: Any) -> None:
    # What the master loaded lives as long as the workers: frozen, a worker's full collections never walk it (about
    # 220k objects: 150-300 ms every few hundred requests at 100k songs) nor write to the pages the workers share.
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    # Without preload each worker loads the app itself: frozen once loaded, for the same reason.
    gc.freeze()
