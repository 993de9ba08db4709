"""What the student's errors depend on: does an input it lacks explain where its gains miss the targets?

The sixteenth session's probe (:mod:`training.input_probe`) trains a group of first-layer rows; it needs a
feature cache that holds the candidate. This analysis needs none: it draws a teacher cache's examples again,
identically (:func:`training.teacher.shard_examples`, checked against the cached features and targets), runs a
checkpoint over them and asks, band-frame by band-frame, how much of the error

    r = sqrt(target gain) - sqrt(predicted gain)          (what the loss compares)

a lookup table can remove when it knows one more value: a table of mean ``r`` per cell of (band group,
predicted gain, candidate value), fitted on one cache's examples and scored on another's (other speakers).

- ``prediction only`` (cells of band group and predicted gain): recalibration, the baseline.
- a candidate the network **already sees** (its band's log energy, pitch coherence, energy change): what a
  table adds on top of the network for a value that is in its inputs. This is the scale to read the rest on.
- a positive control: the band's true a-priori SNR blurred by 10 dB of noise (how real information shows).
- a candidate it **does not see**, structure inside a band from the noisy spectrum:

  - ``in-band flatness``: geometric over arithmetic mean of the band's bin powers (triangular weights): near
    0.56 for noise-like bins, lower where harmonics stand out;
  - ``in-band shape change``: 1 - the normalised correlation of the band's bin magnitudes with the previous
    frame's (steady tones stay near 0, noise near 0.2, onsets higher);
  - ``in-band spectral shape``: the band's log bin power at 8 points across it, this frame and the last (a
    vector of 16, fitted by least squares beside ``levels of the 8 bands around it``, which the network sees);
  - the energy change 20 ms past the look-ahead (what 20 ms more latency would show);
  - the log spectrum at 96 ERB-spaced points in the 5 frames the output has seen (one vector per frame, fitted
    per band by least squares beside the 34 band levels in the same frames, which the network sees);

  and, for reference, the sixteenth session's noise-floor input (:mod:`edge.dsp.noise_floor`), which the
  probe found the network did not need. The values are computed in :mod:`training.residual_values`.
- each candidate ``shuffled``: its values permuted across band-frames of the same band, in fitting and
  scoring alike (the control: what a table of that many cells gains by chance).

A candidate that lowers the held-out error well beyond its shuffled control and beyond the values the network
already sees carries information the network lacks; one that does not, does not, for this network and target.

``python -m training.residual_probe --model CKPT.keras --fit-cache CACHE/teacher-v2 --fit-shards 8
--score-cache CACHE/teacher-v2-val --score-shards 4`` (teacher caches only: their audio can be drawn again).
``--by-time 12`` instead draws 12 s streams of the score cache's speakers and reports the error by time into
the stream, run continuously and restarted at the training examples' length. ``--target-spread`` (no model)
reports how far the teacher's own targets move when its input moves inaudibly (how much of a student's error
could be the targets' own noise).
"""

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edge.dsp import oracle_gains
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.dsp.noise_floor import model_inputs
from edge.errors import DataError

from .model import output_delay_frames
from .residual_values import (CANDIDATES, FRAME_CANDIDATES, VECTOR_CANDIDATES, VECTOR_POINTS, candidate_values,
                              frame_values)

#: Band groups of the tables: the 2-bin bands under 800 Hz, then three spans of about 8 bands.
BAND_GROUPS = np.repeat(np.arange(4), [12, 8, 7, 7])
GAIN_EDGES = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
N_VALUE_BINS = 8
MIN_CELL_ROWS = 50              # a sparser cell falls back to its (band group, predicted gain) mean
RIDGE = 1e-3                    # least squares: its share of the rows' count, on the diagonal
N_BANDS_PROBED = BAND_GROUPS.size
#: Largest difference allowed between the cached float16 features / targets and the ones drawn again.
REPRODUCTION_TOLERANCE = 0.02
FRAMES_PER_S = SAMPLE_RATE_HZ // HOP_SAMPLES


class ProbeError(DataError):
    """The examples drawn again differ from the cache's: the message says why and what to do."""


def residuals(rows):
    """What the loss compares, per row: ``sqrt(target) - sqrt(predicted)``."""
    return np.sqrt(rows["target"]) - np.sqrt(rows["predicted"])


def gain_bin_onehot(predicted, dtype=np.float64):
    """One column per predicted-gain bin of :data:`GAIN_EDGES`: the correctors' intercepts."""
    return np.eye(GAIN_EDGES.size + 1, dtype=dtype)[np.searchsorted(GAIN_EDGES, predicted)]


def teacher_source(cache_dir, split, seconds=None, teacher=None):
    """``(spec, material, teacher, lag, cached seconds)`` that drew a teacher cache's ``split``; ``seconds``:
    examples of another length (drawn from the same speakers and files, not the cache's examples); ``teacher``:
    another callable in DeepFilterNet3's place (tests)."""
    from .teacher import DeepFilterNetTeacher, TeacherSpec, _material
    meta = json.loads((Path(cache_dir) / "meta.json").read_text())
    if meta.get("kind") != "teacher" or split not in meta:
        raise ProbeError(f"{cache_dir} is not a teacher cache with a {split} split: only a teacher cache's "
                         f"examples can be drawn again (give one built by percepnet-train teacher-cache)")
    fields = dict(meta[split])
    fields["level_drop_db"] = tuple(fields["level_drop_db"])
    cached_seconds = fields["seconds"]
    if seconds is not None:
        fields["seconds"] = seconds
    spec = TeacherSpec(**fields)
    material = _material(spec.realworld, spec.max_clipped_fraction, spec.max_snr_db)
    return spec, material, teacher or DeepFilterNetTeacher(), int(meta["teacher"]["lag_samples"]), cached_seconds


def error_by_time(model, config, cache_dir, split, shards, seconds, say=print):
    """RMS error of the gains' square roots by time into the stream, over the first ``shards`` shards' speakers
    drawn as ``seconds``-long examples: ``(start s, end s, continuous, restarted)`` per 2 s, where
    ``restarted`` runs the network afresh at every multiple of the cache's own example length (the length
    training examples have: does the recurrent state hold up for longer than it was trained on?)."""
    from .teacher import shard_examples
    spec, material, teacher, lag, trained_seconds = teacher_source(cache_dir, split, seconds)
    trained_frames, window = int(round(trained_seconds * FRAMES_PER_S)), 2 * FRAMES_PER_S
    delay, errors = output_delay_frames(), {"continuous": [], "restarted": []}
    for index in range(shards):
        for target, noisy, *_ in shard_examples(spec, teacher, material, index, lag, Counter()):
            gains, _, analysis, _ = oracle_gains(target, noisy)
            features = model_inputs(analysis.features[None].astype(np.float32), config.n_features)
            n = features.shape[1]
            runs = {"continuous": model.predict(features, verbose=0)["gain"][0],
                    "restarted": np.concatenate([model.predict(features[:, start:start + trained_frames],
                                                               verbose=0)["gain"][0]
                                                 for start in range(0, n, trained_frames)])}
            for name, predicted in runs.items():
                errors[name].append(np.mean((np.sqrt(gains[:n - delay]) - np.sqrt(predicted[delay:])) ** 2, axis=1))
        say(f"{split} shard {index}: {spec.examples_per_shard} examples of {seconds:g} s")
    frames = min(e.size for e in errors["continuous"])
    table = {name: np.stack([e[:frames] for e in value]) for name, value in errors.items()}
    return [(start / FRAMES_PER_S, min(start + window, frames) / FRAMES_PER_S,
             *(float(np.sqrt(table[name][:, start:start + window].mean())) for name in ("continuous", "restarted")))
            for start in range(0, frames, window)]


def target_spread(cache_dir, split, shards, say=print, teacher=None):
    """How far the teacher's targets move when its input moves inaudibly, as RMS differences of the gains' square
    roots over the first ``shards`` shards' examples: ``{variant: RMS}``. If the targets moved as much as the
    student misses them, the student's error would be the targets' own noise; they move far less."""
    import dataclasses
    from .teacher import shard_examples
    spec, material, teacher, lag, _ = teacher_source(cache_dir, split, teacher=teacher)

    def one_sample_later(signal):          # the teacher hears the input a sample late; its output is put back
        out = np.asarray(teacher(np.concatenate([[0.0], signal[:-1]])), dtype=np.float64).reshape(-1)
        return np.concatenate([out[1:], [0.0]])
    heard_at = lambda change_db: dataclasses.replace(spec, teacher_level_dbfs=spec.teacher_level_dbfs + change_db)
    variants = {"the input one sample later": (spec, one_sample_later), "heard 1 dB louder": (heard_at(1), teacher),
                "heard 10 dB quieter": (heard_at(-10), teacher)}
    squares = {name: [] for name in variants}
    for index in range(shards):
        base = [oracle_gains(target, noisy)[0]
                for target, noisy, *_ in shard_examples(spec, teacher, material, index, lag, Counter())]
        for name, (variant, heard_by) in variants.items():
            for gains, (target, noisy, *_) in zip(base, shard_examples(variant, heard_by, material, index, lag,
                                                                        Counter())):
                squares[name].append(np.mean((np.sqrt(oracle_gains(target, noisy)[0]) - np.sqrt(gains)) ** 2))
        say(f"{split} shard {index}: {spec.examples_per_shard} examples labelled {len(variants) + 1} ways")
    return {name: float(np.sqrt(np.mean(values))) for name, values in squares.items()}


def draw_rows(model, config, cache_dir, split, shards, say=print):
    """Band-frame rows of the first ``shards`` shards of a teacher cache, drawn again: a dict of flat arrays
    (``predicted``, ``target``, ``speech``, ``band`` and every candidate)."""
    from .teacher import shard_examples
    from .train import shard_files
    spec, material, teacher, lag, _ = teacher_source(cache_dir, split)
    delay, rng = output_delay_frames(), np.random.default_rng(5)
    rows = {key: [] for key in ("predicted", "target", "speech", "band", *CANDIDATES, *VECTOR_CANDIDATES,
                                *FRAME_CANDIDATES)}
    for index, path in enumerate(map(Path, shard_files(cache_dir, split)[:shards])):
        started = time.process_time()
        with np.load(path) as shard:
            cached_features, cached_gain = shard["features"].astype(np.float32), shard["gain"].astype(np.float32)
            cached_vad = shard["vad"] > 0.5                   # the cache's voice activity marks "near speech"
        for k, (target, noisy, *_) in enumerate(shard_examples(spec, teacher, material, index, lag, Counter())):
            gains, _, analysis, clean = oracle_gains(target, noisy)
            n = cached_features.shape[1]
            features = analysis.features[:n]
            error = max(np.abs(features - cached_features[k]).max(), np.abs(gains[:n] - cached_gain[k]).max())
            if error > REPRODUCTION_TOLERANCE:
                raise ProbeError(f"{path.name} example {k}: drawn again, its features or targets differ from the "
                                 f"cache's by {error:.3f}; the corpus or the teacher changed since the cache was "
                                 f"built: rebuild the cache, or probe a cache this corpus built")
            speech = cached_vad[k]
            predicted = model.predict(model_inputs(features[None].astype(np.float32), config.n_features),
                                      verbose=0)["gain"][0]
            values = candidate_values(features, analysis.spectra[:n], clean.energy[:n], analysis.energy[:n], rng)
            rows["predicted"].append(predicted[delay:])
            rows["target"].append(gains[:n - delay])
            rows["speech"].append(np.repeat(speech[:n - delay, None], gains.shape[1], axis=1))
            rows["band"].append(np.broadcast_to(np.arange(gains.shape[1]), (n - delay, gains.shape[1])))
            for name, value in {**values, **frame_values(features, analysis.spectra[:n])}.items():
                rows[name].append(value[:n - delay])
        say(f"{path.name}: {cached_features.shape[0]} examples drawn again in {time.process_time() - started:.0f} "
            f"CPU s, within {REPRODUCTION_TOLERANCE} of the cache")

    def flat(key, value):
        if key in FRAME_CANDIDATES:                           # one row per frame: (frames, k)
            return np.concatenate(value).astype(np.float32)
        if key in VECTOR_CANDIDATES:                          # one row per band-frame: (band-frames, 16)
            return np.concatenate(value).reshape(-1, 2 * VECTOR_POINTS).astype(np.float32)
        return np.concatenate(value).reshape(-1)
    return {key: flat(key, value) for key, value in rows.items()}


def shuffled(values, band, seed):
    """``values`` permuted among the rows of each band (the control keeps each band's distribution)."""
    rng = np.random.default_rng(seed)
    out = values.copy()
    for b in np.unique(band):
        rows = np.flatnonzero(band == b)
        out[rows] = values[rng.permutation(rows)]
    return out


def cells(rows, value=None, value_edges=None):
    """Cell index of every row: (band group, predicted gain[, candidate value])."""
    gain_bin = np.searchsorted(GAIN_EDGES, rows["predicted"])
    cell = BAND_GROUPS[rows["band"]] * (GAIN_EDGES.size + 1) + gain_bin
    if value is not None:
        cell = cell * N_VALUE_BINS + np.searchsorted(value_edges, value)
    return cell


def table_correction(fit_rows, score_rows, fit_value=None, score_value=None):
    """Residuals on ``score_rows`` after the mean residual per cell fitted on ``fit_rows`` is added."""
    residual = residuals(fit_rows)
    base_fit, base_score = cells(fit_rows), cells(score_rows)
    size = int(max(base_fit.max(), base_score.max())) + 1
    base_mean = np.bincount(base_fit, residual, size) / np.maximum(np.bincount(base_fit, minlength=size), 1)
    correction = base_mean[base_score]
    if fit_value is not None:
        edges = np.quantile(fit_value, np.linspace(0, 1, N_VALUE_BINS + 1)[1:-1])
        fit_cell, score_cell = cells(fit_rows, fit_value, edges), cells(score_rows, score_value, edges)
        size = int(max(fit_cell.max(), score_cell.max())) + 1
        count = np.bincount(fit_cell, minlength=size)
        mean = np.bincount(fit_cell, residual, size) / np.maximum(count, 1)
        dense = count[score_cell] >= MIN_CELL_ROWS
        correction = np.where(dense, mean[score_cell], correction)
    return residuals(score_rows) - correction


def linear_correction(fit_rows, score_rows, fit_vectors, score_vectors, chunk_rows=200_000):
    """Residuals on ``score_rows`` after a least-squares correction fitted on ``fit_rows``, per band group:
    an intercept per predicted-gain bin, the vector, and the vector times the predicted gain's square root."""
    def design(rows, vectors, index):
        root = np.sqrt(rows["predicted"][index])[:, None].astype(np.float32)
        onehot = gain_bin_onehot(rows["predicted"][index], np.float32)
        return np.hstack([onehot, vectors[index], vectors[index] * root])
    residual_fit, out = residuals(fit_rows), residuals(score_rows)
    for group in np.unique(BAND_GROUPS):
        fit_index = np.flatnonzero(BAND_GROUPS[fit_rows["band"]] == group)
        width = GAIN_EDGES.size + 1 + 2 * fit_vectors.shape[1]
        gram, moment = np.zeros((width, width)), np.zeros(width)
        for start in range(0, fit_index.size, chunk_rows):
            part = fit_index[start:start + chunk_rows]
            d = design(fit_rows, fit_vectors, part).astype(np.float64)
            gram += d.T @ d
            moment += d.T @ residual_fit[part]
        coefficients = np.linalg.solve(gram + RIDGE * fit_index.size * np.eye(width), moment)
        score_index = np.flatnonzero(BAND_GROUPS[score_rows["band"]] == group)
        for start in range(0, score_index.size, chunk_rows):
            part = score_index[start:start + chunk_rows]
            out[part] -= design(score_rows, score_vectors, part).astype(np.float64) @ coefficients
    return out


def frame_correction(fit_rows, score_rows, fit_frames, score_frames):
    """Residuals on ``score_rows`` after a least-squares correction per band from one vector per frame
    (``*_frames`` (frames, k), standardised on the fitting frames): an intercept per predicted-gain bin and the
    vector. The vector's Gram matrix is shared by the bands, so 34 fits cost little more than one."""
    bands = N_BANDS_PROBED
    mean, scale = fit_frames.mean(axis=0), fit_frames.std(axis=0) + 1e-6
    x_fit = ((fit_frames - mean) / scale).astype(np.float64)
    x_score = ((score_frames - mean) / scale).astype(np.float64)
    gram_x = x_fit.T @ x_fit
    predicted, score_predicted = fit_rows["predicted"].reshape(-1, bands), score_rows["predicted"].reshape(-1, bands)
    fit_residual, out = residuals(fit_rows).reshape(-1, bands), residuals(score_rows).reshape(-1, bands)
    for band in range(bands):
        onehot, residual = gain_bin_onehot(predicted[:, band]), fit_residual[:, band]
        gram = np.block([[onehot.T @ onehot, onehot.T @ x_fit], [x_fit.T @ onehot, gram_x]])
        moment = np.concatenate([onehot.T @ residual, x_fit.T @ residual])
        coefficients = np.linalg.solve(gram + RIDGE * x_fit.shape[0] * np.eye(gram.shape[0]), moment)
        design = np.hstack([gain_bin_onehot(score_predicted[:, band]), x_score])
        out[:, band] -= design @ coefficients
    return out.reshape(-1)


def mlp_correction(fit_rows, score_rows, fit_frames, score_frames, seed=0, hidden=256):
    """Residuals on ``score_rows`` after a small network's correction (two ReLU layers of ``hidden``), fitted on
    ``fit_rows`` from one vector per frame and the 34 predicted gains' square roots to the 34 residuals, stopped
    early on a held-back 15 % of the fitting frames: the nonlinear counterpart of :func:`frame_correction`."""
    import tensorflow as tf
    mean, scale = fit_frames.mean(axis=0), fit_frames.std(axis=0) + 1e-6
    inputs = lambda rows, frames: np.hstack([(frames - mean) / scale, np.sqrt(rows["predicted"]).reshape(
        -1, N_BANDS_PROBED)]).astype(np.float32)
    residual = lambda rows: residuals(rows).reshape(-1, N_BANDS_PROBED)
    x_fit = inputs(fit_rows, fit_frames)
    tf.keras.utils.set_random_seed(seed)
    network = tf.keras.Sequential([tf.keras.layers.Input((x_fit.shape[1],)),
                                   tf.keras.layers.Dense(hidden, activation="relu"),
                                   tf.keras.layers.Dense(hidden, activation="relu"),
                                   tf.keras.layers.Dense(N_BANDS_PROBED)])
    network.compile(tf.keras.optimizers.Adam(1e-3), "mse")
    network.fit(x_fit, residual(fit_rows), batch_size=256, epochs=30, validation_split=0.15, verbose=0,
                callbacks=[tf.keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
    correction = network.predict(inputs(score_rows, score_frames), batch_size=4096, verbose=0)
    return (residual(score_rows) - correction).reshape(-1)


def report(fit_rows, score_rows, seed=3):
    """The table's rows: (name, seen by the network, RMS all, RMS near speech) on the scoring rows."""
    speech = score_rows["speech"]
    rms = lambda r: (float(np.sqrt(np.mean(r ** 2))), float(np.sqrt(np.mean(r[speech] ** 2))))
    out = [("none (the checkpoint as it is)", None,
            *rms(residuals(score_rows))),
           ("prediction only (recalibration)", None, *rms(table_correction(fit_rows, score_rows)))]
    for name, seen in CANDIDATES.items():
        out.append((name, seen, *rms(table_correction(fit_rows, score_rows, fit_rows[name], score_rows[name]))))
        control_fit = shuffled(fit_rows[name], fit_rows["band"], seed)
        control_score = shuffled(score_rows[name], score_rows["band"], seed + 1)
        out.append((f"{name}, shuffled", seen, *rms(table_correction(fit_rows, score_rows, control_fit,
                                                                       control_score))))
    for name, seen in VECTOR_CANDIDATES.items():
        out.append((f"{name} (least squares)", seen,
                    *rms(linear_correction(fit_rows, score_rows, fit_rows[name], score_rows[name]))))
        control_fit = fit_rows[name][shuffled(np.arange(fit_rows["band"].size), fit_rows["band"], seed)]
        control_score = score_rows[name][shuffled(np.arange(score_rows["band"].size), score_rows["band"], seed + 1)]
        out.append((f"{name} (least squares), shuffled", seen,
                    *rms(linear_correction(fit_rows, score_rows, control_fit, control_score))))
    for name, seen in FRAME_CANDIDATES.items():
        out.append((f"{name} (least squares per band)", seen,
                    *rms(frame_correction(fit_rows, score_rows, fit_rows[name], score_rows[name]))))
        rng = np.random.default_rng(seed)
        fit_order, score_order = rng.permutation(len(fit_rows[name])), rng.permutation(len(score_rows[name]))
        out.append((f"{name} (least squares per band), frames shuffled", seen,
                    *rms(frame_correction(fit_rows, score_rows, fit_rows[name][fit_order],
                                          score_rows[name][score_order]))))
        out.append((f"{name} (a small network)", seen,
                    *rms(mlp_correction(fit_rows, score_rows, fit_rows[name], score_rows[name]))))
        out.append((f"{name} (a small network), frames shuffled", seen,
                    *rms(mlp_correction(fit_rows, score_rows, fit_rows[name][fit_order],
                                        score_rows[name][score_order]))))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .keras checkpoint (not with --target-spread)")
    parser.add_argument("--size", default="lite_echo")
    parser.add_argument("--fit-cache", help="teacher cache whose examples fit the tables (not with --by-time)")
    parser.add_argument("--fit-split", default="train", choices=("train", "validation"))
    parser.add_argument("--fit-shards", type=int, default=8)
    parser.add_argument("--score-cache", required=True, help="teacher cache whose examples score them")
    parser.add_argument("--score-split", default="validation", choices=("train", "validation"))
    parser.add_argument("--score-shards", type=int, default=4)
    parser.add_argument("--out", help="write the table's rows here as JSON")
    parser.add_argument("--target-spread", action="store_true",
                        help="instead: how far the teacher's targets for the score cache's examples move when the "
                             "teacher hears them 1 sample later, 1 dB louder or 10 dB quieter (no model is run)")
    parser.add_argument("--by-time", type=float, metavar="SECONDS",
                        help="instead: the error by time into SECONDS-long streams of the score cache's speakers, "
                             "run continuously and restarted at the cache's example length")
    args = parser.parse_args(argv)
    if min(args.fit_shards, args.score_shards) < 1:
        parser.error("--fit-shards and --score-shards must be at least 1")
    if args.fit_cache is None and not (args.by_time or args.target_spread):
        parser.error("give --fit-cache (the tables are fitted on its examples), or --by-time SECONDS, "
                     "or --target-spread")
    if args.model is None and not args.target_spread:
        parser.error("give --model, the checkpoint whose errors to explain")
    if args.by_time is not None and args.by_time <= 0:
        parser.error(f"--by-time takes a stream length in seconds above 0, not {args.by_time}")
    if args.target_spread:
        spread = target_spread(args.score_cache, args.score_split, args.score_shards)
        print("\n| the teacher's input | RMS change of the targets' square roots |\n|---|---:|")
        for name, value in spread.items():
            print(f"| {name} | {value:.4f} |")
        if args.out:
            Path(args.out).write_text(json.dumps({"target_spread": spread}, indent=1))
        return
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from .train import compile_model
    model, config = compile_model(args.size, 1e-4, init_from=args.model)
    if args.by_time:
        rows = error_by_time(model, config, args.score_cache, args.score_split, args.score_shards, args.by_time)
        print("\n| seconds into the stream | RMS error, run continuously | restarted at the training length |\n"
              "|---|---:|---:|")
        for start, end, continuous, restarted in rows:
            print(f"| {start:g}-{end:g} | {continuous:.4f} | {restarted:.4f} |")
        if args.out:
            Path(args.out).write_text(json.dumps({"by_time": rows}, indent=1))
        return
    fit_rows = draw_rows(model, config, args.fit_cache, args.fit_split, args.fit_shards)
    score_rows = draw_rows(model, config, args.score_cache, args.score_split, args.score_shards)
    rows = report(fit_rows, score_rows)
    none_all, none_speech = rows[0][2], rows[0][3]
    print(f"\n{fit_rows['band'].size} band-frames fit the tables, {score_rows['band'].size} score them\n")
    print("| the table also knows | network sees it | RMS error, all band-frames | near speech | "
          "change from recalibration, all / near speech |\n|---|---|---:|---:|---:|")
    _, _, base_all, base_speech = rows[1]
    for name, seen, rms_all, rms_speech in rows:
        seen_text = "" if seen is None else ("**no**" if seen == "no" else seen)
        change = "" if seen is None else (f"{100 * (rms_all / base_all - 1):+.1f} % / "
                                          f"{100 * (rms_speech / base_speech - 1):+.1f} %")
        print(f"| {name} | {seen_text} | {rms_all:.4f} | {rms_speech:.4f} | {change} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "none": [none_all, none_speech],
                                              "fit_band_frames": int(fit_rows["band"].size),
                                              "score_band_frames": int(score_rows["band"].size)}, indent=1))


if __name__ == "__main__":
    main()
