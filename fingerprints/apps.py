from django.apps import AppConfig


class FingerprintsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "fingerprints"
    verbose_name = "Audio fingerprints"
