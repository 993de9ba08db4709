"""Widen a trained model to a larger size that computes exactly what it computed (``lite_echo`` -> ``mid_echo``).

Why: the joint student misfits its own training examples nearly as much as unseen ones (docs/training.md, "How
far the student stays from the teacher"), so capacity is the next lever. Training ``mid`` from scratch lost to
``lite`` at every budget up to 2.9 CPU-hours ("Capacity: lite against mid"); widening keeps the 27 CPU-hours the
lite line has had and adds units on top.

How (Net2WiderNet's function-preserving idea, Chen et al. 2016, with zero instead of copied units): every
layer's old units keep their weights; a new unit gets the fresh model's random incoming weights, and every
weight *from* a new unit *into* an old unit (or into the 34 gains, 34 strengths and the voice-activity output)
is zero. So no old unit, and no output, sees the new ones until training moves those zeros: the widened
model's outputs equal the source's, frame for frame. A GRU's three gate blocks (z, r, h) are widened block by
block. The input features may grow too (70 -> 138): the far-end inputs then start at zero weight into the old
units, as ``fit --init-from`` gives a noise-only model, and with the fresh weights into the new ones.

::

    python -m training.widen RUN/resume/latest.weights.h5 --from-size lite_echo --size mid_echo --out wide.keras
    percepnet-train fit ... --size mid_echo --init-from wide.keras

The source is a ``.keras`` model or a run's ``.weights.h5`` of ``--from-size``. The result is an ordinary
``--size`` checkpoint: it converts, and it is measured, like any other.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .average import load_weights_of
from .model import build_sequence_model, config_for
from .train import TrainingError, compile_model

#: (input axis, output axis, gate blocks) of each kind of weight, by its name in Keras.
_AXES = {"kernel": (-2, -1, 1), "bias": (None, -1, 1)}
_GRU_AXES = {"kernel": (0, 1, 3), "recurrent_kernel": (0, 1, 3), "bias": (None, 1, 3)}


def _old_indices(old_size, new_size, blocks):
    """Indices, in the new axis, of the old axis' entries: the first ``old/blocks`` of each of ``blocks`` blocks."""
    old_block, new_block = old_size // blocks, new_size // blocks
    return np.concatenate([np.arange(old_block) + b * new_block for b in range(blocks)])


def embed(old, fresh, in_axis, out_axis, blocks):
    """``fresh`` with ``old`` written over its old entries and zero from every new input into every old output.

    ``in_axis`` None (a bias): only the old outputs are written. The output axis has ``blocks`` gate blocks.
    """
    if old.ndim != fresh.ndim or any(o > f for o, f in zip(old.shape, fresh.shape)):
        raise TrainingError(f"cannot widen a weight of shape {old.shape} into {fresh.shape}: the target is smaller")
    result = fresh.copy()
    index = [np.arange(n) for n in old.shape]                 # old entries sit at the start of every other axis
    index[out_axis] = _old_indices(old.shape[out_axis], fresh.shape[out_axis], blocks)
    if in_axis is not None:
        new_inputs = [np.arange(n) for n in fresh.shape]
        new_inputs[in_axis] = np.arange(old.shape[in_axis], fresh.shape[in_axis])
        new_inputs[out_axis] = index[out_axis]
        result[np.ix_(*new_inputs)] = 0.0
    result[np.ix_(*index)] = old
    return result


def widen_model(source, target):
    """Write into the Keras model ``target`` the weights of ``source`` (a narrower model of the same layers)."""
    named = {layer.name for layer in target.layers}
    extra = sorted(layer.name for layer in source.layers if layer.get_weights() and layer.name not in named)
    if extra:
        raise TrainingError(f"the target size has no layer {', '.join(extra)}: widen only between sizes of one "
                            f"architecture (same GRU layers, same heads)")
    for layer in target.layers:
        fresh = layer.get_weights()
        if not fresh:
            continue
        try:
            old = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise TrainingError(f"the source model has no layer {layer.name!r}: widen only between sizes of one "
                                f"architecture (same GRU layers, same heads)") from None
        kinds = [w.path.rsplit("/", 1)[-1] for w in layer.weights]
        axes = _GRU_AXES if "recurrent_kernel" in kinds else _AXES
        if len(old) != len(fresh) or any(kind not in axes for kind in kinds):
            raise TrainingError(f"layer {layer.name!r}: weights {kinds} cannot be widened from {len(old)} weights")
        widened = []
        for o, f, kind in zip(old, fresh, kinds):
            try:
                widened.append(embed(o, f, *axes[kind]))
            except TrainingError as exc:
                raise TrainingError(f"layer {layer.name!r}, {kind}: {exc}; --size must be at least --from-size in "
                                    f"every width, with the same inputs or more") from None
        layer.set_weights(widened)
    return target


def load_source(path, size):
    """The checkpoint at ``path`` (a ``.keras`` model or a run's ``.weights.h5``) as a ``size`` model."""
    model, _ = compile_model(size, 1e-4)
    model.set_weights(load_weights_of(size, path))
    return model


def widen(path, from_size, size, out, seed=0):
    """Write ``path`` (a ``from_size`` checkpoint) widened to ``size`` at ``out``; returns the written path."""
    import keras
    source_config, target_config = config_for(from_size), config_for(size)
    if (source_config.gru_layers, source_config.vad_head) != (target_config.gru_layers, target_config.vad_head):
        raise TrainingError(f"{from_size} has {source_config.gru_layers} GRU layers (voice-activity head: "
                            f"{source_config.vad_head}), {size} {target_config.gru_layers} "
                            f"({target_config.vad_head}): widening keeps the layers, it only adds units")
    source = load_source(path, from_size)
    keras.utils.set_random_seed(seed)          # the new units' incoming weights (process-wide: this is a command)
    target = widen_model(source, build_sequence_model(target_config))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target.save(out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.widen", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a .keras model or a run's resume/latest.weights.h5")
    parser.add_argument("--from-size", required=True, help="its size (lite_echo, ...)")
    parser.add_argument("--size", required=True, help="the larger size to write (mid_echo, ...)")
    parser.add_argument("--out", required=True, help="the .keras model to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new units' incoming weights (default 0)")
    args = parser.parse_args(argv)
    try:
        out = widen(args.model, args.from_size, args.size, args.out, args.seed)
    except (TrainingError, ValueError) as exc:
        print(f"widen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {args.model} ({args.from_size}) widened to {args.size}, outputs unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
