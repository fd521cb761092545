"""The Atlas backend against MockupDB, a fake MongoDB server that shows each command the driver sends.

Each pymongo call runs in a thread (`mockupdb.go`) while the test reads the command with `server.receives()` and
answers it. The `live` tests at the end talk to a real Atlas or mongodb/mongodb-atlas-local named by MONGODB_URI.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary, BinaryVectorDtype
from django.core.management import call_command
from django.core.management.base import CommandError
from mockupdb import MockupDB, OpMsg, go

from embeddings.index import IndexUnavailable, VectorIndexError, get_vector_index
from embeddings.index.atlas import AtlasVectorIndex, close_clients, mongo_client, num_candidates
from embeddings.registry import model_dim
from tests.mongo import LIVE_URI, dead_server_uri, live_mongodb, mockup_server, mockup_uri

DB, COLLECTION, INDEX = "resonance", "song_vectors", "song_vectors"
FEATURES_DIM = model_dim("features")


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockupDB]:
    yield from mockup_server()  # one server for the module: stopping one takes a second


@pytest.fixture
def server(mock_server: MockupDB, settings: Any) -> Iterator[MockupDB]:
    settings.VECTOR_BACKEND = "atlas"
    settings.MONGODB_URI = mockup_uri(mock_server)
    settings.MONGODB_DB, settings.MONGODB_COLLECTION, settings.ATLAS_INDEX_NAME = DB, COLLECTION, INDEX
    settings.ATLAS_NUM_CANDIDATES_FACTOR = 20
    yield mock_server
    close_clients()


def unit(*values: float, dim: int = 4) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def f32(vector: np.ndarray) -> Binary:
    return Binary.from_vector(vector.tolist(), BinaryVectorDtype.FLOAT32)


def cursor(request: Any, documents: list[dict[str, Any]], ns: str = f"{DB}.{COLLECTION}") -> None:
    request.replies({"cursor": {"id": 0, "ns": ns, "firstBatch": documents}})


def command(request: Any) -> str:
    return str(next(iter(request.doc)))


def expected_pipeline(vector: np.ndarray, *, limit: int, candidates: int, query_filter: dict[str, Any]) -> list[Any]:
    return [
        {
            "$vectorSearch": {
                "index": INDEX,
                "path": "vector",
                "queryVector": f32(vector),
                "numCandidates": candidates,
                "limit": limit,
                "filter": query_filter,
            }
        },
        {"$project": {"_id": 0, "song_id": 1, "file": 1, "score": {"$meta": "vectorSearchScore"}}},
    ]


# --- the index -----------------------------------------------------------------------------------------------


def test_the_factory_needs_a_mongodb_uri(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", ""
    with pytest.raises(ImproperlyConfigured, match="MONGODB_URI"):
        get_vector_index("features", 4)


def test_clients_are_made_once_per_uri(server: MockupDB, settings: Any) -> None:
    assert mongo_client(settings.MONGODB_URI) is mongo_client(settings.MONGODB_URI)
    index = get_vector_index("features", 4)
    assert isinstance(index, AtlasVectorIndex)
    assert index.collection.database.client is mongo_client(settings.MONGODB_URI)


def test_search_sends_vector_search_first_and_converts_scores_to_cosine(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    a, b = uuid.uuid4(), uuid.uuid4()
    query = unit(1, 2, 3)
    future = go(index.search, query, 5)

    request = server.receives()
    assert command(request) == "aggregate"
    assert request["aggregate"] == COLLECTION
    assert request.namespace == DB
    assert request["pipeline"] == expected_pipeline(query, limit=5, candidates=100, query_filter={"model": "features"})
    sent = request["pipeline"][0]["$vectorSearch"]["queryVector"]
    assert sent.subtype == 9
    assert sent.as_vector().dtype == BinaryVectorDtype.FLOAT32
    np.testing.assert_array_equal(sent.as_vector(return_numpy=True).data, query)
    cursor(
        request,
        [{"song_id": str(a), "file": "a.mp3", "score": 0.95}, {"song_id": str(b), "file": "b.mp3", "score": 0.5}],
    )

    hits = future()
    assert [(hit.song_id, hit.file) for hit in hits] == [(a, "a.mp3"), (b, "b.mp3")]
    assert [hit.score for hit in hits] == pytest.approx([0.9, 0.0])  # (1 + dot) / 2 back to dot


def test_more_like_this_excludes_the_file_in_the_filter(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    query = unit(0, 1)
    future = go(index.search, query, 15, exclude_file="uploads/x/song.mp3")

    request = server.receives()
    assert request["pipeline"] == expected_pipeline(
        query,
        limit=15,
        candidates=300,
        query_filter={"$and": [{"model": "features"}, {"file": {"$ne": "uploads/x/song.mp3"}}]},
    )
    cursor(request, [{"song_id": str(uuid.uuid4()), "file": "other.mp3", "score": 0.75}])
    assert [hit.score for hit in future()] == [pytest.approx(0.5)]


def expected_searchable_pipeline(song_id: uuid.UUID, vector: np.ndarray) -> list[Any]:
    return [
        {
            "$vectorSearch": {
                "index": INDEX,
                "path": "vector",
                "queryVector": f32(vector),
                "exact": True,
                "limit": 1,
                "filter": {"$and": [{"model": "features"}, {"song_id": str(song_id)}]},
            }
        },
        {"$project": {"_id": 0, "song_id": 1}},
    ]


def test_wait_searchable_polls_an_exact_search_for_the_song_until_atlas_serves_it(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    song = uuid.uuid4()
    vector = unit(1, 1)
    future = go(index.wait_searchable, song, vector, timeout=30)

    for _ in range(2):  # not indexed yet: Atlas answers an empty cursor
        request = server.receives()
        assert command(request) == "aggregate"
        assert request["pipeline"] == expected_searchable_pipeline(song, vector)
        cursor(request, [])
    cursor(server.receives(), [{"song_id": str(song)}])

    assert future() is None


def test_a_song_atlas_never_serves_makes_the_index_unavailable(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    empty = server.autoresponds(
        OpMsg("aggregate", COLLECTION), {"cursor": {"id": 0, "ns": f"{DB}.{COLLECTION}", "firstBatch": []}}
    )
    try:
        with pytest.raises(IndexUnavailable, match=r"did not serve it within 0\.5 s"):
            index.wait_searchable(uuid.uuid4(), unit(1), timeout=0.5)
    finally:
        empty.cancel()


def test_num_candidates_is_factor_times_limit_capped_at_ten_thousand() -> None:
    assert num_candidates(10, 20) == 200
    assert num_candidates(600, 20) == 10_000
    assert num_candidates(10, 1) == 10


def test_upsert_replaces_the_document_with_a_float32_binary_vector(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    song = uuid.uuid4()
    vector = unit(3, 4)
    future = go(index.upsert, song, "uploads/a.mp3", vector)

    request = server.receives()
    assert command(request) == "update"
    assert request["update"] == COLLECTION
    (update,) = request["updates"]
    assert update["q"] == {"_id": f"features:{song}"}
    assert update["upsert"] is True
    assert update.get("multi", False) is False
    document = dict(update["u"])
    assert isinstance(document.pop("updated_at"), datetime)
    assert document == {
        "song_id": str(song),
        "file": "uploads/a.mp3",
        "model": "features",
        "dim": 4,
        "vector": f32(vector),
    }
    request.ok(n=1, nModified=0, upserted=[{"index": 0, "_id": f"features:{song}"}])
    future()


def test_delete_and_get_address_the_song_and_model(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    song = uuid.uuid4()

    future = go(index.delete, song)
    request = server.receives()
    assert command(request) == "delete"
    assert [dict(d) for d in request["deletes"]] == [{"q": {"_id": f"features:{song}"}, "limit": 1}]
    request.ok(n=1)
    future()

    vector = unit(1, 1)
    future = go(index.get, song)
    request = server.receives()
    assert command(request) == "find"
    assert request["filter"] == {"_id": f"features:{song}"}
    cursor(request, [{"_id": f"features:{song}", "vector": f32(vector)}])
    found = future()
    assert found is not None and found.dtype == np.float32
    np.testing.assert_array_equal(found, vector)

    future = go(index.get, song)
    cursor(server.receives(), [])
    assert future() is None


def test_wrong_vectors_are_refused_before_anything_is_sent(server: MockupDB) -> None:
    index = get_vector_index("features", 4)
    with pytest.raises(VectorIndexError, match="4-d"):
        index.upsert(uuid.uuid4(), "a.mp3", np.ones(3, dtype=np.float32))
    with pytest.raises(VectorIndexError, match="NaN"):
        index.search(np.array([np.nan, 0, 0, 1], dtype=np.float32), 5)
    with pytest.raises(VectorIndexError, match="limit"):
        index.search(unit(1), 0)


# --- errors --------------------------------------------------------------------------------------------------


def test_a_server_without_vector_search_is_reported_with_the_fix(server: MockupDB) -> None:
    future = go(get_vector_index("features", 4).search, unit(1), 5)
    server.receives().command_err(40324, "Unrecognized pipeline stage name: '$vectorSearch'")

    with pytest.raises(VectorIndexError, match="Atlas") as caught:
        future()
    assert not isinstance(caught.value, IndexUnavailable)
    assert "VECTOR_BACKEND=local" in str(caught.value)


@pytest.mark.parametrize(
    "errmsg",
    ["Path 'file' needs to be indexed as filter", "Index song_vectors not found", "Search index is not queryable"],
)
def test_index_errors_say_to_run_atlas_index(server: MockupDB, errmsg: str) -> None:
    future = go(get_vector_index("features", 4).search, unit(1), 5, exclude_file="a.mp3")
    server.receives().command_err(8, errmsg)

    with pytest.raises(VectorIndexError, match="atlas_index --wait"):
        future()


@pytest.mark.parametrize(
    ("indexes", "reason"),
    [([], "does not exist"), ([{"name": INDEX, "status": "BUILDING", "queryable": False}], "not queryable")],
)
def test_no_results_from_a_missing_or_building_index_are_an_error(
    server: MockupDB, indexes: list[dict[str, Any]], reason: str
) -> None:
    future = go(get_vector_index("features", 4).search, unit(1), 5)
    cursor(server.receives(), [])  # what Atlas answers for an index it does not have
    request = server.receives()
    assert request["pipeline"] == [{"$listSearchIndexes": {"name": INDEX}}]
    cursor(request, indexes)

    with pytest.raises(VectorIndexError, match=rf"{reason}.*atlas_index --wait"):
        future()


def test_no_results_from_a_ready_index_are_just_no_results(server: MockupDB) -> None:
    future = go(get_vector_index("features", 4).search, unit(1), 5)
    cursor(server.receives(), [])
    cursor(server.receives(), [{"name": INDEX, "status": "READY", "queryable": True}])
    assert future() == []


def test_a_connection_dropped_mid_search_makes_the_index_unavailable(server: MockupDB) -> None:
    future = go(get_vector_index("features", 4).search, unit(1), 5)
    server.receives().hangup()
    server.receives().hangup()  # pymongo retries a read once

    with pytest.raises(IndexUnavailable, match="AutoReconnect"):
        future()


def test_a_dead_server_makes_the_index_unavailable(settings: Any) -> None:
    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", dead_server_uri()
    index = get_vector_index("features", 4)
    try:
        for call in (lambda: index.search(unit(1), 5), lambda: index.get(uuid.uuid4())):
            with pytest.raises(IndexUnavailable, match="unavailable"):
                call()
        with pytest.raises(IndexUnavailable):
            index.upsert(uuid.uuid4(), "a.mp3", unit(1))
    finally:
        close_clients()


# --- manage.py atlas_index -----------------------------------------------------------------------------------


def expected_definition(dim: int) -> dict[str, Any]:
    return {
        "fields": [
            {"type": "vector", "path": "vector", "numDimensions": dim, "similarity": "dotProduct"},
            {"type": "filter", "path": "model"},
            {"type": "filter", "path": "file"},
            {"type": "filter", "path": "song_id"},
        ]
    }


def run_command(*args: str) -> tuple[Any, io.StringIO]:
    out = io.StringIO()
    return go(call_command, "atlas_index", *args, "--interval", "0.01", stdout=out), out


def answer_collection_exists(server: MockupDB, exists: bool = True) -> None:
    request = server.receives()
    assert command(request) == "listCollections"
    assert request["filter"] == {"name": COLLECTION}
    cursor(request, [{"name": COLLECTION, "type": "collection"}] if exists else [], ns=f"{DB}.$cmd.listCollections")


def answer_search_indexes(server: MockupDB, indexes: list[dict[str, Any]]) -> None:
    request = server.receives()
    assert request["pipeline"] == [{"$listSearchIndexes": {"name": INDEX}}]
    cursor(request, indexes)


def test_atlas_index_creates_the_collection_and_the_vector_index(server: MockupDB) -> None:
    future, out = run_command()
    answer_collection_exists(server, exists=False)
    request = server.receives()
    assert command(request) == "create" and request["create"] == COLLECTION
    request.ok()
    answer_search_indexes(server, [])

    request = server.receives()
    assert command(request) == "createSearchIndexes"
    assert request["createSearchIndexes"] == COLLECTION
    assert request["indexes"] == [
        {"name": INDEX, "type": "vectorSearch", "definition": expected_definition(FEATURES_DIM)}
    ]
    request.ok(indexesCreated=[{"id": "1", "name": INDEX}])
    future()
    assert f"Created the vector search index '{INDEX}'" in out.getvalue()
    assert f"{FEATURES_DIM}-d features vectors" in out.getvalue()


def test_atlas_index_wait_polls_until_the_index_is_queryable(server: MockupDB) -> None:
    future, out = run_command("--wait")
    answer_collection_exists(server)
    answer_search_indexes(server, [])
    server.receives().ok(indexesCreated=[{"id": "1", "name": INDEX}])
    answer_search_indexes(server, [{"name": INDEX, "status": "PENDING", "queryable": False}])
    answer_search_indexes(server, [{"name": INDEX, "status": "BUILDING", "queryable": False}])
    answer_search_indexes(server, [{"name": INDEX, "status": "READY", "queryable": True}])
    future()

    lines = out.getvalue().splitlines()
    assert lines[1:] == [
        "  status PENDING, queryable: no",
        "  status BUILDING, queryable: no",
        "  status READY, queryable: yes",
        f"The search index '{INDEX}' is ready.",
    ]


def test_atlas_index_gives_up_waiting_after_the_timeout(server: MockupDB) -> None:
    future, _ = run_command("--wait", "--timeout", "0")
    answer_collection_exists(server)
    answer_search_indexes(server, [{"name": INDEX, "latestDefinition": expected_definition(FEATURES_DIM)}])
    answer_search_indexes(server, [{"name": INDEX, "status": "BUILDING", "queryable": False}])

    with pytest.raises(CommandError, match="still not queryable after 0 s"):
        future()


def test_atlas_index_leaves_a_fitting_index_alone(server: MockupDB) -> None:
    future, out = run_command()
    answer_collection_exists(server)
    answer_search_indexes(
        server, [{"name": INDEX, "queryable": True, "latestDefinition": expected_definition(FEATURES_DIM)}]
    )
    future()
    assert "already exists with this definition" in out.getvalue()


def test_atlas_index_refuses_an_index_of_another_vector_size(server: MockupDB) -> None:
    future, _ = run_command()
    answer_collection_exists(server)
    answer_search_indexes(server, [{"name": INDEX, "latestDefinition": expected_definition(2048)}])

    with pytest.raises(CommandError, match=r"2048-d.*222-d.*--drop.*reindex --all"):
        future()


def test_atlas_index_drop_recreates_the_index(server: MockupDB) -> None:
    future, out = run_command("--drop")
    answer_collection_exists(server)
    answer_search_indexes(server, [{"name": INDEX, "latestDefinition": expected_definition(2048)}])
    request = server.receives()
    assert command(request) == "dropSearchIndex" and request["name"] == INDEX
    request.ok()
    answer_search_indexes(server, [{"name": INDEX, "status": "DELETING"}])
    answer_search_indexes(server, [])
    request = server.receives()
    assert request["indexes"][0]["definition"] == expected_definition(FEATURES_DIM)
    request.ok(indexesCreated=[{"id": "2", "name": INDEX}])
    future()
    assert "Dropping" in out.getvalue() and "Created" in out.getvalue()


def test_atlas_index_wait_retries_while_the_search_process_starts(server: MockupDB) -> None:
    future, out = run_command("--wait")
    answer_collection_exists(server)
    server.receives().command_err(125, "Error connecting to Search Index Management service.")
    answer_collection_exists(server)
    answer_search_indexes(server, [])
    server.receives().ok(indexesCreated=[{"id": "1", "name": INDEX}])
    answer_search_indexes(server, [{"name": INDEX, "status": "READY", "queryable": True}])
    future()
    assert "not reachable yet" in out.getvalue()
    assert "is ready" in out.getvalue()


def test_atlas_index_on_a_server_without_search_says_so(server: MockupDB) -> None:
    future, _ = run_command()
    answer_collection_exists(server)
    server.receives().command_err(40324, "Unrecognized pipeline stage name: '$listSearchIndexes'")
    with pytest.raises(CommandError, match="mongodb-atlas-local"):
        future()


# --- a real server -------------------------------------------------------------------------------------------


@live_mongodb
def test_live_index_upsert_search_exclude_delete(settings: Any) -> None:
    settings.VECTOR_BACKEND, settings.MONGODB_URI = "atlas", LIVE_URI
    settings.MONGODB_COLLECTION = f"live_{uuid.uuid4().hex[:8]}"
    settings.EMBEDDING_MODEL = "features"
    try:
        call_command("atlas_index", "--wait", "--timeout", "180", stdout=io.StringIO())
        index = get_vector_index("features", FEATURES_DIM)
        songs = [uuid.uuid4() for _ in range(3)]
        for i, song in enumerate(songs):
            index.upsert(song, f"uploads/{i}.mp3", unit(1, 0.5 * i, dim=FEATURES_DIM))

        def searchable() -> list[Any]:
            deadline = time.monotonic() + 60
            while True:
                try:
                    return index.search(unit(1, dim=FEATURES_DIM), 10)
                except VectorIndexError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.5)

        while len(searchable()) < 3:
            time.sleep(0.5)
        vector = index.get(songs[0])
        assert vector is not None
        hits = index.search(vector, 5, exclude_file="uploads/0.mp3")
        assert [hit.song_id for hit in hits] == songs[1:]
        assert hits[0].score == pytest.approx(float(vector @ unit(1, 0.5, dim=FEATURES_DIM)), abs=1e-4)

        index.delete(songs[1])
        deadline = time.monotonic() + 60
        while songs[1] in {hit.song_id for hit in index.search(vector, 5)}:
            assert time.monotonic() < deadline, "the deleted song is still found"
            time.sleep(0.5)
    finally:
        mongo_client(LIVE_URI)[settings.MONGODB_DB].drop_collection(settings.MONGODB_COLLECTION)
        close_clients()
