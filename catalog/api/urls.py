from django.urls import path

from catalog.api import listening, views

urlpatterns = [
    path("uploads/", views.UploadCreateApi.as_view(), name="api-upload-create"),
    path("songs/", views.SongListApi.as_view(), name="api-song-list"),
    path("songs/<uuid:song_id>/", views.SongDetailApi.as_view(), name="api-song-detail"),
    path("songs/<uuid:song_id>/uploaded/", views.SongUploadedApi.as_view(), name="api-song-uploaded"),
    path("songs/<uuid:song_id>/retry/", views.SongRetryApi.as_view(), name="api-song-retry"),
    path("songs/<uuid:song_id>/more-like-this/", views.MoreLikeThisApi.as_view(), name="api-song-more-like-this"),
    path("songs/<uuid:song_id>/duplicates/", views.SongDuplicatesApi.as_view(), name="api-song-duplicates"),
    path("radio/", listening.RadioApi.as_view(), name="api-radio"),
    path("path/", listening.PathApi.as_view(), name="api-path"),
    path("identify/", views.IdentifyApi.as_view(), name="api-identify"),
    path("search/similar/", views.SimilarToClipApi.as_view(), name="api-search-similar"),
    path("tags/", views.TagListApi.as_view(), name="api-tag-list"),
    path("system/", views.SystemApi.as_view(), name="api-system"),
    path("map/", views.CatalogMapApi.as_view(), name="api-map"),
]
