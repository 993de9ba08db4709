"""Band layout and analysis/synthesis properties."""

import numpy as np

from edge.dsp import (HOP_SAMPLES, LATENCY_MS, LATENCY_SAMPLES, N_BANDS, N_BINS, Enhancer,
                      EnhancerSettings)
from edge.dsp.bands import band_centres_bins, band_matrix, bins_from_bands
from edge.dsp.stft import vorbis_window


def test_each_bins_band_weights_sum_to_one():
    weights = band_matrix()
    assert weights.shape == (N_BANDS, N_BINS)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-12)
    assert weights.min() >= 0.0


def test_bands_are_erb_spaced_from_0_to_20_khz_at_least_two_bins_apart():
    centres = band_centres_bins()
    assert centres[0] == 0 and centres[-1] == 400            # 400 bins of 50 Hz = 20 kHz
    widths = np.diff(centres)
    assert widths.min() >= 2
    assert np.all(np.diff(widths) >= 0), "ERB bands widen with frequency"
    assert widths[-1] > 10 * widths[0]


def test_unit_band_gains_interpolate_to_unit_bin_gains():
    np.testing.assert_allclose(bins_from_bands(np.ones(N_BANDS), band_matrix()), 1.0, atol=1e-12)


def test_window_is_power_complementary():
    window = vorbis_window()
    np.testing.assert_allclose(window[:HOP_SAMPLES] ** 2 + window[HOP_SAMPLES:] ** 2, 1.0, atol=1e-12)


def test_perfect_reconstruction_with_unit_gains(rng):
    """Gains 1, no pitch filter, no post-filter, no high-pass: output == input, 30 ms late."""
    enhancer = Enhancer(settings=EnhancerSettings(postfilter_beta=0.0, highpass=False))
    signal = 0.3 * rng.standard_normal(200 * HOP_SAMPLES)
    out = np.concatenate([enhancer.process(frame).copy() for frame in signal.reshape(-1, HOP_SAMPLES)])
    assert LATENCY_SAMPLES == 1440 and LATENCY_MS == 30.0
    error = np.abs(out[LATENCY_SAMPLES:] - signal[:-LATENCY_SAMPLES]).max()
    assert error < 1e-5


def test_the_gain_exponent_raises_the_network_gains_to_its_power(rng):
    """A constant gain of 0.5 with exponent 2 scales the output by exactly 0.25 (no other limit active)."""
    half, none = np.full(N_BANDS, 0.5), np.zeros(N_BANDS)
    signal = 0.3 * rng.standard_normal(100 * HOP_SAMPLES)
    outputs = {}
    for exponent in (1.0, 2.0):
        enhancer = Enhancer(lambda features: (half, none), EnhancerSettings(
            postfilter_beta=0.0, gain_release_per_frame=None, highpass=False, gain_exponent=exponent))
        outputs[exponent] = np.concatenate([enhancer.process(f).copy() for f in signal.reshape(-1, HOP_SAMPLES)])
    steady = slice(LATENCY_SAMPLES + HOP_SAMPLES, None)
    np.testing.assert_allclose(outputs[1.0][steady], 0.5 * signal[:-LATENCY_SAMPLES][HOP_SAMPLES:], atol=1e-6)
    np.testing.assert_allclose(outputs[2.0][steady], 0.25 * signal[:-LATENCY_SAMPLES][HOP_SAMPLES:], atol=1e-6)


def test_perfect_reconstruction_holds_through_the_comb_path_for_periodic_input():
    """Full pitch filtering (r = 1) of a strictly periodic signal changes nothing either."""
    from edge.io.synthetic import harmonic_tone
    period_hz = 48_000 / 240                                    # period of exactly 240 samples
    signal = 0.1 * harmonic_tone(period_hz, 2.0)
    ones, full = np.ones(N_BANDS), np.ones(N_BANDS)
    enhancer = Enhancer(lambda features: (ones, full),
                        EnhancerSettings(postfilter_beta=0.0, highpass=False))
    out = np.concatenate([enhancer.process(frame).copy()
                          for frame in signal[:len(signal) // HOP_SAMPLES * HOP_SAMPLES].reshape(-1, HOP_SAMPLES)])
    steady = slice(48_000 // 2, len(out) - LATENCY_SAMPLES)      # after the pitch track settles
    reference = signal[:len(out)]
    error = out[LATENCY_SAMPLES:][steady] - reference[steady]
    assert np.sqrt(np.mean(error ** 2)) < 1e-3 * np.sqrt(np.mean(reference[steady] ** 2))
