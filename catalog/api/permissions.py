"""Who may do what: browsing can be public, uploads need a user unless opened, deletion needs staff."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

if TYPE_CHECKING:  # importing views at run time would be circular: DRF's views read these settings
    from rest_framework.views import APIView


class CanBrowse(BasePermission):
    message = "Log in to browse this catalog."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(settings.PUBLIC_CATALOG or (request.user and request.user.is_authenticated))


class CanUpload(BasePermission):
    message = "Log in to upload songs."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(settings.ALLOW_ANONYMOUS_UPLOADS or (request.user and request.user.is_authenticated))


class IsStaff(BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_staff)


def visitor_of(request: HttpRequest, *, create: bool = False) -> str:
    """A visitor without an account is known by their session: its key's SHA-256 ("" without a session).

    Each song records its uploader's, so concurrent uploads never race on one session value."""
    if create and not request.session.session_key:
        request.session.setdefault("visitor", True)
        request.session.save()
    key = request.session.session_key
    return hashlib.sha256(key.encode()).hexdigest() if key else ""


class OwnsSong(BasePermission):
    """A song can be confirmed or retried by its uploader (a user, or the session of a visitor) or by staff."""

    message = "This upload belongs to someone else."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.user.is_staff:
            return True
        owner_id = getattr(obj, "uploaded_by_id", None)
        if owner_id is not None:
            return bool(owner_id == request.user.pk)
        # No uploader: an import, or a visitor's upload, which only that visitor's session may touch.
        visitor = "" if request.user.is_authenticated else visitor_of(request)
        return bool(visitor) and visitor == getattr(obj, "uploader_session", "")
