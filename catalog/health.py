"""Readiness checks for load balancers: database, broker, storage, vector index and model."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection

from catalog.storage import get_storage
from embeddings.index import get_vector_index
from embeddings.registry import active_model_name, model_dim, panns_checkpoint_path


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
    return "ok"


def _storage() -> str:
    get_storage().stat(f"healthz/{uuid.uuid4()}")
    return "ok"


def _index() -> str:
    model = active_model_name()
    get_vector_index(model, model_dim(model)).get(uuid.uuid4())
    return "ok"


def _model() -> str:
    model = active_model_name()
    if model.startswith("panns") and not panns_checkpoint_path(model).is_file():
        raise RuntimeError(f"the weights of {model} are missing; run `python manage.py fetch_model`")
    return model


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "broker": _broker,
    "storage": _storage,
    "index": _index,
    "model": _model,
}


def run_checks() -> tuple[bool, dict[str, Any]]:
    """Every check with its outcome and duration; healthy only when all pass."""
    results: dict[str, Any] = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail = check()
            ok = True
        except Exception as exc:  # a health check reports every failure instead of raising it
            detail = f"{type(exc).__name__}: {exc}"
            ok = False
        healthy = healthy and ok
        results[name] = {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return healthy, results
