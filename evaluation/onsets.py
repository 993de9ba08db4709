"""Noise that starts after quiet: ``python -m evaluation.onsets MODEL... [--corpus CORPUS]``.

An always-on daemon meets noise that starts while the microphone hears only
its floor; every training example and evaluation clip starts with its noise.
For each model this prints the attenuation, second by second, of 8 s of
stationary pink noise at -35 dBFS from the first frame, after 0.5 s of a
-70 dBFS floor, after 0.5 s of digital silence, and after white noise that
stopped 2 s before (noise that stops and restarts). With ``--corpus`` (a corpus
built by ``percepnet-train corpus``) it also scores the 20 noisy
validation-group clips (one per SNR and group, seed 2024) with and without a
2 s floor before each. docs/training.md (*Noise onsets after quiet*) quotes
these figures; ``tests/test_noise_onset.py`` holds the shipped model to them.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.dsp import SAMPLE_RATE_HZ, enhance_signal, highpass_signal
from edge.io.synthetic import noise, set_level

NOISE_DBFS = -35.0
NOISE_SECONDS = 8
FLOOR_DBFS = -70.0
RESTART = "restart"
LEADS = {"from the first frame": None, "after 0.5 s of a -70 dBFS floor": FLOOR_DBFS,
         "after 0.5 s of digital silence": "silence",
         "after 4 s of white noise then 2 s of the floor": RESTART}
CLIP_LEAD_SECONDS = 2.0


def _lead(seconds, floor_dbfs, seed):
    if floor_dbfs == RESTART:                    # earlier noise, then quiet: the noise stops and restarts
        earlier = set_level(noise("white", 4.0, seed=seed + 10), NOISE_DBFS)
        return np.concatenate([earlier, _lead(2.0, FLOOR_DBFS, seed)])
    samples = int(seconds * SAMPLE_RATE_HZ)
    if floor_dbfs is None or floor_dbfs == "silence":
        return np.zeros(samples if floor_dbfs == "silence" else 0)
    return 10 ** (floor_dbfs / 20) * np.random.default_rng(seed).standard_normal(samples)


def attenuation_per_second(runner, floor_dbfs):
    """dB removed in each second of the pink noise after the lead-in (positive: attenuated)."""
    pink = set_level(noise("pink", float(NOISE_SECONDS), seed=3), NOISE_DBFS)
    lead = _lead(0.5, floor_dbfs, seed=1)
    runner.reset()
    output = enhance_signal(np.concatenate([lead, pink]), runner)[lead.size:]
    return [-10 * np.log10(np.mean(output[s:s + SAMPLE_RATE_HZ] ** 2) / np.mean(pink[s:s + SAMPLE_RATE_HZ] ** 2))
            for s in range(0, NOISE_SECONDS * SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)]


def pesq_with_lead_in(runners, corpus):
    """Mean PESQ-WB per (model, lead-in) over the noisy validation-group clips, and the noisy input's."""
    from pesq import pesq
    from scipy.signal import resample_poly
    from . import inputs
    clips = [c for c in inputs.synthesise_groups(corpus, 1, 4.0, 2024, lambda *_: None) if np.isfinite(c.snr_db)]
    floor = _lead(CLIP_LEAD_SECONDS, FLOOR_DBFS, seed=0)
    scores = {}
    for clip in clips:
        reference = resample_poly(highpass_signal(clip.clean), 1, 3)
        scores.setdefault(("noisy input", ""), []).append(
            pesq(16000, reference, resample_poly(clip.noisy, 1, 3), "wb"))
        for name, runner in runners.items():
            for lead in ("none", f"{CLIP_LEAD_SECONDS:g} s floor"):
                given = clip.noisy if lead == "none" else np.concatenate([floor, clip.noisy])
                runner.reset()
                output = enhance_signal(given, runner)[given.size - clip.noisy.size:]
                scores.setdefault((name, lead), []).append(pesq(16000, reference, resample_poly(output, 1, 3), "wb"))
    return {key: (float(np.mean(values)), len(values)) for key, values in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.onsets", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite models with their .json")
    parser.add_argument("--corpus", type=Path, help="a built corpus: also score group clips with a lead-in")
    args = parser.parse_args(argv)
    from edge.model.engine import ModelRunner
    from edge.errors import PercepnetError
    try:
        runners = {path.name: ModelRunner(path) for path in args.models}
    except PercepnetError as exc:
        print(f"evaluation.onsets: {exc}", file=sys.stderr)
        return 2
    for name, runner in runners.items():
        print(f"{name}: pink noise at {NOISE_DBFS:g} dBFS, dB attenuated per second over {NOISE_SECONDS} s")
        for label, floor in LEADS.items():
            values = attenuation_per_second(runner, floor)
            print(f"  {label}: {min(values):.1f}-{max(values):.1f} (" + " ".join(f"{v:.1f}" for v in values) + ")")
    if args.corpus:
        for (name, lead), (mean, count) in pesq_with_lead_in(runners, args.corpus).items():
            print(f"PESQ-WB {name} {lead}: {mean:.3f} over {count} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
