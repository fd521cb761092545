"""Measure "what song is this?" on a folder of music: noisy, re-encoded excerpts against a temporary catalog.

    python manage.py evaluate_identify --corpus DIR [--noise DIR] [--queries 200] [--seconds 10] [--snr-db 5]
                                       [--seed 0] [--bitrate 64k] [--workers N] [--misses 5]

Every audio file under --corpus is decoded and fingerprinted with the product's code (embeddings.audio.decode,
fingerprints.landmarks) into an in-memory index (fingerprints.index.local.MemoryFingerprintIndex, the table the
local backend serves from); the running catalog is never touched. Each query is a random excerpt of a random track,
mixed with noise at the SNR (a random stretch of a random file under --noise, else pink noise), encoded as MP3 at
the bitrate with ffmpeg (soundfile when ffmpeg is missing), decoded back, and identified with
fingerprints.selectors. Files that cannot be decoded or have no landmarks (silence) are reported and skipped.

Tracks holding one recording are linked as the catalog links them at ingest (catalog.recordings.find_same_recording
against the same index), and identify is told those links, as the product's identify is. A query is right when the
predicted song is the track it was cut from or a copy linked to it (counted apart), wrong when another song is
predicted, and "no match" when nothing clears FINGERPRINT_MIN_MATCHES and FINGERPRINT_MIN_CONFIDENCE. The time per
query covers fingerprinting the decoded clip, the lookup and the scoring. The output ends with one JSON line.
"""

from __future__ import annotations

import fnmatch
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from embeddings.audio import SILENCE_PEAK, decode
from embeddings.base import SAMPLE_RATE, EmbeddingError
from fingerprints.index import Hits
from fingerprints.index.local import MemoryFingerprintIndex
from fingerprints.landmarks import FRAME_SECONDS, Landmarks, landmarks
from fingerprints.selectors import Match, candidates, examine

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".m4a", ".opus", ".aac", ".aif", ".aiff"}
FloatArray = npt.NDArray[np.float32]


@dataclass(eq=False)
class Track:
    path: Path
    song_id: uuid.UUID
    seconds: float = 0.0
    pcm: Path | None = None  # the decoded audio, int16, for cutting queries
    hashes: npt.NDArray[np.uint32] | None = None
    times: npt.NDArray[np.uint32] | None = None
    problem: str = ""
    spent: float = 0.0  # decode + fingerprint, one core
    fingerprint_s: float = 0.0  # fingerprinting alone


@dataclass
class Outcome:
    track: Track
    start: float
    predicted: Match | None  # after thresholds
    best: Match | None  # before thresholds
    true_matches: int  # the true song's matches at its best offset (for studying misses)
    query_hashes: int
    ms: float
    cpu_ms: float
    copies: frozenset[uuid.UUID] = frozenset()  # the other tracks linked to this one as the same recording

    @property
    def right(self) -> bool:
        return self.predicted is not None and (
            self.predicted.song_id == self.track.song_id or self.predicted.song_id in self.copies
        )

    @property
    def copy_named(self) -> bool:
        return self.predicted is not None and self.predicted.song_id in self.copies

    @property
    def wrong(self) -> bool:
        return self.predicted is not None and not self.right

    @property
    def offset_error(self) -> float | None:
        return None if self.predicted is None else self.predicted.offset_seconds - self.start


def find_audio(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def ingest_file(path: Path, workdir: Path, max_seconds: float) -> Track:
    """Decode and fingerprint one file, as the ingest pipeline would; keep its samples (int16) in `workdir`."""
    track = Track(path=path, song_id=uuid.uuid5(uuid.NAMESPACE_URL, path.resolve().as_uri()))
    started = time.perf_counter()
    try:
        audio = decode(path, max_seconds=max_seconds, min_seconds=0.25)
    except EmbeddingError as exc:
        track.problem = str(exc)
        return track
    fingerprint_started = time.perf_counter()
    found = landmarks(audio.samples)
    track.fingerprint_s = time.perf_counter() - fingerprint_started
    track.spent = time.perf_counter() - started
    track.seconds = audio.seconds
    if len(found) == 0:
        track.problem = "no landmarks (no spectral peaks: silence or near silence)"
        return track
    track.hashes, track.times = found.hashes, found.times
    track.pcm = workdir / f"{track.song_id}.npy"
    np.save(track.pcm, np.round(np.clip(audio.samples, -1, 1) * 32767).astype(np.int16))
    return track


def link_recordings(tracks: list[Track], index: MemoryFingerprintIndex) -> dict[uuid.UUID, int]:
    """The recording of each track found to share one with another, as the ingest's same-recording step finds it."""
    from catalog.recordings import find_same_recording  # the product's step, run against this index

    lengths = {t.song_id: t.seconds for t in tracks}
    group = {t.song_id: i for i, t in enumerate(tracks)}
    for t in tracks:
        if t.hashes is None or t.times is None:
            continue
        found = Landmarks(t.hashes, t.times, peaks=0, frames=round(t.seconds / FRAME_SECONDS))
        match = find_same_recording(
            t.song_id, found, durations=lambda ids: {i: lengths[i] for i in ids if i in lengths}, index=index
        )
        if match is not None:
            old, new = group[match.song_id], group[t.song_id]
            group = {song_id: new if g == old else g for song_id, g in group.items()}
    sizes = Counter(group.values())
    return {song_id: g for song_id, g in group.items() if sizes[g] > 1}


def pink_noise(n: int, rng: np.random.Generator) -> FloatArray:
    """Noise with power falling 3 dB per octave, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def noise_like(n: int, noises: list[FloatArray], rng: np.random.Generator) -> FloatArray:
    if not noises:
        return pink_noise(n, rng)
    source = noises[int(rng.integers(len(noises)))]
    if source.size < n:
        source = np.tile(source, n // source.size + 1)
    start = int(rng.integers(source.size - n + 1))
    part = source[start : start + n].astype(np.float32)
    return part / (np.sqrt(np.mean(part**2)) + 1e-12)


def mix(clean: FloatArray, noise: FloatArray, snr_db: float) -> FloatArray:
    """`clean` plus `noise` scaled to `snr_db` below it (powers over the whole clip), kept within full scale."""
    signal_power = float(np.mean(clean.astype(np.float64) ** 2))
    noisy = clean + noise * np.float32(np.sqrt(signal_power / 10 ** (snr_db / 10)))
    peak = float(np.max(np.abs(noisy)))
    return (noisy / peak * 0.99 if peak > 0.99 else noisy).astype(np.float32)


def mp3_roundtrip(samples: FloatArray, bitrate: str, workdir: Path) -> FloatArray:
    """Encode as MP3 at `bitrate` (e.g. "64k") and decode back with the product's decoder."""
    path = workdir / f"query-{uuid.uuid4().hex}.mp3"
    ffmpeg = shutil.which("ffmpeg")
    try:
        if ffmpeg:
            command = [ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1"]
            command += ["-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", bitrate, str(path)]
            subprocess.run(  # noqa: S603 (a fixed program; the arguments are not shell-parsed)
                command,
                input=samples.astype("<f4").tobytes(),
                check=True,
                capture_output=True,
            )
        else:  # soundfile's LAME: a fixed bitrate from the compression level (0: 320 kb/s .. 1: 8 kb/s)
            kbps = float(bitrate.rstrip("kK"))
            level = min(1.0, max(0.0, (320 - kbps) / 312))
            sf.write(path, samples, SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT", compression_level=level)
        return decode(path, max_seconds=samples.size / SAMPLE_RATE + 2, min_seconds=0.0).samples
    finally:
        path.unlink(missing_ok=True)


def make_query(
    track: Track,
    start: float,
    seconds: float,
    snr_db: float | None,
    noises: list[FloatArray],
    bitrate: str,
    seed: int,
    workdir: Path,
) -> FloatArray:
    assert track.pcm is not None
    pcm = np.load(track.pcm, mmap_mode="r")
    first = round(start * SAMPLE_RATE)
    clean = (pcm[first : first + round(seconds * SAMPLE_RATE)].astype(np.float32)) / 32767
    rng = np.random.default_rng(seed)
    noisy = clean if snr_db is None else mix(clean, noise_like(clean.size, noises, rng), snr_db)
    return mp3_roundtrip(noisy, bitrate, workdir) if bitrate else noisy


def _make_query_job(args: tuple[Any, ...]) -> FloatArray:
    return make_query(*args)


def plan_queries(
    tracks: list[Track], count: int, seconds: float, rng: np.random.Generator
) -> list[tuple[Track, float]]:
    """Random (track, start) pairs: a random track long enough, a random start, never a silent excerpt."""
    usable = [t for t in tracks if t.pcm is not None and t.seconds >= seconds]
    if not usable:
        raise CommandError(f"no fingerprinted track is at least {seconds:g} s long")
    planned: list[tuple[Track, float]] = []
    pcms: dict[Path, Any] = {}
    attempts = 0
    while len(planned) < count:
        attempts += 1
        if attempts > count * 50:
            raise CommandError("could not find enough excerpts that are not silent")
        track = usable[int(rng.integers(len(usable)))]
        assert track.pcm is not None
        start = round(float(rng.uniform(0, track.seconds - seconds)), 2)
        pcm = pcms.setdefault(track.pcm, np.load(track.pcm, mmap_mode="r"))
        first = round(start * SAMPLE_RATE)
        excerpt = pcm[first : first + round(seconds * SAMPLE_RATE)]
        if np.max(np.abs(excerpt)) / 32767 < SILENCE_PEAK:  # the product refuses silent clips anyway
            continue
        planned.append((track, start))
    return planned


def true_matches(query: Landmarks, hits: Hits, song_id: uuid.UUID) -> int:
    """The true song's best count (for studying misses): scoring restricted to its hits."""
    if song_id not in hits.song_ids:
        return 0
    which = hits.song_ids.index(song_id)
    keep = hits.songs == which
    only = Hits(
        song_ids=[song_id],
        songs=np.zeros(int(keep.sum()), dtype=np.int64),
        ref_times=hits.ref_times[keep],
        query_positions=hits.query_positions[keep],
    )
    found = candidates(query, only, limit=1)
    return found[0].matches if found else 0


def same_audio(a: Track, a_start: float, b: Track, b_start: float, seconds: float) -> float:
    """The best normalised correlation (lags up to 0.1 s) of the clean audio of two excerpts: near 1 for one
    recording in two files, near 0 for different music."""
    if a.pcm is None or b.pcm is None:
        return 0.0
    lag = round(0.1 * SAMPLE_RATE)
    n = round(seconds * SAMPLE_RATE)
    first_a = round(a_start * SAMPLE_RATE)
    first_b = round(b_start * SAMPLE_RATE) - lag
    x = np.load(a.pcm, mmap_mode="r")[first_a : first_a + n].astype(np.float64)
    y = np.load(b.pcm, mmap_mode="r")[max(0, first_b) : first_b + n + 2 * lag].astype(np.float64)
    if x.size < n or y.size < n or not np.any(x) or not np.any(y):
        return 0.0
    products = np.correlate(y, x, mode="valid")
    energies = np.convolve(y**2, np.ones(n), mode="valid")
    return float(np.max(products / np.sqrt(np.maximum(energies, 1e-12) * float(x @ x))))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


class Command(BaseCommand):
    help = "Identify noisy, MP3 re-encoded excerpts of a corpus against a temporary fingerprint index."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corpus", type=Path, required=True, help="folder of audio files (searched recursively)")
        parser.add_argument("--noise", type=Path, help="folder of noise recordings; default: pink noise")
        parser.add_argument("--queries", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=10.0, help="length of each excerpt")
        parser.add_argument("--snr-db", type=float, default=5.0, help="signal-to-noise ratio of the mix")
        parser.add_argument("--clean", action="store_true", help="add no noise (--snr-db is ignored)")
        parser.add_argument("--bitrate", default="64k", help='MP3 bitrate of the queries; "" for no re-encoding')
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
        parser.add_argument("--misses", type=int, default=5, help="how many misses to print in detail")
        parser.add_argument("--quiet", action="store_true", help="no per-query table")
        parser.add_argument(
            "--holdout",
            metavar="PATTERN",
            help="leave files whose path under --corpus matches this glob (e.g. 'mp3/xmoto/*') out of the index and "
            "query them too: every answer for them is a false match",
        )
        parser.add_argument("--holdout-queries", type=int, help="queries of held-out files (default: --queries)")

    def handle(self, *args: Any, **options: Any) -> None:
        corpus: Path = options["corpus"]
        if not corpus.is_dir():
            raise CommandError(f"--corpus {corpus} is not a folder")
        files = find_audio(corpus)
        if not files:
            raise CommandError(f"no audio files under {corpus}")
        seconds: float = options["seconds"]
        snr_db: float | None = None if options["clean"] else options["snr_db"]
        workers = max(1, options["workers"])
        rng = np.random.default_rng(options["seed"])
        context = multiprocessing.get_context("fork")
        with tempfile.TemporaryDirectory(prefix="resonance-identify-") as tmp:
            workdir = Path(tmp)
            started = time.perf_counter()
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                tracks = list(
                    pool.map(ingest_file, files, [workdir] * len(files), [settings.MAX_AUDIO_SECONDS] * len(files))
                )
            decoded_s = time.perf_counter() - started
            index = MemoryFingerprintIndex()
            add_started = time.perf_counter()
            pattern = options["holdout"]
            held = [t for t in tracks if pattern and fnmatch.fnmatch(str(t.path.relative_to(corpus)), pattern)]
            held_ids = {t.song_id for t in held}
            indexed = [t for t in tracks if t.pcm is not None and t.song_id not in held_ids]
            index.add_many(
                (t.song_id, t.hashes, t.times) for t in indexed if t.hashes is not None and t.times is not None
            )
            add_s = time.perf_counter() - add_started
            recording = link_recordings(indexed, index)
            if pattern:
                self.stdout.write(f"held out of the index: {len(held)} files matching {pattern!r}")
            if recording:
                self.stdout.write(
                    f"linked as one recording: {len(recording)} tracks in {len(set(recording.values()))} recordings"
                )
            for t in tracks:
                if t.problem:
                    self.stdout.write(f"skipped {t.path.relative_to(corpus)}: {t.problem}")
            stats = index.stats()
            hours = sum(t.seconds for t in indexed) / 3600
            ingest_per_track = (sum(t.spent for t in indexed) + add_s) / max(1, len(indexed))
            fingerprint_s = sum(t.fingerprint_s for t in indexed)
            self.stdout.write(
                f"indexed {len(indexed)} of {len(files)} files, {hours:.2f} h, {stats.hashes} landmarks "
                f"({stats.hashes / max(hours * 3600, 1e-9):.0f}/s), {stats.bytes / 1e6:.1f} MB "
                f"({stats.bytes / 1e6 / max(hours, 1e-9):.1f} MB/h) in {decoded_s + add_s:.1f} s "
                f"with {workers} workers; {ingest_per_track:.2f} s per track on one core (decode, fingerprint, "
                f"index), of which fingerprinting {fingerprint_s / max(hours * 60, 1e-9) * 1000:.0f} ms per minute "
                "of audio"
            )

            noises: list[FloatArray] = []
            if options["noise"]:
                for path in find_audio(options["noise"]):
                    try:
                        noises.append(decode(path, max_seconds=3600, min_seconds=0.5).samples)
                    except EmbeddingError as exc:
                        self.stdout.write(f"skipped noise {path}: {exc}")
                if not noises:
                    raise CommandError(f"no usable noise files under {options['noise']}")
            plan = plan_queries(indexed, options["queries"], seconds, rng)
            unknown: list[tuple[Track, float]] = []
            if held:
                count = options["holdout_queries"] if options["holdout_queries"] is not None else options["queries"]
                unknown = plan_queries(held, count, seconds, rng)
            plan += unknown
            seeds = rng.integers(2**31, size=len(plan))
            jobs = [
                (track, start, seconds, snr_db, noises, options["bitrate"], int(seed), workdir)
                for (track, start), seed in zip(plan, seeds, strict=True)
            ]
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                clips = list(pool.map(_make_query_job, jobs, chunksize=4))

            outcomes = [
                self._identify(index, recording, track, start, clip)
                for (track, start), clip in zip(plan, clips, strict=True)
            ]
            outcomes, unknown_outcomes = outcomes[: len(plan) - len(unknown)], outcomes[len(plan) - len(unknown) :]

            # Inside the temporary folder: misses are compared with the decoded audio of other tracks.
            self._report(
                outcomes,
                unknown_outcomes,
                tracks,
                corpus,
                options,
                len(indexed),
                seconds,
                snr_db,
                stats.bytes,
                ingest_per_track,
            )

    def _identify(
        self,
        index: MemoryFingerprintIndex,
        recording: dict[uuid.UUID, int],
        track: Track,
        start: float,
        clip: FloatArray,
    ) -> Outcome:
        cpu_began = time.thread_time()
        began = time.perf_counter()
        found = examine(clip, index=index, recording_of=lambda ids: {i: recording[i] for i in ids if i in recording})
        best, predicted = found.best, found.match
        ms = (time.perf_counter() - began) * 1000
        cpu_ms = (time.thread_time() - cpu_began) * 1000
        mine = recording.get(track.song_id)
        copies = frozenset(s for s, g in recording.items() if mine is not None and g == mine and s != track.song_id)
        true = true_matches(found.query, found.hits, track.song_id)
        return Outcome(track, start, predicted, best, true, len(found.query), ms, cpu_ms, copies)

    def _report(
        self,
        outcomes: list[Outcome],
        unknown: list[Outcome],
        all_tracks: list[Track],
        corpus: Path,
        options: dict[str, Any],
        tracks: int,
        seconds: float,
        snr_db: float | None,
        index_bytes: int,
        ingest_per_track: float,
    ) -> None:
        names = {t.song_id: str(t.path.relative_to(corpus)) for t in all_tracks}
        tracks_by_id = {t.song_id: t for t in all_tracks}

        def name(song_id: uuid.UUID | None) -> str:
            return "-" if song_id is None else names.get(song_id, str(song_id)[:8])

        if not options["quiet"]:
            self.stdout.write(
                f"{'#':>4} {'track':<48} {'offset':>7} {'predicted':<48} {'err s':>6} {'conf':>5} "
                f"{'match':>5} {'2nd':>4} {'ms':>6}"
            )
            for i, o in enumerate(outcomes):
                p = o.predicted
                shown = p or o.best  # for a miss: the best song before thresholds
                error = o.offset_error
                mark = "" if o.right else (" WRONG" if o.wrong else " (no match)")
                self.stdout.write(
                    f"{i:>4} {name(o.track.song_id)[-48:]:<48} {o.start:>7.2f} "
                    f"{(name(p.song_id) if p else '-')[-48:]:<48} {'' if error is None else f'{error:+.2f}':>6} "
                    f"{shown.confidence if shown else 0:>5.2f} {shown.matches if shown else 0:>5} "
                    f"{shown.runner_up_matches if shown else 0:>4} {o.ms:>6.1f}{mark}"
                )
        count = len(outcomes)
        right = sum(o.right for o in outcomes)
        wrong = sum(o.wrong for o in outcomes)
        none = count - right - wrong
        errors = [abs(e) for o in outcomes if o.right and (e := o.offset_error) is not None]
        times = [o.ms for o in outcomes]
        cpu_times = [o.cpu_ms for o in outcomes]
        self.stdout.write(
            f"\n{count} queries of {seconds:g} s at {'no added noise' if snr_db is None else f'{snr_db:g} dB SNR'}"
            f"{', MP3 ' + options['bitrate'] + 'b/s' if options['bitrate'] else ''}: "
            f"right {right} ({right / count:.1%}), no match {none} ({none / count:.1%}), "
            f"wrong {wrong} ({wrong / count:.1%})"
            + (
                f"; {copied} of the right named a copy linked to the clip's song"
                if (copied := sum(o.copy_named for o in outcomes))
                else ""
            )
        )
        if errors:
            self.stdout.write(
                f"offset error of right answers: median {np.median(errors) * 1000:.0f} ms, "
                f"within 0.1 s: {sum(e <= 0.1 for e in errors)}/{len(errors)}"
            )
        self.stdout.write(
            f"query time: p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms, "
            f"max {max(times):.1f} ms (CPU time of the query's thread: p50 {percentile(cpu_times, 50):.1f} ms, "
            f"p95 {percentile(cpu_times, 95):.1f} ms); query landmarks: median "
            f"{int(np.median([o.query_hashes for o in outcomes]))}"
        )
        misses = [o for o in outcomes if not o.right]
        if misses:
            self.stdout.write(f"\nmisses (first {min(options['misses'], len(misses))} of {len(misses)}):")
        for o in misses[: options["misses"]]:
            best = o.best
            self.stdout.write(
                f"- {name(o.track.song_id)} at {o.start:.2f} s: "
                + (
                    "no landmarks matched"
                    if best is None
                    else (
                        f"best {name(best.song_id)} at {best.offset_seconds:.2f} s with {best.matches} matches, "
                        f"runner-up {name(best.runner_up.song_id if best.runner_up else None)} with "
                        f"{best.runner_up_matches}, confidence {best.confidence:.2f}"
                    )
                )
                + f"; the true song had {o.true_matches} matches of {o.query_hashes} query landmarks"
                + self._duplicate_note(o, tracks_by_id, seconds, name)
            )
        false_matches = [o for o in unknown if o.predicted is not None]
        if unknown:
            self.stdout.write(
                f"\n{len(unknown)} queries of held-out files (not in the index): "
                f"no match {len(unknown) - len(false_matches)}, false matches {len(false_matches)} "
                f"({len(false_matches) / len(unknown):.1%}); best unthresholded "
                f"matches p50 {percentile([o.best.matches if o.best else 0 for o in unknown], 50):.0f}, "
                f"max {max(o.best.matches if o.best else 0 for o in unknown)}; "
                f"confidence max {max(o.best.confidence if o.best else 0 for o in unknown):.2f}"
            )
            for o in false_matches:
                assert o.predicted is not None
                self.stdout.write(
                    f"- {name(o.track.song_id)} at {o.start:.2f} s was named {name(o.predicted.song_id)} with "
                    f"{o.predicted.matches} matches, confidence {o.predicted.confidence:.2f}"
                    + self._duplicate_note(o, tracks_by_id, seconds, name)
                )
        summary: dict[str, Any] = {
            "tracks": tracks,
            "queries": count,
            "seconds": seconds,
            "snr_db": snr_db,
            "top1": round(right / count, 4),
            "no_match": round(none / count, 4),
            "wrong": round(wrong / count, 4),
            "copies_named": sum(o.copy_named for o in outcomes),
            "p50_ms": round(percentile(times, 50), 1),
            "p95_ms": round(percentile(times, 95), 1),
            "index_mb": round(index_bytes / 1e6, 2),
            "ingest_s_per_track": round(ingest_per_track, 3),
        }
        if unknown:
            summary["holdout_queries"] = len(unknown)
            summary["holdout_false_match"] = round(len(false_matches) / len(unknown), 4)
        self.stdout.write(json.dumps(summary))

    @staticmethod
    def _duplicate_note(o: Outcome, tracks: dict[uuid.UUID, Track], seconds: float, name: Any) -> str:
        """For a miss: whether the song that beat or tied the true one holds the very same audio."""
        best = o.best
        if best is None:
            return ""
        rival = best if best.song_id != o.track.song_id else best.runner_up
        if rival is None or rival.song_id not in tracks:
            return ""
        correlation = same_audio(o.track, o.start, tracks[rival.song_id], rival.offset_seconds, seconds)
        if correlation < 0.8:
            return ""
        return (
            f"; {name(rival.song_id)} holds the same audio at {rival.offset_seconds:.2f} s "
            f"(waveform correlation {correlation:.2f}): one recording in two catalog files"
        )
