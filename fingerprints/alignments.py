"""Coarse alignments: which of a lookup's many hits can belong to its best matches, found in one pass without sorting.

A hit's alignment is its song and its offset (song frame minus query frame). Scoring sorts hits by alignment, which
above SHORTLIST_HITS hits costs more than the rest of a lookup; so above that, only the hits of the songs owning the
SHORTLIST_SIZE fullest alignments in bins of COARSE_FRAMES frames are scored. `selectors.candidates` does this with
the songs a lookup names; the local index does it before naming any song, from each hit's stored position (song
start plus song frame) minus its query frame, which tells alignments apart as well.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SHORTLIST_HITS = 50_000
SHORTLIST_SIZE = 32
COARSE_FRAMES = 4
COARSE_BITS = 20


def coarse(offsets: I64) -> I64:
    """The coarse bin of each offset (in frames, may be negative), as a non-negative number below 2**32."""
    return (offsets + 2**31) // COARSE_FRAMES


def fullest(alignments: I64, size: int) -> BoolArray:
    """Which hits lie in the `size` fullest coarse alignments; `alignments` names each hit's (equal for hits of one
    song and coarse offset, non-negative).

    Alignments are hashed into about twice as many counters as hits (at most 2^COARSE_BITS): a song's best exact
    alignment holds at least half its count in one coarse bin, so its hits are among those of the fullest counters
    (a collision only keeps more hits).
    """
    if alignments.size == 0:
        return np.zeros(0, dtype=np.bool_)
    bits = min(COARSE_BITS, max(12, (alignments.size - 1).bit_length() + 1))
    slot = ((alignments.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)).astype(np.int64)
    counts = np.bincount(slot, minlength=1 << bits)
    at_hit = counts[slot]
    # Counters holding c hits, from the hits' own counts (a counter of c hits is seen c times): no pass over every
    # counter, no selection sort.
    seen = np.bincount(at_hit)
    holding = seen // np.maximum(np.arange(seen.size), 1)
    fuller = np.cumsum(holding[::-1])[::-1]  # fuller[c]: counters holding c or more
    least = max(1, int(np.flatnonzero(fuller >= size)[-1])) if fuller[0] >= size else 1
    result: BoolArray = at_hit >= least
    return result
