"""The shipped model does not hear what nobody can hear (issue 12, item 7).

The same input given as float, as 16-bit samples, and with white noise at
-100 dBFS added differs by nothing audible. So, for each of the three:

- the enhanced outputs differ from each other at least 20 dB below their own
  level (the first lite model's outputs of a modulated tone in white noise
  differed only 13.8 dB below it: a network trained on noise-gated speech had
  never met a microphone's floor, and its state followed inaudible noise);
- the output SNR against the clean signal moves by under 0.3 dB where it is
  below 15 dB, and under 0.5 dB above (there a change 45 dB below the output
  already moves a 25 dB SNR by up to half a decibel; the first model moved
  speech with digital-silence gaps by 0.79 dB and speech on a -80 dBFS floor
  by 0.83 dB).

Where the differences come from: not the training data. The float32
networks, the first one included, are insensitive (their outputs differ 60-90
dB below their level on these inputs). The int8 network is not: a feature that
sits within 1e-5 of an int8 rounding step flips it, and the flip never dies out
in the recurrent state, so the two outputs drift apart by about the model's
own rounding error (float against int8 differs by the same amount). Training
with microphone floors did not change that, nor did noise on the GRU states or
rounding every carried tensor to its int8 grid in training (which cases pass
moves from checkpoint to checkpoint; the divergence stays); a 16-bit recurrent
state would. The case the shipped model fails is marked
strict xfail with its figures, so that the fix shows up as a failure to
remove the mark. docs/training.md has the measurements.
"""

import pytest

from edge.model.model_meta import DEFAULT_MODEL_PATH
from evaluation.sensitivity import held_out_speech, measure, signals

from .conftest import shared_data_dir

SHIPPED = DEFAULT_MODEL_PATH
MIN_CHANGE_BELOW_OUTPUT_DB = 20.0
MAX_SNR_CHANGE_DB = 0.3
MAX_SNR_CHANGE_HIGH_SNR_DB = 0.5
HIGH_SNR_DB = 15.0


def _signals():
    data = shared_data_dir()
    if data is None:
        return signals()
    pytest.importorskip("soundfile", reason="soundfile (the training extra) reads the FLAC corpus")
    return signals(held_out_speech(data))


INT8_ROUNDING = ("int8 rounding flips persist in the recurrent state (docs/training.md, 'Inaudible input "
                 "changes'); the float32 network passes")
CASES = [
    pytest.param("modulated tone in white noise", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="with -100 dBFS added the output changes 13.1 dB below its level and its SNR moves 0.43 dB "
               "(float32 network: 77.1 dB, 0.00 dB); " + INT8_ROUNDING)),
    "speech in noise at -5 dB",
    "speech with digital-silence gaps",
    "speech on a -80 dBFS floor",
]


@pytest.mark.parametrize("name", CASES)
def test_inaudible_input_changes_leave_the_output_as_it_was(name):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    cases = _signals()
    if name not in cases:
        pytest.skip("team data not found (held-out RAVDESS speech): put it at ../shared/data or set PERCEPNET_DATA")
    snr, change = measure(ModelRunner(SHIPPED), *cases[name])
    for variant, change_db in change.items():
        assert change_db < -MIN_CHANGE_BELOW_OUTPUT_DB, f"{name}, {variant}: the output changed {change_db:.1f} dB"
    spread = max(snr.values()) - min(snr.values())
    allowed = MAX_SNR_CHANGE_DB if min(snr.values()) < HIGH_SNR_DB else MAX_SNR_CHANGE_HIGH_SNR_DB
    assert spread < allowed, f"{name}: output SNR " + ", ".join(f"{k} {v:.2f} dB" for k, v in snr.items())


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
