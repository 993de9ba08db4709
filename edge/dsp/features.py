"""The 70-value feature vector the network sees, and its normalisation.

Layout (``N_FEATURES`` = 70)::

    [0:34]   band log-energies, (log10(E_b + 1e-9) + 3) / 3   (silence -> -2)
    [34:68]  band pitch coherences q_b in [0, 1]
    [68]     pitch period, log-scaled from 60..768 samples to -1..1
    [69]     pitch correlation in [0, 1]

The coherence of band b is the normalised correlation between the frame's
spectrum X and the spectrum X_T of the same window delayed by one pitch period
(both causal). Its square estimates the periodic share of the band's energy,
which is what the PercepNet strength formula assumes.
"""

import numpy as np

from .bands import band_energy
from .constants import N_BANDS, PITCH_MAX_SAMPLES, PITCH_MIN_SAMPLES

ENERGY_FLOOR = 1e-9
LOG_ENERGY_OFFSET = 3.0
LOG_ENERGY_SCALE = 1.0 / 3.0
_EPS = 1e-12
_LOG_PERIOD_MIN = np.log2(PITCH_MIN_SAMPLES)
_LOG_PERIOD_SPAN = np.log2(PITCH_MAX_SAMPLES) - _LOG_PERIOD_MIN

LOG_ENERGY = slice(0, N_BANDS)
COHERENCE = slice(N_BANDS, 2 * N_BANDS)
PERIOD = 2 * N_BANDS
CORRELATION = 2 * N_BANDS + 1


def band_coherence(spectrum, energy, delayed_spectrum, delayed_energy, weights, scratch_bins, out):
    """Per-band normalised correlation Re<X, X_T> / sqrt(E_X E_XT), clipped to [0, 1].

    Works on one frame (481,) or stacked frames (n, 481); ``scratch_bins``
    must match the spectra's shape. The streaming enhancer computes the cross
    term together with its band energies and calls :func:`coherence_from_cross`.
    """
    np.multiply(spectrum.real, delayed_spectrum.real, out=scratch_bins)
    scratch_bins += spectrum.imag * delayed_spectrum.imag
    band_energy(scratch_bins, weights, out=out)                    # cross term
    return coherence_from_cross(out, energy, delayed_energy, out)


def band_energies_and_cross(spectra, weights, squares, bin_power, out):
    """Band energies of stacked spectra and the band cross-power of the first two, in one band product.

    ``spectra`` is C-contiguous (n, 481) complex; ``out`` (n + 1, 34) gets the
    n band energies, then ``Re<X_0, X_1>`` per band (the coherence's
    numerator) as its last row. Per bin these are ``re**2 + im**2`` and
    ``re_0 re_1 + im_0 im_1``, formed from the interleaved real view in
    ``squares`` (n + 1, 962) and summed pairwise into ``bin_power`` (n + 1, 481).
    """
    n = spectra.shape[0]
    parts = spectra.view(np.float64)                       # re, im interleaved
    np.square(parts, out=squares[:n])
    np.multiply(parts[0], parts[1], out=squares[n])
    np.add(squares[:, 0::2], squares[:, 1::2], out=bin_power)
    return band_energy(bin_power, weights, out=out)


def coherence_from_cross(cross, energy, delayed_energy, out):
    """Band coherences from the band cross-power ``Re<X, X_T>`` and the two band energies, into ``out``.

    Clipping to [0, 1] guards the square roots of the strength formula
    (negative correlation carries no usable periodicity). ``out`` may be ``cross``.
    """
    norm = np.multiply(energy, delayed_energy)
    norm += _EPS
    np.sqrt(norm, out=norm)
    np.divide(cross, norm, out=out)
    np.maximum(out, 0.0, out=out)
    return np.minimum(out, 1.0, out=out)           # np.clip's Python wrapper costs as much as both calls


def normalise_period(period):
    """Pitch period in samples -> -1..1 on a log scale."""
    return 2.0 * (np.log2(period) - _LOG_PERIOD_MIN) / _LOG_PERIOD_SPAN - 1.0


#: :func:`normalise_period` of every integer period, indexed by period - PITCH_MIN_SAMPLES (a lookup per frame
#: costs less than a logarithm of a numpy scalar).
_PERIOD_FEATURE = normalise_period(np.arange(PITCH_MIN_SAMPLES, PITCH_MAX_SAMPLES + 1))


def assemble(energy, coherence, period, correlation, out):
    """Write the normalised feature vector(s) into ``out`` (..., 70); ``period`` is an integer or integer array."""
    log_energy = out[..., LOG_ENERGY]
    np.add(energy, ENERGY_FLOOR, out=log_energy)
    np.log10(log_energy, out=log_energy)
    log_energy += LOG_ENERGY_OFFSET
    log_energy *= LOG_ENERGY_SCALE
    out[..., COHERENCE] = coherence
    out[..., PERIOD] = _PERIOD_FEATURE[period - PITCH_MIN_SAMPLES]
    out[..., CORRELATION] = correlation
    return out
