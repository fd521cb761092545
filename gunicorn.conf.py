"""gunicorn settings, read from the working directory by `gunicorn config.wsgi` (see README, "Scale")."""

from __future__ import annotations

from typing import Any

from config.env import env_bool

# The app and its libraries load once in the master and forked workers share those pages (copy on write).
preload_app = env_bool("WEB_PRELOAD", True)


def on_starting(server: Any) -> None:
    if preload_app:
        from config.warm import preload

        preload()
