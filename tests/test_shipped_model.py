"""The shipped device model on held-out speech and noise: it removes noise and leaves clean speech alone.

These are regression checks of ``models/lite`` under the documented default
settings, on clips synthesised from the validation split (speakers and noise
files never trained on); the full comparison is ``python -m evaluation``.
"""

import pytest

from edge.dsp import EnhancerSettings, enhance_signal, highpass_signal
from edge.model.model_meta import DEFAULT_MODEL_PATH

from .conftest import shared_data_dir



def _pesq_wb(reference, degraded):
    pytest.importorskip("pesq", reason="pesq is not installed (the dev extra has it)")
    from evaluation.metrics import pesq_wb
    return pesq_wb(reference, degraded)


@pytest.fixture(scope="module")
def scored():
    shared_data = shared_data_dir()
    if shared_data is None:
        pytest.skip("team data not found: put it at ../shared/data or set PERCEPNET_DATA")
    from edge.model.engine import ModelRunner
    from evaluation.inputs import synthesise
    runner = ModelRunner(DEFAULT_MODEL_PATH)
    scores = {}
    for clip in synthesise(shared_data, clips_per_snr=1, seconds=4.0, seed=77, say=lambda *_: None):
        runner.reset()
        reference = highpass_signal(clip.clean)
        output = enhance_signal(clip.noisy, runner, EnhancerSettings())
        scores[clip.snr_bucket] = (_pesq_wb(reference, highpass_signal(clip.noisy)), _pesq_wb(reference, output))
    return scores


@pytest.mark.data
def test_clean_speech_loses_at_most_a_tenth_of_a_pesq_point(scored):
    before, after = scored[float("inf")]
    assert after >= before - 0.1, f"clean speech PESQ-WB {before:.2f} -> {after:.2f}"


@pytest.mark.data
@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_noisy_speech_gains_pesq(scored, snr_db):
    before, after = scored[snr_db]
    assert after > before + 0.1, f"{snr_db:+g} dB: PESQ-WB {before:.2f} -> {after:.2f}"
