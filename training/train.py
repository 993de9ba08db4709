"""Training: sharded feature cache -> tf.data -> the sequence model, under a tf.distribute strategy.

The model's output at frame t describes frame t - 2 (its look-ahead), so the
targets are delayed by two frames and the first two frames of each example
carry no loss. Loss (PercepNet):
``sum_b (g^.5 - g'^.5)^2 + 10 sum_b (g^.5 - g'^.5)^4 + sum_b ((1-r)^.5 - (1-r')^.5)^2``,
plus a small binary cross-entropy on voice activity when the model has that head.

One deviation from the paper, on by default: gain errors that attenuate more
than the target (``g' < g``) weigh ``1 + OVER_SUPPRESSION_WEIGHT`` times as
much. Removing speech is worse than leaving a little noise, and with the
symmetric loss the lite model learnt to shave clean speech by about 2 dB in
every band. ``--over-suppression-weight 0`` restores the paper's loss.
"""

import json
import time
from pathlib import Path

import numpy as np

from edge.dsp import FEATURE_VERSION, N_BANDS, N_FEATURES, N_JOINT_FEATURES
from edge.dsp.noise_floor import model_inputs
from edge.errors import PercepnetError

from .cache import check_feature_version
from .model import build_sequence_model, config_for, output_delay_frames, plain_form, state_layout

VAD_LOSS_WEIGHT = 0.1
#: The strength loss is weighed by the target gains (about 0.4 on average), so it counts double to keep
#: its share of the total near what it was unweighted.
STRENGTH_LOSS_WEIGHT = 2.0
OVER_SUPPRESSION_WEIGHT = 1.0
_SQRT_EPS = 1e-6


class TrainingError(PercepnetError):
    """Training cannot start; the message says why."""


def shard_files(cache_dirs, split):
    """Shard files of ``split`` pooled over one cache folder or a list of them."""
    if isinstance(cache_dirs, (str, Path)):
        return _shards_of(cache_dirs, split)
    files = []
    for cache_dir in cache_dirs:
        try:
            files += _shards_of(cache_dir, split)
        except TrainingError:
            if split == "train":            # every cache given for training must hold training data
                raise
    if not files:
        raise TrainingError(f"none of {', '.join(map(str, cache_dirs))} holds {split} shards "
                            f"({split}-*.npz); training never runs on nothing")
    return files


def _shards_of(cache_dir, split):
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "meta.json"
    if not meta_path.exists():
        raise TrainingError(f"{cache_dir}: no meta.json; build the cache first (percepnet-train cache)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{meta_path}: unreadable ({exc}); rebuild the cache (percepnet-train cache)") from None
    if not isinstance(meta, dict):
        raise TrainingError(f"{meta_path}: not a cache's meta.json (a JSON object); rebuild the cache "
                            "(percepnet-train cache)")
    check_feature_version(cache_dir, meta)
    files = sorted(str(path) for path in cache_dir.glob(f"{split}-*.npz"))
    if not files:
        raise TrainingError(f"{cache_dir}: no {split} shards ({split}-*.npz); training never runs on nothing")
    return files


def _shard_shape(path):
    """``(examples, frames)`` of one shard, from its header (no data is decoded)."""
    import zipfile
    with zipfile.ZipFile(path) as archive, archive.open("vad.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        return read_header(member)[0]


def count_examples(cache_dirs, split):
    """Examples in a split, from the shard headers (no data is decoded)."""
    return sum(_shard_shape(path)[0] for path in shard_files(cache_dirs, split))


def _available_memory_bytes():
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


class ExampleStore:
    """Every example of a split, decoded once and held in memory as float16 (139 values a frame).

    The per-example generator this replaced decoded each shard again every
    epoch and built targets one example at a time in Python; here a batch is
    one fancy-indexing gather and a shift (``percepnet-train bench`` measures
    both sides). Memory: about 100 MB per hour of cached audio.
    """

    COLUMNS = (("features", N_FEATURES), ("gain", N_BANDS), ("strength", N_BANDS), ("vad", None))

    def __init__(self, cache_dirs, split, say=print, n_features=N_FEATURES, shards=None):
        files = shard_files(cache_dirs, split)[:shards]     # ``shards``: the first ones only (None: all)
        shapes = [tuple(_shard_shape(path)) for path in files]
        frames = {shape[1] for shape in shapes}
        if len(frames) != 1:
            raise TrainingError(f"the {split} shards hold examples of different lengths ({sorted(frames)} "
                                f"frames); pool only caches built with the same --seconds")
        self.frames = frames.pop()
        self.count = sum(shape[0] for shape in shapes)
        # A joint model (138 inputs) reads 70-feature caches with its far-end inputs at 0, which is what those
        # inputs are without a loudspeaker reference (edge.dsp.echo_features); a 70-input model reads the
        # first 70 of a joint cache (the features of the canceller's output). A floor model's 34 more inputs are
        # computed per batch from the log energies (edge.dsp.model_inputs), after the quiet leads change them.
        self.n_features = n_features
        stored = min(n_features, N_JOINT_FEATURES)
        widths = {"features": stored, "gain": N_BANDS, "strength": N_BANDS, "vad": None}
        need = self.count * self.frames * (stored + 2 * N_BANDS + 1) * 2
        available = _available_memory_bytes()
        if available is not None and need > 0.8 * available:
            raise TrainingError(f"the {split} split needs {need / 2**30:.1f} GiB of memory, only "
                                f"{available / 2**30:.1f} GiB are available: train on fewer caches or shards")
        self.arrays = {name: np.zeros((self.count, self.frames) + ((width,) if width else ()), np.float16)
                       for name, width in widths.items()}
        row = 0
        for path, (n, _) in zip(files, shapes):
            with np.load(path) as shard:
                for name in widths:
                    values = shard[name]
                    if name == "features":
                        values = values[..., :stored]
                        self.arrays[name][row:row + n, :, :values.shape[-1]] = values
                    else:
                        self.arrays[name][row:row + n] = values
            row += n
        say(f"{split}: {self.count:,} examples of {self.frames} frames in memory ({need / 2**30:.2f} GiB)")
        self.quiet_lead_share, self.quiet_leads = 0.0, None

    def use_quiet_leads(self, share, seed=0):
        """Give ``share`` of each shuffled batch's examples a floor-only start (training.quiet)."""
        from .quiet import lead_bank
        if not 0.0 <= share <= 1.0:
            raise TrainingError(f"--quiet-lead-share must be within 0..1, not {share}")
        self.quiet_lead_share = share
        self.quiet_leads = lead_bank(seed=seed) if share > 0 else None

    def batch(self, indices, rng=None):
        """``(features, targets, weights)`` float32 for the examples at ``indices``, targets delayed.

        The network's output at frame t describes frame t - delay, so targets
        move ``delay`` frames later and the first ``delay`` frames carry no loss.
        With ``rng`` and quiet leads in use, some examples start with a floor only.
        """
        delay = output_delay_frames()
        indices = np.sort(indices)              # sorted gathers read memory in order
        features = self.arrays["features"][indices].astype(np.float32)
        gain = np.zeros((len(indices), self.frames, N_BANDS), np.float32)
        strength = np.zeros_like(gain)
        gain[:, delay:] = self.arrays["gain"][indices, :-delay]
        strength[:, delay:] = self.arrays["strength"][indices, :-delay]
        vad = np.zeros((len(indices), self.frames, 1), np.float32)
        vad[:, delay:, 0] = self.arrays["vad"][indices, :-delay]
        weight = np.ones((len(indices), self.frames), np.float32)
        weight[:, :delay] = 0.0
        if rng is not None and self.quiet_leads is not None:
            from .quiet import add_quiet_leads
            add_quiet_leads(features, gain, strength, vad[..., 0], self.quiet_leads, self.quiet_lead_share, rng,
                            delay)
        if self.n_features > features.shape[-1]:
            features = model_inputs(features, self.n_features)
        # The strength loss weighs each band by its target gain: it travels beside the strength.
        return (features, {"gain": gain, "strength": np.concatenate([strength, gain], axis=-1), "vad": vad},
                {"gain": weight, "strength": weight, "vad": weight})

    def batches(self, batch_size, shuffle, seed=0):
        """Endless shuffled batches (``shuffle``), or one ordered pass with a short last batch."""
        if not shuffle:
            for start in range(0, self.count, batch_size):
                yield self.batch(np.arange(start, min(start + batch_size, self.count)))
            return
        if self.count < batch_size:
            raise TrainingError(f"{self.count} training examples cannot fill a batch of {batch_size}; "
                                f"lower --batch-size or cache more")
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(self.count)
            for start in range(0, self.count - batch_size + 1, batch_size):
                yield self.batch(order[start:start + batch_size], rng)


def make_dataset(store, batch_size, shuffle, with_vad=True, seed=0):
    """A tf.data pipeline over an :class:`ExampleStore` (batches built in a background thread)."""
    import tensorflow as tf
    frames = tf.TensorSpec((None, None, N_BANDS), tf.float32)
    weight = tf.TensorSpec((None, None), tf.float32)
    signature = (tf.TensorSpec((None, None, store.n_features), tf.float32),
                 {"gain": frames, "strength": tf.TensorSpec((None, None, 2 * N_BANDS), tf.float32),
                  "vad": tf.TensorSpec((None, None, 1), tf.float32)},
                 {"gain": weight, "strength": weight, "vad": weight})
    dataset = tf.data.Dataset.from_generator(lambda: store.batches(batch_size, shuffle, seed),
                                             output_signature=signature)
    if not with_vad:
        dataset = dataset.map(lambda x, y, w: (x, {k: y[k] for k in ("gain", "strength")},
                                               {k: w[k] for k in ("gain", "strength")}))
    return dataset.prefetch(2)


def gain_loss(target, predicted, over_suppression_weight=0.0):
    """The paper's gain loss; ``over_suppression_weight`` > 0 adds weight where ``predicted < target``."""
    import keras.ops as ops
    error = ops.sqrt(target + _SQRT_EPS) - ops.sqrt(predicted + _SQRT_EPS)
    per_band = ops.square(error) + 10.0 * ops.square(ops.square(error))
    if over_suppression_weight:
        per_band = per_band * (1.0 + over_suppression_weight * ops.cast(error > 0, per_band.dtype))
    return ops.sum(per_band, axis=-1)


def _gain_loss_with(over_suppression_weight):
    def gain(target, predicted):
        return gain_loss(target, predicted, over_suppression_weight)
    return gain


def strength_loss(target, predicted):
    """The paper's strength loss, each band weighed by its target gain.

    ``target`` is ``[r, g]`` (68 values a frame). Where a band is suppressed
    its strength cannot be heard, and its target there follows the random
    coherence of noise; unweighted, those bands were most of the loss and the
    head learnt little (validation strength loss 4.16 -> 3.95 in a whole run).
    """
    import keras.ops as ops
    strength, gain = target[..., :N_BANDS], target[..., N_BANDS:]
    error = ops.sqrt(1.0 - strength + _SQRT_EPS) - ops.sqrt(1.0 - predicted + _SQRT_EPS)
    return ops.sum(gain * ops.square(error), axis=-1)


def vad_loss(target, predicted):
    import keras.ops as ops
    predicted = ops.clip(predicted, 1e-6, 1 - 1e-6)
    return -ops.mean(target * ops.log(predicted) + (1 - target) * ops.log(1 - predicted), axis=-1)


def strategy_for(name):
    """``default`` (one device), ``mirrored`` (all local GPUs) or ``multi-worker`` (TF_CONFIG cluster)."""
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"unknown strategy {name!r}; choose default, mirrored or multi-worker")


def compile_model(size, learning_rate, over_suppression_weight=OVER_SUPPRESSION_WEIGHT, init_from=None,
                  state_noise=0.0, int8_grids=None, quant_noise=0.0, quant_round=False):
    import keras
    config = config_for(size)
    if quant_noise < 0 or state_noise < 0:
        raise TrainingError(f"--quant-noise {quant_noise} / --state-noise {state_noise}: give 0 (none) or more")
    if (quant_noise > 0 or quant_round) and (state_noise > 0 or int8_grids):
        raise TrainingError("--quant-noise and --quant-round do not combine with --state-noise or --int8-aware: "
                            "give one of them")
    model = build_sequence_model(config, state_noise, int8_grids, quant_noise, quant_round)
    if init_from is not None:
        _load_weights(model, init_from)
    losses = {"gain": _gain_loss_with(over_suppression_weight), "strength": strength_loss}
    weights = {"gain": 1.0, "strength": STRENGTH_LOSS_WEIGHT}
    if config.vad_head:
        losses["vad"], weights["vad"] = vad_loss, VAD_LOSS_WEIGHT
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss=losses,
                  loss_weights=weights)
    return model, config


def int8_grids_from(metadata_path, config):
    """``{tensor: (scale, zero_point)}`` of an int8 step model's features and states, from its .json.

    What ``fit --int8-aware`` rounds to: the converter's scales, so training
    meets the rounding that the shipped flatbuffer applies between frames. The
    metadata is read and checked (schema, checksum, feature version) by the
    device's own loader, with the .tflite beside it.
    """
    from edge.model.model_meta import load_metadata
    path = Path(metadata_path)
    try:
        inputs = load_metadata(path.with_suffix(".tflite")).inputs
    except PercepnetError as exc:
        raise TrainingError(f"{path}: not a converted model's metadata ({exc}); pass the .json written beside "
                            f"an int8 .tflite by percepnet-convert") from None
    widths = {"features": config.n_features, **dict(state_layout(config))}
    names = list(widths)
    missing = [name for name in names if name not in inputs or inputs[name].get("dtype") != "int8"
               or list(inputs[name].get("shape", ())) != [1, widths[name]]]
    if missing:
        raise TrainingError(f"{path}: {', '.join(missing)}: not the int8 inputs of a {config.name} model; pass "
                            f"the metadata of an int8 {config.name} model (percepnet-convert convert "
                            f"RUN/percepnet_{config.name}.keras ...)")
    return {name: (float(inputs[name]["scale"]), int(inputs[name]["zero_point"])) for name in names}


def _load_weights(model, path):
    """Copy the weights of a saved model of the same architecture into ``model``."""
    import keras
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such model to start from (--init-from takes a .keras file "
                            f"written by percepnet-train fit)")
    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as exc:                                # keras raises many types for a bad file
        raise TrainingError(f"{path}: cannot be read as a Keras model ({type(exc).__name__}: {exc})") from None
    weights = widen_inputs(source.get_weights(), model.get_weights())
    shapes = [w.shape for w in weights]
    if shapes != [w.shape for w in model.get_weights()]:
        raise TrainingError(f"{path}: its weights ({sum(int(np.prod(s)) for s in shapes):,}) do not fit "
                            f"the {model.name} model ({model.count_params():,}); pass the matching --size")
    model.set_weights(weights)


def widen_inputs(source_weights, target_weights):
    """``source_weights`` with the first layer's kernel given zero rows for inputs it lacks.

    A noise-only model (70 inputs) so becomes a joint model (138) that behaves
    exactly like it while the far-end inputs are 0, which is where joint
    training starts. Any other difference is left for the caller to refuse.
    """
    if not source_weights or not target_weights:
        return list(source_weights)
    first, wanted = source_weights[0], target_weights[0]
    if first.ndim == 2 and wanted.ndim == 2 and first.shape[1] == wanted.shape[1] and first.shape[0] < wanted.shape[0]:
        widened = np.zeros(wanted.shape, first.dtype)
        widened[:first.shape[0]] = first
        return [widened] + list(source_weights[1:])
    return list(source_weights)


def data_seed(seed, out_dir):
    """The seed of the training examples' order: ``seed`` for a fresh run, ``seed`` plus the epoch a resumed run
    starts from otherwise. A resumed process starts its shuffling again, and with one seed every resume would
    replay the first epoch's order: across sessions, the same examples first and the pool's tail seldom."""
    metadata = Path(out_dir) / "resume" / "training_metadata.json"
    try:
        return seed + int(json.loads(metadata.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):    # a fresh run (no checkpoint yet)
        return seed


def best_val_loss_so_far(out_dir):
    """The lowest ``val_loss`` in ``out_dir/history.csv`` when a resumable checkpoint is there, else None."""
    import csv
    history, resume = Path(out_dir) / "history.csv", Path(out_dir) / "resume"
    if not history.is_file() or not resume.is_dir():
        return None
    with history.open(newline="") as handle:
        losses = [float(row["val_loss"]) for row in csv.DictReader(handle) if row.get("val_loss")]
    return min(losses) if losses else None


def _stop_after(minutes):
    """A callback that ends training at the first epoch end past ``minutes`` of wall time."""
    import keras

    class StopAfter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.deadline = time.time() + 60.0 * minutes

        def on_epoch_end(self, epoch, logs=None):
            if time.time() > self.deadline:
                print(f"time budget of {minutes:g} min reached after epoch {epoch + 1}; stopping")
                self.model.stop_training = True

    return StopAfter()


def _cost_per_epoch():
    """A callback that adds the epoch's wall and process CPU seconds to its logs (so to history.csv)."""
    import keras

    class CostPerEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = (time.time(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["wall_s"] = round(time.time() - self.started[0], 1)
                logs["cpu_s"] = round(time.process_time() - self.started[1], 1)

    return CostPerEpoch()


def _keep_epochs(folder, plain_config=None):
    """A callback that writes each epoch's weights to ``folder/eN.weights.h5``.

    N counts from 1, as the model cards number epochs (history.csv's ``epoch`` column counts from 0). A run
    keeps only its best model and its latest state; with these, any epoch can be converted and measured later
    (``python -m training.average --size SIZE eN.weights.h5 --out eN.keras``). With ``plain_config`` (a model
    with noise or rounding layers) the weights are written in the plain form, which is what those readers load."""
    import keras
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    class KeepEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            partial = folder / f"e{epoch + 1}.part.weights.h5"     # renamed whole: a reader never sees half
            model = self.model if plain_config is None else plain_form(self.model, plain_config)
            model.save_weights(str(partial))
            partial.replace(folder / f"e{epoch + 1}.weights.h5")

    return KeepEpochs()


def _set_learning_rate(rate):
    """A callback that sets the optimiser's rate when training begins, after BackupAndRestore restored it."""
    import keras

    class SetLearningRate(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.optimizer.learning_rate.assign(rate)

    return SetLearningRate()


def _folders(folders):
    """A cache argument (one folder or a list) as the training card records it."""
    return [str(c) for c in folders] if isinstance(folders, (list, tuple)) else str(folders)


def fit(cache_dir, out_dir, size="lite", epochs=20, batch_size=32, learning_rate=1e-3,
        strategy="default", steps_per_epoch=None, time_budget_min=None, say=print, init_from=None,
        over_suppression_weight=OVER_SUPPRESSION_WEIGHT, seed=0, quiet_lead_share=0.0, state_noise=0.0,
        int8_aware=None, restart_learning_rate=False, validation_cache=None, keep_epochs=False, quant_noise=0.0,
        quant_round=False):
    """Train, checkpointing every epoch (resumable) and keeping the best by validation loss.

    ``cache_dir`` is a cache folder or a list of them (shards pooled);
    ``time_budget_min`` stops at the first epoch end past that many minutes;
    ``init_from`` starts from a saved model's weights (fine-tuning);
    ``quiet_lead_share`` of the training examples start with a floor only (training.quiet);
    ``state_noise`` perturbs every GRU state by up to that much per training frame
    (training.model.build_sequence_model); ``int8_aware`` (a converted int8
    model's .json) rounds the features and every carried state to that model's
    int8 grids in training and validation (:func:`int8_grids_from`);
    ``quant_noise`` adds that many int8 grid steps of uniform noise to every
    tensor the step form rounds, in training only (training.quant_noise);
    ``quant_round`` rounds the fixed grids' tensors (sigmoids, tanhs, GRU
    states) to those grids in training instead. Whichever is used, the saved
    model is the plain form. A resumed run keeps the rate its optimiser
    state holds (ReduceLROnPlateau may have lowered it); ``restart_learning_rate``
    sets it back to ``learning_rate`` instead. ``validation_cache`` (a folder or
    a list) holds the validation shards when the training pool should not: a
    run whose training mixtures are replaced by fresh ones keeps its validation
    examples, so its validation loss and best model stay comparable.
    ``keep_epochs`` also writes every epoch's weights to ``out_dir/epochs/eN.weights.h5``.
    """
    import keras
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config_for(size)
    int8_grids = None if int8_aware is None else int8_grids_from(int8_aware, config)
    custom_layers = state_noise > 0 or int8_grids is not None or quant_noise > 0 or quant_round
    with strategy_for(strategy).scope():
        model, _ = compile_model(size, learning_rate, over_suppression_weight, init_from, state_noise, int8_grids,
                                 quant_noise, quant_round)
    say(f"model {config.name}: {model.count_params():,} weights; feature version {FEATURE_VERSION}")
    train_store = ExampleStore(cache_dir, "train", say, config.n_features)
    train_store.use_quiet_leads(quiet_lead_share, seed)
    validation_store = ExampleStore(cache_dir if validation_cache is None else validation_cache, "validation", say,
                                    config.n_features)
    shuffle_seed = data_seed(seed, out_dir)
    train = make_dataset(train_store, batch_size, shuffle=True, with_vad=config.vad_head, seed=shuffle_seed)
    if steps_per_epoch is None:
        steps_per_epoch = max(1, train_store.count // batch_size)
    validation = make_dataset(validation_store, batch_size, shuffle=False, with_vad=config.vad_head)
    best = out_dir / f"percepnet_{config.name}.keras"
    best_weights = out_dir / f"percepnet_{config.name}.best.weights.h5"
    callbacks = [
        # Kept after a normal end too, so a later run with more --epochs (another session) continues.
        keras.callbacks.BackupAndRestore(str(out_dir / "resume"), delete_checkpoint=False),
        *([_set_learning_rate(learning_rate)] if restart_learning_rate else []),   # after the restore
        _cost_per_epoch(),
        # A noisy or rounded model holds custom layers: keep its best weights, save the plain form at the end.
        # A resumed run starts from the best validation loss so far (history.csv): a fresh checkpoint callback
        # would take its first epoch for the best and overwrite a better model (it did, once).
        keras.callbacks.ModelCheckpoint(str(best_weights) if custom_layers else str(best), monitor="val_loss",
                                        save_best_only=True, save_weights_only=custom_layers,
                                        initial_value_threshold=best_val_loss_so_far(out_dir)),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3),
    ]
    if keep_epochs:     # first, so that an epoch the resume state holds is never missing from epochs/
        callbacks.insert(0, _keep_epochs(out_dir / "epochs", config if custom_layers else None))
    if time_budget_min:
        callbacks.append(_stop_after(time_budget_min))
    started = time.time()
    history = model.fit(train, validation_data=validation, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, verbose=2)
    val_losses = history.history.get("val_loss", [])
    if custom_layers and best_weights.is_file():
        model.load_weights(str(best_weights))
        plain_form(model, config).save(str(best))
    card = {
        "size": config.name, "config": config.as_dict(), "weights": int(model.count_params()),
        "feature_version": FEATURE_VERSION, "n_features": config.n_features, "epochs_run": len(val_losses),
        "best_val_loss": float(min(val_losses)) if val_losses else None,
        "train_seconds": round(time.time() - started),
        "cache": _folders(cache_dir),
        "validation_cache": None if validation_cache is None else _folders(validation_cache),
        "init_from": None if init_from is None else str(init_from),
        "over_suppression_weight": over_suppression_weight, "learning_rate": learning_rate,
        "restart_learning_rate": bool(restart_learning_rate), "shuffle_seed": shuffle_seed,
        "final_learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "quiet_lead_share": quiet_lead_share, "state_noise": state_noise,
        "int8_aware": None if int8_aware is None else str(int8_aware), "quant_noise": quant_noise,
        "quant_round": bool(quant_round),
    }
    (out_dir / "training.json").write_text(json.dumps(card, indent=2))
    say(f"best validation loss {card['best_val_loss']}; model in {best}")
    return best, card
