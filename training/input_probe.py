"""How much a group of inputs can tell a trained network: train only their first-layer rows, with and without
their information.

Why: a new input added to a trained model starts at zero weight (``fit --init-from`` widens the first layer with
zero rows, so the model computes what it computed). At the run's learning rate every first-layer row moves by
0.3-0.5 % in four epochs, so an A/B at equal CPU from there cannot show what the new input could give
(docs/training.md, *The noise-floor inputs*). This probe asks the question directly. It starts from the same
model, trains **only** the rows of ``--rows`` in the first layer (everything else is put back after each step), at a
rate that lets them grow, and reports the pooled validation loss before and after. ``--control shuffled`` runs the
same with those inputs permuted across the batch's examples: the same values and statistics, none of the
information about the example. The difference between the two runs is what the inputs tell the network that it
cannot already tell from the others.

::

    python -m training.input_probe --cache C1 --cache C2 ... --init-from e138.keras --size lite_echo_floor \\
        --rows floor --steps 100 --learning-rate 1e-3 --out probe-floor.json
    python -m training.input_probe ... --control shuffled --out probe-floor-shuffled.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge.dsp.features import COHERENCE, LOG_ENERGY
from edge.dsp.noise_floor import FLOOR

from .train import ExampleStore, TrainingError, compile_model

#: The input groups whose rows can be trained, by name.
ROWS = {"floor": FLOOR, "log-energy": LOG_ENERGY, "coherence": COHERENCE}


class ControlledBatches:
    """An :class:`ExampleStore`'s batches, with the ``rows`` inputs permuted across each batch's examples when
    ``control`` is ``shuffled`` (the same permutations on every pass)."""

    def __init__(self, store, rows, control, seed):
        self.store, self.rows, self.control, self.seed = store, rows, control, seed
        self.n_features = store.n_features

    def batches(self, batch_size, shuffle, seed=0):
        rng = np.random.default_rng(self.seed)
        for features, targets, weights in self.store.batches(batch_size, shuffle, seed):
            if self.control == "shuffled":
                features[..., self.rows] = features[rng.permutation(features.shape[0])][..., self.rows]
            yield features, targets, weights


def probe(cache_dirs, init_from, size, rows, steps, learning_rate, batch_size=128, control="none", seed=145,
          quiet_lead_share=0.3, evaluate_every=None, zero_rows=False, say=print):
    """Train only the first layer's ``rows`` (a :data:`ROWS` name) for ``steps`` steps; the validation losses.

    ``zero_rows`` first sets those rows to 0: the positive control, with inputs the network is known to use
    (``coherence``), says whether ``steps`` steps can show what an input is worth.
    """
    import keras
    from .train import make_dataset
    if rows not in ROWS:
        raise TrainingError(f"--rows {rows!r}: choose one of {', '.join(ROWS)}")
    if control not in ("none", "shuffled"):
        raise TrainingError(f"--control {control!r}: choose none or shuffled")
    model, config = compile_model(size, learning_rate, init_from=init_from)
    selected = ROWS[rows]
    if selected.stop > config.n_features:
        raise TrainingError(f"--rows {rows}: the {size} model has {config.n_features} inputs; use a floor size "
                            "(lite_echo_floor) for the floor rows")
    first = model.get_layer("fc_in")
    if zero_rows:
        kernel, bias = (np.array(w) for w in first.get_weights())
        kernel[selected] = 0.0
        first.set_weights([kernel, bias])
    kept = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
    others = np.ones(config.n_features, dtype=bool)
    others[selected] = False

    class KeepOthers(keras.callbacks.Callback):
        """After every step, everything but the selected rows goes back: only they learn."""

        def on_train_batch_end(self, batch, logs=None):
            kernel = np.array(first.get_weights()[0])
            kernel[others] = kept["fc_in"][0][others]
            first.set_weights([kernel, kept["fc_in"][1]])
            for layer in model.layers:
                if layer is not first and kept[layer.name]:
                    layer.set_weights(kept[layer.name])

    train_store = ExampleStore(cache_dirs, "train", say, config.n_features)
    train_store.use_quiet_leads(quiet_lead_share, seed)
    train = make_dataset(ControlledBatches(train_store, selected, control, seed), batch_size, shuffle=True,
                         with_vad=config.vad_head, seed=seed)
    validation_store = ExampleStore(cache_dirs, "validation", say, config.n_features)
    validation = make_dataset(ControlledBatches(validation_store, selected, control, seed + 1), batch_size,
                              shuffle=False, with_vad=config.vad_head)
    losses = [(0, float(model.evaluate(validation, verbose=0, return_dict=True)["loss"]))]
    say(f"step 0: validation loss {losses[-1][1]:.4f}")
    every = evaluate_every or steps
    started = time.process_time()
    history = model.fit(train, validation_data=validation, epochs=-(-steps // every), steps_per_epoch=every,
                        callbacks=[KeepOthers()], verbose=2)
    losses += [((i + 1) * every, float(v)) for i, v in enumerate(history.history["val_loss"])]
    norms = np.linalg.norm(np.array(first.get_weights()[0]), axis=1)
    moved = [np.abs(np.array(w) - k).max() for layer in model.layers if layer is not first
             for w, k in zip(layer.get_weights(), kept[layer.name])]
    moved.append(np.abs(np.array(first.get_weights()[0])[others] - kept["fc_in"][0][others]).max())
    return {"size": size, "init_from": str(init_from), "rows": rows, "control": control, "zero_rows": zero_rows,
            "steps": losses[-1][0],
            "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
            "validation_loss": losses, "cpu_s": round(time.process_time() - started, 1),
            "row_norm_selected": float(norms[selected].mean()), "row_norm_log_energy": float(norms[LOG_ENERGY].mean()),
            "largest_change_elsewhere": float(max(moved))}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.input_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", action="append", required=True, help="a feature cache (repeat to pool)")
    parser.add_argument("--init-from", required=True, help="the trained .keras model to start from")
    parser.add_argument("--size", required=True, help="its size with the probed inputs (lite_echo_floor)")
    parser.add_argument("--rows", required=True, choices=sorted(ROWS))
    parser.add_argument("--control", default="none", choices=("none", "shuffled"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=145)
    parser.add_argument("--quiet-lead-share", type=float, default=0.3)
    parser.add_argument("--evaluate-every", type=int, default=None)
    parser.add_argument("--zero-rows", action="store_true",
                        help="set the rows to 0 first (a positive control with inputs the network uses)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="the JSON report to write")
    args = parser.parse_args(argv)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    try:
        report = probe(args.cache, args.init_from, args.size, args.rows, args.steps, args.learning_rate,
                       args.batch_size, args.control, args.seed, args.quiet_lead_share, args.evaluate_every,
                       args.zero_rows)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
