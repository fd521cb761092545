"""The catalog of bench/scale.py: synthetic ready songs written straight to the tables, plus real songs ingested.

Synthetic fingerprints: a few real songs are fingerprinted with `fingerprints.landmarks.landmarks()`; the count of
every hash value seen gives an empirical distribution, and the counts of the high and the low half of the hash bits
give a smooth one (the two halves drawn independently) that also reaches values those few songs never produced.
A synthetic song of d seconds gets Poisson(rate x d) landmarks (rate: landmarks per second measured on the same
songs), each hash drawn from the empirical distribution with probability 1 - SMOOTHING and from the smooth one
otherwise, and anchor frames drawn uniformly over the song. So the index sees buckets as full and as skewed as
real music fills them, whatever the hash layout. Vectors: unit vectors around artist centres, which sit around
genre centres, so neighbours are mostly the same artist, then the same genre, as with real embeddings.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from pathlib import Path

import numpy as np
import numpy.typing as npt

CHUNK = 1000  # songs per transaction: bounds memory (a 4-minute song packs to about 200 KB of fingerprints)

GENRES = {
    "Rock music": ["Electric guitar", "Drum kit", "Bass guitar"],
    "Pop music": ["Synthesizer", "Singing", "Drum machine"],
    "Jazz": ["Saxophone", "Piano", "Double bass"],
    "Classical music": ["Orchestra", "Violin, fiddle", "Cello"],
    "Electronic music": ["Synthesizer", "Drum machine", "Techno"],
    "Hip hop music": ["Rapping", "Drum machine", "Scratching (performance technique)"],
    "Folk music": ["Acoustic guitar", "Singing", "Harmonica"],
    "Ambient music": ["Synthesizer", "Drone", "Piano"],
    "Blues": ["Electric guitar", "Harmonica", "Singing"],
    "Heavy metal": ["Electric guitar", "Drum kit", "Shout"],
    "Reggae": ["Bass guitar", "Electric guitar", "Singing"],
    "Soundtrack music": ["Orchestra", "Piano", "Choir"],
}
COMMON_TAGS = ["Music", "Musical instrument", "Speech", "Vocal music", "Guitar", "Percussion", "Drum", "Keyboard"]
WORDS = [
    "love",
    "night",
    "city",
    "blue",
    "fire",
    "rain",
    "summer",
    "heart",
    "dream",
    "light",
    "dark",
    "river",
    "road",
    "home",
    "storm",
    "gold",
    "silver",
    "moon",
    "sun",
    "star",
    "ocean",
    "wind",
    "shadow",
    "ghost",
    "paper",
    "glass",
    "stone",
    "iron",
    "velvet",
    "neon",
    "electric",
    "midnight",
    "morning",
    "winter",
    "autumn",
    "spring",
    "echo",
    "signal",
    "static",
    "radio",
    "highway",
    "desert",
    "forest",
    "mountain",
    "island",
    "harbor",
    "garden",
    "mirror",
    "window",
    "door",
    "train",
    "satellite",
    "planet",
    "orbit",
    "gravity",
    "motion",
    "silence",
    "thunder",
    "lightning",
    "crystal",
    "diamond",
    "honey",
    "sugar",
    "smoke",
    "ashes",
    "kingdom",
    "empire",
    "warrior",
    "angel",
    "devil",
    "saint",
    "sinner",
    "stranger",
    "lover",
    "dancer",
    "runner",
    "dreamer",
    "wanderer",
    "machine",
    "heartbeat",
    "pulse",
    "rhythm",
    "melody",
    "harmony",
    "chorus",
    "anthem",
    "lullaby",
    "serenade",
    "requiem",
    "waltz",
    "tango",
    "blues",
    "boogie",
]
FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Elena",
    "Felix",
    "Grace",
    "Hugo",
    "Iris",
    "Jonas",
    "Kira",
    "Leo",
    "Maya",
    "Nils",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Viktor",
]
LAST = [
    "Adler",
    "Berg",
    "Costa",
    "Dahl",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lind",
    "Moreau",
    "Novak",
    "Olsen",
    "Petrov",
]


SMOOTHING = 0.2


def _cdf(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    cdf = np.cumsum(counts, dtype=np.float64)
    return cdf / cdf[-1]


@dataclass(frozen=True)
class HashModel:
    """How often each hash value occurs in real music, and how many landmarks a second of it gives."""

    values: npt.NDArray[np.uint32]  # every hash value seen, with the cdf of their counts
    cdf: npt.NDArray[np.float64]
    low_bits: int
    high_cdf: npt.NDArray[np.float64]  # counts of h >> low_bits
    low_cdf: npt.NDArray[np.float64]  # counts of h & (2**low_bits - 1)
    per_second: float
    songs: int
    landmarks: int
    top_share: float  # share of landmarks whose hash is among the most common 1% of values seen

    def describe(self) -> str:
        return (
            f"{self.landmarks:,} landmarks of {self.songs} real songs: {self.per_second:.0f} per second, "
            f"{self.values.size:,} distinct hashes; the most common 1% of them carry "
            f"{100 * self.top_share:.0f}% of landmarks; effective distinct values (1 / sum p^2) of the drawn hashes "
            f"2^{np.log2(1 / self.collision()):.1f}"
        )

    def collision(self) -> float:
        """The chance that two drawn hashes are equal: sum p^2 over values, the smoothed share included."""
        seen = np.diff(self.cdf, prepend=0.0)
        high, low = np.diff(self.high_cdf, prepend=0.0), np.diff(self.low_cdf, prepend=0.0)
        return float((1 - SMOOTHING) ** 2 * np.sum(seen**2) + SMOOTHING**2 * np.sum(high**2) * np.sum(low**2))

    def draw(self, rng: np.random.Generator, count: int) -> npt.NDArray[np.uint32]:
        seen = self.values[np.searchsorted(self.cdf, rng.random(count), side="right")]
        high = np.searchsorted(self.high_cdf, rng.random(count), side="right").astype(np.uint32)
        low = np.searchsorted(self.low_cdf, rng.random(count), side="right").astype(np.uint32)
        smooth = (high << np.uint32(self.low_bits)) | low
        return np.where(rng.random(count) < SMOOTHING, smooth, seen).astype(np.uint32)


def measure_hashes(paths: list[Path]) -> HashModel:
    from django.conf import settings

    from embeddings.audio import decode
    from fingerprints.landmarks import HASH_BITS, landmarks

    found: list[npt.NDArray[np.uint32]] = []
    seconds = 0.0
    for path in paths:
        audio = decode(path, max_seconds=settings.MAX_AUDIO_SECONDS, min_seconds=settings.MIN_AUDIO_SECONDS)
        marks = landmarks(audio.samples)
        found.append(marks.hashes)
        seconds += marks.seconds
    hashes = np.concatenate(found).astype(np.uint32)
    values, counts = np.unique(hashes, return_counts=True)
    low_bits = HASH_BITS // 2
    high = np.bincount(hashes >> np.uint32(low_bits), minlength=1 << (HASH_BITS - low_bits))
    low = np.bincount(hashes & np.uint32((1 << low_bits) - 1), minlength=1 << low_bits)
    top = np.sort(counts)[::-1][: max(1, counts.size // 100)].sum()
    return HashModel(
        values=values.astype(np.uint32),
        cdf=_cdf(counts),
        low_bits=low_bits,
        high_cdf=_cdf(high),
        low_cdf=_cdf(low),
        per_second=hashes.size / seconds,
        songs=len(paths),
        landmarks=int(hashes.size),
        top_share=float(top / hashes.size),
    )


_model: HashModel | None = None


def _set_model(model: HashModel) -> None:
    global _model
    _model = model


def synthetic_fingerprints(job: tuple[int, float]) -> tuple[int, bytes]:
    """(landmark count, packed landmarks) of a synthetic song of `seconds`, drawn from the measured model."""
    from fingerprints.index.local import pack
    from fingerprints.landmarks import FRAME_SECONDS

    seed, seconds = job
    assert _model is not None
    rng = np.random.default_rng(seed)
    count = int(rng.poisson(_model.per_second * seconds))
    frames = max(1, int(seconds / FRAME_SECONDS))
    times = np.sort(rng.integers(0, frames, count)).astype(np.uint32)
    return count, pack(_model.draw(rng, count), times)


@dataclass
class Artist:
    name: str
    genre: str
    albums: list[str]
    centre: npt.NDArray[np.float32]


def _words(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(str(w).capitalize() for w in rng.choice(WORDS, size=int(rng.integers(low, high + 1))))


def _unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_artists(songs: int, dim: int, rng: np.random.Generator) -> list[Artist]:
    """About 40 songs per artist, 10 per album; an artist's centre sits near its genre's."""
    genres = list(GENRES)
    genre_centres = _unit(rng.standard_normal((len(genres), dim)).astype(np.float32))
    artists = []
    for number in range(max(5, songs // 40)):
        g = int(rng.integers(len(genres)))
        name = (
            f"{rng.choice(FIRST)} {rng.choice(LAST)}" if number % 3 else f"The {_words(rng, 1, 1)} {_words(rng, 1, 1)}s"
        )
        centre = _unit(genre_centres[g] + 0.9 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim))
        artists.append(Artist(name, genres[g], [_words(rng, 1, 3) for _ in range(4)], centre))
    return artists


@dataclass
class BuildTimes:
    songs: float = 0.0
    tags: float = 0.0
    vectors: float = 0.0
    fingerprints: float = 0.0
    files: float = 0.0
    landmarks: int = 0
    fingerprint_bytes: int = 0


def build_synthetic(songs: int, model: str, dim: int, hashes: HashModel, processes: int, seed: int = 0) -> BuildTimes:
    """`songs` ready songs (and 1% failed ones) with tags, vectors, fingerprints and a placeholder stored file."""
    from django.conf import settings
    from django.db import transaction

    from catalog.models import Song, SongStatus, SongTag
    from embeddings.models import StoredVector
    from fingerprints.landmarks import ALGORITHM
    from fingerprints.models import SongFingerprints

    rng = np.random.default_rng(seed)
    artists = make_artists(songs, dim, rng)
    popularity = 1 / np.arange(1, len(artists) + 1)  # a few artists have many songs, most have few
    popularity /= popularity.sum()
    storage_root = Path(settings.LOCAL_STORAGE_ROOT)
    times = BuildTimes()
    _set_model(hashes)
    pool = multiprocessing.get_context("fork").Pool(processes)

    def chunk_jobs(start: int, count: int) -> tuple[list[float], AsyncResult[list[tuple[int, bytes]]]]:
        durations = np.clip(rng.normal(240, 45, count), 90, 600).round(1).tolist()
        jobs = [(seed * 1_000_003 + start + i, d) for i, d in enumerate(durations)]
        return durations, pool.map_async(synthetic_fingerprints, jobs, chunksize=16)

    try:
        pending = chunk_jobs(0, min(CHUNK, songs))
        for start in range(0, songs, CHUNK):
            count = min(CHUNK, songs - start)
            durations, prints = pending
            if start + CHUNK < songs:  # the pool draws the next chunk's fingerprints while this one is written
                pending = chunk_jobs(start + CHUNK, min(CHUNK, songs - start - CHUNK))
            picks = rng.choice(len(artists), size=count, p=popularity)
            rows: list[Song] = []
            tags: list[SongTag] = []
            for i, a in enumerate(picks):
                artist = artists[a]
                song_id = uuid.uuid4()
                title = _words(rng, 1, 4)
                album = str(rng.choice(artist.albums))
                file_name = f"{int(rng.integers(1, 13)):02d} - {artist.name} - {title}.mp3"
                rows.append(
                    Song(
                        id=song_id,
                        object_key=f"uploads/{song_id}/{file_name.replace(' ', '_')}",
                        original_file_name=file_name,
                        content_type="audio/mpeg",
                        size=int(durations[i] * 40_000),
                        sha256=hashlib.sha256(song_id.bytes).hexdigest(),
                        title=title,
                        artist=artist.name,
                        album=album,
                        duration_seconds=durations[i],
                        status=SongStatus.READY,
                        embedding_model=model,
                    )
                )
                labels = ["Music", artist.genre, *rng.choice(GENRES[artist.genre], size=2, replace=False)]
                labels += list(rng.choice(COMMON_TAGS[1:], size=int(rng.integers(0, 3)), replace=False))
                scores = np.sort(rng.uniform(0.05, 0.9, len(labels)))[::-1]
                tags += [
                    SongTag(song_id=song_id, label=lb, score=float(s)) for lb, s in zip(labels, scores, strict=True)
                ]
            failed = [
                Song(
                    id=uuid.uuid4(),
                    object_key=f"uploads/{uuid.uuid4()}/broken-{start + k}.mp3",
                    original_file_name=f"broken-{start + k}.mp3",
                    content_type="audio/mpeg",
                    size=1000,
                    status=SongStatus.FAILED,
                    failure_reason="The file is not audio that can be decoded.",
                )
                for k in range(count // 100)
            ]
            started = time.perf_counter()
            with transaction.atomic():
                Song.objects.bulk_create(rows + failed, batch_size=500)
            times.songs += time.perf_counter() - started
            started = time.perf_counter()
            for song in rows + failed:  # a placeholder per song, so check_consistency sees every file in place
                path = storage_root / song.object_key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"\0")
            times.files += time.perf_counter() - started
            started = time.perf_counter()
            with transaction.atomic():
                SongTag.objects.bulk_create(tags, batch_size=2000)
            times.tags += time.perf_counter() - started
            started = time.perf_counter()
            centres = np.stack([artists[a].centre for a in picks])
            vectors = _unit(centres + 0.8 * rng.standard_normal((count, dim)).astype(np.float32) / np.sqrt(dim))
            with transaction.atomic():
                StoredVector.objects.bulk_create(
                    (
                        StoredVector(
                            song_id=s.id, file=s.object_key, model=model, dim=dim, vector=v.astype("<f4").tobytes()
                        )
                        for s, v in zip(rows, vectors, strict=True)
                    ),
                    batch_size=500,
                )
            times.vectors += time.perf_counter() - started
            started = time.perf_counter()
            packed = prints.get()
            with transaction.atomic():
                SongFingerprints.objects.bulk_create(
                    (
                        SongFingerprints(song_id=s.id, algorithm=ALGORITHM, count=n, data=data)
                        for s, (n, data) in zip(rows, packed, strict=True)
                    ),
                    batch_size=200,
                )
            times.landmarks += sum(n for n, _ in packed)
            times.fingerprint_bytes += sum(len(data) for _, data in packed)
            del packed
            times.fingerprints += time.perf_counter() - started
            print(f"  {start + count:,} of {songs:,} songs written", end="\r", flush=True)
    finally:
        pool.terminate()
        pool.join()
    print()
    return times


def ingest_real(paths: list[Path]) -> str:
    """Real songs through `import_audio`, the product's own ingest; its summary line."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command("import_audio", *map(str, paths), workers=1, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()[0]


def corpus_tracks(corpus: Path, wait_seconds: float = 1800) -> Iterator[Path]:
    """Corpus MP3s listed in manifest.csv (waits while the manifest is still being built), shortest first."""
    import csv

    manifest = corpus / "manifest.csv"
    deadline = time.monotonic() + wait_seconds
    while not manifest.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{manifest} did not appear")
        print(f"waiting for {manifest} ...", flush=True)
        time.sleep(30)
    with open(manifest, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if float(row.get("duration_s") or 0) >= 60]
    rows.sort(key=lambda row: (float(row["duration_s"]), row["file"]))
    for row in rows:
        path = corpus / row["file"]
        if path.is_file():
            yield path
