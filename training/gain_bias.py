"""Where a checkpoint attenuates more than its targets: predicted against oracle gains, per talk type.

``python -m training.gain_bias --model CKPT.keras --size lite_echo --corpus CORPUS --noise-corpus NOISE``
draws echo examples of each talk type as the cache does (:func:`training.echo_synth.make_echo_example`,
the split's speakers, noise and rooms), runs the Keras model over their features and compares its gains
(output frame t describes frame t-2) with the oracle gains, band-frame by band-frame. Two tables per
talk type:

- by oracle gain, on frames where the near talker speaks (none in far-end single talk): how far below
  the target the prediction sits where the near end dominates a band (oracle >= 0.9) is what AECMOS
  calls degradation;
- by predicted gain, on all frames: the oracle's mean and the loss-optimal gain (the mean of the
  oracle's square root, squared: the loss compares square roots), against the prediction. A prediction
  below the loss-optimal gain attenuates more than the loss asks for.

``python -m training.gain_bias --model CKPT.keras --cache CACHE [--shards 4]`` makes the same two tables
from a feature cache's own examples and targets instead (the first shards of its split; "near speech" is
the cache's voice activity): for example the teacher's cache, to see where the student stays above the
teacher's gains on real noise.
"""

import argparse

import numpy as np

from edge.dsp.noise_floor import model_inputs

from .model import output_delay_frames

BINS = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.01])
TALK_TYPES = {"dt": (1.0, 0.0, 0.0), "nst": (0.0, 0.0, 1.0), "st": (0.0, 1.0, 0.0)}


def collect(model, config, split, talk_type, examples, seed, seconds=4.0):
    """(predicted, oracle, near-speech) band-frame arrays over ``examples`` examples of ``talk_type``."""
    from . import echo_synth
    from .cache import example_arrays
    from .synth import AudioBank, simulated_rooms
    bank, rooms = AudioBank(say=lambda message: None), simulated_rooms(4, seed=seed)
    rng = np.random.default_rng(seed)
    delay = output_delay_frames()
    predicted, oracle, speech = [], [], []
    for _ in range(examples):
        target, output, echo_estimate, _ = echo_synth.make_echo_example(split, rng, seconds, bank, rooms,
                                                                        talk_types=TALK_TYPES[talk_type])
        features, gains, _, vad = example_arrays(target, output, echo_estimate, config.n_features)
        gain = model.predict(features[None].astype(np.float32), verbose=0)["gain"][0]
        predicted.append(gain[delay:])
        oracle.append(gains[:-delay])
        speech.append(np.repeat(vad[:-delay, None] > 0.5, gains.shape[1], axis=1))
    return np.concatenate(predicted), np.concatenate(oracle), np.concatenate(speech)


def collect_cache(model, config, cache_dir, split, shards):
    """(predicted, oracle, near-speech) band-frame arrays over the first ``shards`` shards of a cache."""
    from .train import shard_files
    delay = output_delay_frames()
    predicted, oracle, speech = [], [], []
    for path in shard_files(cache_dir, split)[:shards]:      # refuses a cache without shards of ``split``
        with np.load(path) as shard:
            features, gains, vad = (shard[name].astype(np.float32) for name in ("features", "gain", "vad"))
        # A joint model reads a 70-feature cache with its far-end inputs at 0 (as training.train does).
        padded = model_inputs(features, config.n_features)
        gain = model.predict(padded, verbose=0)["gain"]
        predicted.append(gain[:, delay:].reshape(-1, gains.shape[-1]))
        oracle.append(gains[:, :-delay].reshape(-1, gains.shape[-1]))
        speech.append(np.repeat(vad[:, :-delay].reshape(-1, 1) > 0.5, gains.shape[-1], axis=1))
    return np.concatenate(predicted), np.concatenate(oracle), np.concatenate(speech)


def sqrt_rms_error(predicted, oracle):
    """RMS difference of the square roots of predicted and oracle gains, over all band-frames."""
    return float(np.sqrt(np.mean((np.sqrt(np.clip(predicted, 0, None)) - np.sqrt(np.clip(oracle, 0, None))) ** 2)))


def tables(predicted, oracle, speech):
    """The two tables' rows (see the module docstring)."""
    by_oracle, by_prediction = [], []
    p, o = predicted[speech], oracle[speech]
    which = np.digitize(o, BINS) - 1
    for b in range(len(BINS) - 1):
        m = which == b
        if m.any():
            below = p[m] - o[m]
            by_oracle.append((BINS[b], BINS[b + 1], m.mean(), below.mean(), np.mean(below < -0.2)))
    p, o = predicted.ravel(), oracle.ravel()
    which = np.digitize(p, BINS) - 1
    for b in range(len(BINS) - 1):
        m = which == b
        if m.any():
            by_prediction.append((BINS[b], BINS[b + 1], m.mean(), p[m].mean(), o[m].mean(),
                                  np.mean(np.sqrt(o[m])) ** 2))
    return by_oracle, by_prediction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a .keras checkpoint")
    parser.add_argument("--size", default="lite_echo")
    parser.add_argument("--corpus", help="corpus to draw echo examples from (or --cache)")
    parser.add_argument("--cache", help="a feature cache whose examples and targets to use instead")
    parser.add_argument("--shards", type=int, default=4, help="with --cache: how many of its first shards")
    parser.add_argument("--noise-corpus")
    parser.add_argument("--split", default="validation", choices=("train", "validation"))
    parser.add_argument("--examples", type=int, default=12, help="per talk type (4 s each)")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    if (args.corpus is None) == (args.cache is None):
        parser.error("give either --corpus (echo examples drawn per talk type) or --cache (a cache's examples)")
    if args.shards < 1:
        parser.error(f"--shards must be at least 1, not {args.shards}")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from .cache import _split_of
    from .train import compile_model
    model, config = compile_model(args.size, 1e-4, init_from=args.model)
    if args.cache:
        runs = [(f"{args.cache}, {args.split} split, {args.shards} shards",
                 collect_cache(model, config, args.cache, args.split, args.shards))]
    else:
        split = _split_of(args.corpus, args.split, args.noise_corpus)
        runs = [(f"{talk_type}, {args.split} split, {args.examples} examples",
                 collect(model, config, split, talk_type, args.examples, args.seed)) for talk_type in TALK_TYPES]
    for title, (predicted, oracle, speech) in runs:
        by_oracle, by_prediction = tables(predicted, oracle, speech)
        if speech.any():
            print(f"\n{title}: mean gain on near-speech frames "
                  f"{predicted[speech].mean():.3f} predicted, {oracle[speech].mean():.3f} oracle; on all frames "
                  f"{predicted.mean():.3f} predicted, {oracle.mean():.3f} oracle; RMS error of the gains' "
                  f"square roots (what the loss compares) {sqrt_rms_error(predicted, oracle):.4f}")
        else:                                   # far-end single talk: no near talker, the target is 0
            print(f"\n{title}: no near talker; mean gain "
                  f"{predicted.mean():.3f} predicted, {oracle.mean():.3f} oracle")
        print("| oracle gain | share | predicted - oracle | share more than 0.2 below |\n|---|---:|---:|---:|")
        for low, high, share, below, far_below in by_oracle:
            print(f"| {low:.1f}-{min(high, 1):.1f} | {share:.2f} | {below:+.3f} | {far_below:.2f} |")
        print("| predicted gain | share | predicted | oracle | loss-optimal |\n|---|---:|---:|---:|---:|")
        for low, high, share, mean, oracle_mean, optimal in by_prediction:
            print(f"| {low:.1f}-{min(high, 1):.1f} | {share:.2f} | {mean:.3f} | {oracle_mean:.3f} | {optimal:.3f} |")


if __name__ == "__main__":
    main()
