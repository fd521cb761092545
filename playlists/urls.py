from django.urls import path

from playlists import views

urlpatterns = [
    path("", views.playlist_list, name="playlists"),
    path("<uuid:playlist_id>/", views.playlist_detail, name="playlist-detail"),
]
