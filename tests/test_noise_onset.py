"""Noise that starts after a quiet stretch is suppressed as well as noise present from the first frame.

An always-on daemon meets noise onsets: a fan turns on while the microphone
hears only its own floor. The cached examples all start with their noise at
frame 0 from a zero network state, and a model trained on them alone
attenuated stationary pink noise at -35 dBFS by 35-41 dB from the first frame
but by 3.5-5 dB after 0.5 s of a -70 dBFS floor (the first lite model: 4-9
dB). `fit --quiet-lead-share` (training/quiet.py) gives examples a floor-only
start; one epoch of it brought the onset case to 22-27 dB, and the shipped
model is that one (docs/training.md, *Noise onsets after quiet*).
"""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ, enhance_signal
from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.io.synthetic import noise, set_level

SHIPPED = DEFAULT_MODEL_PATH
NOISE_DBFS = -35.0
FLOOR_DBFS = -70.0
MIN_ATTENUATION_DB = 15.0


def _attenuation_db(lead_seconds, floor_dbfs=FLOOR_DBFS, noise_before_s=0.0):
    """Attenuation of 4 s of pink noise (seconds 1-4 after its onset) behind ``lead_seconds`` of a floor
    (``floor_dbfs`` None: digital silence), itself behind ``noise_before_s`` of white noise."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    pink = set_level(noise("pink", 4.0, seed=3), NOISE_DBFS)
    lead = np.zeros(int(lead_seconds * SAMPLE_RATE_HZ))
    if floor_dbfs is not None:
        lead = 10 ** (floor_dbfs / 20) * np.random.default_rng(1).standard_normal(lead.size)
    lead = np.concatenate([set_level(noise("white", noise_before_s, seed=4), NOISE_DBFS)
                           if noise_before_s else np.zeros(0), lead])
    output = enhance_signal(np.concatenate([lead, pink]), ModelRunner(SHIPPED))[lead.size:]
    settled = slice(SAMPLE_RATE_HZ, None)
    return -10 * np.log10(np.mean(output[settled] ** 2) / np.mean(pink[settled] ** 2))


def test_noise_from_the_first_frame_is_suppressed():
    assert _attenuation_db(0.0) > MIN_ATTENUATION_DB


def test_noise_after_a_quiet_floor_is_suppressed_as_well():
    assert _attenuation_db(0.5) > MIN_ATTENUATION_DB


def test_noise_after_digital_silence_is_suppressed_as_well():
    assert _attenuation_db(0.5, floor_dbfs=None) > MIN_ATTENUATION_DB


def test_noise_that_stops_and_restarts_is_suppressed_again():
    assert _attenuation_db(2.0, noise_before_s=4.0) > MIN_ATTENUATION_DB
