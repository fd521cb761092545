from django.contrib import admin
from django.urls import include, path

from catalog.storage import views as storage_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("catalog.api.urls")),
    path("storage/upload/<str:token>/", storage_views.receive_upload, name="storage-upload"),
    path("storage/media/<str:token>/", storage_views.serve_media, name="storage-media"),
    path("", include("frontend.urls")),
]
