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

from fingerprints.index import FingerprintIndexUnavailable, get_fingerprint_index, stop_limit
from fingerprints.index.local import pack, unpack
from fingerprints.index.mongo import MongoFingerprintIndex, close_clients
from fingerprints.landmarks import ALGORITHM, landmarks
from fingerprints.selectors import identify
from fingerprints.services import add_song_fingerprints, remove_song_fingerprints
from tests.fingerprints.music import excerpt, song
from tests.mongo import LIVE_URI, dead_server_uri, live_mongodb, mockup_server, mockup_uri

DB, COLLECTION = "resonance", "fingerprints"
COUNTS, SONGS = f"{COLLECTION}_hashes", f"{COLLECTION}_songs"


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


def updated(request: Any, n: int) -> None:
    request.ok(n=n, nModified=n)  # bulk_write reads nModified


def updates(request: Any) -> list[dict[str, Any]]:
    return [{key: dict(value) if key == "u" else value for key, value in u.items()} for u in request["updates"]]


def test_adding_counts_each_hash_inserts_one_document_per_hash_then_drops_older_generations(
    server: MockupDB,
) -> None:
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    song_id = uuid.uuid4()
    top = 2**32 - 1  # hashes are uint32 whatever HASH_BITS is: above int32 they travel as int64
    hashes = np.array([7, 3, 7, top], dtype=np.uint32)
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

    # Counts go up before the postings arrive, so no stored posting is ever missing from its count.
    request = server.receives()
    assert command(request) == "update" and request["update"] == COUNTS
    assert updates(request) == [
        {"q": {"_id": 3}, "u": {"$inc": {"n": 1}}, "upsert": True, "multi": False},
        {"q": {"_id": 7}, "u": {"$inc": {"n": 2}}, "upsert": True, "multi": False},
        {"q": {"_id": top}, "u": {"$inc": {"n": 1}}, "upsert": True, "multi": False},
    ]
    updated(request, 3)

    request = server.receives()
    assert command(request) == "insert" and request["insert"] == COLLECTION
    documents = [dict(d) for d in request["documents"]]
    for document in documents:
        del document["_id"]  # pymongo's ObjectId
    generation = documents[0]["g"]
    assert isinstance(generation, int)
    song = Binary.from_uuid(song_id)
    assert documents == [
        {"h": 3, "s": song, "g": generation, "t": [10]},
        {"h": 7, "s": song, "g": generation, "t": [12, 40]},
        {"h": top, "s": song, "g": generation, "t": [11]},
    ]
    request.ok(n=3)

    request = server.receives()
    assert command(request) == "update" and request["update"] == SONGS
    (update,) = request["updates"]
    assert update["q"] == {"_id": song} and update["upsert"] is True
    stored = dict(update["u"])
    packed = stored.pop("p")
    assert stored == {"_id": song, "n": 4, "g": generation, "a": ALGORITHM}
    # The song's document holds its landmarks in time order, for a shortlist to be matched against.
    h, t = unpack(bytes(packed), 4)
    assert h.tolist() == [3, top, 7, 7] and t.tolist() == [10, 11, 12, 40]
    request.ok(n=1)

    # A new song has no older generation: nothing to delete, no count to lower.
    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == COLLECTION
    assert request["pipeline"] == [
        {"$match": {"s": song, "g": {"$ne": generation}}},
        {"$project": {"h": 1, "n": {"$size": "$t"}}},
    ]
    cursor(request, [])
    future()

    # The indexes are made once per process: the next song goes straight to its counts and inserts.
    future = go(index.add, uuid.uuid4(), hashes[:1], times[:1])
    request = server.receives()
    assert command(request) == "update" and request["update"] == COUNTS
    updated(request, 1)
    request = server.receives()
    assert command(request) == "insert"
    request.ok(n=1)
    server.receives().ok(n=1)
    cursor(server.receives(), [])
    future()


def test_replacing_deletes_the_older_generation_by_id_then_lowers_its_counts(server: MockupDB) -> None:
    index = get_fingerprint_index()
    song_id = uuid.uuid4()
    future = go(index.add, song_id, np.array([7, 8], dtype=np.uint32), np.array([1, 2], dtype=np.uint32))
    for _ in range(2):
        server.receives().ok()  # createIndexes
    request = server.receives()
    assert request["update"] == COUNTS
    assert [u["q"]["_id"] for u in request["updates"]] == [7, 8]
    updated(request, 2)
    server.receives().ok(n=2)  # insert
    server.receives().ok(n=1)  # the song document

    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == COLLECTION
    old = [{"_id": f"old-{h}", "h": h, "n": n} for h, n in ((7, 3), (9, 1))]
    cursor(request, old)
    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COLLECTION
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": {"$in": ["old-7", "old-9"]}}, "limit": 0}]
    request.ok(n=2)
    request = server.receives()
    assert command(request) == "update" and request["update"] == COUNTS
    assert updates(request) == [
        {"q": {"_id": 7}, "u": {"$inc": {"n": -3}}, "upsert": False, "multi": False},
        {"q": {"_id": 9}, "u": {"$inc": {"n": -1}}, "upsert": False, "multi": False},
    ]
    updated(request, 2)
    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COUNTS
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": {"$in": [7, 9]}, "n": {"$lte": 0}}, "limit": 0}]
    request.ok(n=1)
    future()


def test_removing_deletes_the_song_and_its_hash_documents_then_lowers_their_counts(server: MockupDB) -> None:
    index = get_fingerprint_index()
    song_id = uuid.uuid4()
    song = Binary.from_uuid(song_id)
    future = go(remove_song_fingerprints, song_id, index=index)
    for _ in range(2):
        server.receives().ok()  # createIndexes

    request = server.receives()
    assert command(request) == "delete" and request["delete"] == SONGS
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": song}, "limit": 1}]
    request.ok(n=1)
    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == COLLECTION
    assert request["pipeline"][0] == {"$match": {"s": song}}
    cursor(request, [{"_id": 1, "h": 5, "n": 2}, {"_id": 2, "h": 6, "n": 1}])
    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COLLECTION
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": {"$in": [1, 2]}}, "limit": 0}]
    request.ok(n=2)
    request = server.receives()
    assert command(request) == "update" and request["update"] == COUNTS
    assert [(u["q"]["_id"], dict(u["u"])) for u in request["updates"]] == [
        (5, {"$inc": {"n": -2}}),
        (6, {"$inc": {"n": -1}}),
    ]
    updated(request, 2)
    request = server.receives()
    assert command(request) == "delete" and request["delete"] == COUNTS
    request.ok(n=2)
    future()


def test_removing_a_song_without_fingerprints_touches_no_counts(server: MockupDB) -> None:
    index = get_fingerprint_index()
    future = go(index.remove, uuid.uuid4())
    for _ in range(2):
        server.receives().ok()  # createIndexes
    server.receives().ok(n=0)  # the song document
    request = server.receives()
    assert command(request) == "aggregate"
    cursor(request, [])
    future()


def test_rebuilding_counts_groups_the_postings_into_the_counts_collection(server: MockupDB) -> None:
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    future = go(index.rebuild_counts)
    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == COLLECTION
    assert request["pipeline"] == [
        {"$group": {"_id": "$h", "n": {"$sum": {"$size": "$t"}}}},
        {"$out": COUNTS},
    ]
    assert request["allowDiskUse"] is True
    cursor(request, [])
    future()


def lookup_pipeline(wanted: list[int], limit: int) -> list[dict[str, Any]]:
    return [
        {"$match": {"_id": {"$in": wanted}, "n": {"$lte": limit}}},
        {"$lookup": {"from": COLLECTION, "localField": "_id", "foreignField": "h", "as": "p"}},
        {"$unwind": "$p"},
        {"$project": {"_id": 0, "h": "$_id", "s": "$p.s", "t": "$p.t"}},
    ]


def test_lookup_joins_postings_only_to_hashes_within_the_stop_limit_and_pairs_each_entry_with_the_query_positions(
    server: MockupDB,
) -> None:
    index = get_fingerprint_index()
    a, b = uuid.uuid4(), uuid.uuid4()
    query = np.array([9, 5, 9, 2], dtype=np.uint32)
    future = go(index.lookup, query)

    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == SONGS
    cursor(request, [{"_id": None, "n": 1000}], SONGS)
    # The counts are matched first, on the server: postings of a common hash are never read, let alone sent.
    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == COUNTS
    assert request["pipeline"] == lookup_pipeline([2, 5, 9], stop_limit(1000))
    cursor(
        request,
        [
            {"h": 9, "s": Binary.from_uuid(a), "t": [100, 200]},
            {"h": 5, "s": Binary.from_uuid(b), "t": [7]},
        ],
        COUNTS,
    )
    hits = future()

    found = {
        (hits.song_ids[s], int(t), int(p))
        for s, t, p in zip(hits.songs, hits.ref_times, hits.query_positions, strict=True)
    }
    assert found == {(a, 100, 0), (a, 100, 2), (a, 200, 0), (a, 200, 2), (b, 7, 1)}


def test_the_stop_limit_sent_grows_with_the_landmarks_stored(server: MockupDB) -> None:
    index = get_fingerprint_index()
    stored = 10**8  # a large index: the limit is above its floor
    future = go(index.lookup, np.array([4], dtype=np.uint32))
    cursor(server.receives(), [{"_id": None, "n": stored}], SONGS)
    request = server.receives()
    assert request["pipeline"][0] == {"$match": {"_id": {"$in": [4]}, "n": {"$lte": stop_limit(stored)}}}
    assert stop_limit(stored) > stop_limit(0)
    cursor(request, [], COUNTS)
    assert len(future()) == 0


def test_lookup_sends_the_query_hashes_in_batches(server: MockupDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fingerprints.index.mongo._LOOKUP_BATCH", 2)
    index = get_fingerprint_index()
    future = go(index.lookup, np.array([5, 1, 3], dtype=np.uint32))
    cursor(server.receives(), [{"_id": None, "n": 10}], SONGS)
    sent = []
    for _ in range(2):
        request = server.receives()
        sent.append(request["pipeline"][0]["$match"]["_id"]["$in"])
        cursor(request, [{"h": sent[-1][0], "s": Binary.from_uuid(uuid.uuid4()), "t": [0]}], COUNTS)
    assert sent == [[1, 3], [5]]
    assert len(future()) == 2


def test_a_lookup_within_a_budget_reads_the_counts_then_joins_only_the_rarest_hashes(server: MockupDB) -> None:
    index = get_fingerprint_index()
    a = uuid.uuid4()
    limit = stop_limit(1000)
    # Hash 9 is in the query twice: its 30 entries cost 60 hits of the budget of 40.
    future = go(index.lookup, np.array([9, 5, 9, 2, 4], dtype=np.uint32), 40)
    cursor(server.receives(), [{"_id": None, "n": 1000}], SONGS)
    request = server.receives()
    assert request["find"] == COUNTS and request["filter"] == {"_id": {"$in": [2, 4, 5, 9]}}
    cursor(request, [{"_id": 2, "n": 3}, {"_id": 5, "n": 30}, {"_id": 9, "n": 30}, {"_id": 4, "n": limit + 1}], COUNTS)
    request = server.receives()
    assert request["pipeline"] == lookup_pipeline([2, 5], limit)
    cursor(request, [{"h": 2, "s": Binary.from_uuid(a), "t": [1, 2, 3]}], COUNTS)
    hits = future()

    assert len(hits) == 3 and hits.partial
    assert hits.stopped.tolist() == [4]


def test_a_shortlist_reads_its_songs_landmarks_from_their_documents(server: MockupDB) -> None:
    index = get_fingerprint_index()
    packed, old = uuid.uuid4(), uuid.uuid4()
    future = go(index.landmarks_of, [packed, old])
    request = server.receives()
    assert request["find"] == SONGS
    assert request["filter"] == {"_id": {"$in": [Binary.from_uuid(packed), Binary.from_uuid(old)]}, "a": ALGORITHM}
    data = pack(np.array([8, 6], dtype=np.uint32), np.array([20, 10], dtype=np.uint32))
    documents = [
        {"_id": Binary.from_uuid(packed), "n": 2, "g": 1, "a": ALGORITHM, "p": Binary(data)},
        {"_id": Binary.from_uuid(old), "n": 3, "g": 5, "a": ALGORITHM},  # stored before songs held their landmarks
    ]
    cursor(request, documents, SONGS)
    request = server.receives()
    assert request["find"] == COLLECTION and request["filter"] == {"s": Binary.from_uuid(old), "g": 5}
    cursor(request, [{"h": 3, "t": [50, 7]}, {"h": 1, "t": [9]}])
    found = future()

    assert {k: (h.tolist(), t.tolist()) for k, (h, t) in found.items()} == {
        packed: ([6, 8], [10, 20]),
        old: ([3, 1, 3], [7, 9, 50]),
    }


def test_stats_count_the_postings_and_the_counts(server: MockupDB) -> None:
    index = get_fingerprint_index()
    future = go(index.stats)
    request = server.receives()
    assert command(request) == "aggregate" and request["aggregate"] == SONGS  # count_documents
    cursor(request, [{"_id": 1, "n": 3}], SONGS)
    cursor(server.receives(), [{"_id": None, "n": 30}], SONGS)
    for name, size in ((COLLECTION, 1000), (COUNTS, 100)):
        request = server.receives()
        assert command(request) == "collStats" and request["collStats"] == name
        request.ok(size=size, totalIndexSize=size // 2)
    stats = future()
    assert (stats.songs, stats.hashes, stats.bytes) == (3, 30, 1650)


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


@pytest.fixture
def live_index(settings: Any) -> Iterator[MongoFingerprintIndex]:
    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", LIVE_URI
    settings.FINGERPRINT_COLLECTION = f"live_fingerprints_{uuid.uuid4().hex[:8]}"
    index = get_fingerprint_index()
    assert isinstance(index, MongoFingerprintIndex)
    try:
        yield index
    finally:
        database = index._db()
        for suffix in ("", "_hashes", "_songs"):
            database.drop_collection(f"{index.collection}{suffix}")
        close_clients()


def stored_counts(index: MongoFingerprintIndex) -> tuple[dict[int, int], dict[int, int]]:
    """The counts collection, and the counts the postings say it should hold."""
    kept = {int(d["_id"]): int(d["n"]) for d in index._counts().find({})}
    pipeline = [{"$group": {"_id": "$h", "n": {"$sum": {"$size": "$t"}}}}]
    truth = {int(d["_id"]): int(d["n"]) for d in index._hashes().aggregate(pipeline)}
    return kept, truth


@live_mongodb
def test_live_add_identify_replace_remove(live_index: MongoFingerprintIndex) -> None:
    index = live_index
    ids = {seed: uuid.uuid4() for seed in (11, 12, 13)}
    for seed, song_id in ids.items():
        assert add_song_fingerprints(song_id, song(seed)) > 0
    stats = index.stats()
    assert stats.songs == 3 and stats.hashes == sum(len(landmarks(song(s))) for s in ids)
    kept, truth = stored_counts(index)
    assert kept == truth and sum(kept.values()) == stats.hashes

    match = identify(excerpt(song(12), 7.5, 5.0))
    assert match is not None and match.song_id == ids[12]
    assert match.offset_seconds == pytest.approx(7.5, abs=0.1)

    add_song_fingerprints(ids[12], song(12))  # replaced, not doubled
    assert index.stats().hashes == stats.hashes
    assert stored_counts(index) == (kept, truth)

    remove_song_fingerprints(ids[12])
    match = identify(excerpt(song(12), 7.5, 5.0))
    assert match is None or match.song_id != ids[12]
    assert index.stats().songs == 2
    kept, truth = stored_counts(index)
    assert kept == truth and sum(kept.values()) == index.stats().hashes
    assert sorted(index.song_ids()) == sorted([ids[11], ids[13]])


@live_mongodb
def test_live_lookup_skips_hashes_above_the_stop_limit_on_the_server(live_index: MongoFingerprintIndex) -> None:
    index = live_index
    common, rare, top = 5, 6, 2**32 - 1
    limit = stop_limit(0)
    a, b = uuid.uuid4(), uuid.uuid4()
    # Song a holds the common hash at limit frames: in bounds until song b adds one more.
    index.add(a, np.array([common] * limit + [rare, top], dtype=np.uint32), np.arange(limit + 2, dtype=np.uint32))
    hits = index.lookup(np.array([common, rare, top], dtype=np.uint32))
    assert len(hits) == limit + 2

    index.add(b, np.array([common, rare], dtype=np.uint32), np.array([0, 1], dtype=np.uint32))
    assert stop_limit(index._stored_landmarks()) == limit
    hits = index.lookup(np.array([common, rare, top], dtype=np.uint32))
    matched = {(hits.song_ids[s], int(p)) for s, p in zip(hits.songs, hits.query_positions, strict=True)}
    assert matched == {(a, 1), (b, 1), (a, 2)}

    index.remove(b)  # common again within the limit
    assert len(index.lookup(np.array([common], dtype=np.uint32))) == limit
    index.remove(a)
    assert stored_counts(index) == ({}, {})


@live_mongodb
def test_live_rebuilt_counts_match_the_postings(live_index: MongoFingerprintIndex) -> None:
    index = live_index
    index.add(uuid.uuid4(), np.array([1, 1, 2], dtype=np.uint32), np.array([0, 5, 9], dtype=np.uint32))
    index.add(uuid.uuid4(), np.array([2, 3], dtype=np.uint32), np.array([1, 2], dtype=np.uint32))
    index._counts().drop()
    index.rebuild_counts()
    kept, truth = stored_counts(index)
    assert kept == truth == {1: 2, 2: 2, 3: 1}
    assert len(index.lookup(np.array([1, 2, 3], dtype=np.uint32))) == 5


def test_song_ids_lists_only_songs_fingerprinted_by_the_current_algorithm(server: MockupDB) -> None:
    index = get_fingerprint_index()
    song = uuid.uuid4()
    future = go(index.song_ids)
    request = server.receives()
    assert request["find"] == SONGS and request["filter"] == {"a": ALGORITHM}
    cursor(request, [{"_id": Binary.from_uuid(song)}], SONGS)
    assert future() == [song]
