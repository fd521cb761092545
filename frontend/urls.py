from django.urls import path

from frontend import views

urlpatterns = [
    path("", views.home, name="home"),
    path("similar/", views.similar, name="similar"),
    path("identify/", views.identify, name="identify"),
    path("map/", views.catalog_map, name="map"),
    path("songs/<uuid:song_id>/", views.song_detail, name="song-detail"),
    path("radio/", views.radio_page, name="radio"),
    path("path/", views.path_page, name="path"),
]
