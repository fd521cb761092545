"""Imports and compiles what requests need, ahead of the first request (gunicorn's master, before it forks)."""

from __future__ import annotations

import importlib
import logging
import time

logger = logging.getLogger(__name__)

# The request path's heavy modules: decoding, fingerprinting, the features model, maps, the vector scan.
MODULES = (
    "catalog.api.views",
    "catalog.maps",
    "embeddings.audio",
    "embeddings.features",
    "fingerprints.selectors",
    "fingerprints.index.postings",
    "embeddings.index.scan",
)


def preload() -> None:
    """Load them once, so that forked workers share these pages instead of each building its own copy.

    Touches no database connection or index file: those must be opened by each worker after the fork."""
    started = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    from embeddings.index.scan import scan_kernel

    scan_kernel()
    logger.info("request path preloaded in %.1f s", time.perf_counter() - started)
