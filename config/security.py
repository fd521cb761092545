"""A strict Content-Security-Policy: only this site's scripts and styles, media from storage."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def storage_origins() -> list[str]:
    """Where browsers upload to and play from, besides this site."""
    if settings.STORAGE_BACKEND != "s3":
        return []
    endpoint = settings.S3_PUBLIC_ENDPOINT_URL
    if endpoint:
        parts = urlsplit(endpoint)
        # Path-style and virtual-host-style presigned URLs both live under the endpoint's host.
        return [f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://*.{parts.netloc}"]
    return ["https://*.amazonaws.com"]


def content_security_policy() -> str:
    storage = " ".join(storage_origins())
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data: blob:",
        "media-src": f"'self' blob: {storage}".strip(),
        "connect-src": f"'self' {storage}".strip(),
        "font-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        response.headers.setdefault("Permissions-Policy", "camera=(), geolocation=(), microphone=(self)")
        return response
