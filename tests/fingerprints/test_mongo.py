"""The MongoDB fingerprint index against MockupDB (the commands on the wire), and live when MONGODB_URI is set.

Each pymongo call runs in a thread (`mockupdb.go`) while the test reads each command with `server.receives()` and
answers it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from mockupdb import MockupDB, go

from fingerprints.index import FingerprintIndexUnavailable, get_fingerprint_index
from fingerprints.index.mongo import MongoFingerprintIndex, close_clients
from fingerprints.landmarks import ALGORITHM, landmarks
from fingerprints.selectors import identify
from fingerprints.services import add_song_fingerprints, remove_song_fingerprints
from tests.fingerprints.music import excerpt, song
from tests.mongo import LIVE_URI, dead_server_uri, live_mongodb, mockup_server, mockup_uri

DB, COLLECTION = "resonance", "fingerprints"


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockupDB]:
    yield from mockup_server()  # one server for the module: stopping one takes a second


@pytest.fixture
def server(mock_server: MockupDB, settings: Any) -> Iterator[MockupDB]:
    settings.VECTOR_BACKEND = "atlas"
    settings.MONGODB_URI = mockup_uri(mock_server)
    settings.MONGODB_DB, settings.FINGERPRINT_COLLECTION = DB, COLLECTION
    close_clients()  # forget which indexes were created: each test sees the commands from the start
    yield mock_server
    close_clients()


def command(request: Any) -> str:
    return str(next(iter(request.doc)))


def cursor(request: Any, documents: list[dict[str, Any]], collection: str = COLLECTION) -> None:
    request.replies({"cursor": {"id": 0, "ns": f"{DB}.{collection}", "firstBatch": documents}})


def test_adding_creates_the_indexes_inserts_one_document_per_hash_then_drops_older_generations(
    server: MockupDB,
) -> None:
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    song_id = uuid.uuid4()
    hashes = np.array([7, 3, 7, 9], dtype=np.uint32)
    times = np.array([40, 10, 12, 11], dtype=np.uint32)
    future = go(index.add, song_id, hashes, times)

    request = server.receives()
    assert command(request) == "createIndexes" and request["createIndexes"] == COLLECTION
    assert [dict(i["key"]) for i in request["indexes"]] == [{"h": 1}]
    request.ok()
    request = server.receives()
    assert command(request) == "createIndexes"
    assert [dict(i["key"]) for i in request["indexes"]] == [{"s": 1, "g": 1}]
    request.ok()

    request = server.receives()
    assert command(request) == "insert" and request["insert"] == COLLECTION
    documents = [dict(d) for d in request["documents"]]
    for document in documents:
        del document["_id"]  # pymongo's ObjectId
    generation = documents[0]["g"]
    song = Binary.from_uuid(song_id)
    assert documents == [
        {"h": 3, "s": song, "g": generation, "t": [10]},
        {"h": 7, "s": song, "g": generation, "t": [12, 40]},
        {"h": 9, "s": song, "g": generation, "t": [11]},
    ]
    request.ok(n=3)

    request = server.receives()
    assert command(request) == "update" and request["update"] == f"{COLLECTION}_songs"
    (update,) = request["updates"]
    assert update["q"] == {"_id": song} and update["upsert"] is True
    assert dict(update["u"]) == {"_id": song, "n": 4, "g": generation, "a": ALGORITHM}
    request.ok(n=1)

    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COLLECTION
    assert [dict(d) for d in request["deletes"]] == [{"q": {"s": song, "g": {"$ne": generation}}, "limit": 0}]
    request.ok(n=0)
    future()

    # The indexes are made once per process: the next song goes straight to the inserts.
    future = go(index.add, uuid.uuid4(), hashes[:1], times[:1])
    request = server.receives()
    assert command(request) == "insert"
    request.ok(n=1)
    server.receives().ok(n=1)
    server.receives().ok(n=0)
    future()


def test_removing_deletes_the_song_and_its_hash_documents(server: MockupDB) -> None:
    index = get_fingerprint_index()
    song_id = uuid.uuid4()
    future = go(remove_song_fingerprints, song_id, index=index)
    for _ in range(2):
        server.receives().ok()  # createIndexes

    request = server.receives()
    assert command(request) == "delete" and request["delete"] == f"{COLLECTION}_songs"
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": Binary.from_uuid(song_id)}, "limit": 1}]
    request.ok(n=1)
    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COLLECTION
    assert [dict(d) for d in request["deletes"]] == [{"q": {"s": Binary.from_uuid(song_id)}, "limit": 0}]
    request.ok(n=7)
    future()


def test_lookup_finds_hashes_with_in_and_pairs_each_entry_with_the_query_positions(server: MockupDB) -> None:
    index = get_fingerprint_index()
    a, b = uuid.uuid4(), uuid.uuid4()
    query = np.array([9, 5, 9, 2], dtype=np.uint32)
    future = go(index.lookup, query)

    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == f"{COLLECTION}_songs"
    cursor(request, [{"_id": None, "n": 1000}], f"{COLLECTION}_songs")
    request = server.receives()
    assert command(request) == "find" and request["find"] == COLLECTION
    assert request["filter"] == {"h": {"$in": [2, 5, 9]}}
    assert request["projection"] == {"_id": 0, "h": 1, "s": 1, "t": 1}
    cursor(
        request,
        [
            {"h": 9, "s": Binary.from_uuid(a), "t": [100, 200]},
            {"h": 5, "s": Binary.from_uuid(b), "t": [7]},
        ],
    )
    hits = future()

    found = {
        (hits.song_ids[s], int(t), int(p))
        for s, t, p in zip(hits.songs, hits.ref_times, hits.query_positions, strict=True)
    }
    assert found == {(a, 100, 0), (a, 100, 2), (a, 200, 0), (a, 200, 2), (b, 7, 1)}


def test_a_dead_server_makes_the_index_unavailable(settings: Any) -> None:
    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", dead_server_uri()
    index = get_fingerprint_index()
    try:
        with pytest.raises(FingerprintIndexUnavailable, match="unreachable"):
            index.lookup(np.array([1, 2], dtype=np.uint32))
        with pytest.raises(FingerprintIndexUnavailable):
            index.add(uuid.uuid4(), np.array([1], dtype=np.uint32), np.array([0], dtype=np.uint32))
    finally:
        close_clients()


@live_mongodb
def test_live_add_identify_replace_remove(settings: Any) -> None:
    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", LIVE_URI
    settings.FINGERPRINT_COLLECTION = f"live_fingerprints_{uuid.uuid4().hex[:8]}"
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    try:
        ids = {seed: uuid.uuid4() for seed in (11, 12, 13)}
        for seed, song_id in ids.items():
            assert add_song_fingerprints(song_id, song(seed)) > 0
        stats = index.stats()
        assert stats.songs == 3 and stats.hashes == sum(len(landmarks(song(s))) for s in ids)

        match = identify(excerpt(song(12), 7.5, 5.0))
        assert match is not None and match.song_id == ids[12]
        assert match.offset_seconds == pytest.approx(7.5, abs=0.1)

        add_song_fingerprints(ids[12], song(12))  # replaced, not doubled
        assert index.stats().hashes == stats.hashes

        remove_song_fingerprints(ids[12])
        match = identify(excerpt(song(12), 7.5, 5.0))
        assert match is None or match.song_id != ids[12]
        assert index.stats().songs == 2
    finally:
        database = index._db()
        database.drop_collection(index.collection)
        database.drop_collection(f"{index.collection}_songs")
        close_clients()
