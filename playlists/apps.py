from django.apps import AppConfig


class PlaylistsConfig(AppConfig):
    name = "playlists"
    default_auto_field = "django.db.models.BigAutoField"
