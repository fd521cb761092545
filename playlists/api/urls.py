from django.urls import path, re_path

from playlists.api import views

urlpatterns = [
    path("", views.PlaylistListApi.as_view(), name="api-playlist-list"),
    path("<uuid:playlist_id>/", views.PlaylistDetailApi.as_view(), name="api-playlist-detail"),
    re_path(
        r"^(?P<playlist_id>[0-9a-f-]{36})/export\.(?P<format_name>m3u8|xspf)$",
        views.PlaylistExportApi.as_view(),
        name="api-playlist-export",
    ),
]
