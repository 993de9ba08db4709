"""Band gains and pitch-filter strengths: oracle targets, limits, application.

Notation follows PercepNet (Valin et al. 2020): per band b, ``g_b`` is the
gain, ``r_b`` the strength of the comb-filtered spectrum P mixed into the noisy
spectrum X, ``q`` the pitch coherences, ``kappa = sum_k w_k^2`` the comb
filter's noise power gain.
"""

import math

import numpy as np

from .bands import band_energy, bins_from_bands

#: Regulariser of the strength formula's over-suppression correction.
N0 = 0.03
#: Default deepest suppression of a band, in dB (the gain floor; see EnhancerSettings).
#: Chosen with POSTFILTER_BETA on training-split clips (`python -m evaluation --split
#: train`): against 30 dB / 0.02, DNSMOS OVRL 2.50 instead of 2.39 at the same
#: PESQ-WB (1.96 vs 1.93) and clean-speech PESQ (4.56 vs 4.58).
MAX_ATTENUATION_DB = 80.0
#: Envelope post-filter strength (PercepNet's beta; the paper uses 0.02).
POSTFILTER_BETA = 0.4
#: Power on the network's gains before the limits: 1 leaves them as trained; above 1 suppresses
#: deeper where the gain is already low (docs/results.md, 'Why DNSMOS trails': 1.3 gives DNSMOS
#: OVRL +0.08 and PESQ-WB -0.01 on the groups, and costs clean speech 0.08).
GAIN_EXPONENT = 1.0
GAIN_EXPONENT_RANGE = (1.0, 3.0)
#: RNNoise-style release limit: a gain falls by at most this factor per frame (RT60 ~135 ms).
GAIN_RELEASE_PER_FRAME = 0.6
_EPS = 1e-12
#: Added to both energies of a ratio, so that silent bands scale by 1, not 0 or inf.
_ENERGY_EPS = 1e-20


def oracle_targets(clean_energy, noisy_energy, clean_coherence, noisy_coherence, kappa):
    """Ideal gains ``g`` and strengths ``r`` per band (the training targets).

    All arguments broadcast over leading frame axes; ``kappa`` is per frame
    (shape (..., 1) or scalar). Coherences are clamped to [0, 1] first and
    every square root is guarded: the formula produces NaN otherwise.
    """
    gain = np.sqrt(clean_energy / (noisy_energy + _EPS))
    gain = np.clip(gain, 0.0, 1.0)
    q_x = np.clip(clean_coherence, 0.0, 1.0)
    q_y = np.clip(noisy_coherence, 0.0, 1.0)
    # Coherence the comb-filtered noisy signal would have with the clean one.
    q_p = q_y / np.sqrt((1.0 - kappa) * q_y ** 2 + kappa)
    a = q_p ** 2 - q_x ** 2
    b = q_p * q_y * (1.0 - q_x ** 2)
    c = q_x ** 2 - q_y ** 2
    root = np.sqrt(np.maximum(b ** 2 + a * c, 0.0))
    alpha = (root - b) / np.maximum(a, _EPS)
    alpha = np.clip(np.nan_to_num(alpha, nan=0.0, posinf=1e9), 0.0, 1e9)
    strength = alpha / (1.0 + alpha)
    # Even full comb filtering cannot reach the clean coherence: filter fully
    # and lower the gain by the share of noise that stays.
    short = q_p < q_x
    strength = np.where(short, 1.0, strength)
    correction = np.sqrt((1.0 + N0 - q_x ** 2) / (1.0 + N0 - q_p ** 2))
    gain = np.where(short, gain * correction, gain)
    return gain, strength


def envelope_postfilter(gain, noisy_energy, beta=POSTFILTER_BETA, out=None):
    """PercepNet's envelope post-filter: deepen valleys, keep the overall level.

    ``g_w = g sin(pi g / 2)``; with the enhanced energies ``E0 = sum g^2 E`` and
    ``E1 = sum g_w^2 E`` (energies, so squared gains), the global factor
    ``G = sqrt((1 + beta) (E0/E1) / (1 + beta (E0/E1)^2))`` restores loudness.
    ``beta = 0`` disables it (returns ``gain``).
    """
    if out is None:
        out = np.empty_like(gain)
    if beta <= 0.0:
        out[...] = gain
        return out
    np.multiply(gain, 0.5 * np.pi, out=out)
    np.sin(out, out=out)
    out *= gain
    e0 = float(np.dot(np.square(gain), noisy_energy))
    e1 = float(np.dot(np.square(out), noisy_energy))
    ratio = e0 / (e1 + _EPS) if e1 > 0.0 else 1.0
    out *= math.sqrt((1.0 + beta) * ratio / (1.0 + beta * ratio * ratio))
    return out


def attenuation_floor(max_attenuation_db):
    """Smallest gain allowed for a maximum suppression in dB (e.g. 30 -> 0.0316)."""
    if not np.isfinite(max_attenuation_db) or max_attenuation_db < 0:
        raise ValueError(f"max_attenuation_db must be a finite number >= 0, got {max_attenuation_db!r}")
    return float(10.0 ** (-max_attenuation_db / 20.0))


class GainApplier:
    """Mix the comb-filtered spectrum in, apply the band gains (preallocated scratch)."""

    def __init__(self, weights):
        n_bands, n_bins = weights.shape
        self.weights = weights
        self._bin_power = np.empty(n_bins)
        self._bin_gain = np.empty(n_bins)
        self._bin_strength = np.empty(n_bins)
        self._band_scale = np.empty(n_bands)
        self._mixed = np.empty(n_bins, dtype=np.complex128)

    def apply(self, spectrum, energy, pitch_spectrum, pitch_energy, strength, gain, out):
        """``Y = G_b((1 - r_b) X + r_b P_norm)``, band energies renormalised.

        P is first scaled per band to X's energy, the mix is then rescaled per
        band back to X's energy (so the strength changes the harmonic
        structure, not the level), and finally the gains are applied.
        """
        w, power, scale = self.weights, self._bin_power, self._band_scale
        # P -> energy of X in every band.
        np.add(pitch_energy, _ENERGY_EPS, out=scale)
        np.divide(energy, scale, out=scale)
        np.sqrt(scale, out=scale)
        bins_from_bands(scale, w, out=self._bin_gain)
        bins_from_bands(strength, w, out=self._bin_strength)
        mixed = self._mixed
        np.multiply(pitch_spectrum, self._bin_gain, out=mixed)
        mixed -= spectrum
        mixed *= self._bin_strength
        mixed += spectrum
        # Mix -> energy of X, times the gain.
        np.abs(mixed, out=power)
        np.square(power, out=power)
        band_energy(power, w, out=scale)
        scale += _ENERGY_EPS
        np.divide(energy + _ENERGY_EPS, scale, out=scale)
        np.sqrt(scale, out=scale)
        scale *= gain
        bins_from_bands(scale, w, out=self._bin_gain)
        return np.multiply(mixed, self._bin_gain, out=out)
