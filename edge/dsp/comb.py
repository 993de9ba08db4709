"""The pitch (comb) filter: ``p(n) = sum_{k=-M..M} w_k x(n - kT)``.

Taps reach ``M * T`` samples into the future. The enhancer already waits
``LOOKAHEAD_SAMPLES`` (20 ms) for the network's look-ahead, so the comb may use
those samples for free; ``M`` shrinks for long periods so that ``M * T`` stays
inside that budget: 3 taps each side up to T = 320 (f0 >= 150 Hz), 2 up to
T = 480 (100 Hz), 1 up to T = 768 (62.5 Hz). The latency budget therefore
stays at 30 ms instead of the ~60 ms a fixed M = 3 would need.
"""

import numpy as np

from .constants import COMB_MAX_TAPS_EACH_SIDE, LOOKAHEAD_SAMPLES, PITCH_MAX_SAMPLES, WINDOW_SAMPLES


def taps_each_side(period):
    """M for a period T: the most taps whose reach ``M * T`` fits the look-ahead."""
    return max(1, min(COMB_MAX_TAPS_EACH_SIDE, LOOKAHEAD_SAMPLES // int(period)))


def hann_taps(taps_each_side_m):
    """Hann weights of 2M+1 taps (zero end points excluded), normalised to sum 1."""
    k = np.arange(-taps_each_side_m, taps_each_side_m + 1)
    weights = 0.5 + 0.5 * np.cos(np.pi * k / (taps_each_side_m + 1))
    return weights / weights.sum()


#: Hann weights indexed by M (row M, first 2M+1 entries used), and kappa = sum w^2.
TAP_WEIGHTS = {m: hann_taps(m) for m in range(1, COMB_MAX_TAPS_EACH_SIDE + 1)}
KAPPA = {m: float(np.sum(w ** 2)) for m, w in TAP_WEIGHTS.items()}

#: Samples the filter needs on each side of the window it filters.
REACH_SAMPLES = LOOKAHEAD_SAMPLES
assert PITCH_MAX_SAMPLES <= LOOKAHEAD_SAMPLES, "one tap each side must fit the look-ahead"


def kappa_for_period(period):
    """Noise power gain of the comb filter at period T: ``sum_k w_k^2``."""
    return KAPPA[taps_each_side(period)]


def comb_filter(history, window_start, period, out_960):
    """Comb-filter the 960 samples from ``window_start`` in ``history`` into ``out_960``.

    ``history`` (a contiguous 1-D array) must hold ``M * T`` samples on both
    sides of the window. The 2M+1 delayed copies are read through one strided
    view (no copy) and combined in a single matrix-vector product.
    """
    period = int(period)
    m = taps_each_side(period)
    first = window_start - m * period          # the copy delayed by +M*T (oldest)
    if first < 0 or window_start + m * period + WINDOW_SAMPLES > history.shape[0]:
        raise ValueError(f"history too short for comb filter at period {period}")
    step = history.strides[0]
    copies = np.ndarray((2 * m + 1, WINDOW_SAMPLES), dtype=history.dtype, buffer=history,
                        offset=first * step, strides=(period * step, step))
    # Row j is x(n - (M - j) T); the Hann weights are symmetric, so order does not matter.
    return np.dot(TAP_WEIGHTS[m], copies, out=out_960)
