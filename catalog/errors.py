"""Errors the catalog raises on purpose; the API turns each into a clear 4xx/5xx answer."""

from __future__ import annotations


class CatalogError(Exception):
    status_code = 400
    code = "invalid"


class InvalidUpload(CatalogError):
    code = "invalid_upload"


class InvalidClip(CatalogError):
    code = "invalid_clip"


class PayloadTooLarge(CatalogError):
    status_code = 413
    code = "too_large"


class LengthRequired(CatalogError):
    status_code = 411
    code = "length_required"


class UploadMissing(CatalogError):
    status_code = 409
    code = "upload_missing"


class InvalidState(CatalogError):
    status_code = 409
    code = "invalid_state"


class NotSearchable(CatalogError):
    status_code = 409
    code = "not_searchable"


class ServiceUnavailable(CatalogError):
    status_code = 503
    code = "service_unavailable"


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"
