"""Errors that may pass on their own (a backing service is unreachable) and retrying them with backoff."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError

from catalog.storage import StorageUnavailable
from embeddings.index import IndexUnavailable
from fingerprints.index import FingerprintIndexUnavailable

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    StorageUnavailable,
    IndexUnavailable,
    FingerprintIndexUnavailable,
    OperationalError,
)

T = TypeVar("T")


class GaveUp(Exception):
    """A transient error outlasted every retry; `attempts` tries were made and `last` is the final error."""

    def __init__(self, attempts: int, last: Exception) -> None:
        super().__init__(f"Gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


def backoff_delay(retry: int, base: float) -> float:
    """The wait before retry `retry` (0-based): full jitter up to min(base * 2**n, 300) s, as the Celery tasks do."""
    return random.uniform(0, min(base * 2**retry, 300.0))


def with_retries(
    action: Callable[[], T],
    *,
    retries: int | None = None,
    base_delay: float | None = None,
    on_retry: Callable[[Exception], None] | None = None,
) -> T:
    """Run `action`, retrying transient errors with backoff; GaveUp once `retries` retries have failed too."""
    retries = settings.INGEST_MAX_RETRIES if retries is None else retries
    base = settings.INGEST_RETRY_BACKOFF_SECONDS if base_delay is None else base_delay
    for retry in range(retries + 1):
        try:
            return action()
        except TRANSIENT_ERRORS as exc:
            if retry == retries:
                raise GaveUp(retries + 1, exc) from exc
            logger.warning("transient error (retry %d of %d): %s", retry + 1, retries, exc)
            if on_retry is not None:
                on_retry(exc)
            time.sleep(backoff_delay(retry, base))
    raise AssertionError("unreachable")  # the loop always returns or raises
