"""Keras sequence model -> step model -> fully int8 TFLite flatbuffer + sidecar metadata."""

import os
from pathlib import Path

from edge.io.atomic import atomic_write, probe_writable, refuse_special_target
from edge.dsp.bands import band_centres_bins
from edge.errors import ConversionError
from edge.model.litert import graph_of
from edge.dsp.constants import N_JOINT_FEATURES
from edge.dsp.noise_floor import N_FLOOR_JOINT_FEATURES
from edge.model.model_meta import (METADATA_SCHEMA, MODEL_FEATURE_WIDTHS, ModelMetadata, dsp_signature, file_sha256,
                                   sidecar_path)
from training.model import ModelConfig, state_layout, step_model_from

from .calibration import load_feature_sequences, representative_dataset, step_inputs

#: Calibration: one random example from each of 64 random training shards of the
#: caches given, 600 frames drawn from them. Wider ranges cost precision: more
#: frames raised the lite model's gain error (2000 frames: 8.6 output steps, 600:
#: 7.6), and adding the clean/high-SNR caches cost 0.1 PESQ-WB on tuning clips, so
#: the shipped model is calibrated on its main cache alone (models/lite/MODEL_CARD.md).
CALIBRATION_EXAMPLES = 64
CALIBRATION_FRAMES = 600
#: The sidecar's training-data note when --training-note is not given. It used to name the first model's data
#: (RAVDESS, non-commercial) for every model, whatever it was trained on; a licence claim must come from whoever
#: trained the model, so without one the sidecar says it was not given.
DEFAULT_TRAINING_NOTE = ("not given at conversion (percepnet-convert convert --training-note); see the model's card "
                         "for its training data and their licences")
#: The comparison variants written beside the int8 model (never shipped): what its quantisation costs.
VARIANTS = ("float32", "int16x8", "dynamic-range")
REQUIRED_LAYERS = ("fc_in", "conv1", "conv2", "gru1", "gain_gru", "strength_gru", "gain", "strength")


def load_sequence_model(path):
    """Load a trained sequence model and recover its :class:`ModelConfig` from its layers."""
    import keras
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file; give the .keras file written by `percepnet-train fit`")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:                              # keras raises many types for a bad file
        raise ConversionError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from None
    names = {layer.name for layer in model.layers}
    missing = [name for name in REQUIRED_LAYERS if name not in names]
    if missing:
        raise ConversionError(f"{path}: not a PercepNet sequence model from training/ (missing layers "
                              f"{', '.join(missing)}), so no step form can be built from it")
    grus = sorted(n for n in names if n.startswith("gru") and n[3:].isdigit())
    config = ModelConfig(
        name=model.name.replace("percepnet_", "") or "custom",
        fc_units=model.get_layer("fc_in").units, conv_units=model.get_layer("conv1").filters,
        gru_units=model.get_layer("gru1").units, gru_layers=len(grus),
        gain_gru_units=model.get_layer("gain_gru").units,
        strength_gru_units=model.get_layer("strength_gru").units, vad_head="vad" in names,
        far_end_inputs=int(model.input_shape[-1]) in (N_JOINT_FEATURES, N_FLOOR_JOINT_FEATURES),
        floor_inputs=int(model.input_shape[-1]) == N_FLOOR_JOINT_FEATURES)
    if int(model.input_shape[-1]) not in MODEL_FEATURE_WIDTHS:
        raise ConversionError(f"{path}: takes {model.input_shape[-1]} features per frame; the DSP gives "
                              f"{' or '.join(map(str, MODEL_FEATURE_WIDTHS))}")
    return model, config


def convert_step_model(step_model, quantization, calibration=None):
    """TFLite bytes of the step model: ``int8`` (full integer), ``int16x8``, ``dynamic-range`` or ``float32``.

    ``int16x8`` (16-bit activations, int8 weights; float inputs and outputs, calibrated like ``int8``) is a
    comparison variant: it scores as the float model where ``int8`` does not (docs/results.md, *What int8
    costs*), but XNNPACK does not run it, so it costs about 15 times ``int8``'s CPU.
    """
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(step_model)
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif quantization == "int16x8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif quantization == "dynamic-range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization != "float32":
        raise ConversionError(f"unknown quantization {quantization!r}")
    return converter.convert()


def _metadata(blob_path, config, quantization, weights, training_note, model_name=None):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(blob_path))
    interpreter.allocate_tensors()
    signature = graph_of(interpreter).signatures["serving_default"]
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    inputs = {name: {"shape": details[index]["shape"].tolist(),
                     "dtype": details[index]["dtype"].__name__,
                     "scale": float(details[index]["quantization"][0]),
                     "zero_point": int(details[index]["quantization"][1])}
              for name, index in signature["inputs"].items()}
    roles = ["gain", "strength"] + (["vad"] if config.vad_head else [])
    roles += [f"new_{name}" for name, _ in state_layout(config)]
    outputs = {role: f"output_{k}" for k, role in enumerate(roles)}   # Keras output order
    return ModelMetadata(
        schema=METADATA_SCHEMA, name=model_name or Path(blob_path).stem, size=config.name,
        dsp=dsp_signature(config.n_features),
        band_layout=band_centres_bins().tolist(), quantization=quantization, inputs=inputs, outputs=outputs,
        states=[name for name, _ in state_layout(config)], weights=int(weights),
        model_bytes=Path(blob_path).stat().st_size, sha256=file_sha256(blob_path),
        training_data=training_note)


def write_model(blob, out_path, config, quantization, weights, training_note, verification=None,
                model_name=None):
    """Write ``out_path`` and its sidecar JSON, each atomically; returns the metadata (named ``model_name``, default
    the file's stem)."""
    _write(out_path, blob)
    metadata = _metadata(out_path, config, quantization, weights, training_note, model_name)
    metadata.verification = verification or {}
    _write(sidecar_path(out_path), metadata.to_json().encode())
    return metadata


def _write(path, data):
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise ConversionError(f"{path}: cannot write ({exc.strerror or exc}); free space or name another --out") \
            from None


#: The stems' endings of a model under proof and of one that failed it (see :func:`staged_paths`).
UNVERIFIED, FAILED = ".unverified", ".failed"
RESERVED_STEMS = (UNVERIFIED, FAILED)


def check_out(out_path):
    """Refuse an --out that cannot take the model before any work: a wrong suffix or a reserved name, a folder or
    device in the place of the model, its sidecar or their staged and failed copies, a folder that cannot be made
    or written."""
    out_path = Path(out_path)
    if out_path.suffix != ".tflite":                # the device loads .tflite files only (edge.model.model_meta)
        raise ConversionError(f"--out {out_path}: name a .tflite file (its metadata goes beside it as .json)")
    if out_path.stem.endswith(RESERVED_STEMS):
        raise ConversionError(f"--out {out_path}: names ending in {' or '.join(RESERVED_STEMS)} are the converter's "
                              "own (a model under proof, one that failed it); choose another name")
    try:
        for path in (out_path, *staged_paths(out_path)):
            refuse_special_target(path)
            refuse_special_target(sidecar_path(path))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        probe_writable(out_path)
    except OSError as exc:
        raise ConversionError(f"--out {out_path}: cannot write there ({exc.strerror or exc}); name a file in a "
                              "folder you can write to") from None


def staged_paths(out_path):
    """Where a conversion writes before its proof (``NAME.unverified.tflite``), and where a model that fails the
    proof is kept for inspection (``NAME.failed.tflite``); each with its .json."""
    out_path = Path(out_path)
    return tuple(out_path.with_name(f"{out_path.stem}{ending}.tflite") for ending in RESERVED_STEMS)


def _install(staged, target):
    """Rename the model, then its sidecar: between the two the device refuses the pair (their sha256 differ),
    never loads a model with another's metadata."""
    try:
        os.replace(staged, target)
    except OSError as exc:
        raise ConversionError(f"{target}: cannot rename {staged.name} into place ({exc.strerror or exc}); the "
                              f"model and its .json are still at {staged}") from None
    try:
        os.replace(sidecar_path(staged), sidecar_path(target))
    except OSError as exc:
        raise ConversionError(f"{sidecar_path(target)}: cannot rename {sidecar_path(staged).name} into place "
                              f"({exc.strerror or exc}); the model is at {target} and its .json still at "
                              f"{sidecar_path(staged)}: rename it by hand") from None


def _discard(model, say):
    """Remove a model and its sidecar if they exist; a failure is said, never raised (nothing depends on it)."""
    for path in (model, sidecar_path(model)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            say(f"could not remove {path} ({exc.strerror or exc}); remove it by hand")


def convert(model_path, cache_dir, out_path, training_note=DEFAULT_TRAINING_NOTE, variants=True,
            verify_audio=True, corpus=None, say=print):
    """The whole conversion: int8 model + metadata, verification, and the comparison variants."""
    from .verify import verify
    check_out(out_path)
    sequence_model, config = load_sequence_model(model_path)
    features = load_feature_sequences(cache_dir, "train", CALIBRATION_EXAMPLES, spread_seed=0,
                                      n_features=config.n_features)
    inputs = step_inputs(sequence_model, config, features)
    step = step_model_from(sequence_model, config)
    say(f"calibrating on {min(CALIBRATION_FRAMES, len(inputs['features']))} frames of real features "
        f"from {', '.join(map(str, cache_dir)) if isinstance(cache_dir, (list, tuple)) else cache_dir} "
        f"(train split)")
    blob = convert_step_model(step, "int8", representative_dataset(inputs, CALIBRATION_FRAMES))
    out_path = Path(out_path)
    staged, failed = staged_paths(out_path)
    # The proof runs on a staged copy: a model that fails it, or a run stopped before it ends, never replaces --out
    # (often the shipped model, which the device loads).
    try:
        metadata = write_model(blob, staged, config, "int8", sequence_model.count_params(), training_note,
                               model_name=out_path.stem)
        metadata.verification = verify(staged, cache_dir, float_model=sequence_model, config=config,
                                       audio=verify_audio, corpus=corpus, say=say)
        _write(sidecar_path(staged), metadata.to_json().encode())
    except BaseException:                           # stopped or failed before the proof ended: --out untouched
        _discard(staged, say)
        raise
    if not metadata.verification["passed"]:
        _install(staged, failed)
        say(f"{out_path} was left as it was; the model that failed is {failed} (and its .json), for inspection")
        return metadata, {"int8": str(failed)}
    _install(staged, out_path)
    _discard(failed, say)                           # an earlier run's failure no longer describes --out
    say(f"wrote {out_path} ({metadata.model_bytes / 1e6:.2f} MB) and {sidecar_path(out_path).name}")
    report = {"int8": str(out_path)}
    if variants:                                    # of the model now at --out only, so that they compare with it
        report.update(_write_variants(step, inputs, sequence_model, config, training_note, out_path, say))
    return metadata, report


def _write_variants(step, inputs, sequence_model, config, training_note, out_path, say):
    """The comparison variants, never shipped (what quantisation costs); {quantization: path}."""
    variant_dir, written = out_path.parent / "variants", {}
    for quantization in VARIANTS:
        variant = variant_dir / f"{out_path.stem}_{quantization}.tflite"
        # Only int16x8 is calibrated: float32 and dynamic-range keep float activations.
        calibration = representative_dataset(inputs, CALIBRATION_FRAMES) if quantization == "int16x8" else None
        write_model(convert_step_model(step, quantization, calibration), variant, config, quantization,
                    sequence_model.count_params(), training_note)
        written[quantization] = str(variant)
    say(f"comparison variants (not for shipping) in {variant_dir}")
    return written
