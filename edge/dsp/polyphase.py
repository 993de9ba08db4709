"""Rational-rate resampling in numpy alone: ``scipy.signal.resample_poly`` without scipy.

The file commands convert a WAV at any rate from 8 to 384 kHz to the DSP's 48 kHz and back. That
was scipy's ``resample_poly``, and scipy was the device's largest dependency: 33 MB to download and
120 MB installed for aarch64, more than numpy and LiteRT together, and 78 MB resident once
``scipy.signal`` is imported (docs/dependencies.md). This is the same filter and the same
arithmetic, so the device installs no scipy and the file commands' output is unchanged.

How: upsample by ``up`` (``up - 1`` zeros between samples), filter with a Kaiser-windowed sinc,
keep every ``down``-th sample. Output ``m`` sits at position ``n = (m + pre) * down`` of the
upsampled, filtered signal; only every ``up``-th tap meets a non-zero input there, so it is a dot
product of the taps ``h[n % up + j * up]`` with the inputs ``x[n // up - j]``: about
``len(h) / up`` multiplies per output (21 for scipy's default filter, whatever the ratio). Outputs
sharing a branch (``m``, ``m + up``, ...) are one matrix-vector product over a strided view of the
input, so the work is ``up`` numpy calls and no copy of the signal's windows.
Matches scipy to about 1e-15 (tests/test_polyphase.py): the sums run in another order.
"""

from math import gcd

import numpy as np

#: ``scipy.signal.resample_poly``'s default window, ``("kaiser", 5.0)``.
KAISER_BETA = 5.0


def kaiser_lowpass(numtaps, cutoff):
    """``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", 5.0))``; ``cutoff`` in units of Nyquist.

    A Kaiser-windowed sinc scaled to unity gain at DC.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    taps = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, KAISER_BETA)
    return taps / taps.sum()


def default_taps(up, down):
    """The filter ``resample_poly(x, up, down)`` designs when given none: ``20 * max(up, down) + 1`` taps."""
    max_rate = max(up, down)
    return kaiser_lowpass(2 * 10 * max_rate + 1, 1.0 / max_rate)


def output_length(n_in, up, down):
    """``ceil(n_in * up / down)``: how many samples ``resample_poly`` returns."""
    return -(-n_in * up // down)


def resample_poly(x, up, down, taps=None):
    """``scipy.signal.resample_poly(x, up, down, window=taps)`` for a 1-D float signal, zero-padded at both ends.

    ``taps``: an odd-length linear-phase low-pass filter (default :func:`default_taps`). Returns float64 with
    :func:`output_length` samples.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample_poly takes a 1-D signal, not shape {x.shape}")
    common = gcd(int(up), int(down))
    up, down = int(up) // common, int(down) // common
    if up == down == 1:
        return x.copy()
    h = np.asarray(default_taps(up, down) if taps is None else taps, dtype=np.float64) * up
    half_len = (h.size - 1) // 2
    # As scipy: pad the filter's front so that output 0 falls on the centre of its first input.
    pre_pad = down - half_len % down
    first = (half_len + pre_pad) // down                 # outputs of the full filtering that resample_poly drops
    h = np.concatenate([np.zeros(pre_pad), h])
    per_phase = -(-h.size // up)                         # taps of each polyphase branch
    flat = np.zeros(per_phase * up)
    flat[:h.size] = h
    phases = flat.reshape(per_phase, up).T               # row p holds h[p], h[p + up], h[p + 2 up], ...

    n_out = output_length(x.size, up, down)
    out = np.empty(n_out)
    if n_out == 0:
        return out
    # x with zeros on both sides, so that every branch reads zeros beyond the signal's ends; its sliding
    # windows of per_phase samples are a view (no copy): row i holds padded[i:i + per_phase].
    n_newest = (n_out - 1 + first) * down // up + 1      # one past the newest input any output reads
    padded = np.zeros(per_phase + max(x.size, n_newest) + 1)
    padded[per_phase:per_phase + x.size] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, per_phase)
    reversed_phases = phases[:, ::-1]                    # a window runs oldest to newest, the taps newest first
    # Outputs m and m + up share a branch, and their newest inputs lie `down` apart: one matrix-vector
    # product per branch (up of them) instead of one dot product per output.
    for r in range(min(up, n_out)):
        position = (r + first) * down
        newest = position // up
        rows = windows[newest + 1:newest + 1 + (n_out - 1 - r) // up * down + 1:down]
        out[r::up] = rows @ reversed_phases[position % up]
    return out
