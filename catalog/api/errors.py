"""Turns catalog errors into JSON answers with a `detail` a person can act on."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from catalog.errors import CatalogError
from catalog.storage import StorageError, StorageUnavailable
from embeddings.index import IndexUnavailable


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, CatalogError):
        return Response({"detail": str(exc), "code": exc.code}, status=exc.status_code)
    if isinstance(exc, (StorageUnavailable, IndexUnavailable)):
        return Response({"detail": f"A backing service is unavailable: {exc}", "code": "unavailable"}, status=503)
    if isinstance(exc, StorageError):
        # A refusal that retrying will not cure (credentials, bucket, policy): the operator must act, not the client.
        return Response({"detail": f"Object storage refused the request: {exc}", "code": "storage_error"}, status=503)
    return drf_exception_handler(exc, context)
