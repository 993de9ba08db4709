"""training.average: the weighted mean of checkpoints, widened like fit --init-from, and clear refusals."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

from edge.dsp.constants import N_FEATURES                                     # noqa: E402
from edge.errors import PercepnetError                                        # noqa: E402
from training.average import average, main, parse_input                       # noqa: E402
from training.train import TrainingError, compile_model                      # noqa: E402


def saved(size, seed, path):
    """A ``size`` model with random weights of its own, saved as .keras; returns its weights."""
    model, _ = compile_model(size, 1e-4)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(weights)
    model.save(path)
    return weights


def weights_of(path, size):
    model, _ = compile_model(size, 1e-4, init_from=path)
    return model.get_weights()


def test_the_result_is_the_weighted_mean_of_its_inputs(tmp_path):
    a = saved("tiny", 1, tmp_path / "a.keras")
    b = saved("tiny", 2, tmp_path / "b.keras")
    out = average("tiny", [(tmp_path / "a.keras", 1.0), (tmp_path / "b.keras", 3.0)], tmp_path / "mean.keras")
    for got, wa, wb in zip(weights_of(out, "tiny"), a, b):
        np.testing.assert_allclose(got, 0.25 * wa + 0.75 * wb, rtol=1e-5, atol=1e-6)


def test_a_runs_latest_weights_file_is_read_as_the_model_it_came_from(tmp_path):
    a = saved("tiny", 3, tmp_path / "a.keras")
    model, _ = compile_model("tiny", 1e-4, init_from=tmp_path / "a.keras")
    model.save_weights(tmp_path / "latest.weights.h5")
    out = average("tiny", [(tmp_path / "a.keras", 1.0), (tmp_path / "latest.weights.h5", 1.0)], tmp_path / "m.keras")
    for got, want in zip(weights_of(out, "tiny"), a):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    alone = average("tiny", [(tmp_path / "latest.weights.h5", 1.0)], tmp_path / "alone.keras")
    for got, want in zip(weights_of(alone, "tiny"), a):     # one input is written as it is
        np.testing.assert_array_equal(got, want)


def test_a_noise_model_averaged_into_a_joint_model_gets_zero_rows_for_the_far_end_inputs(tmp_path):
    noise_only = saved("tiny", 4, tmp_path / "noise.keras")
    joint = saved("tiny_echo", 5, tmp_path / "joint.keras")
    out = average("tiny_echo", [(tmp_path / "noise.keras", 1.0), (tmp_path / "joint.keras", 1.0)],
                  tmp_path / "wise.keras")
    got = weights_of(out, "tiny_echo")
    np.testing.assert_allclose(got[0][:N_FEATURES], 0.5 * (noise_only[0] + joint[0][:N_FEATURES]), rtol=1e-5)
    np.testing.assert_allclose(got[0][N_FEATURES:], 0.5 * joint[0][N_FEATURES:], rtol=1e-5)
    np.testing.assert_allclose(got[-1], 0.5 * (noise_only[-1] + joint[-1]), rtol=1e-5, atol=1e-6)


def test_weights_are_parsed_after_the_last_colon_and_must_be_positive():
    path, weight = parse_input("run/e40.weights.h5")
    assert str(path) == "run/e40.weights.h5" and weight == 1.0
    path, weight = parse_input("run/e40.keras:0.3")
    assert str(path) == "run/e40.keras" and weight == 0.3
    for bad in ("a.keras:0", "a.keras:-1", "a.keras:nan", "a.keras:half"):
        with pytest.raises(TrainingError, match="weight"):
            parse_input(bad)


def test_mismatched_or_missing_checkpoints_are_refused_with_what_to_pass(tmp_path, capsys):
    saved("tiny", 6, tmp_path / "tiny.keras")
    with pytest.raises(PercepnetError, match="--size"):
        average("lite", [(tmp_path / "tiny.keras", 1.0), (tmp_path / "tiny.keras", 1.0)], tmp_path / "x.keras")
    with pytest.raises(TrainingError, match="at least one"):
        average("tiny", [], tmp_path / "x.keras")
    assert main(["--size", "tiny", str(tmp_path / "tiny.keras"), str(tmp_path / "absent.keras"),
                 "--out", str(tmp_path / "x.keras")]) == 2
    assert "absent.keras: no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()
