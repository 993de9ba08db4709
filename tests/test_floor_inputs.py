"""The noise-floor inputs of feature version 3 (edge.dsp.noise_floor): one tracker for stream and training.

A floor model (172 inputs) sees each band's level over its tracked noise floor. The values must be the same
whether the enhancer computes them frame by frame or training computes them from stored features, and a
joint model widened to the floor form must compute what it computed until training moves the new weights.
"""
import json

import numpy as np
import pytest

from edge.dsp import (HOP_SAMPLES, N_FEATURES, N_FLOOR_JOINT_FEATURES, N_JOINT_FEATURES, Enhancer, NoiseFloor,
                      floor_features, model_inputs)
from edge.dsp.features import LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE
from edge.dsp.noise_floor import CONTRAST_RANGE, FLOOR, RISE_DB_PER_S, SILENT_LEVEL
from edge.io.synthetic import mix_at_snr, noise, speech_like

DB_PER_UNIT = 10.0 / LOG_ENERGY_SCALE          # 30 dB per unit of the log-energy feature


def level(energy):
    """The features' normalised log energy of a band energy."""
    return (np.log10(energy + 1e-9) + LOG_ENERGY_OFFSET) * LOG_ENERGY_SCALE


class Recorder:
    """A gain source of a floor model's width that keeps every feature vector and changes nothing."""

    far_end_inputs = True
    floor_inputs = True

    def __init__(self):
        self.seen = []

    def __call__(self, features):
        self.seen.append(np.array(features))
        return np.ones(34), np.zeros(34)


def test_the_stream_and_the_batch_forms_give_the_same_values_for_every_stream():
    rng = np.random.default_rng(1)
    energies = 1e-6 * rng.exponential(1.0, (3, 300, 34)) * np.where(rng.random((3, 300, 34)) < 0.2, 1e3, 1.0)
    energies[1, 50:120] = 0.0                                   # a dropout in one stream
    batch = floor_features(level(energies))
    for stream in range(3):
        tracker, out = NoiseFloor(), np.zeros(34)
        one = np.array([tracker.step(level(energies[stream, t]), out).copy() for t in range(300)])
        np.testing.assert_array_equal(one, batch[stream])
    assert batch.min() >= CONTRAST_RANGE[0] and batch.max() <= CONTRAST_RANGE[1]


def test_a_talker_over_steady_noise_stands_out_by_its_level_and_the_floor_returns_in_a_pause():
    rng = np.random.default_rng(2)
    frames = 600
    energies = 1e-6 * rng.gamma(16.0, 1 / 16.0, (frames, 34))   # a steady background, about 16 bins a band
    energies[200:400] *= 1000.0                                   # 30 dB of talker for 2 s
    contrast = floor_features(level(energies))
    background = contrast[100:200].mean()
    talker = contrast[250:400].mean()
    assert abs(background) < 0.1                                 # within 3 dB of the floor
    # The floor rises at most RISE_DB_PER_S under the talker: 30 dB over it at first, 10 dB less after 2 s.
    assert 0.9 < contrast[205:215].mean() < 1.1
    assert talker > 1.0 - 2.0 * RISE_DB_PER_S / DB_PER_UNIT - 0.1
    assert abs(contrast[420:600].mean() - background) < 0.05      # the pause finds the floor again at once


def test_digitally_silent_bands_give_zero_and_leave_the_floor_where_it_was():
    energies = np.full((300, 34), 1e-6)
    energies[100:200, :5] = 0.0                                  # a muted band group
    contrast = floor_features(level(energies))
    assert level(0.0) <= SILENT_LEVEL < level(1e-8)
    assert np.all(contrast[100:200, :5] == 0.0)
    np.testing.assert_allclose(contrast[200:210, :5], contrast[90:100, :5], atol=1e-9)   # no re-learning


def test_model_inputs_widen_stored_features_to_each_model_and_refuse_other_widths():
    stored = np.random.default_rng(3).uniform(-1, 1, (2, 50, N_FEATURES)).astype(np.float32)
    assert model_inputs(stored, N_FEATURES).shape == (2, 50, N_FEATURES)
    joint = model_inputs(stored, N_JOINT_FEATURES)
    assert np.all(joint[..., N_FEATURES:] == 0.0) and np.array_equal(joint[..., :N_FEATURES], stored)
    floor = model_inputs(stored, N_FLOOR_JOINT_FEATURES)
    np.testing.assert_array_equal(floor[..., :N_JOINT_FEATURES], joint)
    np.testing.assert_allclose(floor[..., FLOOR], floor_features(stored[..., :34]), atol=1e-6)
    with pytest.raises(ValueError, match="70, 138 or 172"):
        model_inputs(stored, 100)


def test_the_enhancer_computes_what_training_computes_from_its_stored_features():
    clean = speech_like(3.0, seed=4)
    noisy = mix_at_snr(clean, noise("pink", 3.0, seed=5), 5.0)
    recorder = Recorder()
    enhancer = Enhancer(recorder)
    assert enhancer.features.shape == (N_FLOOR_JOINT_FEATURES,)
    for t in range(noisy.size // HOP_SAMPLES):
        enhancer.process(noisy[t * HOP_SAMPLES:(t + 1) * HOP_SAMPLES])
    seen = np.array(recorder.seen)
    # What training does: the stored 138 (here as float16, as the cache keeps them), widened.
    rebuilt = model_inputs(seen[:, :N_JOINT_FEATURES].astype(np.float16), N_FLOOR_JOINT_FEATURES)
    np.testing.assert_allclose(rebuilt[:, FLOOR], seen[:, FLOOR], atol=2e-3)
    assert seen[100:, FLOOR].max() > 0.3                         # the talker stands out of the pink floor
    enhancer.reset()
    assert not enhancer.noise_floor.heard.any()
    with pytest.raises(ValueError, match="far_end_inputs"):
        Enhancer(recorder, far_end_inputs=False, floor_inputs=True)


def test_the_floor_size_takes_172_inputs_and_only_after_the_echo_form():
    pytest.importorskip("tensorflow", reason="the train extra (tensorflow-cpu) is not installed")
    from training import model as net
    assert net.config_for("lite_echo_floor").n_features == N_FLOOR_JOINT_FEATURES
    assert net.config_for("lite_echo").n_features == N_JOINT_FEATURES
    with pytest.raises(ValueError, match="lite_echo_floor"):
        net.config_for("lite_floor")


def test_a_joint_model_widened_to_the_floor_form_computes_the_same_until_the_new_weights_move():
    pytest.importorskip("tensorflow", reason="the train extra (tensorflow-cpu) is not installed")
    from training import model as net
    from training.train import widen_inputs
    joint = net.build_sequence_model(net.config_for("tiny_echo"))
    floor = net.build_sequence_model(net.config_for("tiny_echo_floor"))
    floor.set_weights(widen_inputs(joint.get_weights(), floor.get_weights()))
    features = np.random.default_rng(6).uniform(-1, 1, (2, 30, N_JOINT_FEATURES)).astype(np.float32)
    widened = model_inputs(features, N_FLOOR_JOINT_FEATURES)
    assert np.abs(widened[..., FLOOR]).max() > 0.1
    np.testing.assert_allclose(np.asarray(floor(widened)["gain"]), np.asarray(joint(features)["gain"]), atol=1e-6)


def test_model_metadata_refuses_a_floor_width_before_feature_version_3():
    from edge.model.model_meta import ModelMetadata, dsp_signature
    from edge.dsp.bands import band_centres_bins

    def metadata(version, width):
        signature = dict(dsp_signature(width), feature_version=version)
        return ModelMetadata(schema=1, name="x", size="tiny_echo_floor", dsp=signature,
                             band_layout=band_centres_bins().tolist(), quantization="int8", inputs={},
                             outputs={}, states=[], weights=0, model_bytes=0, sha256="", training_data="")

    assert metadata(3, N_FLOOR_JOINT_FEATURES).mismatches() == []
    assert metadata(2, N_JOINT_FEATURES).mismatches() == []
    problems = metadata(2, N_FLOOR_JOINT_FEATURES).mismatches()
    assert len(problems) == 1 and "172 at feature version 2" in problems[0] and "172 from version 3" in problems[0]


def test_a_floor_model_converts_to_int8_and_the_runner_says_it_reads_floor_inputs(tiny_floor_model):
    from edge.model.engine import ModelRunner
    converted = tiny_floor_model
    metadata = converted["metadata"]
    assert metadata.dsp["feature_version"] == 3 and metadata.dsp["n_features"] == N_FLOOR_JOINT_FEATURES
    assert metadata.inputs["features"]["shape"] == [1, N_FLOOR_JOINT_FEATURES]
    assert metadata.verification["passed"]
    # The proof's echo frames count the far-end inputs only, not the floor inputs that are never all 0.
    error = metadata.verification["gain_error"]
    assert 0 < error["far_end_frames"] < error["frames"]
    runner = ModelRunner(converted["out"])
    assert runner.far_end_inputs and runner.floor_inputs and runner.n_features == N_FLOOR_JOINT_FEATURES
    enhancer = Enhancer(runner)
    assert enhancer.noise_floor is not None and enhancer.echo_analysis is not None
    out = enhancer.process(np.zeros(HOP_SAMPLES))
    assert np.all(np.isfinite(out))
    assert json.loads(converted["out"].with_suffix(".json").read_text())["dsp"]["n_features"] == 172


def test_the_input_probe_trains_only_the_chosen_rows_and_its_control_hides_their_information(tiny_echo_model,
                                                                                             tmp_path):
    from training import model as net
    from training.input_probe import ControlledBatches, probe
    from training.train import ExampleStore, TrainingError
    start = tmp_path / "start.keras"
    joint = net.build_sequence_model(net.config_for("tiny_echo"))
    joint.save(start)
    cache = tiny_echo_model["cache"]
    report = probe(cache, start, "tiny_echo_floor", "floor", steps=2, learning_rate=1e-2, batch_size=2,
                   quiet_lead_share=0.0, say=lambda *_: None)
    assert [step for step, _ in report["validation_loss"]] == [0, 2]
    assert all(np.isfinite(loss) for _, loss in report["validation_loss"])
    assert report["row_norm_selected"] > 0.0                  # the floor rows left zero
    assert report["largest_change_elsewhere"] == 0.0          # and nothing else moved
    # The positive control starts from zeroed rows: another model at step 0.
    zeroed = probe(cache, start, "tiny_echo_floor", "coherence", steps=1, learning_rate=1e-2, batch_size=2,
                   quiet_lead_share=0.0, zero_rows=True, say=lambda *_: None)
    assert zeroed["zero_rows"] and zeroed["largest_change_elsewhere"] == 0.0
    assert zeroed["validation_loss"][0][1] != report["validation_loss"][0][1]
    with pytest.raises(TrainingError, match="lite_echo_floor"):
        probe(cache, start, "tiny_echo", "floor", steps=1, learning_rate=1e-2, batch_size=2, say=lambda *_: None)
    # The control permutes the rows across examples: the same values, other examples'.
    store = ExampleStore(cache, "train", lambda *_: None, N_FLOOR_JOINT_FEATURES)
    plain = next(ControlledBatches(store, FLOOR, "none", 0).batches(4, shuffle=False))[0]
    shuffled = next(ControlledBatches(store, FLOOR, "shuffled", 0).batches(4, shuffle=False))[0]
    np.testing.assert_array_equal(shuffled[..., :N_JOINT_FEATURES], plain[..., :N_JOINT_FEATURES])
    assert not np.array_equal(shuffled[..., FLOOR], plain[..., FLOOR])
    np.testing.assert_allclose(np.sort(shuffled[..., FLOOR], axis=None), np.sort(plain[..., FLOOR], axis=None))
