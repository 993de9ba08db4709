"""Real inputs for the step model: cached features, and the states the float model reaches on them."""

import zipfile

import numpy as np

from edge.dsp.constants import N_FEATURES, N_JOINT_FEATURES
from edge.dsp.noise_floor import model_inputs
from edge.errors import DataError
from training.model import CONV1_KERNEL, CONV2_KERNEL


class CalibrationError(DataError):
    """The calibration or verification data cannot be used; the message says why."""


#: What a cache stores: the 70 features, or those and the 68 far-end inputs. A floor model's 34 more are
#: computed from them (edge.dsp.model_inputs), never stored.
CACHE_FEATURE_WIDTHS = (N_FEATURES, N_JOINT_FEATURES)


def load_feature_sequences(cache_dirs, split, max_examples, spread_seed=None, n_features=N_FEATURES):
    """Feature sequences (n, frames, ``n_features``) float32 from the shards of one cache or several.

    Through :func:`edge.dsp.model_inputs`: a joint model's 138 inputs from a 70-feature cache get far-end
    inputs of 0 (no reference), a floor model's 34 more are computed from the log energies, and a 70-input
    model reads the first 70 of a joint cache.

    With ``spread_seed`` the shards are visited in a random order and, when
    there are at least ``max_examples`` of them, one random example is taken
    from each, so that calibration sees every cache and every condition mix
    (clean, high- and low-SNR), not the first shard's.
    """
    from training.train import TrainingError, shard_files
    try:
        paths = shard_files(cache_dirs, split)
    except TrainingError as exc:
        raise CalibrationError(str(exc)) from None
    rng = None if spread_seed is None else np.random.default_rng(spread_seed)
    if rng is not None:
        paths = [paths[i] for i in rng.permutation(len(paths))]
    one_per_shard = rng is not None and len(paths) >= max_examples
    sequences = []
    for path in paths:
        try:
            with np.load(path) as shard:
                features = shard["features"].astype(np.float32)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:   # TypeError: a .npy
            raise CalibrationError(f"{path}: not a readable cache shard ({type(exc).__name__}: {exc}); rebuild the "
                                   "cache (percepnet-train cache) or leave it out") from None
        if features.ndim != 3 or features.shape[-1] not in CACHE_FEATURE_WIDTHS:
            raise CalibrationError(f"{path}: features of shape {features.shape}, expected (n, frames, "
                                   f"{' or '.join(map(str, CACHE_FEATURE_WIDTHS))})")
        if one_per_shard and len(features):
            features = features[rng.integers(len(features))][None]
        features = model_inputs(features, n_features)
        sequences.extend(features)
        if len(sequences) >= max_examples:
            break
    if not sequences:
        raise CalibrationError(f"{cache_dirs}: the {split} shards hold no examples")
    return np.stack(sequences[:max_examples])


def step_inputs(sequence_model, config, features):
    """For every frame of every sequence, the step model's inputs as the float model reaches them.

    One sequence-model pass gives every layer's activations; the step form's
    states at frame t are the convolution inputs of frames t-4..t-1 (t-2..t-1)
    and each GRU's output at t-1.
    """
    import keras
    names = ["fc_in", "conv1"] + [f"gru{i + 1}" for i in range(config.gru_layers)] + ["gain_gru", "strength_gru"]
    probe = keras.Model(sequence_model.input, [sequence_model.get_layer(n).output for n in names])
    activations = dict(zip(names, (np.asarray(a) for a in probe(features))))

    def history(sequence, frames_back):
        padded = np.concatenate([np.zeros_like(sequence[:, :frames_back]), sequence], axis=1)
        windows = [padded[:, k:k + sequence.shape[1]] for k in range(frames_back)]
        return np.concatenate(windows, axis=-1)             # oldest first, as the step form wants

    def previous(sequence):
        return np.concatenate([np.zeros_like(sequence[:, :1]), sequence[:, :-1]], axis=1)

    inputs = {"features": features,
              "conv1_history": history(activations["fc_in"], CONV1_KERNEL - 1),
              "conv2_history": history(activations["conv1"], CONV2_KERNEL - 1)}
    for i in range(config.gru_layers):
        inputs[f"gru{i + 1}_state"] = previous(activations[f"gru{i + 1}"])
    inputs["gain_gru_state"] = previous(activations["gain_gru"])
    inputs["strength_gru_state"] = previous(activations["strength_gru"])
    return {name: value.reshape(-1, value.shape[-1]).astype(np.float32) for name, value in inputs.items()}


def representative_dataset(inputs, count, seed=0):
    """A generator of ``count`` single-frame input dicts drawn from ``inputs``."""
    total = next(iter(inputs.values())).shape[0]
    rows = np.random.default_rng(seed).choice(total, size=min(count, total), replace=False)

    def generate():
        for row in rows:
            yield {name: value[row:row + 1] for name, value in inputs.items()}
    return generate
