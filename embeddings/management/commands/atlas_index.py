"""`python manage.py atlas_index [--wait] [--drop] [--timeout S]`: create the Atlas Vector Search index."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from pymongo.collection import Collection
from pymongo.errors import CollectionInvalid, OperationFailure, PyMongoError
from pymongo.operations import SearchIndexModel

from embeddings.index import IndexUnavailable
from embeddings.index.atlas import collection_from_settings, translate
from embeddings.registry import active_model_name, model_dim

# The filter fields `$vectorSearch` may filter on: the model (always), the file (more-like-this excludes the song).
FILTER_PATHS = ("model", "file", "song_id")
NAMESPACE_EXISTS = 48
# Errors of a server whose search process is still starting.
_STARTING = re.compile(r"mongot|search index management|error connecting", re.IGNORECASE)


def index_definition(dim: int) -> dict[str, Any]:
    return {
        "fields": [
            {"type": "vector", "path": "vector", "numDimensions": dim, "similarity": "dotProduct"},
            *({"type": "filter", "path": path} for path in FILTER_PATHS),
        ]
    }


def _vector_field(definition: dict[str, Any]) -> dict[str, Any]:
    return next((f for f in definition.get("fields", []) if f.get("type") == "vector"), {})


def _filter_paths(definition: dict[str, Any]) -> set[str]:
    return {f.get("path") for f in definition.get("fields", []) if f.get("type") == "filter"}


class Command(BaseCommand):
    help = (
        "Create the MongoDB collection (MONGODB_DB / MONGODB_COLLECTION) and its Atlas Vector Search index "
        "(ATLAS_INDEX_NAME) for the active embedding model's vector size. Safe to run again: an index that already "
        "fits is left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", action="store_true", help="wait until the index can answer queries")
        parser.add_argument(
            "--drop",
            action="store_true",
            help="drop the index and create it again (for a new vector size; then run `manage.py reindex --all`)",
        )
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most (default 600)")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between status checks (default 2)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            collection = collection_from_settings()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        name: str = settings.ATLAS_INDEX_NAME
        model = active_model_name()
        definition = index_definition(model_dim(model))
        timeout: float = options["timeout"]
        interval: float = options["interval"]
        deadline = time.monotonic() + timeout
        drop: bool = options["drop"]
        created, told = False, False
        while True:
            try:
                if not created:
                    self._create(collection, name, model, definition, drop=drop, timeout=timeout, interval=interval)
                    created = True
                if options["wait"]:
                    self._wait_until_queryable(collection, name, deadline, timeout, interval)
                return
            except PyMongoError as exc:
                error = translate(exc, "managing the search index")
                # A fresh atlas-local container answers pings before its search process (mongot) is up.
                starting = isinstance(error, IndexUnavailable) or bool(_STARTING.search(str(exc)))
                if not (options["wait"] and starting) or time.monotonic() >= deadline:
                    raise CommandError(str(error)) from exc
                if not told:
                    self.stdout.write(f"  MongoDB search is not reachable yet ({exc}); retrying…")
                    told = True
                time.sleep(interval)

    def _create(
        self,
        collection: Collection[dict[str, Any]],
        name: str,
        model: str,
        definition: dict[str, Any],
        *,
        drop: bool,
        timeout: float,
        interval: float,
    ) -> None:
        where = f"{collection.database.name}.{collection.name}"
        dim = _vector_field(definition)["numDimensions"]
        self._ensure_collection(collection)
        existing = self._find(collection, name)
        if existing is not None and drop:
            collection.drop_search_index(name)
            self.stdout.write(f"Dropping the search index {name!r} on {where}…")
            self._wait_until_gone(collection, name, timeout, interval)
            existing = None
        if existing is None:
            collection.create_search_index(SearchIndexModel(definition=definition, name=name, type="vectorSearch"))
            self.stdout.write(
                f"Created the vector search index {name!r} on {where} ({dim}-d {model} vectors, dotProduct)."
            )
        else:
            self._check_fits(existing, definition, name, model)
            self.stdout.write(f"The vector search index {name!r} on {where} already exists with this definition.")

    def _ensure_collection(self, collection: Collection[dict[str, Any]]) -> None:
        database = collection.database
        if collection.name in database.list_collection_names(filter={"name": collection.name}):
            return
        try:
            database.create_collection(collection.name, check_exists=False)
            self.stdout.write(f"Created the collection {database.name}.{collection.name}.")
        except CollectionInvalid:
            pass
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:  # created meanwhile by another process
                raise

    def _find(self, collection: Collection[dict[str, Any]], name: str) -> Mapping[str, Any] | None:
        return next(iter(collection.list_search_indexes(name)), None)

    def _check_fits(self, existing: Mapping[str, Any], wanted: dict[str, Any], name: str, model: str) -> None:
        current = existing.get("latestDefinition") or existing.get("definition") or {}
        have, want = _vector_field(current), _vector_field(wanted)
        if have.get("numDimensions") != want["numDimensions"]:
            raise CommandError(
                f"The search index {name!r} holds {have.get('numDimensions')}-d vectors, but the active model {model} "
                f"makes {want['numDimensions']}-d ones. Run `python manage.py atlas_index --drop --wait` to recreate "
                "it, then `python manage.py reindex --all` so every song gets a vector of the new size."
            )
        differences = []
        if have.get("path") != want["path"] or have.get("similarity") != want["similarity"]:
            differences.append(f"vector field {have} instead of {want}")
        missing = set(FILTER_PATHS) - _filter_paths(current)
        if missing:
            differences.append(f"no filter on {', '.join(sorted(missing))}")
        if differences:
            raise CommandError(
                f"The search index {name!r} differs from the one Resonance needs ({'; '.join(differences)}). "
                "Run `python manage.py atlas_index --drop --wait` to recreate it (the stored vectors are kept)."
            )

    def _wait_until_queryable(
        self, collection: Collection[dict[str, Any]], name: str, deadline: float, timeout: float, interval: float
    ) -> None:
        seen: tuple[Any, Any] | None = None
        while True:
            index = self._find(collection, name)
            if index is None:
                raise CommandError(f"The search index {name!r} disappeared while waiting for it.")
            state = (index.get("status", "unknown"), bool(index.get("queryable", False)))
            if state != seen:
                self.stdout.write(f"  status {state[0]}, queryable: {'yes' if state[1] else 'no'}")
                seen = state
            if state[1]:
                self.stdout.write(self.style.SUCCESS(f"The search index {name!r} is ready."))
                return
            if state[0] == "FAILED":
                raise CommandError(
                    f"Atlas could not build the search index {name!r}: {index.get('statusDetail') or 'no detail'}."
                )
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"The search index {name!r} is still not queryable after {timeout:g} s (status {state[0]}). "
                    "Atlas keeps building it; run `python manage.py atlas_index --wait` again to keep waiting."
                )
            time.sleep(interval)

    def _wait_until_gone(
        self, collection: Collection[dict[str, Any]], name: str, timeout: float, interval: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while self._find(collection, name) is not None:
            if time.monotonic() >= deadline:
                raise CommandError(f"The search index {name!r} is still being dropped after {timeout:g} s; try again.")
            time.sleep(interval)
