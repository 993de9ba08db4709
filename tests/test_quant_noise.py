"""Training with the int8 rounding as noise or as rounding on the fixed grids (training.quant_noise): the cell is a
GRU, the noise and the rounding are training-only."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

import keras  # noqa: E402

from training.model import build_sequence_model, config_for, plain_form  # noqa: E402
from training.quant_noise import (SIGMOID_STEP, STATE_STEP, TANH_STEP, quant_noise_gru_cell,  # noqa: E402
                                  quant_noise_layer)
from training.train import TrainingError, compile_model  # noqa: E402


@pytest.fixture(scope="module")
def trained_like():
    """The tiny joint model with random non-zero weights (zero biases would hide a misplaced bias)."""
    config = config_for("tiny_echo")
    plain = build_sequence_model(config)
    rng = np.random.default_rng(3)
    plain.set_weights([w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in plain.get_weights()])
    x = rng.standard_normal((2, 40, config.n_features)).astype(np.float32)
    return config, plain, x


def _gains(model, x, training):
    return {key: np.asarray(value) for key, value in model(x, training=training).items()}


def test_without_training_the_noisy_form_is_the_plain_network(trained_like):
    config, plain, x = trained_like
    noisy = build_sequence_model(config, quant_noise=2.0)
    assert [w.shape for w in noisy.weights] == [w.shape for w in plain.weights]
    noisy.set_weights(plain.get_weights())
    want, got = _gains(plain, x, False), _gains(noisy, x, False)
    assert all(np.array_equal(want[key], got[key]) for key in want)


def test_the_hand_written_cell_computes_a_keras_gru(trained_like):
    """With noise too small to matter, the training path (every op written out) equals keras.layers.GRU."""
    config, plain, x = trained_like
    noisy = build_sequence_model(config, quant_noise=1e-9)
    noisy.set_weights(plain.get_weights())
    want, got = _gains(plain, x, False), _gains(noisy, x, True)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=2e-6)


def test_training_noise_moves_the_outputs_in_proportion_to_its_scale(trained_like):
    config, plain, x = trained_like
    want = _gains(plain, x, False)["gain"]
    moved = {}
    for scale in (1.0, 4.0):
        noisy = build_sequence_model(config, quant_noise=scale)
        noisy.set_weights(plain.get_weights())
        moved[scale] = float(np.mean(np.abs(_gains(noisy, x, True)["gain"] - want)))
    assert 0.0 < moved[1.0] < 0.05                      # a perturbation, not a different network
    assert 2.0 < moved[4.0] / moved[1.0] < 6.0          # about linear in the noise's size


def test_a_fixed_grid_gets_at_most_half_a_step_times_the_scale():
    layer = quant_noise_layer(keras)(1.5, TANH_STEP)
    x = np.zeros((4, 50, 8), np.float32)
    out = np.asarray(layer(x, training=True))
    assert 0 < np.abs(out).max() <= 0.75 * TANH_STEP + 1e-9
    assert np.abs(out).max() > 0.6 * TANH_STEP          # it spans the interval, not a sliver of it
    assert np.array_equal(np.asarray(layer(x, training=False)), x)


def test_each_layer_draws_its_own_noise():
    """Real roundings are independent from op to op: two layers of one shape must not draw the same noise."""
    first, second = quant_noise_layer(keras)(1.0, TANH_STEP), quant_noise_layer(keras)(1.0, TANH_STEP)
    x = np.zeros((2, 20, 8), np.float32)
    assert not np.array_equal(np.asarray(first(x, training=True)), np.asarray(second(x, training=True)))


def test_a_range_grid_follows_the_tensor_range():
    layer = quant_noise_layer(keras)(1.0)
    x = np.linspace(-3.0, 5.0, 4 * 64, dtype=np.float32).reshape(4, 64)
    out = np.asarray(layer(x, training=True))
    assert np.abs(out - x).max() <= 0.5 * 8.0 / 255.0 + 1e-6


def test_rounding_puts_a_fixed_grid_tensor_on_int8_codes_and_passes_the_gradient_straight_through():
    import tensorflow as tf
    x = tf.constant(np.linspace(-1.5, 1.5, 301, dtype=np.float32))
    for step, low, high in ((TANH_STEP, -128, 127), (SIGMOID_STEP, 0, 255), (STATE_STEP, -127, 128)):
        layer = quant_noise_layer(keras)(0.0, step, round_fixed=True)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=True)
        codes = np.asarray(out) / step
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)      # on the grid
        assert codes.min() == pytest.approx(low) and codes.max() == pytest.approx(high)   # clipped as int8 is
        inside = (np.asarray(x) > low * step) & (np.asarray(x) < high * step)
        assert np.abs(np.asarray(out)[inside] - np.asarray(x)[inside]).max() <= 0.5 * step + 1e-6
        np.testing.assert_array_equal(np.asarray(tape.gradient(out, x)), np.ones(301, np.float32))
        assert np.array_equal(np.asarray(layer(x, training=False)), np.asarray(x))


def test_the_rounding_cell_carries_its_state_on_the_state_grid_and_is_deterministic(trained_like):
    config, plain, x = trained_like
    cell = quant_noise_gru_cell(keras)(8, 0.0, round_fixed=True)
    rng = np.random.default_rng(4)
    inputs, state = rng.standard_normal((3, 5)).astype(np.float32), rng.uniform(-1, 1, (3, 8)).astype(np.float32)
    cell.build((3, 5))
    new, _ = cell(inputs, [state], training=True)
    codes = np.asarray(new) / STATE_STEP
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert codes.min() >= -127 - 1e-3 and codes.max() <= 128 + 1e-3
    rounded = build_sequence_model(config, quant_round=True)
    rounded.set_weights(plain.get_weights())
    want, first, again = _gains(plain, x, False), _gains(rounded, x, True), _gains(rounded, x, True)
    assert all(np.array_equal(first[key], again[key]) for key in first)          # rounding, not noise
    assert 5e-4 < float(np.mean(np.abs(first["gain"] - want["gain"]))) < 0.05    # 3e-8 without the rounding
    assert all(np.array_equal(want[key], value) for key, value in _gains(rounded, x, False).items())


def test_a_saturated_update_gate_lets_the_state_fade_as_int8_does():
    """An update gate of 1 keeps the state in the float network; int8's tops out at 255/256, so the state moves a
    256th of the way to the candidate each frame: the bias that noise of mean zero cannot teach."""
    units = 4
    cells = {rounding: quant_noise_gru_cell(keras)(units, 0.0, round_fixed=rounding) for rounding in (False, True)}
    held = np.full((1, units), 0.9, np.float32)
    moved = {}
    for rounding, cell in cells.items():
        cell.build((1, 3))
        bias = np.zeros((2, 3 * units), np.float32)
        bias[0, :units] = 20.0                                   # z = sigmoid(20): 1 in float, 255/256 in int8
        bias[0, 2 * units:] = np.arctanh(-0.9)                   # the candidate: -0.9
        cell.set_weights([np.zeros((3, 3 * units), np.float32), np.zeros((units, 3 * units), np.float32), bias])
        new, _ = cell(np.zeros((1, 3), np.float32), [held], training=True)
        moved[rounding] = float(np.abs(np.asarray(new) - held).max())
    assert moved[False] < 1e-6
    assert 0.5 * 1.8 / 256 < moved[True] < 2.0 * 1.8 / 256                  # 1.8 / 256 and the state's rounding
    with pytest.raises(ValueError, match="none of the fixed grids"):
        quant_noise_layer(keras)(0.0, 1.0 / 255.0, round_fixed=True)


def test_the_saved_form_is_plain_and_the_noise_combines_with_nothing_else(trained_like):
    config, plain, _ = trained_like
    noisy = build_sequence_model(config, quant_noise=2.0)
    noisy.set_weights(plain.get_weights())
    saved = plain_form(noisy, config)
    assert all(type(layer).__name__ == "GRU" for layer in saved.layers if "gru" in layer.name)
    with pytest.raises(ValueError, match="choose one"):
        build_sequence_model(config, state_noise=STATE_STEP, quant_noise=2.0)
    with pytest.raises(ValueError, match="choose one"):
        build_sequence_model(config, state_noise=STATE_STEP, quant_round=True)
    with pytest.raises(TrainingError, match="--quant-noise"):
        compile_model("tiny_echo", 1e-3, state_noise=STATE_STEP, quant_noise=2.0)
    with pytest.raises(TrainingError, match="--quant-round do not combine"):
        compile_model("tiny_echo", 1e-3, state_noise=STATE_STEP, quant_round=True)
    assert type(compile_model("tiny_echo", 1e-3, quant_round=True)[0].get_layer("gru1").cell).__name__ \
        == "QuantNoiseGRUCell"


@pytest.mark.parametrize("kind", [{"quant_noise": 2.0}, {"quant_round": True}], ids=["noise", "rounding"])
def test_a_noisy_run_keeps_its_epochs_in_the_plain_form(mini_corpus, tmp_path, kind):
    """``--keep-epochs`` files load into the plain model, as training.average and seen_fresh read them."""
    from training.cache import CacheSpec, build_cache
    from training.train import fit
    cache = tmp_path / "cache"
    for split in ("train", "validation"):
        build_cache(CacheSpec(str(mini_corpus), split, shards=1, examples_per_shard=2, seconds=1.0, seed=5,
                              simulated_rooms=1), cache, workers=1, say=lambda *_: None)
    best, card = fit(cache, tmp_path / "run", size="tiny", epochs=1, batch_size=2, say=lambda *_: None,
                     keep_epochs=True, **kind)
    assert card["quant_noise"] == kind.get("quant_noise", 0.0) and card["quant_round"] is kind.get("quant_round", False)
    plain = build_sequence_model(config_for("tiny"))
    plain.load_weights(str(tmp_path / "run" / "epochs" / "e1.weights.h5"))
    saved = keras.models.load_model(best, compile=False)
    assert all(type(layer).__name__ == "GRU" for layer in saved.layers if "gru" in layer.name)
    with pytest.raises(TrainingError, match="give 0"):
        compile_model("tiny", 1e-3, quant_noise=-1.0)
