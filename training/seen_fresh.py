"""Does a run learn its examples or the task? A checkpoint's loss on seen, fresh and unseen examples.

A run trains on a fixed pool of cached mixtures. Drawn 12,800 examples an epoch from a pool of about
17,000, each example comes back three times in four epochs; after a hundred epochs the network may fit
those examples and lose what it knew of the recipe they came from. The validation loss alone cannot tell that
apart from the other reasons it moves (its examples come from held-out speakers and noise classes).
This module sets three losses side by side per checkpoint:

- **seen**: the first shards of a cache the run trains on;
- **fresh**: the same recipe with another seed (``percepnet-train cache ... --seed S``), which no run
  has trained on: the examples the run would see if its pool never repeated;
- **unseen**: a validation split (other speakers, other noise classes) or anything else.

Seen falling while fresh rises is overfitting to the pool, and its cure is fresh mixtures, not a
longer run. Fresh falling with seen while unseen stays flat says the pool is not the limit: the gap
is between the pool's sources and others (new recordings, not new draws of the same ones)::

    python -m training.seen_fresh --size lite_echo \\
        --set seen=CACHE/v4-echo:train:20 --set fresh=FRESH/v4-echo:train:20 --set unseen=CACHE/v4-echo:validation \\
        RUN/epochs/e120.weights.h5 RUN/epochs/e158.weights.h5

Each ``--set`` is ``NAME=DIR:SPLIT[:SHARDS]`` (the first SHARDS shards of that split; default all). A
checkpoint is a ``.keras`` model or a run's ``.weights.h5`` state (:func:`training.average.load_weights_of`).
The losses are the training losses without quiet leads (``gain`` is the paper's gain loss alone, ``loss``
the weighted sum the run minimises), averaged as ``fit`` averages its validation loss: a run's recorded
``val_loss`` is what this reports for its validation cache.
"""

import argparse
import sys
from pathlib import Path

from edge.errors import PercepnetError

from .average import load_weights_of
from .cli import SIZE_CHOICES
from .train import ExampleStore, TrainingError, compile_model, make_dataset


def parse_set(text):
    """``NAME=DIR:SPLIT[:SHARDS]`` -> ``(name, dir, split, shards or None)``, refused with an example."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    example = "e.g. seen=CACHE/v4-echo:train:20"
    if not sep or not name or len(parts) not in (2, 3) or not parts[0]:
        raise TrainingError(f"--set {text!r}: expected NAME=DIR:SPLIT[:SHARDS], {example}")
    if parts[1] not in ("train", "validation"):
        raise TrainingError(f"--set {text!r}: the split must be train or validation, not {parts[1]!r}")
    shards = None
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise TrainingError(f"--set {text!r}: SHARDS must be a whole number above 0, {example}")
        shards = int(parts[2])
    return name, Path(parts[0]), parts[1], shards


def losses(model, config, store, batch_size=64):
    """``{"gain": ..., "loss": ...}``: ``model``'s mean training losses over every example of ``store``."""
    result = model.evaluate(make_dataset(store, batch_size, shuffle=False, with_vad=config.vad_head),
                            verbose=0, return_dict=True)
    return {"gain": float(result["gain_loss"]), "loss": float(result["loss"])}


def labels(checkpoints):
    """Each checkpoint's name, with as many of its folders as it takes to tell it from the others."""
    paths = [Path(checkpoint) for checkpoint in checkpoints]
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        names = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]        # the same checkpoint given twice: its full path, twice


def table(size, sets, checkpoints, say=print):
    """``{checkpoint: {set name: losses}}`` for every checkpoint on every set; prints a row per checkpoint."""
    model, config = compile_model(size, 1e-4)
    stores = {}
    for name, folder, split, shards in sets:
        if name in stores:
            raise TrainingError(f"--set {name!r} is given twice; name each set once")
        stores[name] = ExampleStore(folder, split, say=lambda message: None, n_features=config.n_features,
                                    shards=shards)
    say("| checkpoint | " + " | ".join(f"{name} ({store.count} ex.): gain / loss" for name, store in stores.items())
        + " |")
    say("|---|" + "---|" * len(stores))
    results = {}
    for checkpoint, label in zip(checkpoints, labels(checkpoints)):
        model.set_weights(load_weights_of(size, checkpoint))
        results[str(checkpoint)] = {name: losses(model, config, store) for name, store in stores.items()}
        say(f"| {label} | " + " | ".join(
            f"{row['gain']:.3f} / {row['loss']:.3f}" for row in results[str(checkpoint)].values()) + " |")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.seen_fresh", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help=".keras models or a run's .weights.h5 states")
    parser.add_argument("--size", required=True, choices=SIZE_CHOICES, help="the checkpoints' model size")
    parser.add_argument("--set", action="append", required=True, dest="sets", metavar="NAME=DIR:SPLIT[:SHARDS]",
                        help="examples to score (repeat): a cache folder, its split, and how many shards")
    args = parser.parse_args(argv)
    try:
        table(args.size, [parse_set(text) for text in args.sets], args.checkpoints)
    except PercepnetError as exc:
        print(f"python -m training.seen_fresh: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
