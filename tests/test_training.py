"""Training pipeline: corpus splits, caching through edge.dsp, the two model forms, the loss."""

import json

import numpy as np
import pytest
from scipy.io import wavfile

from edge.dsp import FEATURE_VERSION
from edge.io.synthetic import noise, speech_like

tf = pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

from training import model as net  # noqa: E402
from training.cache import CacheSpec, build_cache, example_arrays  # noqa: E402
from training.corpus import CorpusError, scan  # noqa: E402
from edge.errors import UsageError  # noqa: E402
from training.train import (ExampleStore, TrainingError, gain_loss, shard_files,  # noqa: E402
                            strength_loss)


def test_splits_hold_out_actors_17_to_20_and_every_fifth_noise(mini_corpus):
    train, validation = scan(mini_corpus)
    assert set(validation.speech) == {"ravdess/Actor_17"}
    assert set(train.speech) == {"ravdess/Actor_01", "ravdess/Actor_02"}
    assert [p.name for p in validation.noise] == ["n2.wav"]
    assert len(train.noise) == 4 and not set(train.noise) & set(validation.noise)


def test_a_corpus_without_audio_is_a_clear_error(tmp_path):
    (tmp_path / "speech").mkdir()
    (tmp_path / "noise").mkdir()
    with pytest.raises(CorpusError, match="found no usable audio"):
        scan(tmp_path)
    with pytest.raises(CorpusError, match="expected folders speech/ and noise/"):
        scan(tmp_path / "nowhere")


def test_cache_uses_the_dsp_features_and_training_reads_them_delayed(mini_corpus, tmp_path):
    out = tmp_path / "cache"
    build_cache(CacheSpec(str(mini_corpus), "train", shards=2, examples_per_shard=2, seconds=1.0, seed=1,
                          simulated_rooms=2), out, workers=1, say=lambda *_: None)
    shard = np.load(out / "train-00000.npz")
    assert shard["features"].shape == (2, 100, 70) and shard["gain"].shape == (2, 100, 34)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["feature_version"] >= 1
    assert meta["built_with"]["train"]["numpy"] == np.__version__         # what a rebuild must match to be equal
    store = ExampleStore(out, "train", say=lambda *_: None)
    assert store.count == 4 and store.frames == 100
    features, targets, weights = store.batch(np.array([0]))
    np.testing.assert_array_equal(features[0], shard["features"][0].astype(np.float32))
    np.testing.assert_array_equal(targets["gain"][0, 2:], shard["gain"][0, :-2].astype(np.float32))
    np.testing.assert_array_equal(targets["strength"][0, 2:, :34], shard["strength"][0, :-2].astype(np.float32))
    np.testing.assert_array_equal(targets["strength"][0, :, 34:], targets["gain"][0])   # weights of the loss
    assert weights["gain"][0, :2].sum() == 0 and weights["gain"][0, 2:].min() == 1
    batches = store.batches(2, shuffle=True, seed=1)
    seen = np.concatenate([next(batches)[0] for _ in range(2)])             # one epoch: every example once
    assert sorted(map(bytes, seen)) == sorted(map(bytes, store.arrays["features"].astype(np.float32)))
    with pytest.raises(TrainingError, match="no validation shards"):
        ExampleStore(out, "validation", say=lambda *_: None)
    build_cache(CacheSpec(str(mini_corpus), "validation", shards=1, examples_per_shard=1, seconds=1.0,
                          seed=1, simulated_rooms=2), out, workers=1, say=lambda *_: None)
    assert set(json.loads((out / "meta.json").read_text())["built_with"]) == {"train", "validation"}


def test_a_shard_is_the_same_whether_its_worker_built_others_before_it(mini_corpus, tmp_path):
    """A worker keeps its decoded audio across shards; a shard must not depend on what came before it."""
    from training.cache import fill_shard, worker_bank
    spec = CacheSpec(str(mini_corpus), "train", shards=3, examples_per_shard=2, seconds=1.0, seed=9, simulated_rooms=2)
    (tmp_path / "fresh").mkdir()
    worker_bank(fresh=True)
    fill_shard((spec, tmp_path / "fresh", 2))
    (tmp_path / "warm").mkdir()
    worker_bank(fresh=True)
    for index in (0, 1, 2):
        fill_shard((spec, tmp_path / "warm", index))
    assert len(worker_bank()) > 0                                   # the audio was kept
    fresh, warm = (np.load(spec.shard_path(tmp_path / name, 2)) for name in ("fresh", "warm"))
    for key in fresh.files:
        np.testing.assert_array_equal(fresh[key], warm[key])
    worker_bank(fresh=True)


def test_cached_features_equal_the_streaming_features():
    clean = speech_like(1.0, seed=3)
    noisy = clean + 0.05 * noise("pink", 1.0, seed=4)
    features, gains, strengths, vad = example_arrays(clean, noisy)
    from edge.dsp import analyse_signal
    np.testing.assert_allclose(features, analyse_signal(noisy).features[:100], atol=1e-6)
    assert gains.shape == strengths.shape == (100, 34) and vad.shape == (100,)
    assert 0.2 < vad.mean() < 1.0


def test_step_model_reproduces_the_sequence_model():
    config = net.config_for("tiny")
    sequence = net.build_sequence_model(config)
    features = np.random.default_rng(0).standard_normal((1, 30, 70)).astype(np.float32)
    expected = sequence(features)
    step = net.step_model_from(sequence, config)
    states = net.zero_states(config)
    names = [name for name, _ in net.state_layout(config)]
    gains = []
    for t in range(30):
        outputs = step([features[:, t]] + [states[name] for name in names])
        gains.append(np.asarray(outputs[0]))
        states = dict(zip(names, (np.asarray(o) for o in outputs[3:])))
    np.testing.assert_allclose(np.concatenate(gains), np.asarray(expected["gain"][0]), atol=1e-5)


def test_model_sizes_match_the_brief():
    lite = net.build_sequence_model(net.config_for("lite")).count_params()
    full = net.build_sequence_model(net.config_for("full")).count_params()
    assert 1.0e6 <= lite <= 1.5e6 and 7.0e6 <= full <= 9.0e6
    with pytest.raises(ValueError, match="unknown model size"):
        net.config_for("huge")


def test_loss_is_zero_at_the_target_and_grows_with_the_error():
    target = np.full((1, 5, 34), 0.5, np.float32)
    assert float(np.max(gain_loss(target, target))) < 1e-6
    with_gain = np.concatenate([target, np.ones_like(target)], axis=-1)
    assert float(np.max(strength_loss(with_gain, target))) < 1e-6
    near, far = gain_loss(target, target * 0.9), gain_loss(target, target * 0.2)
    assert float(np.min(far)) > float(np.max(near)) > 0


def _h5_arrays(path):
    """Every dataset of an HDF5 file, by its path inside the file."""
    import h5py
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays


def test_fit_trains_checkpoints_and_writes_a_card(mini_corpus, tmp_path):
    from training.train import count_examples, fit
    cache = tmp_path / "cache"
    for split in ("train", "validation"):
        build_cache(CacheSpec(str(mini_corpus), split, shards=1, examples_per_shard=4, seconds=1.0, seed=2,
                              simulated_rooms=1), cache, workers=1, say=lambda *_: None)
    assert count_examples(cache, "train") == 4
    best, card = fit(cache, tmp_path / "run", size="tiny", epochs=2, batch_size=2, say=lambda *_: None,
                     keep_epochs=True)
    assert best.exists() and card["epochs_run"] == 2 and np.isfinite(card["best_val_loss"])
    kept = sorted(p.name for p in (tmp_path / "run" / "epochs").iterdir())
    assert kept == ["e1.weights.h5", "e2.weights.h5"]               # numbered from 1, no partial file left
    first, second = (_h5_arrays(tmp_path / "run" / "epochs" / f"e{n}.weights.h5") for n in (1, 2))
    assert first.keys() == second.keys() and len(first) > 4
    assert any(not np.array_equal(first[k], second[k]) for k in first)   # each epoch's own weights
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 3
    card = json.loads((tmp_path / "run" / "training.json").read_text())
    assert card["feature_version"] == FEATURE_VERSION and card["n_features"] == 70


def test_over_suppression_costs_more_than_the_same_error_upwards():
    target = np.full((1, 3, 34), 0.64, np.float32)          # sqrt 0.8
    below, above = np.full_like(target, 0.49), np.full_like(target, 0.81)   # sqrt 0.7 and 0.9
    symmetric = (float(np.max(gain_loss(target, below))), float(np.max(gain_loss(target, above))))
    np.testing.assert_allclose(*symmetric, rtol=1e-4)
    weighted_below = float(np.max(gain_loss(target, below, over_suppression_weight=1.0)))
    weighted_above = float(np.max(gain_loss(target, above, over_suppression_weight=1.0)))
    np.testing.assert_allclose(weighted_below, 2.0 * symmetric[0], rtol=1e-4)
    np.testing.assert_allclose(weighted_above, symmetric[1], rtol=1e-4)


def test_clean_share_and_snr_range_shape_the_mixtures(mini_corpus):
    import dataclasses
    from training.synth import DEFAULT_AUGMENTATION, AudioBank, make_example
    # Everything that changes the SNR after mixing (channel, floor, converter, room), off.
    dry = dataclasses.replace(DEFAULT_AUGMENTATION, reverb_probability=0.0, eq_probability=0.0,
                              tilt_probability=0.0, low_cut_probability=0.0, band_limit_probability=0.0,
                              self_noise_probability=0.0, dc_probability=0.0, clip_probability=0.0,
                              bits_probabilities=(0.0, 0.0, 1.0))
    train, _ = scan(mini_corpus)
    bank = AudioBank(say=lambda *_: None)
    target, noisy = make_example(train, np.random.default_rng(5), 1.0, bank, clean_probability=1.0,
                                 augmentation=dry)
    np.testing.assert_array_equal(target, noisy)               # no noise: the input is the target
    for snr_db in (-5.0, 10.0, 30.0):
        target, noisy = make_example(train, np.random.default_rng(6), 1.0, bank, snr_range_db=(snr_db, snr_db),
                                     clean_probability=0.0, augmentation=dry)
        measured = 10 * np.log10(np.sum(target ** 2) / np.sum((noisy - target) ** 2))
        assert abs(measured - snr_db) < 0.01
    with pytest.raises(ValueError, match="must not exceed"):
        CacheSpec("x", "train", 1, 1, 1.0, 1, snr_db_min=10, snr_db_max=0)
    with pytest.raises(ValueError, match="clean share"):
        CacheSpec("x", "train", 1, 1, 1.0, 1, clean_share=1.5)


def test_fit_pools_caches_and_fine_tunes_from_saved_weights(mini_corpus, tmp_path):
    from training.train import count_examples, fit
    first, second = tmp_path / "a", tmp_path / "b"
    build_cache(CacheSpec(str(mini_corpus), "train", 1, 2, 1.0, 3, simulated_rooms=1), first,
                workers=1, say=lambda *_: None)
    build_cache(CacheSpec(str(mini_corpus), "validation", 1, 2, 1.0, 3, simulated_rooms=1), first,
                workers=1, say=lambda *_: None)
    build_cache(CacheSpec(str(mini_corpus), "train", 1, 2, 1.0, 4, simulated_rooms=1, clean_share=1.0),
                second, workers=1, say=lambda *_: None)
    assert count_examples([first, second], "train") == 4
    with pytest.raises(TrainingError, match="no meta.json"):
        count_examples([first, tmp_path / "missing"], "train")
    assert len(shard_files([first, second], "validation")) == 1   # only the first cache has validation shards
    best, _ = fit([first, second], tmp_path / "run", size="tiny", epochs=1, batch_size=2, say=lambda *_: None)
    import keras
    start = keras.models.load_model(best, compile=False).get_weights()
    tuned, card = fit([first, second], tmp_path / "tuned", size="tiny", epochs=1, batch_size=2,
                      learning_rate=1e-9, init_from=best, say=lambda *_: None)
    after = keras.models.load_model(tuned, compile=False).get_weights()
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(start, after)) < 1e-5   # started from `best`
    assert card["init_from"] == str(best) and card["cache"] == [str(first), str(second)]
    with pytest.raises(TrainingError, match="do not fit"):
        fit([first], tmp_path / "wrong", size="lite", epochs=1, batch_size=2, init_from=best, say=lambda *_: None)
    with pytest.raises(TrainingError, match="no such model"):
        fit([first], tmp_path / "none", size="tiny", epochs=1, batch_size=2, init_from=tmp_path / "x.keras",
            say=lambda *_: None)


def test_the_strength_loss_ignores_bands_the_gain_removes():
    strength = np.full((1, 2, 34), 0.8, np.float32)
    gain = np.zeros((1, 2, 34), np.float32)
    gain[..., :10] = 1.0
    wrong = strength.copy()
    wrong[..., 10:] = 0.0                                       # wrong only where the band is removed
    target = np.concatenate([strength, gain], axis=-1)
    assert float(np.max(strength_loss(target, wrong))) < 1e-6
    wrong[..., :10] = 0.0                                       # and now where it is heard
    assert float(np.min(strength_loss(target, wrong))) > 0.1


def test_fit_resumes_where_an_earlier_run_stopped(mini_corpus, tmp_path):
    from training.train import fit
    cache = tmp_path / "cache"
    for split in ("train", "validation"):
        build_cache(CacheSpec(str(mini_corpus), split, shards=1, examples_per_shard=2, seconds=1.0, seed=5,
                              simulated_rooms=1), cache, workers=1, say=lambda *_: None)
    run = tmp_path / "run"
    fit(cache, run, size="tiny", epochs=1, batch_size=2, learning_rate=1e-3, say=lambda *_: None)
    first = (run / "history.csv").read_text().splitlines()
    _, card = fit(cache, run, size="tiny", epochs=3, batch_size=2, learning_rate=5e-4, say=lambda *_: None)
    assert card["final_learning_rate"] == pytest.approx(1e-3)    # the optimiser's state, not the argument
    assert card["shuffle_seed"] == 1                             # seed 0 + the epoch it resumed from: a new order
    epochs = [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert len(first) == 2 and epochs == ["0", "1", "2"]         # the second run ran epochs 2 and 3 only
    assert card["epochs_run"] == 2
    # The best model survives a resume: with a better loss on record, later epochs do not overwrite it.
    best = run / "percepnet_tiny.keras"
    kept = best.read_bytes()
    with (run / "history.csv").open("a") as history:
        history.write(",".join(["3"] + ["0.0"] * (len(first[0].split(",")) - 1)) + "\n")
    _, card = fit(cache, run, size="tiny", epochs=5, batch_size=2, learning_rate=2.5e-4,
                  restart_learning_rate=True, say=lambda *_: None)
    assert best.read_bytes() == kept
    assert card["final_learning_rate"] == pytest.approx(2.5e-4)  # set back on request


def test_a_resumed_run_shuffles_with_a_new_seed(tmp_path):
    from training.train import data_seed
    assert data_seed(7, tmp_path) == 7                            # fresh
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "training_metadata.json").write_text('{"epoch": 45, "batch": 0}')
    assert data_seed(7, tmp_path) == 52
    (tmp_path / "resume" / "training_metadata.json").write_text("not json")
    assert data_seed(7, tmp_path) == 7


def test_state_noise_perturbs_training_only_and_the_saved_model_is_the_plain_form(mini_corpus, tmp_path):
    import keras
    from training.model import INT8_STATE_STEP, build_sequence_model, config_for, plain_form
    from training.train import fit
    config = config_for("tiny")
    noisy = build_sequence_model(config, state_noise=INT8_STATE_STEP)
    plain = plain_form(noisy, config)
    x = np.random.default_rng(2).standard_normal((2, 30, noisy.input_shape[-1])).astype("float32")
    assert np.array_equal(noisy(x, training=False)["gain"], plain(x)["gain"])
    assert not np.array_equal(noisy(x, training=True)["gain"], plain(x)["gain"])
    cache = tmp_path / "cache"
    for split in ("train", "validation"):
        build_cache(CacheSpec(str(mini_corpus), split, shards=1, examples_per_shard=2, seconds=1.0, seed=5,
                              simulated_rooms=1), cache, workers=1, say=lambda *_: None)
    best, card = fit(cache, tmp_path / "run", size="tiny", epochs=1, batch_size=2, say=lambda *_: None,
                     state_noise=INT8_STATE_STEP)
    saved = keras.models.load_model(best, compile=False)            # no custom objects needed
    assert card["state_noise"] == INT8_STATE_STEP
    assert all(type(layer).__name__ == "GRU" for layer in saved.layers if "gru" in layer.name)


def test_quiet_leads_start_some_examples_with_a_floor_and_silent_targets():
    from edge.dsp import analyse_signal
    from training.quiet import FLOOR_DBFS_RANGE, add_quiet_leads, floor_signal, lead_bank
    rng = np.random.default_rng(4)
    levels = []
    for _ in range(40):
        floor = floor_signal(rng, 0.5)
        levels.append(-np.inf if not floor.any() else 10 * np.log10(np.mean(floor ** 2)))
    finite = [level for level in levels if np.isfinite(level)]
    assert 0 < len(finite) < 40                                        # digital silence sometimes, a floor mostly
    assert FLOOR_DBFS_RANGE[0] - 0.5 < min(finite) and max(finite) < FLOOR_DBFS_RANGE[1] + 0.5
    bank = lead_bank(count=2, frames=30, seed=1)
    again = floor_signal(np.random.default_rng(1), 30 * 480 / 48_000)
    np.testing.assert_allclose(bank[0], analyse_signal(again).features[:30], atol=1e-5)   # edge.dsp's features

    frames, delay = 250, 2
    features = np.ones((64, frames, 70), np.float32)
    gain, strength, vad = (np.full((64, frames, 34), 0.5, np.float32), np.full((64, frames, 34), 0.5, np.float32),
                           np.ones((64, frames), np.float32))
    lengths = add_quiet_leads(features, gain, strength, vad, lead_bank(count=3, frames=200, seed=2), 0.5,
                              np.random.default_rng(3), delay)
    assert 16 < np.count_nonzero(lengths) < 48 and lengths.max() <= 200 and lengths[lengths > 0].min() >= 20
    for row, length in enumerate(lengths):
        assert np.all(features[row, length:] == 1) and (length == 0 or not np.all(features[row, :length] == 1))
        assert np.all(gain[row, delay:delay + length] == 0) and np.all(gain[row, delay + length:] == 0.5)
        assert np.all(strength[row, delay:delay + length] == 0) and np.all(vad[row, delay:delay + length] == 0)
        assert np.all(vad[row, delay + length:] == 1) and np.all(gain[row, :delay] == 0.5)


def test_int8_aware_training_rounds_what_the_int8_model_carries_and_saves_the_plain_form(tiny_model, tmp_path):
    import keras
    import tensorflow as tf
    from training.model import build_sequence_model, on_int8_grid, plain_form, state_layout
    from training.train import fit, int8_grids_from
    config = tiny_model["config"]
    grids = int8_grids_from(tiny_model["out"].with_suffix(".json"), config)
    assert set(grids) == {"features"} | {name for name, _ in state_layout(config)}
    aware = build_sequence_model(config, int8_grids=grids)
    aware.set_weights(tiny_model["model"].get_weights())
    x = np.random.default_rng(3).uniform(-3, 3, (2, 30, aware.input_shape[-1])).astype("float32")
    for name in ("features", "conv1_history", "conv2_history"):
        scale, zero_point = grids[name]
        probe = keras.Model(aware.input, aware.get_layer(f"{name}_int8").output)
        steps = np.asarray(probe(x)) / scale + zero_point
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)      # on the converter's grid
        assert steps.min() >= -128 - 1e-3 and steps.max() <= 127 + 1e-3    # and inside int8's range
    plain = plain_form(aware, config)
    assert not np.array_equal(aware(x)["gain"], plain(x)["gain"])            # validation rounds too
    np.testing.assert_allclose(aware(x)["gain"], plain(x)["gain"], atol=0.1)
    value = tf.Variable([0.3, 20.0])
    with tf.GradientTape() as tape:
        rounded = on_int8_grid(keras, value, (0.1, 0))
    np.testing.assert_allclose(rounded, [0.3, 12.7], atol=1e-6)              # clipped at step 127
    np.testing.assert_allclose(tape.gradient(rounded, value), [1.0, 1.0])    # straight through
    best, card = fit(tiny_model["cache"], tmp_path / "run", size="tiny", epochs=1, batch_size=2,
                     say=lambda *_: None, int8_aware=tiny_model["out"].with_suffix(".json"))
    saved = keras.models.load_model(best, compile=False)                     # no custom objects needed
    assert card["int8_aware"] == str(tiny_model["out"].with_suffix(".json"))
    assert not any(layer.name.endswith("_int8") for layer in saved.layers)


def test_int8_aware_training_refuses_metadata_that_is_not_an_int8_model_of_its_size(tiny_model, tmp_path):
    from training.model import config_for
    from training.train import int8_grids_from
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(TrainingError, match="percepnet-convert"):
        int8_grids_from(bad, config_for("tiny"))
    with pytest.raises(TrainingError, match="gru3_state.*: not the int8 inputs of a lite model"):
        int8_grids_from(tiny_model["out"].with_suffix(".json"), config_for("lite"))


def test_gain_bias_tables_bin_by_oracle_on_speech_and_by_prediction_everywhere():
    from training.gain_bias import tables
    oracle = np.array([[0.95, 0.05], [0.95, 0.6], [0.25, 0.04]])
    predicted = np.array([[0.45, 0.20], [0.55, 0.6], [0.25, 0.01]])
    speech = np.array([[True, True], [True, True], [False, False]])
    by_oracle, by_prediction = tables(predicted, oracle, speech)
    rows = {round(low, 1): row for low, *row in by_oracle}
    assert tuple(rows[0.9][1:3]) == (0.5, pytest.approx(-0.45)) and rows[0.9][3] == 1.0     # both 0.9+ bands halved
    assert tuple(rows[0.0][1:3]) == (0.25, pytest.approx(0.15)) and 0.1 not in rows        # the non-speech frame is out
    lows = {round(low, 1): row for low, *row in by_prediction}
    share, mean, oracle_mean, optimal = lows[0.1][1:]
    assert (share, mean, oracle_mean) == (pytest.approx(2 / 6), pytest.approx(0.225), pytest.approx(0.15))
    assert optimal == pytest.approx(((np.sqrt(0.05) + np.sqrt(0.25)) / 2) ** 2)


def test_gain_bias_from_a_cache_pads_the_far_end_inputs_and_pairs_output_t_with_target_t_minus_2(tmp_path):
    from types import SimpleNamespace
    from edge.dsp import FEATURE_VERSION, N_FEATURES
    from training.gain_bias import collect_cache, sqrt_rms_error
    frames, bands = 6, 34
    gain = np.tile(np.arange(frames, dtype=np.float16)[None, :, None] / 10, (2, 1, bands))
    vad = np.zeros((2, frames), np.float16)
    vad[:, 3] = 1.0
    np.savez(tmp_path / "train-00000.npz", features=np.ones((2, frames, N_FEATURES), np.float16), gain=gain,
             strength=np.zeros_like(gain), vad=vad)
    (tmp_path / "meta.json").write_text(json.dumps({"feature_version": FEATURE_VERSION, "n_features": N_FEATURES}))
    seen = []

    class Model:                    # a model that outputs, at frame t, the target of frame t (its input's row)
        def predict(self, features, verbose=0):
            seen.append(features)
            return {"gain": np.tile(np.arange(frames)[None, :, None] / 10, (len(features), 1, bands)) + 0.2}

    predicted, oracle, speech = collect_cache(Model(), SimpleNamespace(n_features=N_FEATURES + 68), tmp_path,
                                              "train", shards=3)
    assert seen[0].shape == (2, frames, N_FEATURES + 68) and not seen[0][..., N_FEATURES:].any()
    assert predicted.shape == oracle.shape == speech.shape == (2 * (frames - 2), bands)
    # output frame t describes frame t-2: predicted 0.2 + t/10 against the target (t-2)/10, 0.4 above
    assert np.allclose(predicted - oracle, 0.4, atol=1e-3)     # the targets are float16
    assert sqrt_rms_error(np.full(4, 0.25), np.full(4, 0.01)) == pytest.approx(0.4)
    assert speech[:, 0].tolist() == [False, False, False, True] * 2
    with pytest.raises(TrainingError, match="no validation shards"):
        collect_cache(Model(), SimpleNamespace(n_features=N_FEATURES), tmp_path, "validation", shards=1)


def test_calibration_finds_a_known_logit_bias_and_folds_it_into_the_gain_head():
    from training.calibrate import band_loss, fit_band, fold
    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 2.0, 20000)
    target = 1.0 / (1.0 + np.exp(-truth))
    biased = (truth - 0.5) / 1.2                             # a head that predicts too low and too flat
    a, b = fit_band(biased, target)
    fitted = 1.0 / (1.0 + np.exp(-(a * biased + b)))
    assert band_loss(target, fitted) < 0.2 * band_loss(target, 1.0 / (1.0 + np.exp(-biased)))
    assert a == pytest.approx(1.2, abs=0.1) and b == pytest.approx(0.5, abs=0.1)
    keras = pytest.importorskip("keras")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid", name="gain")(inputs))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    logits = np.log(model.predict(x, verbose=0) / (1 - model.predict(x, verbose=0)))
    fold(model, np.array([2.0, 0.5]), np.array([0.3, -1.0]))
    expected = 1.0 / (1.0 + np.exp(-(logits * np.array([2.0, 0.5]) + np.array([0.3, -1.0]))))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_echo_cues_coherence_is_one_for_a_filtered_copy_and_low_for_independent_noise():
    from edge.dsp.bands import band_matrix
    from training.echo_cues import coherence, explained
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 481)) + 1j * rng.normal(size=(200, 481))
    response = np.exp(1j * rng.uniform(0, 2 * np.pi, 481)) * rng.uniform(0.1, 2.0, 481)   # a fixed linear path
    weights = band_matrix()
    assert np.all(coherence(a, a * response, weights)[50:] > 0.999)
    b = rng.normal(size=(200, 481)) + 1j * rng.normal(size=(200, 481))
    assert np.mean(coherence(a, b, weights)[50:]) < 0.3
    gain = rng.uniform(size=5000)
    assert explained(gain, gain) > 0.99 and explained(rng.uniform(size=5000), gain) < 0.02


def test_echo_cues_envelope_correlation_follows_a_shared_envelope_and_not_an_independent_one():
    from training.echo_cues import envelope_correlation
    rng = np.random.default_rng(1)
    envelope = 10 ** rng.normal(0, 1, (400, 34))
    assert np.all(envelope_correlation(envelope, envelope * 0.01)[100:] > 0.99)          # a scaled copy
    independent = envelope_correlation(envelope, 10 ** rng.normal(0, 1, (400, 34)))[100:]
    assert abs(np.mean(independent)) < 0.1


def test_the_double_talk_share_sets_the_talk_type_mix_and_is_checked():
    from training.echo_synth import TALK_TYPE_PROBABILITIES, talk_type_probabilities
    assert talk_type_probabilities(None) == TALK_TYPE_PROBABILITIES
    dt, st, nst = talk_type_probabilities(0.7)
    assert (dt, st + nst) == (0.7, pytest.approx(0.3)) and st / nst == pytest.approx(35 / 25)
    with pytest.raises(UsageError, match="double-talk share 1.5 must be in"):
        CacheSpec("c", "train", 1, 1, 1.0, 1, echo_share=1.0, double_talk_share=1.5)
