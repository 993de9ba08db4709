"""How far inaudible input changes move a model's output: ``python -m evaluation.sensitivity MODEL...``.

Each signal is given three ways that nobody can tell apart: as float, as
16-bit samples, and with white noise at -100 dBFS added. For each model this
prints, per signal, the output SNR of each variant against the clean signal
and how far below the output's own level the outputs differ from the float
variant's. ``tests/test_noise_floor.py`` holds the shipped model to limits on
both; docs/training.md ('Inaudible input changes') has the figures.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.dsp import SAMPLE_RATE_HZ, EnhancerSettings, enhance_signal, highpass_signal
from edge.io.quality import si_sdr_db, snr_db
from edge.io.synthetic import harmonic_tone, mix_at_snr, noise, set_level

from .inputs import DEFAULT_CORPUS

SPEECH_LEVEL_DBFS = -26.0
FLOOR_DBFS = -80.0
FAINT_NOISE_DBFS = -100.0
#: Validation RAVDESS actors (corpus split): their pauses are digital silence.
VALIDATION_ACTORS_GLOB = "Actor_1[789]/*.flac"


def held_out_speech(data_dir, seconds=5.0):
    """Noise-gated speech of validation RAVDESS actors from ``data_dir`` (the team data), else None."""
    from training.corpus import load_audio
    pieces = []
    for path in sorted((Path(data_dir) / "speech" / "ravdess").glob(VALIDATION_ACTORS_GLOB))[::7]:
        pieces.append(load_audio(path))
        if sum(p.size for p in pieces) >= seconds * SAMPLE_RATE_HZ:
            break
    if not pieces:
        return None
    return set_level(np.concatenate(pieces)[:int(seconds * SAMPLE_RATE_HZ)], SPEECH_LEVEL_DBFS)


def signals(speech=None):
    """``{name: (clean, input)}``: a modulated tone in white noise; with ``speech``, three speech cases."""
    t = np.arange(3 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    tone = set_level(harmonic_tone(220.0, 3.0, seed=5) * (1 + 0.8 * np.sin(2 * np.pi * 3.0 * t)),
                     SPEECH_LEVEL_DBFS)
    cases = {"modulated tone in white noise": (tone, mix_at_snr(tone, noise("white", 3.0, seed=6), 0.0))}
    if speech is not None:
        floor = 10 ** (FLOOR_DBFS / 20) * np.random.default_rng(3).standard_normal(speech.size)
        seconds = speech.size / SAMPLE_RATE_HZ
        cases.update({
            "speech in noise at -5 dB": (speech, mix_at_snr(speech, noise("pink", seconds, seed=22), -5.0)),
            "speech with digital-silence gaps": (speech, speech),
            "speech on a -80 dBFS floor": (speech, speech + floor),
        })
    return cases


def variants(signal):
    """The same signal as float, as 16-bit samples, and with -100 dBFS white noise added."""
    sixteen_bit = np.round(np.clip(signal, -1, 1) * 32767) / 32767
    faint = signal + 10 ** (FAINT_NOISE_DBFS / 20) * np.random.default_rng(9).standard_normal(signal.size)
    return {"float": signal, "16-bit": sixteen_bit, "-100 dBFS noise added": faint}


def measure(runner, clean, signal, settings=EnhancerSettings()):
    """``(snr_db by variant, change_db by non-float variant)``: change is dB below the float output's level."""
    reference = highpass_signal(clean)
    outputs = {}
    for name, given in variants(signal).items():
        runner.reset()
        outputs[name] = enhance_signal(given, runner, settings)
    level = np.mean(outputs["float"] ** 2)
    change = {name: float(10 * np.log10(np.mean((output - outputs["float"]) ** 2) / level + 1e-30))
              for name, output in outputs.items() if name != "float"}
    return {name: float(snr_db(reference, output)) for name, output in outputs.items()}, change


def measure_quality(runner, clean, signal, settings=EnhancerSettings(), with_pesq=True):
    """``{variant: {"si_snr_db", "pesq_wb"}}`` of each variant's output against the clean signal.

    What a listener would notice: the int8 recurrent state may take another
    path after an inaudible change, but the quality of the result must not
    move (``pesq_wb`` is None without the ``pesq`` package or ``with_pesq``).
    """
    from .metrics import pesq_wb
    reference = highpass_signal(clean)
    scores = {}
    for name, given in variants(signal).items():
        runner.reset()
        output = enhance_signal(given, runner, settings)
        scores[name] = {"si_snr_db": float(si_sdr_db(reference, output)),
                        "pesq_wb": pesq_wb(reference, output) if with_pesq else None}
    return scores


def trace(runner, signal, other):
    """Where two inputs part inside the network, frame by frame.

    Returns ``{"frames", "input_frames", "first_input_frame", "state_frames",
    "state_elements_median", "state_elements", "gain_difference_max"}``: the frames
    whose model input differs (an int8 model: by a rounding step), the frames after
    that whose carried-over state differs, the median count of differing state
    elements over those, the total count, and the largest gain difference.
    """
    from edge.dsp import analyse_signal
    recorded = []
    for given in (signal, other):
        runner.reset()
        inputs, states, gains = [], [], []
        for features in analyse_signal(given).features:
            gain, _ = runner(features)
            inputs.append(runner.model_input())
            states.append(runner.state_snapshot())
            gains.append(gain.copy())
        recorded.append((np.array(inputs), np.array(states), np.array(gains)))
    (inputs_a, states_a, gains_a), (inputs_b, states_b, gains_b) = recorded
    input_frames = np.flatnonzero(np.any(inputs_a != inputs_b, axis=1))
    differing = np.sum(states_a != states_b, axis=1)
    return {"frames": int(inputs_a.shape[0]), "input_frames": int(input_frames.size),
            "first_input_frame": int(input_frames[0]) if input_frames.size else None,
            "state_frames": int(np.count_nonzero(differing)),
            "state_elements_median": float(np.median(differing[differing > 0])) if differing.any() else 0.0,
            "state_elements": int(states_a.shape[1]),
            "gain_difference_max": float(np.max(np.abs(gains_a - gains_b)))}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.sensitivity", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite models with their .json (int8 or float)")
    parser.add_argument("--data", type=Path, default=DEFAULT_CORPUS,
                        help="team data with speech/ravdess (default ../shared/data); without it, the tone only")
    parser.add_argument("--trace", action="store_true",
                        help="also show where float and 16-bit input part inside the network (input, state)")
    args = parser.parse_args(argv)
    from edge.model.engine import ModelRunner
    from edge.errors import PercepnetError
    speech = held_out_speech(args.data) if (args.data / "speech" / "ravdess").is_dir() else None
    if speech is None:
        print(f"no RAVDESS validation speech under {args.data}: the tone only", file=sys.stderr)
    cases = signals(speech)
    for path in args.models:
        try:
            runner = ModelRunner(path)
        except PercepnetError as exc:
            print(f"evaluation.sensitivity: {exc}", file=sys.stderr)
            return 2
        print(f"{path}:")
        for name, (clean, signal) in cases.items():
            snr, change = measure(runner, clean, signal)
            print(f"  {name}: output SNR " + ", ".join(f"{k} {v:.2f}" for k, v in snr.items())
                  + f" dB (spread {max(snr.values()) - min(snr.values()):.2f}); outputs differ "
                  + ", ".join(f"{k} {v:.1f}" for k, v in change.items()) + " dB below their level")
            if args.trace:
                path_of = trace(runner, *[variants(signal)[k] for k in ("float", "16-bit")])
                print(f"    float against 16-bit: the model's input differs in {path_of['input_frames']} of "
                      f"{path_of['frames']} frames (first: {path_of['first_input_frame']}); its state differs "
                      f"in {path_of['state_frames']} frames (median {path_of['state_elements_median']:.0f} of "
                      f"{path_of['state_elements']} elements); gains differ by up to "
                      f"{path_of['gain_difference_max']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
