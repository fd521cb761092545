"""Benchmark radio and song paths on a throwaway catalog of N songs with clustered synthetic vectors.

Usage: python bench/radio.py [--songs 100000] [--requests 20] [--length 20] [--steps 10]

Writes N ready songs (artists and albums drawn at random) and their `features`-sized vectors in bulk into a
throwaway SQLite catalog, builds the host's vector index once, then times `catalog.radio.radio` and
`catalog.radio.song_path` in process, counting the k-NN queries each makes. This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="resonance-radio-bench-"))
    os.environ.update(
        {"VAR_DIR": str(folder), "SQLITE_PATH": str(folder / "db.sqlite3"), "EMBEDDING_MODEL": "features"}
    )
    import django

    django.setup()
    from django.core.management import call_command

    from catalog import radio
    from catalog.models import Song, SongStatus
    from embeddings.features import DIM
    from embeddings.index.local import LocalVectorIndex
    from embeddings.models import StoredVector

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    started = time.perf_counter()
    ids: list[uuid.UUID] = []
    for start in range(0, args.songs, 5000):
        count = min(5000, args.songs - start)
        vectors = centres[rng.integers(0, 200, count)] + 0.8 * rng.standard_normal((count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = [uuid.uuid4() for _ in range(count)]
        Song.objects.bulk_create(
            [
                Song(
                    id=song_id,
                    object_key=f"uploads/{song_id}/s.mp3",
                    original_file_name="s.mp3",
                    content_type="audio/mpeg",
                    size=1,
                    title=f"Song {start + i}",
                    artist=f"Artist {rng.integers(0, 3000)}",
                    album=f"Album {rng.integers(0, 8000)}",
                    status=SongStatus.READY,
                    embedding_model="features",
                    duration_seconds=200.0,
                )
                for i, song_id in enumerate(batch)
            ],
            batch_size=1000,
        )
        StoredVector.objects.bulk_create(
            [
                StoredVector(
                    song_id=song_id, file=f"uploads/{song_id}/s.mp3", model="features", dim=DIM, vector=v.tobytes()
                )
                for song_id, v in zip(batch, vectors.astype("<f4"), strict=True)
            ],
            batch_size=1000,
        )
        ids.extend(batch)
    print(f"{args.songs} songs written in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    LocalVectorIndex(model="features", dim=DIM).snapshot(wait=600)
    print(f"index built in {time.perf_counter() - started:.0f} s")

    calls = [0]
    search = LocalVectorIndex.search

    def counted(self: LocalVectorIndex, vector: np.ndarray, limit: int, exclude_file: str | None = None) -> list:
        calls[0] += 1
        return search(self, vector, limit, exclude_file)

    LocalVectorIndex.search = counted  # type: ignore[method-assign]
    for name, run in (
        (f"radio, 2 seeds, length {args.length}", lambda a, b: radio.radio([a, b], length=args.length)),
        (f"path, {args.steps} steps", lambda a, b: radio.song_path(a, b, steps=args.steps)),
    ):
        times, queries = [], []
        for _ in range(args.requests):
            a, b = (ids[int(i)] for i in rng.integers(0, len(ids), 2))
            calls[0] = 0
            began = time.perf_counter()
            run(a, b)
            times.append(time.perf_counter() - began)
            queries.append(calls[0])
        ms = np.asarray(times) * 1000
        p50, p95 = np.percentile(ms, [50, 95])
        print(f"{name}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, k-NN queries per request {min(queries)}-{max(queries)}")


if __name__ == "__main__":
    main()
