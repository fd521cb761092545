"""The MongoDB fingerprint index (VECTOR_BACKEND=atlas): postings indexed on the hash, and a count per hash.

Collection FINGERPRINT_COLLECTION (default `fingerprints`) holds one document per song and hash:
`{h: hash (int), s: song id (UUID, binary subtype 4), g: generation (int64), t: [anchor frames]}`, indexed on `h`
(lookups) and `(s, g)` (replacing and removing a song). Collection `<FINGERPRINT_COLLECTION>_hashes` holds one
document per stored hash, `{_id: hash, n: landmarks with that hash}`, so a lookup skips common hashes on the server
without reading their postings. Collection `<FINGERPRINT_COLLECTION>_songs` holds one document per song,
`{_id: song id, n: landmarks, g: generation, a: algorithm, p: packed landmarks}`, for counts, stats and the
shortlist of a lookup within a budget (`p` is `fingerprints.index.local.pack`'s bytes: about 4 bytes per landmark).

Adding a song inserts its documents under a new generation and only then deletes the older generations, so a song
being replaced is never missing from lookups (for a moment it is there twice, which only doubles its own score).
Counts go up before postings are inserted and down after they are deleted, so a count is never below the postings
stored: an interrupted write can only make a hash look more common than it is.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from django.conf import settings

# One client and connection pool per URI and process, shared with the vector index on the same server.
from embeddings.index.atlas import close_clients as atlas_close_clients
from embeddings.index.atlas import mongo_client
from fingerprints.index import (
    FingerprintIndexError,
    FingerprintIndexUnavailable,
    Hits,
    IndexStats,
    SongLandmarks,
    check_landmarks,
    stop_limit,
)
from fingerprints.index.local import pack, unpack
from fingerprints.index.lookup import over_budget
from fingerprints.landmarks import ALGORITHM

U32 = npt.NDArray[np.uint32]

# Documents per insert_many or delete_many call, count updates per bulk_write, and hashes per lookup command.
_INSERT_BATCH = 5000
_COUNT_BATCH = 5000
_LOOKUP_BATCH = 5000
# How long a process trusts its count of stored landmarks (for the stop limit).
_COUNT_TTL_SECONDS = 60.0

_indexed: set[tuple[int, str, str, str]] = set()


def close_clients() -> None:
    """Close the clients this process opened (tests; processes letting go of their pools)."""
    atlas_close_clients()
    _indexed.clear()


def _bson_uuid(song_id: UUID) -> Any:
    """Song ids as BSON UUIDs (binary subtype 4), whatever the client's uuidRepresentation."""
    from bson.binary import Binary

    return Binary.from_uuid(song_id)


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """Turn pymongo's errors into the index's: unavailable (retry later) or refused (a problem to fix)."""
    from pymongo.errors import ConnectionFailure, PyMongoError

    try:
        yield
    except ConnectionFailure as exc:
        raise FingerprintIndexUnavailable(f"MongoDB is unreachable, could not {what}: {exc}") from exc
    except PyMongoError as exc:
        raise FingerprintIndexError(f"MongoDB refused to {what}: {exc}") from exc


class MongoFingerprintIndex:
    def __init__(self, uri: str, database: str, collection: str) -> None:
        if not uri:
            raise FingerprintIndexError("VECTOR_BACKEND=atlas needs MONGODB_URI for the fingerprint index")
        self.uri = uri
        self.database = database
        self.collection = collection
        self._landmarks: tuple[float, int] | None = None

    @classmethod
    def from_settings(cls) -> MongoFingerprintIndex:
        return cls(
            uri=getattr(settings, "MONGODB_URI", ""),
            database=getattr(settings, "MONGODB_DB", "resonance") or "resonance",
            collection=getattr(settings, "FINGERPRINT_COLLECTION", "fingerprints") or "fingerprints",
        )

    # --- collections -------------------------------------------------------------------------------------------

    def _db(self) -> Any:
        return mongo_client(self.uri)[self.database]

    def _hashes(self) -> Any:
        return self._db()[self.collection]

    def _counts(self) -> Any:
        return self._db()[f"{self.collection}_hashes"]

    def _songs(self) -> Any:
        return self._db()[f"{self.collection}_songs"]

    def ensure_indexes(self) -> None:
        """Create the indexes on the hash and the song (idempotent; done once per process and collection)."""
        key = (os.getpid(), self.uri, self.database, self.collection)
        if key in _indexed:
            return
        with _guard("create the fingerprint indexes"):
            self._hashes().create_index([("h", 1)], name="hash")
            self._hashes().create_index([("s", 1), ("g", 1)], name="song")
        _indexed.add(key)

    # --- writes ------------------------------------------------------------------------------------------------

    def add(self, song_id: UUID, hashes: npt.NDArray[np.uint32], times: npt.NDArray[np.uint32]) -> None:
        from bson.binary import Binary

        h, t = check_landmarks(hashes, times)
        self.ensure_indexes()
        # Random, so two writers of one song never share a generation; int64 keeps every posting small.
        generation = secrets.randbits(63)
        with _guard("store fingerprints"):
            for batch in _batches(_documents(song_id, generation, h, t), _INSERT_BATCH):
                self._count([(d["h"], len(d["t"])) for d in batch], +1)
                self._hashes().insert_many(batch, ordered=False)
            song = _bson_uuid(song_id)
            document = {"_id": song, "n": int(h.size), "g": generation, "a": ALGORITHM, "p": Binary(pack(h, t))}
            self._songs().replace_one({"_id": song}, document, upsert=True)
            self._drop({"s": song, "g": {"$ne": generation}})
        self._landmarks = None

    def remove(self, song_id: UUID) -> None:
        self.ensure_indexes()
        with _guard("remove fingerprints"):
            song = _bson_uuid(song_id)
            self._songs().delete_one({"_id": song})
            self._drop({"s": song})
        self._landmarks = None

    def _drop(self, postings: dict[str, Any]) -> None:
        """Delete the postings matching `postings`, then take their landmarks off the counts of their hashes."""
        rows = list(self._hashes().aggregate([{"$match": postings}, {"$project": {"h": 1, "n": {"$size": "$t"}}}]))
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            # By _id: only what was read is deleted, so the counts lose exactly what the postings lost.
            self._hashes().delete_many({"_id": {"$in": [row["_id"] for row in batch]}})
            self._count([(row["h"], row["n"]) for row in batch], -1)

    def _count(self, landmarks: Iterable[tuple[int, int]], sign: int) -> None:
        """Add (sign +1) or take off (-1) landmarks per hash; counts that reach zero are deleted."""
        from pymongo import UpdateOne

        per_hash: dict[int, int] = {}
        for h, n in landmarks:
            per_hash[int(h)] = per_hash.get(int(h), 0) + int(n)
        items = sorted(per_hash.items())
        for start in range(0, len(items), _COUNT_BATCH):
            batch = items[start : start + _COUNT_BATCH]
            # Only increments create a count: a decrement of a missing one must not leave a negative count behind.
            updates = [UpdateOne({"_id": h}, {"$inc": {"n": sign * n}}, upsert=sign > 0) for h, n in batch]
            self._counts().bulk_write(updates, ordered=False)
            if sign < 0:
                self._counts().delete_many({"_id": {"$in": [h for h, _ in batch]}, "n": {"$lte": 0}})

    def rebuild_counts(self) -> None:
        """Recount every hash from the postings (collections written before counts existed, or repairs).

        Run it while nothing adds or removes songs: writes during the recount may be missing from it.
        """
        pipeline = [
            {"$group": {"_id": "$h", "n": {"$sum": {"$size": "$t"}}}},
            {"$out": f"{self.collection}_hashes"},
        ]
        with _guard("recount fingerprint hashes"):
            # $out swaps the new counts in at the end, so lookups never see a half-written collection.
            self._hashes().aggregate(pipeline, allowDiskUse=True)

    # --- reads -------------------------------------------------------------------------------------------------

    def _stored_landmarks(self) -> int:
        now = time.monotonic()
        if self._landmarks is None or now - self._landmarks[0] > _COUNT_TTL_SECONDS:
            rows = list(self._songs().aggregate([{"$group": {"_id": None, "n": {"$sum": "$n"}}}]))
            self._landmarks = (now, int(rows[0]["n"]) if rows else 0)
        return self._landmarks[1]

    def _postings(self, wanted: list[int], limit: int) -> list[dict[str, Any]]:
        """The postings of the hashes among `wanted` stored at most `limit` times: at most len(wanted) x limit.

        The server matches the counts first and joins postings only to the hashes that pass, so a common hash
        costs one count document, never its postings.
        """
        pipeline = [
            {"$match": {"_id": {"$in": wanted}, "n": {"$lte": limit}}},
            {"$lookup": {"from": self.collection, "localField": "_id", "foreignField": "h", "as": "p"}},
            # Unwound at once, so the server streams postings instead of building one document per hash.
            {"$unwind": "$p"},
            {"$project": {"_id": 0, "h": "$_id", "s": "$p.s", "t": "$p.t"}},
        ]
        return list(self._counts().aggregate(pipeline))

    def _chosen(self, query: U32, limit: int, budget: int) -> tuple[U32, U32, bool]:
        """Within a budget: (the query's hashes to read, those over the stop limit, whether the budget left some
        out), from the counts alone; the postings of hashes left out are never read."""
        unique, multiplicity = np.unique(query, return_counts=True)
        counts: dict[int, int] = {}
        for start in range(0, unique.size, _LOOKUP_BATCH):
            wanted = [int(x) for x in unique[start : start + _LOOKUP_BATCH]]
            for document in self._counts().find({"_id": {"$in": wanted}}, {"n": 1}):
                counts[int(document["_id"])] = int(document["n"])
        totals = np.fromiter((counts.get(int(h), 0) for h in unique), dtype=np.int64, count=unique.size)
        stopped = totals > limit
        left_out = over_budget(np.where(stopped, 0, totals), multiplicity.astype(np.int64), budget) & ~stopped
        chosen = ~stopped & ~left_out & (totals > 0)
        return unique[chosen], unique[stopped], bool(np.any(left_out & (totals > 0)))

    def lookup(
        self,
        hashes: npt.NDArray[np.uint32],
        budget: int = 0,
        times: npt.NDArray[np.uint32] | None = None,  # every hit is returned: candidates() shortlists them
    ) -> Hits:
        query = np.asarray(hashes, dtype=np.uint32)
        if query.size == 0:
            return Hits.empty()
        unique = np.unique(query)
        stopped, partial = np.empty(0, dtype=np.uint32), False
        found_hashes: list[int] = []
        found_songs: list[UUID] = []
        found_times: list[list[int]] = []
        with _guard("look up fingerprints"):
            limit = stop_limit(self._stored_landmarks())
            if budget > 0:
                unique, stopped, partial = self._chosen(query, limit, budget)
            for start in range(0, unique.size, _LOOKUP_BATCH):
                wanted = [int(x) for x in unique[start : start + _LOOKUP_BATCH]]
                for document in self._postings(wanted, limit):
                    found_hashes.append(int(document["h"]))
                    found_songs.append(_as_uuid(document["s"]))
                    found_times.append(document["t"])
        if not found_hashes:
            none = np.empty(0, dtype=np.int64)
            return Hits(song_ids=[], songs=none, ref_times=none, query_positions=none, stopped=stopped, partial=partial)
        lengths = np.fromiter((len(t) for t in found_times), dtype=np.int64, count=len(found_times))
        entry_hash = np.repeat(np.asarray(found_hashes, dtype=np.int64), lengths)
        ref_times = np.fromiter((x for t in found_times for x in t), dtype=np.int64, count=int(lengths.sum()))
        song_ids = list(dict.fromkeys(found_songs))
        number = {song_id: i for i, song_id in enumerate(song_ids)}
        entry_song = np.repeat(np.asarray([number[s] for s in found_songs], dtype=np.int64), lengths)
        # Pair every entry with every query position holding its hash.
        order = np.argsort(query, kind="stable")
        sorted_query = query[order].astype(np.int64)
        first = np.searchsorted(sorted_query, entry_hash, side="left")
        repeats = np.searchsorted(sorted_query, entry_hash, side="right") - first
        total = int(repeats.sum())
        offsets = np.cumsum(repeats) - repeats
        positions = np.arange(total, dtype=np.int64) - np.repeat(offsets - first, repeats)
        return Hits(
            song_ids=song_ids,
            songs=np.repeat(entry_song, repeats),
            ref_times=np.repeat(ref_times, repeats),
            query_positions=order[positions].astype(np.int64),
            stopped=stopped,
            partial=partial,
        )

    def landmarks_of(self, song_ids: Sequence[UUID]) -> dict[UUID, SongLandmarks]:
        """From the songs' documents; a song stored before they held its landmarks is read from its postings."""
        found: dict[UUID, SongLandmarks] = {}
        with _guard("read fingerprints"):
            wanted = [_bson_uuid(song_id) for song_id in song_ids]
            for document in self._songs().find({"_id": {"$in": wanted}, "a": ALGORITHM}):
                song_id = _as_uuid(document["_id"])
                if "p" in document:
                    found[song_id] = unpack(bytes(document["p"]), int(document["n"]))
                else:
                    found[song_id] = self._from_postings(document["_id"], document["g"])
        return found

    def _from_postings(self, song: Any, generation: int) -> SongLandmarks:
        hashes: list[int] = []
        times: list[int] = []
        for document in self._hashes().find({"s": song, "g": generation}, {"h": 1, "t": 1}):
            hashes += [int(document["h"])] * len(document["t"])
            times += [int(t) for t in document["t"]]
        h, t = np.asarray(hashes, dtype=np.uint32), np.asarray(times, dtype=np.uint32)
        order = np.argsort(t, kind="stable")
        return h[order], t[order]

    def song_ids(self) -> list[UUID]:
        with _guard("list fingerprinted songs"):
            # Songs fingerprinted by another algorithm are not listed, so `reindex` fingerprints them again.
            songs = self._songs().find({"a": ALGORITHM}, {"_id": 1})
            return [_as_uuid(document["_id"]) for document in songs]

    def stats(self) -> IndexStats:
        with _guard("read fingerprint statistics"):
            songs = self._songs().count_documents({})
            landmarks = self._stored_landmarks()
            sizes = [self._db().command("collStats", name) for name in (self.collection, f"{self.collection}_hashes")]
        stored = sum(int(size.get("size", 0)) + int(size.get("totalIndexSize", 0)) for size in sizes)
        return IndexStats(songs=int(songs), hashes=landmarks, bytes=stored)


def _as_uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    as_uuid = getattr(value, "as_uuid", None)
    if as_uuid is not None:
        return UUID(str(as_uuid()))
    return UUID(str(value))


def _documents(song_id: UUID, generation: int, hashes: U32, times: U32) -> Iterator[dict[str, Any]]:
    """One document per distinct hash of the song, with all its anchor frames, in time order."""
    if hashes.size == 0:
        return
    order = np.lexsort((times, hashes))
    h = hashes[order]
    t = times[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    ends = np.r_[starts[1:], h.size]
    song = _bson_uuid(song_id)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        yield {"h": int(h[a]), "s": song, "g": generation, "t": t[a:b].tolist()}


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
