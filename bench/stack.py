"""Settings for the benchmarks that run the product in a throwaway folder with production settings (DEBUG off)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def production_env(scratch: Path, **extra: str) -> dict[str, str]:
    """This environment plus production settings on SQLite and local storage under `scratch`, rate limits lifted."""
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(scratch / "var"),
        "SQLITE_PATH": str(scratch / "db.sqlite3"),
        "LOCAL_STORAGE_ROOT": str(scratch / "media"),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "HTTPS": "false",
        "SEARCH_RATE_LIMIT": "1000000/minute",
        "UPLOAD_RATE_LIMIT": "1000000/hour",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
