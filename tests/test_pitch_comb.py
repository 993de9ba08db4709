"""Pitch tracker accuracy and the comb filter's response."""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ, analyse_signal
from edge.dsp.comb import KAPPA, TAP_WEIGHTS, comb_filter, taps_each_side
from edge.dsp.constants import LOOKAHEAD_SAMPLES, PITCH_MAX_SAMPLES, PITCH_MIN_SAMPLES, WINDOW_SAMPLES
from edge.io.synthetic import harmonic_tone, mix_at_snr, noise, speech_like

F0S_HZ = np.geomspace(80.0, 400.0, 12)
GROSS_ERROR = 0.2          # an estimate more than 20% off is a gross error


def _gross_error_rate(signal, f0_hz, settle_frames=10):
    analysis = analyse_signal(signal)
    online = SAMPLE_RATE_HZ / analysis.period_now[settle_frames:]
    smoothed = SAMPLE_RATE_HZ / analysis.period_smoothed[settle_frames:-3]
    return (np.mean(np.abs(online / f0_hz - 1) > GROSS_ERROR),
            np.mean(np.abs(smoothed / f0_hz - 1) > GROSS_ERROR))


@pytest.mark.parametrize("snr_db, noise_kind", [(None, None), (0.0, "white"), (0.0, "pink")])
def test_pitch_gross_error_rate_under_5_percent(snr_db, noise_kind):
    rates = []
    for f0 in F0S_HZ:
        signal = 0.1 * harmonic_tone(f0, 1.0, seed=int(f0))
        if snr_db is not None:
            signal = mix_at_snr(signal, noise(noise_kind, 1.0, seed=int(f0) + 7), snr_db)
        rates.append(_gross_error_rate(signal, f0))
    online, smoothed = np.mean(rates, axis=0)
    assert online < 0.05 and smoothed < 0.05, f"gross error rates: online {online:.3f}, smoothed {smoothed:.3f}"


def test_pitch_follows_a_gliding_f0():
    """A 100 -> 250 Hz glide: the smoothed track stays within 5% of the true period."""
    seconds, rate = 2.0, SAMPLE_RATE_HZ
    t = np.arange(int(seconds * rate)) / rate
    f0 = 100.0 * (2.5 ** (t / seconds))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    signal = 0.1 * sum(np.sin(k * phase) / k for k in range(1, 25))
    analysis = analyse_signal(signal)
    frame_f0 = f0[479::480][:len(analysis.period_smoothed)]
    estimate = SAMPLE_RATE_HZ / analysis.period_smoothed
    assert np.mean(np.abs(estimate[10:-3] / frame_f0[10:-3] - 1) > 0.05) < 0.05


def test_pitch_range_is_60_to_768_samples():
    analysis = analyse_signal(speech_like(3.0, seed=5) + 0.01 * noise("white", 3.0))
    assert analysis.period_now.min() >= PITCH_MIN_SAMPLES and analysis.period_now.max() <= PITCH_MAX_SAMPLES


def _comb_gain(period, freq_hz):
    """Amplitude gain of the comb filter for a sinusoid at ``freq_hz``."""
    reach = LOOKAHEAD_SAMPLES
    t = np.arange(2 * reach + WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    history = np.cos(2 * np.pi * freq_hz * t)
    out = np.empty(WINDOW_SAMPLES)
    comb_filter(history, reach, period, out)
    return np.abs(out).max()


@pytest.mark.parametrize("period", [60, 137, 240, 320, 481, 768])
def test_comb_filter_peaks_at_multiples_of_f0(period):
    """The comb passes every harmonic of fs/T unchanged and attenuates between them."""
    assert taps_each_side(period) * period <= LOOKAHEAD_SAMPLES
    f0 = SAMPLE_RATE_HZ / period
    for harmonic in (1, 2, 3, 5):
        peak = _comb_gain(period, harmonic * f0)
        assert peak == pytest.approx(1.0, abs=1e-9)
        assert _comb_gain(period, (harmonic - 0.5) * f0) < 0.55
        for detune in (-0.15, -0.05, 0.05, 0.15):          # a local maximum at the harmonic
            assert _comb_gain(period, (harmonic + detune) * f0) < peak


def test_comb_weights_are_normalised_hann_and_kappa_is_their_energy():
    for m, weights in TAP_WEIGHTS.items():
        assert weights.size == 2 * m + 1 and weights.sum() == pytest.approx(1.0)
        assert np.all(np.diff(weights[: m + 1]) > 0)          # rises to the centre
        assert KAPPA[m] == pytest.approx(np.sum(weights ** 2))
