"""Average the weights of checkpoints of one architecture into an ordinary checkpoint.

Two uses, both free of training CPU: the last epochs of one run, averaged
(stochastic weight averaging, Izmailov et al. 2018), and a fine-tune averaged
with the model it started from (WiSE-FT, Wortsman et al. 2022), which can
bring back what the fine-tune lost on material it did not see. Averaging is
only meaningful between checkpoints of one line of training: the same start,
so the same basin.

Each input is a ``.keras`` model or a run's ``resume/latest.weights.h5``,
optionally with a weight after a colon (default 1; normalised to sum 1). A
noise-only ``.keras`` model averaged into a joint echo-and-noise model is
widened first with zero rows for the far-end inputs, as ``fit --init-from``
does (a ``.weights.h5`` file must already be of ``--size``)::

    python -m training.average --size lite_echo E40.weights.h5 E41.weights.h5 E42.weights.h5 --out swa.keras
    python -m training.average --size lite_echo models/lite/percepnet_lite.keras:0.5 E40.keras:0.5 --out wise.keras

The result converts and is measured like any checkpoint; nothing changes on the device. One input
is written as it is: that is how a run's ``resume/latest.weights.h5`` (an epoch's state) becomes a
``.keras`` model to convert or to measure::

    python -m training.average --size lite_echo RUN/resume/latest.weights.h5 --out e120.keras
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .train import TrainingError, compile_model


def parse_input(text):
    """``PATH[:WEIGHT]`` -> ``(Path, weight)``; the weight must be a positive number."""
    path, sep, weight = text.rpartition(":")
    if not sep or not path or "/" in weight:
        return Path(text), 1.0
    try:
        value = float(weight)
    except ValueError:
        raise TrainingError(f"{text}: the weight after ':' must be a number (PATH or PATH:WEIGHT)") from None
    if not np.isfinite(value) or value <= 0:
        raise TrainingError(f"{text}: the weight must be above 0, got {weight}")
    return Path(path), value


def load_weights_of(size, path):
    """The weights of the checkpoint at ``path`` as a ``size`` model holds them (widened if need be)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint (give a .keras model or a run's resume/latest.weights.h5)")
    if path.name.endswith(".weights.h5"):
        model, _ = compile_model(size, 1e-4)
        try:
            model.load_weights(path)
        except Exception as exc:                                # keras raises many types for a bad file
            raise TrainingError(f"{path}: not the weights of a {size} model ({type(exc).__name__}: {exc}); "
                                f"pass the run's --size") from None
    else:
        model, _ = compile_model(size, 1e-4, init_from=path)
    return model.get_weights()


def average(size, inputs, out):
    """Write the weighted mean of ``inputs`` (``[(path, weight)]``) as a ``size`` model at ``out``; returns it."""
    if not inputs:
        raise TrainingError("give at least one checkpoint (two or more to average them)")
    total = sum(weight for _, weight in inputs)
    mean = None
    for path, weight in inputs:
        weights = load_weights_of(size, path)
        scaled = [w.astype(np.float64) * (weight / total) for w in weights]
        mean = scaled if mean is None else [m + s for m, s in zip(mean, scaled)]
    model, _ = compile_model(size, 1e-4)
    model.set_weights([m.astype(w.dtype) for m, w in zip(mean, model.get_weights())])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="PATH[:WEIGHT]",
                        help=".keras models or resume/latest.weights.h5 files, each with an optional weight")
    parser.add_argument("--size", required=True, help="the architecture of the result (lite, lite_echo, ...)")
    parser.add_argument("--out", required=True, help="the averaged .keras model to write")
    args = parser.parse_args(argv)
    try:
        inputs = [parse_input(text) for text in args.inputs]
        out = average(args.size, inputs, args.out)
    except (TrainingError, ValueError) as exc:
        print(f"average: {exc}", file=sys.stderr)
        return 2
    total = sum(weight for _, weight in inputs)
    print(f"wrote {out}: " + ", ".join(f"{path} x {weight / total:.3f}" for path, weight in inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
