"""How many threads the numeric libraries may start in this process."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def limit_blas(threads: int) -> None:
    """Let numpy's and scipy's BLAS (each wheel brings its own OpenBLAS) run at most `threads` threads here.

    OpenBLAS's idle threads spin-wait after every call, so with several processes per host (gunicorn's workers, the
    Celery worker's) a process's BLAS threads take cores from whichever process serves the next request.
    """
    # Read by an OpenBLAS when it loads: covers the libraries this process has not loaded yet.
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    import numpy  # noqa: F401 (loads numpy's OpenBLAS, so that the limit reaches it too)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    logger.debug("BLAS limited to %d threads in process %d", threads, os.getpid())
