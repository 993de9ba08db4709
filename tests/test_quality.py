"""Objective measures and output alignment."""

import numpy as np
import pytest

from edge.dsp import FEATURE_VERSION, N_FEATURES
from edge.quality import align, find_lag, si_sdr_db, snr_db
from edge.synthetic import speech_like


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


def test_feature_layout_is_versioned():
    assert N_FEATURES == 70 and isinstance(FEATURE_VERSION, int) and FEATURE_VERSION >= 1
