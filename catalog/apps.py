from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "catalog"

    def ready(self) -> None:
        from catalog import textsearch

        post_migrate.connect(textsearch.ensure_sqlite_index, sender=self, dispatch_uid="catalog-search-index")
        connection_created.connect(textsearch.register_functions, dispatch_uid="catalog-search-functions")
