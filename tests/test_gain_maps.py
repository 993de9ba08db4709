"""evaluation.gain_maps: the replay it scores maps with is the model's own output, and maps act as named."""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ
from edge.model_meta import DEFAULT_MODEL_PATH
from edge.synthetic import mix_at_snr, noise, set_level, speech_like


@pytest.fixture(scope="module")
def recorded():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.engine import ModelRunner
    from evaluation.gain_maps import record
    speech = set_level(speech_like(2.0, seed=8), -26.0)
    noisy = mix_at_snr(speech, noise("pink", 2.0, seed=9), 0.0)
    output, replayable = record(ModelRunner(DEFAULT_MODEL_PATH), noisy)
    return noisy, output, replayable


def test_replaying_the_recorded_outputs_reproduces_the_model(recorded):
    from evaluation.gain_maps import replay
    noisy, output, replayable = recorded
    assert np.max(np.abs(replay(noisy, replayable) - output)) < 1e-12


def test_a_power_above_one_suppresses_more_and_a_vad_gate_only_where_the_model_hears_no_speech(recorded):
    from evaluation.gain_maps import MAPS, replay
    noisy, output, (gains, strengths, vad) = recorded
    by_name = {name: (gain_map, settings) for name, gain_map, settings in MAPS}
    squared = replay(noisy, (gains, strengths, vad), *by_name["gain ** 2"])
    assert np.mean(squared ** 2) < np.mean(output ** 2)
    gate = by_name["x0.3 where VAD < 0.3"][0]
    gated, _ = gate(gains, strengths, vad)
    speaking = vad >= 0.3
    assert np.array_equal(gated[speaking], gains[speaking])
    assert np.allclose(gated[~speaking & (vad == 0.0)], 0.3 * gains[~speaking & (vad == 0.0)])
    assert 0.0 < vad.min() or (~speaking).any()
