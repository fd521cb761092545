"""Benchmark GET /api/map/ at N songs: the stored projection served, and songs added since placed on it.

Usage: python bench/map_api.py [--songs 100000] [--added 200] [--requests 5]

In a throwaway folder (SQLite, the `features` model's 222-d vectors, a local index) it writes N ready songs with
albums, tags and clustered vectors in bulk, runs the worker's projection (`map_refresh.store_projection`, timed),
then times the API view in-process through Django's test client with nothing added since, and again after
`--added` more songs became ready (each placed from its own vector): the first request after a change builds the
answer (query, placing, encoding), the following ones read it from the shared cache. This
prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-map-api-"))
    os.environ.update(
        {"VAR_DIR": str(scratch), "EMBEDDING_MODEL": "features", "DJANGO_SETTINGS_MODULE": "config.settings"}
    )
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        from catalog import map_refresh
        from catalog.models import Song, SongStatus, SongTag
        from embeddings.models import StoredVector
        from embeddings.registry import model_dim

        call_command("migrate", verbosity=0)
        dim = model_dim("features")
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(40, dim)).astype(np.float32)

        def add(count: int) -> list[uuid.UUID]:
            ids = [uuid.uuid4() for _ in range(count)]
            songs = [
                Song(
                    id=song_id,
                    object_key=f"uploads/{song_id}/song.mp3",
                    original_file_name="song.mp3",
                    content_type="audio/mpeg",
                    size=1000,
                    title=f"Song {song_id.hex[:8]}",
                    artist=f"Artist {n % 900}",
                    album=f"Album {n % 40}",
                    status=SongStatus.READY,
                    embedding_model="features",
                )
                for n, song_id in enumerate(ids)
            ]
            Song.objects.bulk_create(songs, batch_size=2000)
            SongTag.objects.bulk_create(
                [SongTag(song_id=song_id, label=f"Tag {n % 25}", score=0.5) for n, song_id in enumerate(ids)],
                batch_size=2000,
            )
            rows = []
            for n, song_id in enumerate(ids):
                vector = centres[n % 40] + rng.normal(size=dim).astype(np.float32) * 0.7
                vector /= np.linalg.norm(vector)
                rows.append(
                    StoredVector(
                        song_id=song_id,
                        file=f"uploads/{song_id}/song.mp3",
                        model="features",
                        dim=dim,
                        vector=vector.tobytes(),
                    )
                )
            StoredVector.objects.bulk_create(rows, batch_size=2000)
            return ids

        started = time.perf_counter()
        add(args.songs)
        print(f"{args.songs:,} songs written in bulk in {time.perf_counter() - started:.0f} s (setup)")
        started = time.perf_counter()
        stored = map_refresh.store_projection()
        print(f"worker's projection of {stored.song_count:,} songs: {time.perf_counter() - started:.1f} s")
        client = Client()

        def timed(label: str) -> None:
            # The first request after a change builds the answer; the rest read it from the shared cache.
            seconds = []
            size = 0
            for _ in range(args.requests + 1):
                started = time.perf_counter()
                response = client.get("/api/map/")
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.content[:300]
                size = len(response.content)
            print(
                f"GET /api/map/ {label}: built in {seconds[0] * 1000:.0f} ms, then from the cache p50 "
                f"{np.median(seconds[1:]) * 1000:.1f} ms over {args.requests}; {size / 1e6:.1f} MB"
            )

        timed("with nothing added since")
        add(args.added)
        timed(f"with {args.added} songs added since, placed on the stored axes")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
