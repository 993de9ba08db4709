"""Proof that a converted model is int8 and still accurate.

1. The flatbuffer's ops and tensors, read without any delegate: no float32 may remain.
2. Float against int8 on held-out features, states carried across frames:
   mean and max gain error, also in output quantisation steps.
3. End to end through the DSP: PESQ-WB of int8 against float on validation
   audio; the mean drop must stay at or under ``MAX_PESQ_DROP``, and so must
   the clean clip's on its own.

A joint model's proof must cover frames with far-end inputs (a cache built
with ``--echo-share``): otherwise its echo path would pass untested.
"""

import numpy as np

from edge.dsp import (LOOKAHEAD_FRAMES, N_FEATURES, N_JOINT_FEATURES, EnhancerSettings, FrameGains, analyse_signal,
                      enhance_signal, model_inputs)
from edge.errors import ModelError
from edge.model.engine import ModelRunner
from edge.model.litert import graph_of
from edge.model.model_meta import load_metadata
from evaluation.metrics import pesq_wb

from .calibration import load_feature_sequences

MAX_PESQ_DROP = 0.05
VERIFY_EXAMPLES = 4


def inspect_flatbuffer(model_path):
    """Ops and tensor types of the graph as written (XNNPACK off, so nothing hides in a delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interpreter = Interpreter(model_path=str(model_path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops = sorted(graph_of(interpreter).ops)
    tensors = interpreter.get_tensor_details()
    dtypes = sorted({t["dtype"].__name__ for t in tensors})
    floating = [t["name"] for t in tensors if np.issubdtype(t["dtype"], np.floating)]
    return {"ops": ops, "tensor_dtypes": dtypes, "float_tensors": floating, "all_int8": not floating}


def float_outputs(sequence_model, features):
    outputs = sequence_model(features)
    return np.asarray(outputs["gain"]), np.asarray(outputs["strength"])


def runner_outputs(model_path, features):
    """(gains, strengths, runner) of a converted model over (examples, frames, n) features, frame by frame as the
    device runs it, each example from reset states."""
    runner = ModelRunner(model_path)
    if runner.n_features != features.shape[-1]:
        raise ModelError(f"{model_path} takes {runner.n_features} features per frame and the float model "
                         f"{features.shape[-1]}: pair a .keras model with its own conversions")
    gains = np.empty(features.shape[:2] + (runner.gain.size,))
    strengths = np.empty_like(gains)
    for example in range(features.shape[0]):
        runner.reset()
        for frame in range(features.shape[1]):
            gains[example, frame], strengths[example, frame] = runner(features[example, frame])
    return gains, strengths, runner


def gain_error(model_path, cache_dir, sequence_model):
    """Float (Keras) against int8 (LiteRT, frame by frame) on held-out features.

    For a joint model, ``far_end_frames`` says how many of the frames carried far-end inputs (echo
    examples of the cache), so that the proof says whether it covered them.
    """
    n_features = int(sequence_model.input_shape[-1])
    # Spread over the shards of every cache given (one example from each of 4 random shards, when there are that
    # many), so that a joint model's far-end frames do not depend on the order of --cache.
    features = load_feature_sequences(cache_dir, "validation", VERIFY_EXAMPLES, spread_seed=0, n_features=n_features)
    float_gain, float_strength = float_outputs(sequence_model, features)
    int8_gain, int8_strength, runner = runner_outputs(model_path, features)
    step = runner.gain_step
    gain_err, strength_err = np.abs(int8_gain - float_gain), np.abs(int8_strength - float_strength)
    # The far-end inputs only: a floor model's noise-floor inputs (from 138 on) are never all 0.
    echo = np.any(features[..., N_FEATURES:N_JOINT_FEATURES] != 0, axis=-1)     # all False for a 70-input model
    far_end_frames = int(echo.sum())
    far_end_error = float(np.abs(int8_gain - float_gain)[echo].mean()) if far_end_frames else None
    return {"frames": int(features.shape[0] * features.shape[1]), "output_step": float(step),
            "far_end_frames": far_end_frames, "gain_error_mean_far_end_frames": far_end_error,
            "gain_error_mean": float(gain_err.mean()), "gain_error_max": float(gain_err.max()),
            "gain_error_mean_steps": float(gain_err.mean() / step),
            "strength_error_mean": float(strength_err.mean()), "strength_error_max": float(strength_err.max())}


def verification_audio(count=3, seconds=4.0, corpus=None):
    """(clean, noisy, description) pairs: the corpus's validation split if given, else generated.

    ``count`` noisy mixtures, then one clean clip (noisy = clean): a model that
    survives quantisation on noise but not on clean speech must not pass.
    """
    rng = np.random.default_rng(2024)
    if corpus is not None:
        from training.corpus import scan
        from training.synth import AudioBank, make_example
        _, validation = scan(corpus)
        bank = AudioBank()
        pairs = [(*make_example(validation, rng, seconds, bank, clean_probability=0.0),
                  f"{corpus} validation split") for _ in range(count)]
        clean, _ = make_example(validation, rng, seconds, bank, clean_probability=1.0, rooms=())
        return pairs + [(clean, clean, f"{corpus} validation split")]
    from edge.io.synthetic import mix_at_snr, noise, speech_like
    kinds = ["pink", "babble-like", "hum", "white"]
    pairs = [(clean := speech_like(seconds, seed=500 + i),
              mix_at_snr(clean, noise(kinds[i % len(kinds)], seconds, seed=600 + i), [0.0, 5.0, 10.0][i % 3]),
              "generated speech and noise") for i in range(count)]
    clean = speech_like(seconds, seed=500 + count)
    return pairs + [(clean, clean, "generated speech and noise")]


def pesq_drop(model_path, sequence_model, corpus=None, settings=EnhancerSettings()):
    """PESQ-WB of the int8 model's output and of the float model's, through the same DSP."""
    scores = []
    for clean, noisy, source in verification_audio(corpus=corpus):
        features = analyse_signal(np.concatenate([noisy, np.zeros(4800)])).features[None].astype(np.float32)
        # A joint model: no reference, far-end inputs 0; a floor model's floor inputs as the enhancer computes them.
        features = model_inputs(features, int(sequence_model.input_shape[-1]))
        gain, strength = float_outputs(sequence_model, features)
        delay = LOOKAHEAD_FRAMES                             # output t describes frame t - LOOKAHEAD_FRAMES
        float_out = enhance_signal(noisy, FrameGains(gain[0, delay:].astype(np.float64),
                                                     strength[0, delay:].astype(np.float64)), settings)
        int8_out = enhance_signal(noisy, ModelRunner(model_path), settings)
        scores.append((pesq_wb(clean, float_out), pesq_wb(clean, int8_out), pesq_wb(clean, noisy)))
    scores = np.array(scores)
    return {"audio": source, "clips": len(scores), "pesq_float": float(scores[:, 0].mean()),
            "pesq_int8": float(scores[:, 1].mean()), "pesq_noisy": float(scores[:, 2].mean()),
            "pesq_drop": float(scores[:, 0].mean() - scores[:, 1].mean()),
            "clean_clip": {"pesq_input": float(scores[-1, 2]), "pesq_float": float(scores[-1, 0]),
                           "pesq_int8": float(scores[-1, 1]), "pesq_drop": float(scores[-1, 0] - scores[-1, 1])}}


def verify(model_path, cache_dir, float_model, config=None, audio=True, corpus=None, say=print):
    """Run all three checks; print them; return them as a dict whose ``passed`` says whether all passed."""
    load_metadata(model_path)                       # a missing, corrupt or unpaired model: ModelError, what to do
    report = {"flatbuffer": inspect_flatbuffer(model_path)}
    flat = report["flatbuffer"]
    say(f"ops: {', '.join(flat['ops'])}; tensor types: {', '.join(flat['tensor_dtypes'])}")
    report["gain_error"] = gain_error(model_path, cache_dir, float_model)
    error = report["gain_error"]
    say(f"float vs int8 over {error['frames']} held-out frames: gain error mean {error['gain_error_mean']:.4f} "
        f"({error['gain_error_mean_steps']:.2f} steps of {error['output_step']:.4f}), max {error['gain_error_max']:.4f}; "
        f"strength error mean {error['strength_error_mean']:.4f}")
    if error["gain_error_mean_far_end_frames"] is not None:
        say(f"far-end inputs: {error['far_end_frames']} of those frames carry echo (gain error mean there "
            f"{error['gain_error_mean_far_end_frames']:.4f})")
    if audio:
        report["pesq"] = pesq_drop(model_path, float_model, corpus)
        p = report["pesq"]
        say(f"PESQ-WB on {p['clips']} clips ({p['audio']}): noisy {p['pesq_noisy']:.3f}, float {p['pesq_float']:.3f}, "
            f"int8 {p['pesq_int8']:.3f}, drop {p['pesq_drop']:+.3f} (limit {MAX_PESQ_DROP}); the clean clip: "
            f"input {p['clean_clip']['pesq_input']:.3f}, float {p['clean_clip']['pesq_float']:.3f}, "
            f"int8 {p['clean_clip']['pesq_int8']:.3f}")
    failures = []
    if not flat["all_int8"]:
        failures.append(f"float tensors remain: {flat['float_tensors'][:5]}")
    if float_model.input_shape[-1] > N_FEATURES and error["gain_error_mean_far_end_frames"] is None:
        failures.append(f"far-end inputs not covered (none of the {error['frames']} validation frames drawn from the "
                        "caches given carries echo; pass a cache built with --echo-share, with validation shards)")
    if audio:
        for what, drop in (("PESQ drop", report["pesq"]["pesq_drop"]),
                           ("PESQ drop on the clean clip", report["pesq"]["clean_clip"]["pesq_drop"])):
            if drop > MAX_PESQ_DROP:
                failures.append(f"{what} {drop:.3f} > {MAX_PESQ_DROP}")
    report["passed"] = not failures
    say("verification " + ("PASSED" if not failures else "FAILED: " + "; ".join(failures)))
    return report
