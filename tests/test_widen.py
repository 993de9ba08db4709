"""training.widen: a model widened to a larger size computes what it computed, its new units are live, and
narrowing or changing the layers is refused."""

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

from training.model import SIZES, build_sequence_model, config_for              # noqa: E402
from training.train import TrainingError, compile_model                         # noqa: E402
from training.widen import embed, main, widen_model                              # noqa: E402

TINY = SIZES["tiny"]
WIDER = replace(TINY, name="wider", fc_units=20, conv_units=30, gru_units=28, gain_gru_units=26,
                strength_gru_units=12)


def with_random_weights(model, seed):
    """``model`` with weights drawn large enough that every unit matters (tanh and sigmoids far from linear)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def outputs(model, features):
    return {name: np.asarray(value) for name, value in model(features).items()}


@pytest.mark.parametrize("source_inputs", [False, True], ids=["noise-only source", "joint source"])
def test_the_widened_model_gives_the_same_outputs_frame_for_frame(source_inputs):
    source = with_random_weights(build_sequence_model(replace(TINY, far_end_inputs=source_inputs)), 1)
    target = widen_model(source, build_sequence_model(replace(WIDER, far_end_inputs=True)))
    rng = np.random.default_rng(2)
    features = rng.normal(0, 1, (2, 60, 138)).astype(np.float32)
    # A noise-only source never saw the far-end inputs: widened, it must ignore them (here random, not 0).
    got, wanted = outputs(target, features), outputs(source, features[..., :source.inputs[0].shape[-1]])
    for name in wanted:
        np.testing.assert_allclose(got[name], wanted[name], rtol=0, atol=1e-6, err_msg=name)
    # The new units are not dead: the gate and candidate weights into them are the fresh model's, not zero.
    kernel = target.get_layer("gru1").get_weights()[0]                 # (in, 3 x 28): z, r, h blocks
    for block in range(3):
        new_units = kernel[:, block * 28 + TINY.gru_units:(block + 1) * 28]
        assert np.abs(new_units).max() > 0.01, block


def test_training_moves_the_zero_weights_from_new_units():
    """The widening's zeros are where the gradient is not: one step gives the new units a say in the gains."""
    model, _ = compile_model("tiny_echo", 1e-3)
    with_random_weights(model, 3)
    wide = widen_model(model, build_sequence_model(replace(WIDER, far_end_inputs=True)))
    import keras
    wide.compile(optimizer=keras.optimizers.Adam(1e-2), loss={"gain": "mse", "strength": "mse", "vad": "mse"})
    rng = np.random.default_rng(4)
    features = rng.normal(0, 1, (4, 40, 138)).astype(np.float32)
    targets = {"gain": rng.uniform(0, 1, (4, 40, 34)), "strength": rng.uniform(0, 1, (4, 40, 34)),
               "vad": rng.uniform(0, 1, (4, 40, 1))}
    from_new = lambda: wide.get_layer("gain").get_weights()[0][TINY.gain_gru_units:]   # noqa: E731
    assert np.all(from_new() == 0.0)
    wide.fit(features, targets, epochs=1, batch_size=4, verbose=0)
    assert np.abs(from_new()).max() > 1e-3         # Adam moves every weight with a gradient by about its rate


def test_embed_places_gate_blocks_and_zeroes_new_inputs_into_old_outputs():
    old = np.arange(1, 2 * 6 + 1, dtype=np.float32).reshape(2, 6)        # 2 inputs, 3 gates of 2 units
    fresh = np.full((3, 9), 7.0, np.float32)                              # 3 inputs, 3 gates of 3 units
    got = embed(old, fresh, 0, 1, 3)
    for gate in range(3):
        np.testing.assert_array_equal(got[:2, gate * 3:gate * 3 + 2], old[:, gate * 2:gate * 2 + 2])
        np.testing.assert_array_equal(got[2, gate * 3:gate * 3 + 2], 0.0)        # new input -> old unit
        np.testing.assert_array_equal(got[:, gate * 3 + 2], 7.0)                  # into the new unit: fresh
    bias = embed(np.array([[1.0, 2.0]]), np.full((1, 3), 5.0), None, 1, 1)
    np.testing.assert_array_equal(bias, [[1.0, 2.0, 5.0]])


def test_narrowing_and_other_layer_counts_are_refused(tmp_path, capsys):
    wide = with_random_weights(build_sequence_model(WIDER), 5)
    with pytest.raises(TrainingError, match="layer 'fc_in', kernel: .*the target is smaller.*--size must be at least"):
        widen_model(wide, build_sequence_model(TINY))
    with pytest.raises(TrainingError, match="layer 'fc_in'"):            # joint -> noise-only: fewer inputs
        widen_model(build_sequence_model(replace(TINY, far_end_inputs=True)), build_sequence_model(TINY))
    model, _ = compile_model("tiny_echo", 1e-4)
    model.save(tmp_path / "tiny.keras")
    assert config_for("lite_echo").gru_layers != config_for("tiny_echo").gru_layers
    assert main([str(tmp_path / "tiny.keras"), "--from-size", "tiny_echo", "--size", "lite_echo",
                 "--out", str(tmp_path / "out.keras")]) == 2
    assert "widening keeps the layers" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.keras"), "--from-size", "tiny_echo", "--size", "tiny_echo",
                 "--out", str(tmp_path / "out.keras")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out.keras").exists()


def test_the_command_writes_a_checkpoint_that_fit_can_start_from(tmp_path):
    source, _ = compile_model("tiny_echo", 1e-4)
    with_random_weights(source, 6)
    source.save_weights(tmp_path / "latest.weights.h5")              # a run's resume/ checkpoint
    assert main([str(tmp_path / "latest.weights.h5"), "--from-size", "tiny_echo", "--size", "tiny_echo",
                 "--out", str(tmp_path / "same.keras")]) == 0
    started, _ = compile_model("tiny_echo", 1e-4, init_from=tmp_path / "same.keras")
    for got, wanted in zip(started.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, wanted)
