"""Objective measures and output alignment, and the features, on signals whose values are known."""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ, analyse_signal
from edge.dsp.features import COHERENCE, CORRELATION, LOG_ENERGY, PERIOD, normalise_period
from edge.io.quality import align, find_lag, si_sdr_db, snr_db
from edge.io.synthetic import harmonic_tone, mix_at_snr, noise, speech_like


def test_a_known_20_ms_delay_is_found_and_removed():
    reference = speech_like(2.0, seed=9)
    delayed = np.concatenate([np.zeros(960), reference])[: reference.size]
    assert find_lag(reference, delayed, max_lag=4800) == 960
    shifted, lag = align(reference, delayed, max_lag=4800)
    assert lag == 960
    assert snr_db(reference[:-960], shifted[:-960]) > 100


def test_si_sdr_ignores_scale_but_snr_does_not():
    reference = speech_like(1.0, seed=2)
    assert si_sdr_db(reference, 0.5 * reference) > 100
    assert snr_db(reference, 0.5 * reference) == pytest.approx(20 * np.log10(2), abs=1e-9)


def test_snr_of_a_mixture_made_at_a_known_snr():
    reference = speech_like(1.0, seed=3)
    for target_db in (-5.0, 0.0, 20.0):
        noisy = mix_at_snr(reference, noise("pink", 1.0, seed=4), target_db)
        assert snr_db(reference, noisy) == pytest.approx(target_db, abs=1e-9)


def test_features_of_known_signals():
    """Silence, a 200 Hz harmonic tone (period 240 samples) and the same tone 6 dB louder."""
    silence = analyse_signal(np.zeros(SAMPLE_RATE_HZ)).features
    assert np.all(silence[:, LOG_ENERGY] == -2.0)                  # (log10(0 + 1e-9) + 3) / 3
    assert np.all(silence[:, COHERENCE] == 0.0) and np.all(silence[:, CORRELATION] == 0.0)
    tone = harmonic_tone(200.0, 1.0)
    steady = slice(20, 80)                                          # past the start-up frames
    quiet, loud = analyse_signal(tone).features[steady], analyse_signal(2.0 * tone).features[steady]
    np.testing.assert_allclose(quiet[:, PERIOD], normalise_period(240.0), atol=1e-12)
    assert np.all(quiet[:, CORRELATION] > 0.99)
    voiced = quiet[:, LOG_ENERGY] > -1.0                             # bands well above the energy floor
    assert voiced.sum() > 10 * 60
    np.testing.assert_allclose((loud - quiet)[:, LOG_ENERGY][voiced], np.log10(4.0) / 3.0, atol=1e-6)
