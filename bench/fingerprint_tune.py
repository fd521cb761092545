"""Place the identification thresholds: score distributions of right answers and of audio not in the catalog.

Usage: python bench/fingerprint_tune.py [--corpus /work/corpus] [--cache /tmp/fingerprint-cache]
       [--settings 10:5,3:5,10:0] [--queries 200] [--holdout-family wesnoth] [--set NAME=VALUE ...]
       [--stop-at-scale [--scale-hours 6700] [--budget 0,400000]] [--triplets BITS | --refined-pairs STEPS]

Decodes every corpus file once (embeddings.audio.decode; cached as .npy) and makes the queries once per setting
(excerpt + pink noise at the SNR + MP3 64 kb/s round trip; cached), so that trying landmark parameters costs only
fingerprinting and matching. A "family" is a file's first folder up to its first "-" (e.g. wesnoth-1.16 ->
wesnoth); files of `--holdout-family` are left out of the index and their queries measure false matches, since
soundtracks of one game share material (remasters, loops) and are no test of unrelated audio.
`--set` overrides a constant of fingerprints.landmarks, e.g. `--set "REFERENCE=Density(30, 10)"`, or of
fingerprints.selectors with a `selectors.` prefix, e.g. `--set selectors.CHANCE_PER_HASH=1/4000`.
`--triplets BITS` tries hashes of three peaks instead of pairs: each anchor with every two of its first `fanout`
targets (or, for songs, the first `--reference-combos` such two: neighbouring targets first), the third peak's
frame and bin differences divided by `--third-step`, the key mixed down to BITS bits (HASH_BITS is set to match,
so the stop list scales as it would).
`--refined-pairs STEPS` hashes pairs from sub-bin peak frequencies (the vertex of a parabola through a peak and its
neighbours) in 1/STEPS bin steps; a query also hashes the neighbouring step of a field within `--pair-margins`
(anchor, spread, delay, in steps) of its edge.
Peaks (with their refined positions) are cached per density in `--cache` (peaks-*.pkl), so trying hash layouts
costs only the hashing; `--min-df` and `--level-step` work on fresh peaks.
`--min-df N` passes over targets fewer than N bins from their anchor (sustained tones make those pairs common);
`--level-step W` adds 2 bits to pair hashes: the target's log magnitude minus the anchor's in levels W apart, the
query also trying the next level within `--level-margin`.
`--stop-at-scale` leaves out of each query the hashes the stop list would skip at `--scale-hours` (each judged by
its expected rate given its corpus count, see expected_rates): what a catalog of that size would find, not just
what it would fetch. The postings printed are those of the hashes looked up. `--budget B1,B2,...` (with
`--stop-at-scale`) also keeps only each query's rarest hashes at that scale up to B hits, as
fingerprints.index.LOOKUP_BUDGET would; one result block per budget (0: none), each ending in a SUMMARY line at the
thresholds in settings.

Prints per setting the unthresholded scores (best, runner-up song, the best song's background) and, for a grid of
FINGERPRINT_MIN_MATCHES x FINGERPRINT_MIN_CONFIDENCE, the share of right answers and of false matches.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django

django.setup()

from django.conf import settings

from embeddings.audio import SILENCE_PEAK, decode
from embeddings.base import SAMPLE_RATE, EmbeddingError
from fingerprints import landmarks as lm
from fingerprints import selectors
from fingerprints.index import stop_limit
from fingerprints.index.local import MemoryFingerprintIndex
from fingerprints.management.commands.evaluate_identify import find_audio, mix, mp3_roundtrip, pink_noise
from fingerprints.selectors import best_match


def family(name: str) -> str:
    return name.split("/")[-2].split("-")[0] if "/" in name else ""


def load_corpus(corpus: Path, cache: Path) -> dict[str, np.ndarray]:
    audio = {}
    for path in find_audio(corpus):
        name = str(path.relative_to(corpus))
        npy = cache / (name.replace("/", "__") + ".npy")
        if not npy.exists():
            try:
                np.save(npy, decode(path, max_seconds=900, min_seconds=0.25).samples)
            except EmbeddingError as exc:
                print(f"skipped {name}: {exc}")
                continue
        audio[name] = np.load(npy, mmap_mode="r")
    return audio


def make_queries(audio: dict[str, np.ndarray], seconds: float, snr: float, seed: int, count: int, cache: Path):
    path = cache / f"queries-{seconds:g}s-{snr:g}dB-seed{seed}-{count}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=True)
        return list(zip(data["names"], data["starts"], data["clips"], strict=True))
    rng = np.random.default_rng(seed)
    names = sorted(n for n, x in audio.items() if x.size >= seconds * SAMPLE_RATE)
    queries: list[tuple[str, float, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        while len(queries) < count:
            name = names[int(rng.integers(len(names)))]
            start = round(float(rng.uniform(0, audio[name].size / SAMPLE_RATE - seconds)), 2)
            first = round(start * SAMPLE_RATE)
            clean = np.array(audio[name][first : first + round(seconds * SAMPLE_RATE)], dtype=np.float32)
            if np.max(np.abs(clean)) < SILENCE_PEAK:
                continue
            clip = mp3_roundtrip(mix(clean, pink_noise(clean.size, rng), snr), "64k", Path(tmp))
            queries.append((name, start, clip))
    clips = np.empty(len(queries), dtype=object)
    clips[:] = [q[2] for q in queries]
    np.savez(path, names=np.array([q[0] for q in queries]), starts=np.array([q[1] for q in queries]), clips=clips)
    return queries


def use_min_df(min_df: int) -> None:
    """Make lm.targets pass over targets fewer than `min_df` bins above or below their anchor."""

    def targets(t: np.ndarray, f: np.ndarray, fanout: int) -> tuple[np.ndarray, np.ndarray]:
        n = t.size
        anchors, found = [], []
        taken = np.zeros(n, dtype=np.int64)
        for k in range(1, n):
            i = np.arange(n - k)
            j = i + k
            dt = t[j] - t[i]
            open_ = (dt <= lm.MAX_DT) & (taken[: n - k] < fanout)
            if not np.any(open_):
                break
            df = np.abs(f[j] - f[i])
            ok = open_ & (dt >= lm.MIN_DT) & (df <= lm.MAX_DF) & (df >= min_df)
            anchors.append(i[ok])
            found.append(j[ok])
            taken[i[ok]] += 1
        if not anchors:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        a, b = np.concatenate(anchors), np.concatenate(found)
        order = np.lexsort((b, a))
        return a[order], b[order]

    lm.targets = targets


def use_level(step: float, margin: float) -> None:
    """Make pair hashes carry 2 more bits: the target's log magnitude minus the anchor's, in 4 levels `step` apart
    (around 0); a query also hashes the next level where it is within `margin` of it (noise moves magnitudes)."""

    def landmarks_of(
        log_mag: np.ndarray, log_floor: float, density: lm.Density, surroundings: np.ndarray | None = None
    ) -> lm.Landmarks:
        t, f = lm.peaks(log_mag, log_floor, density, surroundings)
        a, b = lm.targets(t, f, density.fanout)
        df_bits, dt_bits = (2 * lm.MAX_DF).bit_length(), lm.MAX_DT.bit_length()
        base = (f[a] << (df_bits + dt_bits)) | ((f[b] - f[a] + lm.MAX_DF) << dt_bits) | (t[b] - t[a])
        ratio = (log_mag[t[b], f[b]] - log_mag[t[a], f[a]]) / step + 2
        level = np.clip(np.floor(ratio), 0, 3).astype(np.int64)
        levels, anchors = [level], [a]
        if density is not lm.REFERENCE:
            inside = ratio - np.floor(ratio)
            for near, other in ((inside < margin / step, level - 1), (inside > 1 - margin / step, level + 1)):
                keep = near & (other >= 0) & (other <= 3) & (ratio > 0) & (ratio < 4)
                levels.append(other[keep])
                anchors.append(a[keep])
                base = np.r_[base, base[: level.size][keep]]
        hashes = (np.concatenate(levels) << 23) | base
        times = t[np.concatenate(anchors)]
        order = np.argsort(times, kind="stable")
        return lm.Landmarks(
            hashes[order].astype(np.uint32), times[order].astype(np.uint32), int(t.size), int(log_mag.shape[0])
        )

    lm._landmarks_of = landmarks_of
    lm.HASH_BITS = 25


def triplets(
    t: np.ndarray, f: np.ndarray, fanout: int, combos: int, step: tuple[int, int], bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor frames) of each anchor with two of its first `fanout` targets."""
    a, b = lm.targets(t, f, fanout)
    if a.size == 0:
        return np.empty(0, np.uint32), np.empty(0, np.uint32)
    rank = np.arange(a.size) - np.searchsorted(a, a, side="left")
    table = np.full((t.size, fanout), -1, dtype=np.int64)
    table[a, rank] = b
    choices = sorted(((i, j) for j in range(1, fanout) for i in range(j)), key=lambda ij: (ij[1] - ij[0] > 1, ij[1]))
    rows, second, third = [], [], []
    for i, j in choices[: combos or None]:
        found = np.flatnonzero(table[:, j] >= 0)
        rows.append(found)
        second.append(table[found, i])
        third.append(table[found, j])
    order = np.argsort(np.concatenate(rows), kind="stable")
    anchor, b, c = (np.concatenate(x)[order] for x in (rows, second, third))
    u = np.uint64
    key = (
        f[anchor].astype(u)
        | ((f[b] - f[anchor] + lm.MAX_DF).astype(u) << u(8))
        | ((t[b] - t[anchor]).astype(u) << u(16))
        | (((f[c] - f[anchor] + lm.MAX_DF) // step[0]).astype(u) << u(24))
        | (((t[c] - t[anchor]) // step[1]).astype(u) << u(32))
    )
    # Multiplicative hashing: the top bits of key x (golden ratio x 2^64) spread the keys evenly.
    hashes = ((key * u(0x9E3779B97F4A7C15)) >> u(64 - bits)).astype(np.uint32)
    return hashes, t[anchor].astype(np.uint32)


def use_triplets(bits: int, reference_combos: int, step: tuple[int, int]) -> None:
    """Make lm.landmarks and lm.query_landmarks hash triplets (see the module docstring)."""

    def hasher(t: np.ndarray, f: np.ndarray, refined: Any, density: lm.Density) -> tuple[np.ndarray, np.ndarray]:
        combos = reference_combos if density is lm.REFERENCE else 0
        return triplets(t, f, density.fanout, combos, step, bits)

    global HASHER
    HASHER = hasher
    lm.HASH_BITS = bits


def refine(log_mag: np.ndarray, t: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peaks' sub-frame and sub-bin positions: the vertex of a parabola through each peak and its two neighbours
    in time and in frequency (within half a cell, a peak being the largest of its neighbours)."""
    frames, bins = log_mag.shape

    def vertex(before: np.ndarray, centre: np.ndarray, after: np.ndarray) -> np.ndarray:
        curve = before - 2 * centre + after
        safe = np.where(curve < 0, curve, -1.0)
        return np.where(curve < 0, np.clip(0.5 * (before - after) / safe, -0.5, 0.5), 0.0)

    mag = log_mag.astype(np.float64, copy=False)
    centre = mag[t, f]
    dt = vertex(mag[np.maximum(t - 1, 0), f], centre, mag[np.minimum(t + 1, frames - 1), f])
    df = vertex(mag[t, np.maximum(f - 1, 0)], centre, mag[t, np.minimum(f + 1, bins - 1)])
    return t + dt, f + df


# --refined-pairs: anchor frequency, frequency difference and time difference of a pair, from refined peak
# positions in steps of 1/FREQ_STEPS bin and 1/TIME_STEPS frame: finer than the grid, so hashes are rarer.
FREQ_STEPS = 2
REFINE = True  # False: the grid's own cells, as v2 hashed them
REFINE_TIME = False
TIME_STEPS = 1
# A query also hashes the next step of a field whose value lies within this share of a step of its edge: noise
# moves refined positions by a fraction of a cell, and the query, not the index, pays for that.
QUERY_MARGINS = (0.25, 0.3, 0.0)


def _fields(tf: np.ndarray, ff: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three hash fields of pairs (a, b), in steps (continuous), each from 0 up."""
    anchor = ff[a] * FREQ_STEPS
    spread = (ff[b] - ff[a] + lm.MAX_DF + 1) * FREQ_STEPS
    delay = (tf[b] - tf[a]) * TIME_STEPS
    return anchor, spread, delay


def _limits() -> tuple[int, int, int]:
    """How many steps each hash field has."""
    return lm.MAX_BIN * FREQ_STEPS, (2 * lm.MAX_DF + 3) * FREQ_STEPS, (lm.MAX_DT + 2) * TIME_STEPS


def _pack(anchor: np.ndarray, spread: np.ndarray, delay: np.ndarray) -> np.ndarray:
    _, spreads, delays = _limits()
    return ((anchor * spreads + spread) * delays + delay).astype(np.uint32)


def hash_bits() -> int:
    """Bits a hash takes (HASH_BITS for the module's settings)."""
    anchors, spreads, delays = _limits()
    return (anchors * spreads * delays - 1).bit_length()


def refined_pair(
    t: np.ndarray, f: np.ndarray, fanout: int, refined: tuple[np.ndarray, np.ndarray] | None = None, query: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Hash each peak with up to `fanout` of the next peaks in its target zone: (hashes, anchor frames)."""
    a, b = lm.targets(t, f, fanout)
    tf, ff = t.astype(np.float64), f.astype(np.float64)
    if refined is not None and REFINE:
        ff = refined[1]
        if REFINE_TIME:
            tf = refined[0]
    fields = _fields(tf, ff, a, b)
    limits = _limits()
    base = [np.clip(np.floor(x).astype(np.int64), 0, n - 1) for x, n in zip(fields, limits, strict=True)]
    if not query or max(QUERY_MARGINS) <= 0:
        return _pack(*base), t[a].astype(np.uint32)
    # Per field: the neighbouring step (-1, +1) where the value is near that edge, 0 where it is not.
    step = []
    for x, q, n, margin in zip(fields, base, limits, QUERY_MARGINS, strict=True):
        inside = x - q
        s = np.where(inside < margin, -1, np.where(inside > 1 - margin, 1, 0))
        step.append(np.where((q + s >= 0) & (q + s < n), s, 0))
    hashes, anchors = [np.empty(0, np.uint32)], [np.empty(0, np.int64)]
    for mask in range(8):
        use = [(mask >> k) & 1 for k in range(3)]
        keep = np.ones(a.size, dtype=bool)
        for k in range(3):
            if use[k]:
                keep &= step[k] != 0
        if not np.any(keep):
            continue
        moved = [base[k][keep] + (step[k][keep] if use[k] else 0) for k in range(3)]
        hashes.append(_pack(*moved))
        anchors.append(t[a[keep]])
    h, at = np.concatenate(hashes), np.concatenate(anchors)
    order = np.argsort(at, kind="stable")
    return h[order], at[order].astype(np.uint32)


def product_hasher(t: np.ndarray, f: np.ndarray, refined: Any, density: lm.Density) -> tuple[np.ndarray, np.ndarray]:
    return lm.pair(t, f, density.fanout)


def use_refined_pairs(freq_steps: int, margins: tuple[float, float, float]) -> None:
    """Make cached peaks hashed as pairs from refined positions (see refined_pair)."""
    global HASHER, FREQ_STEPS, QUERY_MARGINS

    FREQ_STEPS, QUERY_MARGINS = freq_steps, margins

    def hasher(t: np.ndarray, f: np.ndarray, refined: Any, density: lm.Density) -> tuple[np.ndarray, np.ndarray]:
        return refined_pair(t, f, density.fanout, refined, query=density is not lm.REFERENCE)

    HASHER = hasher
    lm.HASH_BITS = hash_bits()


# How cached peaks are hashed: the product's hashes unless --triplets or --refined-pairs.
HASHER = product_hasher


def use_peak_cache(cache: Path) -> None:
    """Make lm._landmarks_of keep each audio's peaks (and refined positions) per density in `cache`, so that
    trying hash layouts costs only the pairing: audio is recognised by a digest of its spectrogram."""
    import hashlib
    import pickle

    stores: dict[str, dict[str, tuple[Any, ...]]] = {}
    dirty: set[str] = set()

    def store(density: lm.Density) -> dict[str, tuple[Any, ...]]:
        # Peaks do not depend on the fanout: one cache serves every fanout (the name from before that is kept).
        peaks_only = dataclasses.replace(density, fanout=7 if density.peaks_per_second <= 16 else 14)
        name = hashlib.sha1(repr((peaks_only, lm.TILT, lm.BLOCK_FRAMES)).encode()).hexdigest()[:12]  # noqa: S324
        if name not in stores:
            path = cache / f"peaks-{name}.pkl"
            stores[name] = pickle.loads(path.read_bytes()) if path.exists() else {}  # noqa: S301 (own cache)
        return stores[name]

    def landmarks_of(
        log_mag: np.ndarray, log_floor: float, density: lm.Density, surroundings: np.ndarray | None = None
    ) -> lm.Landmarks:
        memo = store(density)
        key = hashlib.sha1(np.ascontiguousarray(log_mag).tobytes()).hexdigest()  # noqa: S324 (a cache key)
        if key not in memo:
            t, f = lm.peaks(log_mag, log_floor, density, surroundings)
            tf, ff = refine(log_mag, t, f)
            memo[key] = (t, f, tf, ff, np.int64(log_mag.shape[0]))
            dirty.add(next(n for n, m in stores.items() if m is memo))
        t, f, tf, ff, frames = memo[key]
        hashes, times = HASHER(t, f, (tf, ff), density)
        return lm.Landmarks(hashes, times, peaks=int(t.size), frames=int(frames))

    def save() -> None:
        for name in list(dirty):
            (cache / f"peaks-{name}.pkl").write_bytes(pickle.dumps(stores[name]))
        dirty.clear()

    lm._landmarks_of = landmarks_of
    use_peak_cache.save = save  # type: ignore[attr-defined]


class HashTable:
    """How often each hash occurs in the index, to extrapolate what a lookup fetches in a larger catalog."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.unique, self.counts = np.unique(hashes, return_counts=True)
        self.total = int(hashes.size)

    def count(self, hashes: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.unique, hashes), self.unique.size - 1)
        return np.where(self.unique[at] == hashes, self.counts[at], 0)

    def summary(self, at_scale: float, hours: float) -> str:
        c = np.sort(self.counts)[::-1].astype(np.float64)
        top = c[: max(1, c.size // 100)].sum() / self.total
        top_tenth = c[: max(1, c.size // 1000)].sum() / self.total
        # Unbiased for 1/sum(p^2) however few entries the corpus has (a plain sum of squares is capped by them).
        effective = self.total * (self.total - 1) / max(1.0, float(np.sum(c * (c - 1))))
        shares = []
        for low, high in ((1, 1), (2, 3), (4, 15), (16, 63), (64, 1 << 62)):
            inside = (c >= low) & (c <= high)
            shares.append(f"{low}-{high if high < 1 << 61 else 'max'}: {c[inside].sum() / self.total:.3f}")
        limit = stop_limit(self.total)
        return (
            f"hashes: {self.total} entries, {c.size} distinct, effective distinct (1/sum p^2) 2^"
            f"{np.log2(effective):.1f}, top 1% of hashes hold {top:.3f} of entries (top 0.1%: {top_tenth:.3f}), "
            f"max {c[0]:.0f}; entries by their hash's count: {', '.join(shares)}; stop limit here {limit} drops "
            f"{c[c > limit].sum() / self.total:.4f} of entries; at {hours:g} h ({at_scale:.3g} entries) "
            f"{stop_limit(int(at_scale))}"
        )

    def others(self, query: np.ndarray, own: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """(other songs' entries, own song's entries) of each query hash in this corpus, and the other songs'
        total entries."""
        counts = self.count(query).astype(np.float64)
        mine = np.zeros_like(counts)
        rest = self.total
        if own is not None:
            kinds, times = np.unique(own, return_counts=True)
            at = np.minimum(np.searchsorted(kinds, query), kinds.size - 1)
            mine = np.where(kinds[at] == query, times[at], 0).astype(np.float64)
            rest -= own.size
        return counts - mine, mine, rest


def expected_rates(counts: list[np.ndarray], reliable: int = 200) -> np.ndarray:
    """E[true rate | corpus count c] for c = 0, 1, ... over the query hashes seen (Robbins' empirical Bayes for
    Poisson counts: (c + 1) M(c + 1) / M(c), M(c) the query hashes counted c times), kept nondecreasing; the plain
    count from where M(c + 1) is too small to say. Rare hashes are mostly rarer than their one corpus count, so
    scaling counts up as they are would stop nearly every hash seen at all at a larger catalog."""
    pooled = np.concatenate(counts).astype(np.int64)
    m = np.bincount(pooled, minlength=2).astype(np.float64)
    rates = np.arange(m.size, dtype=np.float64)
    for c in range(m.size - 1):
        if m[c + 1] < reliable:
            break
        rates[c] = (c + 1) * m[c + 1] / m[c]
    return np.maximum.accumulate(rates)


def within_budget(hashes: np.ndarray, expected: np.ndarray, fetched: np.ndarray, budget: int) -> np.ndarray:
    """Which query landmarks the lookup's budget keeps: distinct hashes rarest first (by their expected count),
    each costing its postings times its repeats in the query, while the total stays within `budget`."""
    unique, first, inverse, repeats = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(expected[first], kind="stable")
    cost = (fetched[first] * repeats)[order]
    keep = np.zeros(unique.size, dtype=bool)
    keep[order[np.cumsum(cost) <= budget]] = True
    return keep[inverse]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fingerprint-cache")
    parser.add_argument("--settings", default="10:5,3:5,10:0", help="seconds:SNR pairs")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout-family", default="wesnoth")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--scale-hours", type=float, default=6700.0, help="catalog size to extrapolate postings to")
    parser.add_argument("--min-df", type=int, default=0, help="targets at least this many bins from the anchor")
    parser.add_argument("--level-step", type=float, default=0.0, help="pairs with 2 bits of magnitude ratio")
    parser.add_argument("--level-margin", type=float, default=0.1)
    parser.add_argument("--triplets", type=int, default=0, metavar="BITS", help="hash three peaks into BITS bits")
    parser.add_argument(
        "--refined-pairs",
        type=int,
        default=0,
        metavar="STEPS",
        help="hash pairs from sub-bin peak positions in 1/STEPS bin steps, queries also hashing neighbouring steps",
    )
    parser.add_argument("--pair-margins", default="0.25,0.3,0", help="anchor, spread, delay margins, in steps")
    parser.add_argument("--reference-combos", type=int, default=0, help="triplets per anchor stored (0: all)")
    parser.add_argument("--third-step", default="1,1", help="the third peak's bin,frame difference divided by")
    parser.add_argument(
        "--budget",
        default="0",
        help="comma-separated; with --stop-at-scale: also keep only the query's rarest hashes (at --scale-hours) up "
        "to this many postings, as the lookup's budget does",
    )
    parser.add_argument(
        "--stop-at-scale",
        action="store_true",
        help="skip the query hashes the stop list would skip at --scale-hours (as judged from corpus counts)",
    )
    args = parser.parse_args()
    for item in args.set:
        name, value = item.split("=", 1)
        module = selectors if name.startswith("selectors.") else lm
        setattr(module, name.removeprefix("selectors."), eval(value, vars(module)))  # noqa: S307 (run by hand)
    if args.min_df:
        use_min_df(args.min_df)
    if args.level_step:
        use_level(args.level_step, args.level_margin)
    if args.refined_pairs:
        margins = tuple(float(x) for x in args.pair_margins.split(","))
        use_refined_pairs(args.refined_pairs, (margins[0], margins[1], margins[2]))
    if args.triplets:
        df_step, dt_step = (int(x) for x in args.third_step.split(","))
        use_triplets(args.triplets, args.reference_combos, (df_step, dt_step))
    args.cache.mkdir(parents=True, exist_ok=True)
    if not (args.min_df or args.level_step):
        use_peak_cache(args.cache)
    audio = load_corpus(args.corpus, args.cache)
    ids = {name: uuid.uuid5(uuid.NAMESPACE_URL, name) for name in audio}
    started = time.perf_counter()
    index = MemoryFingerprintIndex()
    songs = {
        name: found
        for name, x in audio.items()
        if family(name) != args.holdout_family and len(found := lm.landmarks(np.asarray(x)))
    }
    index.add_many((ids[name], found.hashes, found.times) for name, found in songs.items())
    hours = sum(x.size for name, x in audio.items() if family(name) != args.holdout_family) / SAMPLE_RATE / 3600
    stats = index.stats()
    print(
        f"index: {stats.songs} songs, {stats.hashes / hours / 3600:.0f} landmarks/s, {stats.bytes / 1e6 / hours:.1f} "
        f"MB/h, built in {time.perf_counter() - started:.0f} s; {args.holdout_family} held out"
    )
    if hasattr(use_peak_cache, "save"):
        use_peak_cache.save()
    table = HashTable(np.concatenate([found.hashes for found in songs.values()]))
    at_scale = stats.hashes / hours * args.scale_hours
    print(table.summary(at_scale, args.scale_hours))
    print(
        f"HASH_BITS {lm.HASH_BITS}; at {args.scale_hours:g} h: 4-byte postings "
        f"{4 * stats.hashes / hours / 1e6:.2f} MB/h "
        f"+ keys and offsets at most {12 * min(2**lm.HASH_BITS, at_scale) / args.scale_hours / 1e6:.2f} MB/h"
    )
    scale_limit = stop_limit(int(at_scale))
    budgets = [int(float(b)) for b in args.budget.split(",")]
    for setting in args.settings.split(","):
        seconds, snr = (float(x) for x in setting.split(":"))
        prepared = []
        for name, start, clip in make_queries(audio, seconds, snr, args.seed, args.queries, args.cache):
            began = time.perf_counter()
            query = lm.query_landmarks(clip)
            spent = time.perf_counter() - began
            known = family(name) != args.holdout_family
            own = songs[name] if known else None
            prepared.append(
                (name, start, query, spent, known, own, *table.others(query.hashes, own.hashes if own else None))
            )
        if hasattr(use_peak_cache, "save"):
            use_peak_cache.save()
        for budget in budgets:
            rows: list[tuple[Any, ...]] = []
            postings: list[float] = []
            recalls: list[float] = []
            sizes: list[int] = []
            stopped: list[float] = []
            rates = expected_rates([p[6] for p in prepared])
            for name, start, query, spent, known, own, others, mine, rest in prepared:
                # Postings: the plain scaled count (unbiased, the query being independent of the other songs); the
                # stop list: the expected rate given the count, as a catalog that size would see it.
                fetched = others * at_scale / rest
                expected = mine + rates[others.astype(np.int64)] * at_scale / rest
                kept = expected <= (scale_limit if args.stop_at_scale else np.inf)
                if budget and args.stop_at_scale:
                    kept &= within_budget(query.hashes, expected, fetched, budget)
                stopped.append(float(np.mean(expected > scale_limit)))
                if not np.all(kept):
                    query = lm.Landmarks(query.hashes[kept], query.times[kept], query.peaks, query.frames)
                began = time.perf_counter()
                match = best_match(query, index.lookup(query.hashes))
                ms = (spent + time.perf_counter() - began) * 1000
                right = match is not None and known and match.song_id == ids[name]
                # Each distinct hash is fetched once.
                _, distinct = np.unique(query.hashes, return_index=True)
                postings.append(float(fetched[kept][distinct].sum()))
                sizes.append(len(query))
                if own is not None:
                    first = round(float(start) / lm.FRAME_SECONDS)
                    span = (own.times >= first) & (own.times < first + query.frames)
                    recalls.append((match.matches if right and match else 0) / max(1, int(span.sum())))
                if match is None:
                    rows.append((known, right, 0, 0, 0, 0.0, ms))
                else:
                    rows.append(
                        (known, right, match.matches, match.runner_up_matches, match.background, match.confidence, ms)
                    )
            r = np.array(rows, dtype=float)
            known, unknown = r[r[:, 0] == 1], r[r[:, 0] == 0]
            print(
                f"\n{seconds:g} s at {snr:g} dB, budget {budget or 'none'}: {len(known)} queries of indexed songs, "
                f"{len(unknown)} of held-out ones"
            )
            print(
                f"  time p50 {np.percentile(r[:, 6], 50):.0f} ms, p95 {np.percentile(r[:, 6], 95):.0f} ms; query "
                f"landmarks p50 {np.median(sizes):.0f}; recall (right matches / stored landmarks in the span) p5/p50 "
                f"{np.percentile(recalls, [5, 50]).round(3)}; postings at {args.scale_hours:g} h p50/p95 "
                f"{np.percentile(postings, [50, 95]).round(-3)}; query hashes the stop list there skips p50 "
                f"{np.median(stopped):.3f}"
            )
            for label, part in (("right best", known[known[:, 1] == 1]), ("held-out best", unknown)):
                if len(part):
                    print(
                        f"  {label}: matches p5/p50 {np.percentile(part[:, 2], [5, 50])}, runner-up p50/p95 "
                        f"{np.percentile(part[:, 3], [50, 95])}, background p50/p95 "
                        f"{np.percentile(part[:, 4], [50, 95])}, "
                        f"confidence p5/p50/max {np.percentile(part[:, 5], [5, 50, 100])}"
                    )
            for min_matches in (10, 15, 20, 25, 30):
                cells = []
                for min_confidence in (0.3, 0.4, 0.5, 0.6):
                    accepted = (r[:, 2] >= min_matches) & (r[:, 5] >= min_confidence)
                    top1 = np.mean(accepted[r[:, 0] == 1] & (known[:, 1] == 1)) if len(known) else 0.0
                    false = np.mean(accepted[r[:, 0] == 0]) if len(unknown) else 0.0
                    wrong = np.mean(accepted[r[:, 0] == 1] & (known[:, 1] == 0)) if len(known) else 0.0
                    cells.append(f"conf {min_confidence}: {top1:.3f}/{wrong:.3f}/{false:.3f}")
                print(f"  min {min_matches:>2} (top-1/wrong/false match)  " + "  ".join(cells))
            accepted = (r[:, 2] >= settings.FINGERPRINT_MIN_MATCHES) & (r[:, 5] >= settings.FINGERPRINT_MIN_CONFIDENCE)
            print(
                f"SUMMARY {seconds:g}s {snr:g}dB budget {budget}: top-1 "
                f"{np.mean(accepted[r[:, 0] == 1] & (known[:, 1] == 1)):.3f} wrong "
                f"{np.mean(accepted[r[:, 0] == 1] & (known[:, 1] == 0)):.3f} false "
                f"{np.mean(accepted[r[:, 0] == 0]) if len(unknown) else 0:.3f}; postings at scale p50 "
                f"{np.median(postings):,.0f}; query landmarks p50 {np.median(sizes):.0f}"
            )


if __name__ == "__main__":
    main()
