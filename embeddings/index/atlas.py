"""MongoDB Atlas Vector Search as the vector index (Atlas itself, or the mongodb/mongodb-atlas-local image).

One document per song and model, `_id` = "<model>:<song id>", with the vector stored as a BSON float32 vector
(binary subtype 9). Search is an aggregation whose first stage is `$vectorSearch` on the index that
`python manage.py atlas_index` creates (similarity `dotProduct`, filter fields `model`, `file` and `song_id`).

Scores: for `dotProduct` Atlas reports (1 + dot) / 2, in [0, 1] for unit vectors. `search()` converts it back to
the dot product (2 x score - 1), the cosine similarity of the unit vectors, which is what the local index returns,
so the API's scores do not depend on the backend.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import numpy as np
from bson.binary import Binary, BinaryVectorDtype
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from embeddings.base import FloatArray
from embeddings.index import Hit, IndexUnavailable, VectorIndexError, checked_vector

# How often an upserted song is looked for until the search index serves it.
SEARCHABLE_POLL_SECONDS = 0.25
# Atlas refuses a larger numCandidates.
MAX_NUM_CANDIDATES = 10_000
# How long a call waits for a reachable server before the index reports itself unavailable; a URI may override it.
SERVER_SELECTION_TIMEOUT_MS = 5000
# A server that stops answering mid-request: give up (IndexUnavailable) instead of holding a web worker forever.
SOCKET_TIMEOUT_MS = 30_000

CREATE_INDEX_HINT = "create it, or wait until it is ready, with `python manage.py atlas_index --wait`"
NOT_ATLAS_HINT = (
    "the server at MONGODB_URI does not support Atlas Vector Search ($vectorSearch); point MONGODB_URI at "
    "MongoDB Atlas or a mongodb/mongodb-atlas-local container, or set VECTOR_BACKEND=local"
)

_UNREACHABLE = (
    AutoReconnect,
    ServerSelectionTimeoutError,
    NetworkTimeout,
    ConnectionFailure,
    WaitQueueTimeoutError,
    ExecutionTimeout,
)

# Server error codes that mean "try again later": host unreachable or not found, network timeout, shutting down,
# primary stepped down or not writable.
_TRANSIENT_CODES = frozenset({6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436})

# What Atlas says when the search index is missing, still building, or lacks a filter field.
_INDEX_NOT_READY = re.compile(
    r"needs to be indexed|index\b.*\bnot (?:found|ready|queryable|initialized)|no such (?:search )?index|"
    r"not queryable|index .*\bbuilding|initial sync",
    re.IGNORECASE,
)

_clients: dict[tuple[int, str], MongoClient[dict[str, Any]]] = {}
_clients_lock = threading.Lock()


def mongo_client(uri: str) -> MongoClient[dict[str, Any]]:
    """One client (and its connection pool) per URI and process; a forked child makes its own."""
    key = (os.getpid(), uri)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            options: dict[str, Any] = {"appname": "resonance", "tz_aware": True}
            for option, default in (
                ("serverSelectionTimeoutMS", SERVER_SELECTION_TIMEOUT_MS),
                ("socketTimeoutMS", SOCKET_TIMEOUT_MS),
            ):
                if option.lower() not in uri.lower():  # an option in the URI wins
                    options[option] = default
            client = MongoClient(uri, **options)
            _clients[key] = client
        return client


def close_clients() -> None:
    """Close every client this process opened (tests, and processes that want to let go of their pools)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def collection_from_settings() -> Collection[dict[str, Any]]:
    uri: str = settings.MONGODB_URI
    if not uri:
        raise ImproperlyConfigured("VECTOR_BACKEND=atlas needs MONGODB_URI (e.g. mongodb://localhost:27017/).")
    return mongo_client(uri)[settings.MONGODB_DB][settings.MONGODB_COLLECTION]


def num_candidates(limit: int, factor: int) -> int:
    """How many candidates $vectorSearch considers for `limit` hits: factor x limit, at most 10,000, at least limit."""
    return max(limit, min(factor * limit, MAX_NUM_CANDIDATES))


def to_bson_vector(vector: FloatArray) -> Binary:
    return Binary.from_vector(np.ascontiguousarray(vector, dtype=np.float32), BinaryVectorDtype.FLOAT32)


def from_bson_vector(value: Any) -> FloatArray:
    if isinstance(value, Binary) and value.subtype == 9:
        return np.asarray(value.as_vector(return_numpy=True).data, dtype=np.float32)
    return np.asarray(value, dtype=np.float32)  # an array of numbers, written by another client


def translate(exc: PyMongoError, doing: str) -> VectorIndexError:
    """The index error for a driver error: unreachable servers are IndexUnavailable; the rest say how to fix them."""
    if isinstance(exc, _UNREACHABLE) or (isinstance(exc, OperationFailure) and exc.code in _TRANSIENT_CODES):
        detail = str(exc).split(", Timeout:")[0]  # the topology description that follows is long and repetitive
        return IndexUnavailable(
            f"MongoDB is unavailable while {doing} ({type(exc).__name__}: {detail}); check MONGODB_URI and the server"
        )
    message = str(exc.details.get("errmsg", exc)) if isinstance(exc, OperationFailure) and exc.details else str(exc)
    lowered = message.lower()
    if "unrecognized pipeline stage" in lowered or (
        isinstance(exc, OperationFailure) and exc.code in (40324, 59) and "search" in lowered
    ):
        return VectorIndexError(f"{NOT_ATLAS_HINT} (server said: {message})")
    if "atlas" in lowered and "only" in lowered:
        return VectorIndexError(f"{NOT_ATLAS_HINT} (server said: {message})")
    if "dimension" in lowered:
        return VectorIndexError(
            f"the Atlas search index does not fit these vectors ({message}); recreate it with "
            "`python manage.py atlas_index --drop --wait`, then `python manage.py reindex --all`"
        )
    if _INDEX_NOT_READY.search(message):
        return VectorIndexError(f"the Atlas search index is missing or not ready ({message}); {CREATE_INDEX_HINT}")
    return VectorIndexError(f"MongoDB refused {doing}: {message}")


class AtlasVectorIndex:
    """The `VectorIndex` protocol on a MongoDB collection searched with `$vectorSearch`."""

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        collection: Collection[dict[str, Any]],
        index_name: str = "song_vectors",
        candidates_factor: int = 20,
    ) -> None:
        self.model = model
        self.dim = dim
        self.collection = collection
        self.index_name = index_name
        self.candidates_factor = candidates_factor

    @classmethod
    def from_settings(cls, *, model: str, dim: int) -> AtlasVectorIndex:
        return cls(
            model=model,
            dim=dim,
            collection=collection_from_settings(),
            index_name=settings.ATLAS_INDEX_NAME,
            candidates_factor=settings.ATLAS_NUM_CANDIDATES_FACTOR,
        )

    def _id(self, song_id: UUID) -> str:
        return f"{self.model}:{song_id}"

    def _check(self, vector: FloatArray) -> FloatArray:
        return checked_vector(vector, model=self.model, dim=self.dim)

    def upsert(self, song_id: UUID, file: str, vector: FloatArray) -> None:
        document = {
            "song_id": str(song_id),
            "file": file,
            "model": self.model,
            "dim": self.dim,
            "vector": to_bson_vector(self._check(vector)),
            "updated_at": datetime.now(UTC),
        }
        try:
            self.collection.replace_one({"_id": self._id(song_id)}, document, upsert=True)
        except PyMongoError as exc:
            raise translate(exc, "storing a vector") from exc

    def searchable_pipeline(self, song_id: UUID, vector: FloatArray) -> list[dict[str, Any]]:
        """An exact (ENN) search for one song's own vector, filtered to that song: does the index serve it yet?"""
        return [
            {
                "$vectorSearch": {
                    "index": self.index_name,
                    "path": "vector",
                    "queryVector": to_bson_vector(vector),
                    "exact": True,
                    "limit": 1,
                    "filter": {"$and": [{"model": self.model}, {"song_id": str(song_id)}]},
                }
            },
            {"$project": {"_id": 0, "song_id": 1}},
        ]

    def wait_searchable(self, song_id: UUID, vector: FloatArray, *, timeout: float) -> None:
        """Atlas indexes a write a moment after it is stored; a song is marked ready only once search finds it."""
        pipeline = self.searchable_pipeline(song_id, self._check(vector))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if list(self.collection.aggregate(pipeline)):
                    return
            except PyMongoError as exc:
                raise translate(exc, "checking that a vector is searchable") from exc
            if time.monotonic() >= deadline:
                raise IndexUnavailable(
                    f"song {song_id} was stored in MongoDB but Atlas Vector Search did not serve it within "
                    f"{timeout:g} s; the search index may be rebuilding (check `python manage.py atlas_index`)"
                )
            time.sleep(SEARCHABLE_POLL_SECONDS)

    def delete(self, song_id: UUID) -> None:
        try:
            self.collection.delete_one({"_id": self._id(song_id)})
        except PyMongoError as exc:
            raise translate(exc, "deleting a vector") from exc

    def get(self, song_id: UUID) -> FloatArray | None:
        try:
            document = self.collection.find_one({"_id": self._id(song_id)}, {"vector": 1})
        except PyMongoError as exc:
            raise translate(exc, "reading a vector") from exc
        if document is None or "vector" not in document:
            return None
        return from_bson_vector(document["vector"])

    def export(self) -> tuple[list[UUID], FloatArray]:
        try:
            documents = list(self.collection.find({"model": self.model}, {"song_id": 1, "vector": 1}).sort("song_id"))
        except PyMongoError as exc:
            raise translate(exc, "reading vectors") from exc
        matrix = np.empty((len(documents), self.dim), dtype=np.float32)
        for i, document in enumerate(documents):
            matrix[i] = from_bson_vector(document["vector"])
        return [UUID(document["song_id"]) for document in documents], matrix

    def song_ids(self) -> list[UUID]:
        try:
            documents = self.collection.find({"model": self.model}, {"_id": 0, "song_id": 1})
            return [UUID(document["song_id"]) for document in documents]
        except PyMongoError as exc:
            raise translate(exc, "reading song ids") from exc

    def pipeline(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[dict[str, Any]]:
        """The aggregation `search()` runs: `$vectorSearch` first (Atlas requires it), then the fields we read."""
        query_filter: dict[str, Any] = {"model": self.model}
        if exclude_file is not None:
            query_filter = {"$and": [{"model": self.model}, {"file": {"$ne": exclude_file}}]}
        return [
            {
                "$vectorSearch": {
                    "index": self.index_name,
                    "path": "vector",
                    "queryVector": to_bson_vector(vector),
                    "numCandidates": num_candidates(limit, self.candidates_factor),
                    "limit": limit,
                    "filter": query_filter,
                }
            },
            {"$project": {"_id": 0, "song_id": 1, "file": 1, "score": {"$meta": "vectorSearchScore"}}},
        ]

    def search(self, vector: FloatArray, limit: int, exclude_file: str | None = None) -> list[Hit]:
        query = self._check(vector)
        if limit < 1:
            raise VectorIndexError("limit must be at least 1")
        if limit > MAX_NUM_CANDIDATES:
            raise VectorIndexError(f"limit must be at most {MAX_NUM_CANDIDATES} with Atlas Vector Search")
        try:
            documents = list(self.collection.aggregate(self.pipeline(query, limit, exclude_file)))
            if not documents:
                # Atlas answers a search on a missing or still-building index with no results, not an error.
                self._require_queryable_index()
        except PyMongoError as exc:
            raise translate(exc, "searching") from exc
        return [
            Hit(song_id=UUID(document["song_id"]), file=document["file"], score=2 * float(document["score"]) - 1)
            for document in documents
        ]

    def _require_queryable_index(self) -> None:
        indexes = list(self.collection.list_search_indexes(self.index_name))
        if not indexes:
            raise VectorIndexError(
                f"the Atlas search index {self.index_name!r} does not exist on "
                f"{self.collection.database.name}.{self.collection.name}; {CREATE_INDEX_HINT}"
            )
        if not indexes[0].get("queryable", False):
            raise VectorIndexError(
                f"the Atlas search index {self.index_name!r} is not queryable yet "
                f"(status {indexes[0].get('status', 'unknown')}); {CREATE_INDEX_HINT}"
            )
