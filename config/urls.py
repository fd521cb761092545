from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalog.api.permissions import CanBrowse
from catalog.health import run_checks
from catalog.storage import views as storage_views


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Readiness: everyone learns ok/failing per component; staff, or a caller with HEALTHZ_TOKEN, the details."""
    healthy, checks = run_checks()
    if not _may_see_health_details(request):
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )


def _may_see_health_details(request: HttpRequest) -> bool:
    if request.user.is_staff:
        return True
    token = getattr(settings, "HEALTHZ_TOKEN", "")
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and constant_time_compare(offered, token)


# Schema and docs describe the catalog, so they follow PUBLIC_CATALOG like the API they describe.
schema_view = SpectacularAPIView.as_view(permission_classes=[CanBrowse])
docs_view = SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[CanBrowse])


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/playlists/", include("playlists.api.urls")),
    path("api/", include("catalog.api.urls")),
    path("api/schema/", schema_view, name="api-schema"),
    path("api/docs/", docs_view, name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("storage/upload/<str:token>/", storage_views.receive_upload, name="storage-upload"),
    path("storage/media/<str:token>/", storage_views.serve_media, name="storage-media"),
    path("playlists/", include("playlists.urls")),
    path("", include("frontend.urls")),
]
