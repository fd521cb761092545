"""Landmark fingerprints: pairs of spectral peaks, hashed with the time between them.

The audio (mono float32 at `SAMPLE_RATE`, 32 kHz) is low-passed and decimated to 8 kHz and a log-magnitude
spectrogram is taken (512-point Hann window, hop 128: 16 ms frames, 15.6 Hz bins, bins 6..255 used). A peak is a
cell that is the largest in its neighbourhood and stands out from its surroundings (log magnitude above a moving
average over about a second and a few bins). Peaks are ranked by how far they stand above pink noise (log
magnitude plus `TILT` x log frequency) and the best of every half second are kept, so quiet and loud passages get
the same density. Each peak (an anchor) is paired with the next `fanout` peaks in its target zone (1 to `MAX_DT`
frames later, at most `MAX_DF` bins away); a pair is hashed from (anchor bin, bin difference, frame difference)
into 23 bits of a uint32 and kept with the anchor's frame.

A song and a query find each other when many of their hashes agree on one time offset (see `selectors`). Queries
are fingerprinted more densely than songs (more peaks, smaller neighbourhoods, more pairs per anchor) and at three
sub-hop shifts of the frame grid, so that a song's pairs are found in a query even when noise or a codec moves or
hides some of its peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import fft as sp_fft
from scipy import ndimage, signal

from embeddings.base import SAMPLE_RATE

UInt32Array = npt.NDArray[np.uint32]
IntArray = npt.NDArray[np.int64]

# The algorithm's name: fingerprints made by another version are never compared with these.
ALGORITHM = "landmarks-v2"

# Analysis rate: everything above 4 kHz is dropped; 32 kHz / 4.
RATE = 8000
DECIMATION = SAMPLE_RATE // RATE
N_FFT = 512
HOP = 128
FRAME_SECONDS = HOP / RATE
# Bins below this (94 Hz) carry rumble and hum more than music; bins from MAX_BIN on are not used.
MIN_BIN = 6
MAX_BIN = 256
# Prominence: log magnitude above a moving average over this many frames and bins.
BACKGROUND_FRAMES = 63
BACKGROUND_BINS = 15
# Peaks are ranked by log magnitude + TILT x log(bin): their level above pink noise (-3 dB per octave), which is
# what everyday noise (rooms, traffic, crowds) looks like, so the peaks kept are those most likely to survive it.
TILT = 0.5
# Peaks are ranked and kept per block of this many frames (half a second).
BLOCK_FRAMES = 31
# Target zone of an anchor: 1..MAX_DT frames later (about 2 s), at most MAX_DF bins (2 kHz) above or below: the
# sparse peaks of a song reach their targets further away than v1's did.
MIN_DT = 1
MAX_DT = 127
MAX_DF = 127
# Hash layout, high to low: anchor bin (8 bits) | bin difference + MAX_DF (8 bits) | frame difference (7 bits).
HASH_BITS = (MAX_BIN - 1).bit_length() + (2 * MAX_DF).bit_length() + MAX_DT.bit_length()
# Magnitudes are floored this far below the audio's peak (about -90 dB), so digital silence has no peaks and
# the analysis does not depend on the recording's level.
FLOOR_RATIO = 3e-5
_CHUNK_FRAMES = 8192
# Anchors paired per step: bounds the candidate pairs held at once (anchors x peaks in a zone) for long audio.
_ANCHORS_PER_STEP = 4096


@dataclass(frozen=True)
class Density:
    """How peaks are picked and paired: per second kept, neighbourhood, least prominence, pairs per anchor."""

    peaks_per_second: float
    fanout: int
    peak_frames: int = 3  # a peak is the largest cell within this many frames...
    peak_bins: int = 4  # ...and this many bins on each side
    min_prominence: float = 0.5  # above the local average, in natural log units of magnitude (0.5: 4.3 dB)


# Songs: the strongest peaks only, 7 pairs each: about 110 hashes per second of audio (4 bytes each as postings:
# 1.6 MB per hour).
REFERENCE = Density(peaks_per_second=16.0, fanout=7)
# Queries: twice a song's peaks and pairs, so that the song's pairs are among the query's even where noise adds
# peaks between them; robustness is paid for at query time, not in the index.
QUERY = Density(peaks_per_second=32.0, fanout=14)
# Queries are fingerprinted again with the frame grid moved by these fractions of a hop.
QUERY_SHIFTS = (0.0, 1 / 3, 2 / 3)


@dataclass(frozen=True)
class Landmarks:
    hashes: UInt32Array
    times: UInt32Array  # the anchor's frame (FRAME_SECONDS each) from the start of the audio
    peaks: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS

    def __len__(self) -> int:
        return int(self.hashes.size)


def downsample(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """`SAMPLE_RATE` audio to `RATE`, low-passed against aliasing."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError("fingerprints need mono audio (a 1-d array)")
    if not np.all(np.isfinite(x)):
        raise ValueError("the audio contains NaN or infinite samples")
    return _decimate(x)


# resample_poly's anti-aliasing filter for 1/DECIMATION: 2 x 10 x DECIMATION + 1 Kaiser-windowed taps, reversed and
# laid out as (taps per phase, phase), so each output is a dot product of phase rows with the input's phase columns.
_HALF_TAPS = 10 * DECIMATION
_TAPS = signal.firwin(2 * _HALF_TAPS + 1, 1.0 / DECIMATION, window=("kaiser", 5.0))[::-1]
_PHASE_TAPS = -(-_TAPS.size // DECIMATION)
_POLYPHASE = np.pad(_TAPS, (0, _PHASE_TAPS * DECIMATION - _TAPS.size)).astype(np.float32).reshape(_PHASE_TAPS, -1)
# Outputs per step: bounds the (taps per phase x outputs) products held at once to about 5 MB.
_DECIMATE_STEP = 1 << 16


def _decimate(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """signal.resample_poly(x, 1, DECIMATION) to float32 rounding, 2-3x faster: resample_poly filters in float64
    one output at a time, where this is one matrix product per step over the input's polyphase columns."""
    n_out = -(-x.size // DECIMATION)
    out = np.empty(n_out, dtype=np.float32)
    for lo in range(0, n_out, _DECIMATE_STEP):
        hi = min(n_out, lo + _DECIMATE_STEP)
        # Input rows lo - _HALF_TAPS / DECIMATION onwards, zero outside x, as (phase, row) columns.
        start = lo * DECIMATION - _HALF_TAPS
        length = (hi - lo + _PHASE_TAPS) * DECIMATION
        window = np.zeros(length, dtype=np.float32)
        a, b = max(0, start), min(x.size, start + length)
        if a < b:
            window[a - start : b - start] = x[a:b]
        products = _POLYPHASE @ np.ascontiguousarray(window.reshape(-1, DECIMATION).T)
        step = out[lo:hi]
        step[:] = products[0, : hi - lo]
        for j in range(1, _PHASE_TAPS):
            step += products[j, j : j + hi - lo]
    return out


def spectrogram(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], float]:
    """Log magnitude, (frames, MAX_BIN) float32, of 8 kHz audio, and the log floor it was clipped at."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    floor = max(peak, 1e-9) * (N_FFT / 4) * FLOOR_RATIO
    log_floor = float(np.log(floor))
    if x.size < N_FFT:
        return np.empty((0, MAX_BIN), dtype=np.float32), log_floor
    frames = 1 + (x.size - N_FFT) // HOP
    window = signal.get_window("hann", N_FFT).astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    out = np.empty((frames, MAX_BIN), dtype=np.float32)
    for start in range(0, frames, _CHUNK_FRAMES):
        stop = min(frames, start + _CHUNK_FRAMES)
        spectrum = sp_fft.rfft(view[start:stop] * window, axis=1)[:, :MAX_BIN]
        np.log(np.maximum(np.abs(spectrum), np.float32(floor)), out=out[start:stop])
    return out, log_floor


def _running_max(a: npt.NDArray[np.float32], radius: int, axis: int) -> npt.NDArray[np.float32]:
    """The maximum over a[i - radius .. i + radius] along `axis`, edges repeated ("nearest"), by doubling."""
    if radius <= 0:
        return a
    width = 2 * radius + 1
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(a, pad, mode="edge")
    n = padded.shape[axis]

    def cut(x: npt.NDArray[np.float32], start: int, stop: int) -> npt.NDArray[np.float32]:
        return x[start:stop] if axis == 0 else x[:, start:stop]

    span, m = 1, padded  # m[i] = max(padded[i .. i + span - 1])
    while span * 2 <= width:
        m = np.maximum(cut(m, 0, n - 2 * span + 1), cut(m, span, n - span + 1))
        span *= 2
    if span < width:  # cover the rest with one more overlapping window
        rest = width - span
        m = np.maximum(cut(m, 0, n - width + 1), cut(m, rest, rest + n - width + 1))
    return cut(m, 0, a.shape[axis])


def background(log_mag: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The moving average a peak must stand out from: BACKGROUND_FRAMES by BACKGROUND_BINS cells."""
    smooth = ndimage.uniform_filter1d(log_mag, BACKGROUND_FRAMES, axis=0, mode="nearest")
    return ndimage.uniform_filter1d(smooth, BACKGROUND_BINS, axis=1, mode="nearest")


def peaks(
    log_mag: npt.NDArray[np.float32],
    log_floor: float,
    density: Density,
    surroundings: npt.NDArray[np.float32] | None = None,
) -> tuple[IntArray, IntArray]:
    """(frames, bins) of the kept peaks, sorted by frame then bin; `surroundings`: the `background()` to use, when
    one at least as long is at hand (e.g. of the same audio on a frame grid moved by less than a frame)."""
    if log_mag.shape[0] == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    local_max = _running_max(_running_max(log_mag, density.peak_frames, 0), density.peak_bins, 1)
    is_max = log_mag == local_max
    is_max[:, :MIN_BIN] = False
    is_max &= log_mag > np.float32(log_floor + 0.5)
    around = background(log_mag) if surroundings is None else surroundings[: log_mag.shape[0]]
    is_max &= log_mag - around > np.float32(density.min_prominence)
    # flatnonzero: several times faster than a 2-d nonzero, same cells in the same (frame, bin) order.
    t, f = np.divmod(np.flatnonzero(is_max), is_max.shape[1])
    if t.size == 0:
        return t.astype(np.int64), f.astype(np.int64)
    score = log_mag[t, f] + np.float32(TILT) * np.log(f.astype(np.float32))
    block = t // BLOCK_FRAMES
    order = np.lexsort((-score, block))
    sorted_block = block[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_block, sorted_block, side="left")
    per_block = max(1, round(density.peaks_per_second * BLOCK_FRAMES * FRAME_SECONDS))
    keep = np.sort(order[rank < per_block])  # back to frame-then-bin order
    return t[keep].astype(np.int64), f[keep].astype(np.int64)


def targets(t: IntArray, f: IntArray, fanout: int) -> tuple[IntArray, IntArray]:
    """Each peak (an anchor) with up to `fanout` of the next peaks in its target zone: (anchor, target) indices,
    grouped by anchor and in peak order within an anchor."""
    # Peaks are in frame order, so an anchor's zone ends at the first peak more than MAX_DT frames after it.
    end = np.searchsorted(t, t + MAX_DT, side="right")
    pairs = [
        _zone_pairs(t, f, end, lo, min(lo + _ANCHORS_PER_STEP, t.size), fanout)
        for lo in range(0, t.size, _ANCHORS_PER_STEP)
    ]
    if not pairs:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


def _zone_pairs(t: IntArray, f: IntArray, end: IntArray, lo: int, hi: int, fanout: int) -> tuple[IntArray, IntArray]:
    """targets() for anchors lo..hi-1: every (i, i + k) inside i's zone, anchor-major, then the first `fanout`."""
    anchors = np.arange(lo, hi, dtype=np.int64)
    steps = np.arange(1, max(1, int((end[lo:hi] - anchors).max())), dtype=np.int64)
    i = np.repeat(anchors, steps.size)
    j = i + np.tile(steps, anchors.size)
    inside = j < end[i]
    i, j = i[inside], j[inside]
    ok = (t[j] - t[i] >= MIN_DT) & (np.abs(f[j] - f[i]) <= MAX_DF)
    i, j = i[ok], j[ok]
    rank = np.arange(i.size) - np.searchsorted(i, i, side="left")  # the target's place among its anchor's
    keep = rank < fanout
    return i[keep], j[keep]


def pair(t: IntArray, f: IntArray, fanout: int) -> tuple[UInt32Array, UInt32Array]:
    """Hash each peak with up to `fanout` of the next peaks in its target zone: (hashes, anchor frames)."""
    a, b = targets(t, f, fanout)
    df_bits, dt_bits = (2 * MAX_DF).bit_length(), MAX_DT.bit_length()
    hashes = (f[a] << (df_bits + dt_bits)) | ((f[b] - f[a] + MAX_DF) << dt_bits) | (t[b] - t[a])
    return hashes.astype(np.uint32), t[a].astype(np.uint32)


def _landmarks_of(
    log_mag: npt.NDArray[np.float32],
    log_floor: float,
    density: Density,
    surroundings: npt.NDArray[np.float32] | None = None,
) -> Landmarks:
    t, f = peaks(log_mag, log_floor, density, surroundings)
    hashes, times = pair(t, f, density.fanout)
    return Landmarks(hashes, times, peaks=int(t.size), frames=int(log_mag.shape[0]))


def landmarks(samples: npt.NDArray[np.floating], density: Density | None = None) -> Landmarks:
    """The landmarks of a song (mono `SAMPLE_RATE` audio) for the index, in anchor-frame order."""
    return _landmarks_of(*spectrogram(downsample(samples)), density or REFERENCE)


def query_landmarks(samples: npt.NDArray[np.floating], density: Density | None = None) -> Landmarks:
    """The landmarks of a query at every shift in `QUERY_SHIFTS`, without repeats, in anchor-frame order.

    A shift drops the first fraction of a hop, so frame k of a shifted pass starts (k + shift) hops in; its times
    are still counted in whole frames (the error is below a frame, which matching tolerates). Every pass measures
    prominence against the first pass's background: an average over a second moves by nothing a sub-hop shift adds.
    """
    x = downsample(samples)
    density = density or QUERY
    parts = []
    surroundings = None
    for shift in QUERY_SHIFTS:
        log_mag, log_floor = spectrogram(x[round(shift * HOP) :])
        if surroundings is None or surroundings.shape[0] < log_mag.shape[0]:
            surroundings = background(log_mag)
        parts.append(_landmarks_of(log_mag, log_floor, density, surroundings))
    frames = max(p.frames for p in parts)
    peaks_found = max(p.peaks for p in parts)
    keys = np.unique(
        np.concatenate([(p.times.astype(np.uint64) << np.uint64(32)) | p.hashes.astype(np.uint64) for p in parts])
    )
    times = (keys >> np.uint64(32)).astype(np.uint32)
    hashes = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return Landmarks(hashes, times, peaks=peaks_found, frames=frames)
