from django.apps import AppConfig


class DerivedConfig(AppConfig):
    name = "derived"
    verbose_name = "Derived indexes"
    default_auto_field = "django.db.models.BigAutoField"
