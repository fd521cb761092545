"""Who may do what: browsing can be public, uploads need a user unless opened, deletion needs staff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
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


ANONYMOUS_UPLOADS_KEY = "anonymous_uploads"
ANONYMOUS_UPLOADS_KEPT = 200  # the newest uploads a visitor's session may still confirm or retry


def remember_anonymous_upload(request: Request, song_id: str) -> None:
    """A visitor without an account owns the uploads made in their session, and only those."""
    kept = [*request.session.get(ANONYMOUS_UPLOADS_KEY, []), song_id][-ANONYMOUS_UPLOADS_KEPT:]
    request.session[ANONYMOUS_UPLOADS_KEY] = kept


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
        return not request.user.is_authenticated and str(obj.pk) in request.session.get(ANONYMOUS_UPLOADS_KEY, [])
