"""Inaudible input changes leave the shipped model's quality as it was (issue 12 item 7; issue 25).

The same input given as float, as 16-bit samples, and with white noise at
-100 dBFS added differs by nothing audible. The int8 network's recurrent state
may still take another path: a feature within 1e-5 of an int8 rounding step
flips it, and the flip never dies out in the state (docs/training.md,
*Inaudible input changes*). That is a property of an int8 GRU, accepted in
issue 25 ("keep the state in int8"). What is required is quality stability:
between the three variants, SI-SNR against the clean signal moves by less than
0.5 dB and PESQ-WB by less than 0.05. This replaces the strict xfail on the
output difference, which the shipped model failed on the modulated tone.
"""

import pytest

from edge.model.model_meta import DEFAULT_MODEL_PATH
from evaluation.sensitivity import held_out_speech, measure, signals

from .conftest import shared_data_dir

SHIPPED = DEFAULT_MODEL_PATH
MAX_SI_SNR_MOVE_DB = 0.5
MAX_PESQ_MOVE = 0.05


def _signals():
    data = shared_data_dir()
    if data is None:
        return signals()
    pytest.importorskip("soundfile", reason="soundfile (the training extra) reads the FLAC corpus")
    return signals(held_out_speech(data))


UNSTABLE = "the shipped model misses the quality-stability bound here (docs/training.md, 'Inaudible input changes'): "
CASES = [
    pytest.param("modulated tone in white noise", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason=UNSTABLE + "SI-SNR 1.45 / 1.69 / 2.12 dB and PESQ-WB 1.31 / 1.37 / 1.29 (float / 16-bit / -100 dBFS)")),
    "speech in noise at -5 dB",
    "speech with digital-silence gaps",
    pytest.param("speech on a -80 dBFS floor", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason=UNSTABLE + "SI-SNR 32.24 / 32.82 / 32.66 dB (PESQ-WB 4.547 / 4.564 / 4.553, within bounds)")),
]


@pytest.mark.parametrize("name", CASES)
def test_inaudible_input_changes_leave_the_quality_as_it_was(name):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    pytest.importorskip("pesq", reason="pesq is not installed (the eval extra has it)")
    from edge.model.engine import ModelRunner
    from evaluation.sensitivity import measure_quality
    cases = _signals()
    if name not in cases:
        pytest.skip("team data not found (held-out RAVDESS speech): put it at ../shared/data or set PERCEPNET_DATA")
    scores = measure_quality(ModelRunner(SHIPPED), *cases[name])
    described = "; ".join(f"{variant}: SI-SNR {s['si_snr_db']:.2f} dB, PESQ-WB {s['pesq_wb']:.3f}"
                          for variant, s in scores.items())
    si_snr = [s["si_snr_db"] for s in scores.values()]
    pesq = [s["pesq_wb"] for s in scores.values()]
    assert max(si_snr) - min(si_snr) < MAX_SI_SNR_MOVE_DB, f"{name}: {described}"
    assert max(pesq) - min(pesq) < MAX_PESQ_MOVE, f"{name}: {described}"


def test_the_trace_sees_nothing_between_equal_inputs_and_the_rounding_steps_between_float_and_16_bit():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    from evaluation.sensitivity import trace, variants
    runner = ModelRunner(SHIPPED)
    _, tone = signals()["modulated tone in white noise"]
    same = trace(runner, tone, tone.copy())
    assert (same["input_frames"], same["state_frames"], same["gain_difference_max"]) == (0, 0, 0.0)
    given = variants(tone)
    parted = trace(runner, given["float"], given["16-bit"])
    assert 0 < parted["input_frames"] < parted["frames"] and parted["first_input_frame"] is not None
    assert parted["state_frames"] >= parted["input_frames"]          # the convolution history holds the input
