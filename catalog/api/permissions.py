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


class OwnsSong(BasePermission):
    """A song uploaded by a user can be confirmed or retried only by that user or staff."""

    message = "This upload belongs to another user."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        owner_id = getattr(obj, "uploaded_by_id", None)
        return owner_id is None or request.user.is_staff or owner_id == request.user.pk
