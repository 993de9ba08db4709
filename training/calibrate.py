"""Per-band calibration of a checkpoint's gain head: the loss-optimal gains the network stops short of.

``training.gain_bias`` shows the gains sitting below what the training loss asks for, on
training material too. This fits, per band, a scale and an offset of the gain head's
logit, ``gain = sigmoid(a * z + b)``, that minimise the training gain loss
(:func:`training.train.gain_loss`, with the run's over-suppression weight) over examples
of the caches' *training* shards, and folds them into the head's Dense layer (kernel and
bias times ``a``, plus ``b``): the result is an ordinary checkpoint of the same
architecture, which the converter quantises like any other, so nothing changes on the
device. The validation shards judge it (``percepnet-train`` evaluates them; this prints
the training-sample loss before and after)::

    python -m training.calibrate --model RUN/best.keras --size lite_echo --cache CACHE/v4-echo \\
        --cache CACHE/v3-noise --out RUN/calibrated.keras
"""

import argparse

import numpy as np

from edge.dsp.noise_floor import model_inputs

from .train import OVER_SUPPRESSION_WEIGHT, shard_files

_EPS = 1e-6


def band_loss(target, gain, over_suppression_weight=OVER_SUPPRESSION_WEIGHT):
    """:func:`training.train.gain_loss` of one band, in numpy, averaged over band-frames."""
    error = np.sqrt(target + _EPS) - np.sqrt(gain + _EPS)
    per = error ** 2 + 10.0 * error ** 4
    return float(np.mean(per * (1.0 + over_suppression_weight * (error > 0))))


def fit_band(logit, target, over_suppression_weight=OVER_SUPPRESSION_WEIGHT):
    """``(a, b)`` minimising :func:`band_loss` of ``sigmoid(a * logit + b)`` (Nelder-Mead from (1, 0))."""
    from scipy.optimize import minimize

    def loss(params):
        a, b = params
        return band_loss(target, 1.0 / (1.0 + np.exp(-(a * logit + b))), over_suppression_weight)
    result = minimize(loss, np.array([1.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-7})
    return float(result.x[0]), float(result.x[1])


def sample(cache_dirs, examples, seed, n_features):
    """(features, gain targets) of ``examples`` examples from random training shards, targets delayed."""
    from .model import output_delay_frames
    rng = np.random.default_rng(seed)
    files = shard_files(cache_dirs, "train")
    features, targets = [], []
    per_shard = 4
    for path in rng.choice(files, size=min(len(files), -(-examples // per_shard)), replace=False):
        with np.load(path) as shard:
            pick = rng.choice(shard["features"].shape[0], size=min(per_shard, shard["features"].shape[0]),
                              replace=False)
            features.append(model_inputs(shard["features"][pick], n_features))
            targets.append(shard["gain"][pick].astype(np.float32))
    delay = output_delay_frames()
    features, targets = np.concatenate(features)[:examples], np.concatenate(targets)[:examples]
    return features, targets[:, :-delay], delay


def fold(model, scales, offsets):
    """Fold ``sigmoid(a * z + b)`` per band into the model's ``gain`` Dense layer, in place."""
    layer = model.get_layer("gain")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scales[None, :], bias * scales + offsets])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", default="lite_echo")
    parser.add_argument("--cache", action="append", required=True, help="a cache folder (repeat); its train shards")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from .train import compile_model
    model, config = compile_model(args.size, 1e-4, init_from=args.model)
    features, targets, delay = sample(args.cache, args.examples, args.seed, config.n_features)
    gains = np.concatenate([model.predict(features[i:i + 32], verbose=0)["gain"] for i in range(0, len(features), 32)])
    gains = np.clip(gains[:, delay:].astype(np.float64), _EPS, 1 - _EPS)
    logits = np.log(gains / (1 - gains))
    scales, offsets = np.ones(targets.shape[-1]), np.zeros(targets.shape[-1])
    before = after = 0.0
    for band in range(targets.shape[-1]):
        z, t = logits[..., band].ravel(), targets[..., band].ravel().astype(np.float64)
        scales[band], offsets[band] = fit_band(z, t)
        before += band_loss(t, gains[..., band].ravel())
        after += band_loss(t, 1.0 / (1.0 + np.exp(-(scales[band] * z + offsets[band]))))
    print(f"{len(features)} training examples: gain loss (summed over bands, per frame) {before:.4f} -> {after:.4f}")
    print("scale a per band: " + " ".join(f"{a:.2f}" for a in scales))
    print("offset b per band: " + " ".join(f"{b:+.2f}" for b in offsets))
    fold(model, scales, offsets)
    model.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
