"""Noise that starts after a quiet stretch is suppressed as well as noise present from the first frame.

An always-on daemon meets noise onsets: a fan turns on while the microphone
hears only its own floor. Every training example starts with its noise at
frame 0 from a zero network state, and the evaluation clips do too. Measured
(docs/training.md, *Noise onsets after quiet*): stationary pink noise at
-35 dBFS is attenuated 35-41 dB per second when it starts at the first frame,
but only 4-5 dB for the whole 8 s when 0.5 s of a -70 dBFS floor comes first
(the first lite model: 8-10 dB). On the validation-group clips a 2 s floor
lead-in takes PESQ-WB from 1.80 to 1.43 (first model 1.74 to 1.52). The fix is
in training (examples with quiet lead-ins and mid-example onsets); until then
the onset case is a strict xfail with these figures.
"""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ, enhance_signal
from edge.synthetic import noise, set_level

from .conftest import REPO

SHIPPED = REPO / "models" / "lite" / "percepnet_lite.tflite"
NOISE_DBFS = -35.0
FLOOR_DBFS = -70.0
MIN_ATTENUATION_DB = 15.0


def _attenuation_db(lead_seconds):
    """Attenuation of 4 s of pink noise (seconds 1-4 after its onset) behind ``lead_seconds`` of a floor."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.engine import ModelRunner
    pink = set_level(noise("pink", 4.0, seed=3), NOISE_DBFS)
    lead = 10 ** (FLOOR_DBFS / 20) * np.random.default_rng(1).standard_normal(int(lead_seconds * SAMPLE_RATE_HZ))
    output = enhance_signal(np.concatenate([lead, pink]), ModelRunner(SHIPPED))[lead.size:]
    settled = slice(SAMPLE_RATE_HZ, None)
    return -10 * np.log10(np.mean(output[settled] ** 2) / np.mean(pink[settled] ** 2))


def test_noise_from_the_first_frame_is_suppressed():
    assert _attenuation_db(0.0) > MIN_ATTENUATION_DB


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="attenuated 4-5 dB after a 0.5 s floor (35-41 dB without it): no training example has a "
                          "quiet lead-in; see this module's docstring")
def test_noise_after_a_quiet_floor_is_suppressed_as_well():
    assert _attenuation_db(0.5) > MIN_ATTENUATION_DB
