"""Rational-rate resampling in numpy alone: ``scipy.signal.resample_poly`` without scipy.

The file commands convert a WAV at any rate from 8 to 384 kHz to the DSP's 48 kHz and back. That
was scipy's ``resample_poly``, and scipy was the device's largest dependency: 33 MB to download and
120 MB installed for aarch64, more than numpy and LiteRT together, and 77-78 MB resident once
``scipy.signal`` is imported (docs/dependencies.md). This is the same filter and the same
arithmetic, so the device installs no scipy and the file commands' output is unchanged.

How: upsample by ``up`` (``up - 1`` zeros between samples), filter with a Kaiser-windowed sinc,
keep every ``down``-th sample. Output ``m`` sits at position ``n = (m + pre) * down`` of the
upsampled, filtered signal; only every ``up``-th tap meets a non-zero input there, so it is a dot
product of the taps ``h[n % up + j * up]`` (branch ``n % up``) with the inputs ``x[n // up - j]``:
``len(h) / up`` multiplies per output (scipy's default filter: 21 when upsampling, about
``20 * down / up`` when downsampling, 61 for 48 to 16 kHz). The branches are laid out once, in
:class:`Polyphase`. Outputs sharing a branch (``m``, ``m + up``, ...) are one matrix-vector product
over a strided view of the input: ``up`` numpy calls, no copy of the signal's windows. Where a
branch would get only a few outputs (rates with few common factors with 48 kHz, such as 44,101 Hz:
``up`` = 48,000), outputs are computed in chunks from gathered windows instead.
Matches scipy to about 4e-15 (tests/test_polyphase.py): the sums run in another order, and may group
differently from one call to the next (a stream's pieces against the whole signal: 1e-15).
"""

from functools import lru_cache
from math import gcd

import numpy as np

#: ``scipy.signal.resample_poly``'s default window, ``("kaiser", 5.0)``.
KAISER_BETA = 5.0
#: Filter taps designed at once (bounds the design's temporaries: a 384 kHz file with an odd rate has millions).
DESIGN_CHUNK_TAPS = 1 << 16
#: Below this many outputs per branch, one call per branch costs more than gathering each output's window.
MIN_OUTPUTS_PER_BRANCH = 16
#: Outputs gathered at once on that path (with scipy's default filter at most ~160 taps each: 10 MB).
GATHER_CHUNK_OUTPUTS = 8192
#: Outputs per branch in one product. The signal is walked in segments of ``up`` times this many outputs, every
#: branch within a segment, so its inputs stay in the cache: one product per branch over 10 minutes of audio swept
#: the whole signal once per branch (640 times from 11.025 kHz) and took 3-7 times as long.
ROWS_PER_PRODUCT = 4096


def _kaiser_sinc_chunks(numtaps, cutoff):
    """``(start, taps)`` pieces of the unnormalised Kaiser-windowed sinc, :data:`DESIGN_CHUNK_TAPS` at a time
    (``np.kaiser``'s own formula)."""
    centre = (numtaps - 1) / 2.0
    for start in range(0, numtaps, DESIGN_CHUNK_TAPS):
        m = np.arange(start, min(numtaps, start + DESIGN_CHUNK_TAPS)) - centre
        window = np.i0(KAISER_BETA * np.sqrt(1.0 - (m / centre) ** 2)) / np.i0(KAISER_BETA) if centre else 1.0
        yield start, cutoff * np.sinc(cutoff * m) * window


def output_length(n_in, up, down):
    """``ceil(n_in * up / down)``: how many samples ``resample_poly`` returns."""
    return -(-n_in * up // down)


class Polyphase:
    """Resampling by ``up / down`` with its filter designed and split into branches once; call it on 1-D signals.

    ``taps``: an odd-length linear-phase low-pass filter (default: scipy's, ``firwin(20 * max(up, down) + 1,
    1 / max(up, down), window=("kaiser", 5.0))``). ``up`` and ``down``
    are reduced by their common factor first, as scipy does.
    """

    def __init__(self, up, down, taps=None):
        common = gcd(int(up), int(down))
        self.up, self.down = up, down = int(up) // common, int(down) // common
        if up == down == 1:
            return
        if taps is None:
            max_rate = max(up, down)
            numtaps, pieces = 20 * max_rate + 1, _kaiser_sinc_chunks(20 * max_rate + 1, 1.0 / max_rate)
        else:
            taps = np.asarray(taps, dtype=np.float64)
            numtaps, pieces = taps.size, [(0, taps)]
        half_len = (numtaps - 1) // 2
        # As scipy: pad the filter's front so that output 0 falls on the centre of its first input.
        pre_pad = down - half_len % down
        self.first = (half_len + pre_pad) // down        # outputs of the full filtering that resample_poly drops
        self.per_phase = -(-(numtaps + pre_pad) // up)   # taps of each branch
        # Row p: branch p's taps reversed, h[p + (J-1) up], ..., h[p + up], h[p], to meet a window that runs
        # oldest to newest; tap k of the padded filter lands at [k % up, J - 1 - k // up]. Designed straight into
        # place, a piece at a time, so that no second copy of a long filter exists (a 383,999 Hz file: 61 MB).
        # Contiguous rows: a product with a strided vector leaves BLAS for a loop 5 to 30 times slower.
        self.branches = np.zeros((up, self.per_phase))
        total = 0.0
        for start, piece in pieces:
            k = np.arange(start, start + piece.size) + pre_pad
            self.branches[k % up, self.per_phase - 1 - k // up] = piece
            total += piece.sum()
        self.branches *= up / total if taps is None else up     # unity gain at DC, then scipy's factor up
        self._numtaps, self._pre_pad = numtaps, pre_pad

    def taps(self):
        """The filter the branches hold, as ``resample_poly``'s ``window`` (without its factor ``up``)."""
        k = np.arange(self._numtaps) + self._pre_pad
        return self.branches[k % self.up, self.per_phase - 1 - k // self.up] / self.up

    def __call__(self, x):
        """``scipy.signal.resample_poly(x, up, down, window=taps)`` for a 1-D float signal, zero-padded at both
        ends; float64, :func:`output_length` samples."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"resample_poly takes a 1-D signal, not shape {x.shape}")
        if self.up == self.down == 1:
            return x.copy()
        up, down, per_phase = self.up, self.down, self.per_phase
        n_out = output_length(x.size, up, down)
        out = np.empty(n_out)
        if n_out == 0:
            return out
        # x with zeros on both sides, so that every branch reads zeros beyond the signal's ends; its sliding
        # windows of per_phase samples are a view (no copy): row i + 1 ends on x[i].
        n_newest = (n_out - 1 + self.first) * down // up + 1      # one past the newest input any output reads
        padded = np.zeros(per_phase + max(x.size, n_newest) + 1)
        padded[per_phase:per_phase + x.size] = x
        windows = np.lib.stride_tricks.sliding_window_view(padded, per_phase)
        if n_out >= MIN_OUTPUTS_PER_BRANCH * up:
            # Outputs m and m + up share a branch, and their newest inputs lie `down` apart. A segment starts on a
            # multiple of up, so output s + r is on branch ((r + first) * down) % up in every segment.
            segment = up * ROWS_PER_PRODUCT
            for s in range(0, n_out, segment):
                end = min(n_out, s + segment)
                for r in range(min(up, end - s)):
                    position = (s + r + self.first) * down
                    newest = position // up
                    rows = windows[newest + 1:newest + 1 + (end - 1 - s - r) // up * down + 1:down]
                    # into out itself: a temporary copied into a fresh np.empty with stride up was 5 times slower
                    np.matmul(rows, self.branches[position % up], out=out[s + r:end:up])
        else:
            for start in range(0, n_out, GATHER_CHUNK_OUTPUTS):
                position = (np.arange(start, min(n_out, start + GATHER_CHUNK_OUTPUTS)) + self.first) * down
                out[start:start + position.size] = np.einsum(
                    "ij,ij->i", windows[position // up + 1], self.branches[position % up])
        return out


@lru_cache(maxsize=8)
def for_ratio(up, down):
    """One shared :class:`Polyphase` with the default filter per ratio (it keeps nothing between calls): each
    channel of a file, in and out, and the echo reference use the same branches."""
    return Polyphase(up, down)


def resample_poly(x, up, down, taps=None):
    """``scipy.signal.resample_poly(x, up, down, window=taps)`` for a 1-D float signal."""
    return (for_ratio(int(up), int(down)) if taps is None else Polyphase(up, down, taps))(x)
