from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _create_cache_table(using: str = "default", **kwargs: Any) -> None:
    # The database cache (the default CACHES) needs its table; every `migrate` makes sure it exists.
    from django.conf import settings
    from django.core.management import call_command

    if settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache"):
        call_command("createcachetable", database=using, verbosity=0)


class CatalogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "catalog"

    def ready(self) -> None:
        from catalog import textsearch

        post_migrate.connect(_create_cache_table, sender=self, dispatch_uid="catalog-cache-table")
        post_migrate.connect(textsearch.ensure_sqlite_index, sender=self, dispatch_uid="catalog-search-index")
        connection_created.connect(textsearch.register_functions, dispatch_uid="catalog-search-functions")
