"""The 34 ERB-spaced triangular bands and the maps between bins and bands.

Bands overlap by 50%: every bin lies between two band centres and splits its
weight between them linearly, so each bin's weights sum to exactly 1. That
partition of unity is what makes "all gains 1" an identity.
"""

import numpy as np

from .constants import BAND_MIN_WIDTH_BINS, BANDS_TOP_HZ, BIN_HZ, N_BANDS, N_BINS

_ERB_SCALE = 9.265
_ERB_BREAK_HZ = 24.7 * _ERB_SCALE


def erb_from_hz(freq_hz):
    """ERB-rate of a frequency (the scale used by public PercepNet code)."""
    return _ERB_SCALE * np.log1p(np.asarray(freq_hz, dtype=np.float64) / _ERB_BREAK_HZ)


def hz_from_erb(erb):
    """Inverse of :func:`erb_from_hz`."""
    return _ERB_BREAK_HZ * np.expm1(np.asarray(erb, dtype=np.float64) / _ERB_SCALE)


def band_centres_bins() -> np.ndarray:
    """Integer bin index of each band centre, 0 .. 400 (0 .. 20 kHz).

    Centres are uniform on the ERB scale, except that no two are closer than
    ``BAND_MIN_WIDTH_BINS``; where the minimum width takes over at low
    frequencies, the remaining ERB range is shared evenly by the bands left.
    """
    top_bin = int(round(BANDS_TOP_HZ / BIN_HZ))
    centres = [0]
    for band in range(1, N_BANDS):
        bands_left = N_BANDS - band
        here_erb = erb_from_hz(centres[-1] * BIN_HZ)
        step_erb = (erb_from_hz(BANDS_TOP_HZ) - here_erb) / bands_left
        ideal_bin = int(round(float(hz_from_erb(here_erb + step_erb)) / BIN_HZ))
        centres.append(max(ideal_bin, centres[-1] + BAND_MIN_WIDTH_BINS))
    centres[-1] = top_bin
    return np.asarray(centres, dtype=np.int64)


def band_matrix() -> np.ndarray:
    """Triangular band weights, shape (N_BANDS, N_BINS); columns sum to 1.

    Bins above the last centre (20 .. 24 kHz) belong wholly to the last band.
    """
    centres = band_centres_bins()
    weights = np.zeros((N_BANDS, N_BINS), dtype=np.float64)
    for band in range(N_BANDS - 1):
        lo, hi = centres[band], centres[band + 1]
        rise = (np.arange(lo, hi) - lo) / (hi - lo)
        weights[band + 1, lo:hi] = rise
        weights[band, lo:hi] = 1.0 - rise
    weights[-1, centres[-1]:] = 1.0
    return weights


def power_spectrum(spectra, out=None):
    """Power per bin, ``re**2 + im**2``, of complex spectra (..., N_BINS) (no square root, unlike ``abs()**2``)."""
    out = np.square(spectra.real, out=out)
    out += np.square(spectra.imag)
    return out


def band_energy(power, weights, out=None):
    """Band energies from a power spectrum (..., N_BINS) -> (..., N_BANDS)."""
    return np.matmul(power, weights.T, out=out)


def bins_from_bands(band_values, weights, out=None):
    """Interpolate per-band values (..., N_BANDS) to per-bin values (..., N_BINS)."""
    return np.matmul(band_values, weights, out=out)
