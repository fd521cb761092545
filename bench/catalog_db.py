"""Catalog list and text search at scale, on the database DATABASE_URL names (PostgreSQL) or a scratch SQLite file.

    python bench/catalog_db.py --songs 100000                       # SQLite, in a throwaway folder or SQLITE_PATH
    bin/with-postgres python bench/catalog_db.py --songs 100000     # a throwaway PostgreSQL cluster

Writes N ready songs in bulk (titles, artists, albums, file names and sound tags drawn like bench/scale_build.py's),
then times `GET /api/songs/...` in process through Django's test client (query, count, page of 25 with tags and
serialisation, production settings; no HTTP) and prints p50/p95 per request kind. Text searches use words of the
titles (a few percent of the catalog each), rarer artist names, and two-letter strings (no trigram to use).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHUNK = 5000


def build(songs: int, seed: int = 0) -> tuple[float, list[str]]:
    """Insert `songs` ready songs with tags; returns the seconds it took and the artist names used."""
    from django.db import transaction

    from bench.scale_build import COMMON_TAGS, FIRST, GENRES, LAST, WORDS
    from catalog.models import Song, SongStatus, SongTag

    rng = np.random.default_rng(seed)

    def words(low: int, high: int) -> str:
        return " ".join(str(w).capitalize() for w in rng.choice(WORDS, size=int(rng.integers(low, high + 1))))

    genres = list(GENRES)
    artists = [
        (f"{rng.choice(FIRST)} {rng.choice(LAST)}" if n % 3 else f"The {words(1, 1)} {words(1, 1)}s", genres[n % 12])
        for n in range(max(5, songs // 40))
    ]
    albums = {name: [words(1, 3) for _ in range(4)] for name, _ in artists}
    popularity = 1 / np.arange(1, len(artists) + 1)
    popularity /= popularity.sum()
    started = time.perf_counter()
    for start in range(0, songs, CHUNK):
        rows, tags = [], []
        for a in rng.choice(len(artists), size=min(CHUNK, songs - start), p=popularity):
            artist, genre = artists[a]
            song_id, title = uuid.uuid4(), words(1, 4)
            name = f"{int(rng.integers(1, 13)):02d} - {artist} - {title}.mp3"
            rows.append(
                Song(
                    id=song_id,
                    object_key=f"uploads/{song_id}/{name.replace(' ', '_')}",
                    original_file_name=name,
                    content_type="audio/mpeg",
                    size=4_000_000,
                    title=title,
                    artist=artist,
                    album=str(rng.choice(albums[artist])),
                    duration_seconds=float(rng.uniform(90, 600)),
                    status=SongStatus.READY,
                    embedding_model="features",
                )
            )
            labels = ["Music", genre, *rng.choice(GENRES[genre], size=2, replace=False)]
            labels += list(rng.choice(COMMON_TAGS[1:], size=int(rng.integers(0, 3)), replace=False))
            tags += [SongTag(song_id=song_id, label=label, score=0.5) for label in labels]
        with transaction.atomic():
            Song.objects.bulk_create(rows, batch_size=1000)
            SongTag.objects.bulk_create(tags, batch_size=2000)
        print(f"  {start + len(rows):,} songs", end="\r", flush=True)
    return time.perf_counter() - started, [name for name, _ in artists]


def timed(client: object, requests: list[dict[str, str]], repeat: int) -> tuple[list[float], list[float], int]:
    """p50 and p95 of the query alone (count and the page of 25 with its tags; with this process's CPU ms p50,
    all of the work on SQLite, the client's share on PostgreSQL) and of the whole API request."""
    from urllib.parse import urlencode

    from django.test import Client

    from catalog import selectors
    from catalog.api.pagination import SEARCH_COUNT_LIMIT

    assert isinstance(client, Client)

    def query(params: dict[str, str]) -> int:
        """What the API reads: the count (a text search's stops past SEARCH_COUNT_LIMIT; a tag's alone comes from the
        tag counts), then the page."""

        def listed(to_count: bool = False) -> Any:
            fields = {name: params.get(name, "") for name in ("search", "status", "tag")}
            return selectors.song_list(**fields, sort=params.get("sort", "newest"), to_count=to_count)

        songs = listed()
        page = int(params.get("page", "1"))
        if params.get("tag") and not params.get("search") and not params.get("status"):
            count = selectors.songs_tagged(params["tag"])  # a tag alone: from the shared tag counts
        elif params.get("search") or params.get("tag"):
            limit = max(SEARCH_COUNT_LIMIT, page * 25)
            count = min(limit, listed(to_count=True).order_by()[: limit + 1].count())
        else:
            count = songs.count()
        assert len(list(songs[(page - 1) * 25 : page * 25])) <= 25
        return count

    paths = [f"/api/songs/?{urlencode(params)}" for params in requests]
    for params, path in zip(requests, paths, strict=True):  # warm: plans cached, pages read once
        query(params)
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    query_ms, cpu_ms, api_ms = [], [], []
    count = 0
    for _ in range(repeat):
        for params, path in zip(requests, paths, strict=True):
            started, cpu = time.perf_counter(), time.process_time()
            count = query(params)
            query_ms.append((time.perf_counter() - started) * 1000)
            cpu_ms.append((time.process_time() - cpu) * 1000)
            started = time.perf_counter()
            assert client.get(path).json()["count"] == count
            api_ms.append((time.perf_counter() - started) * 1000)
    wall = [*np.percentile(query_ms, [50, 95]), float(np.percentile(cpu_ms, 50))]
    return wall, list(np.percentile(api_ms, [50, 95])), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds over each kind's requests")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="resonance-catalog-db-"))
    os.environ.update(
        {
            "VAR_DIR": str(scratch),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-only-" + uuid.uuid4().hex,
            "HTTPS": "false",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "LOG_LEVEL": "WARNING",
        }
    )
    if not os.environ.get("DATABASE_URL"):
        os.environ.setdefault("SQLITE_PATH", str(scratch / "catalog.sqlite3"))  # set it to keep the catalog
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from catalog.models import Song

    call_command("migrate", verbosity=0)
    print(
        f"database: {connection.vendor} {connection.display_name}; CPU: {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    existing = Song.objects.count()
    if existing < args.songs:
        seconds, _ = build(args.songs - existing)
        print(f"\nwrote {args.songs - existing:,} songs with tags in {seconds:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # the statistics a production database keeps
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    from bench.scale_build import WORDS

    rng = np.random.default_rng(1)
    words = [str(w) for w in rng.choice(WORDS, size=12, replace=False)]
    artists = sorted(set(Song.objects.order_by().values_list("artist", flat=True)[:2000]))
    names = [str(n).split()[-1] for n in rng.choice(artists, size=6, replace=False)]
    short = ["zq", "xv", "ab", "ni"]
    deep = str(max(1, Song.objects.count() // 2 // 25))
    kinds: dict[str, list[dict[str, str]]] = {
        "list, first page": [{}],
        "list, deep page": [{"page": deep}],
        "list, ready by title": [
            {"status": "ready", "sort": "title"},
            {"status": "ready", "sort": "title", "page": "3"},
        ],
        "list, tag": [{"tag": "Jazz"}, {"tag": "Blues"}],
        "text search, title words": [{"search": w} for w in words],
        "text search, artist surnames": [{"search": n} for n in names],
        "text search, two letters": [{"search": s} for s in short],
    }
    client = Client()
    print(
        f"\n{Song.objects.count():,} songs; p50 / p95 ms ({args.repeat} rounds), query (count + page) and API request:"
    )
    for kind, requests in kinds.items():
        query, api, count = timed(client, requests, args.repeat)
        print(
            f"  {kind:30s} query {query[0]:6.1f} / {query[1]:6.1f} (CPU {query[2]:5.1f})   "
            f"API {api[0]:6.1f} / {api[1]:6.1f}   "
            f"(last count {count:,})"
        )
    tags_ms(client)


def tags_ms(client: object) -> None:
    """GET /api/tags/: counted once after a change (a new song with a tag), then served from the shared cache."""
    from django.test import Client

    from catalog.models import Song, SongTag

    assert isinstance(client, Client)
    counted, cached = [], []
    for _ in range(3):
        song = Song.objects.create(original_file_name="new.mp3", object_key=f"uploads/{uuid.uuid4()}", size=1)
        SongTag.objects.create(song=song, label="Jazz", score=0.5)
        started = time.perf_counter()
        assert client.get("/api/tags/").status_code == 200
        counted.append((time.perf_counter() - started) * 1000)
        for _ in range(10):
            started = time.perf_counter()
            assert client.get("/api/tags/").status_code == 200
            cached.append((time.perf_counter() - started) * 1000)
        song.delete()
    print(
        f"  {'tags':30s} after a change {np.median(counted):6.1f} ms, then from the cache p50 "
        f"{np.percentile(cached, 50):6.1f} / p95 {np.percentile(cached, 95):6.1f} ms"
    )


if __name__ == "__main__":
    main()
