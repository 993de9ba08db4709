"""What inference-time gain maps would buy: ``python -m evaluation.gain_maps MODEL --corpus CORPUS``.

The model runs once per clip of the validation groups (``--groups``); its
gains, strengths and voice-activity outputs are recorded and replayed through
the same DSP chain with each map applied: a power on the gains (``g**p``,
deeper suppression where the gain is low, like a Wiener gain at p = 2), a
stronger envelope post-filter, and extra attenuation where the network says
there is no speech. Prints PESQ-WB, STOI and DNSMOS (OVRL, SIG, BAK) per map
over the noisy clips, and PESQ-WB on the clean-speech ones: what each map
trades. docs/results.md ('Why DNSMOS trails') has the figures.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge.dsp import EnhancerSettings, enhance_signal, highpass_signal

from . import metrics
from .inputs import DEFAULT_CORPUS, synthesise_groups


def _power(p):
    return lambda gain, strength, vad: (gain ** p, strength)


def _vad_gate(full_at, depth):
    """Gains times ``depth`` where VAD = 0, rising linearly to 1 at VAD >= ``full_at``."""
    def gate(gain, strength, vad):
        weight = np.clip(vad / full_at, 0.0, 1.0)[:, None]
        return gain * (depth + (1.0 - depth) * weight), strength
    return gate


def _unchanged(gain, strength, vad):
    return gain, strength


#: ``(name, map over (gains, strengths, vad) per clip, DSP settings)``.
MAPS = (
    ("as shipped", _unchanged, EnhancerSettings()),
    ("gain ** 1.3", _power(1.3), EnhancerSettings()),
    ("gain ** 1.6", _power(1.6), EnhancerSettings()),
    ("gain ** 2", _power(2.0), EnhancerSettings()),
    ("post-filter beta 1", _unchanged, EnhancerSettings(postfilter_beta=1.0)),
    ("post-filter beta 2", _unchanged, EnhancerSettings(postfilter_beta=2.0)),
    ("x0.3 where VAD < 0.3", _vad_gate(0.3, 0.3), EnhancerSettings()),
    ("x0.3 where VAD < 0.5", _vad_gate(0.5, 0.3), EnhancerSettings()),
)


class Recorder:
    """A gain source that calls the model and keeps what it returned, frame by frame."""

    def __init__(self, runner):
        self.runner, self.gains, self.strengths, self.vad = runner, [], [], []

    def __call__(self, features):
        gain, strength = self.runner(features)
        self.gains.append(gain.copy())
        self.strengths.append(strength.copy())
        self.vad.append(1.0 if self.runner.vad is None else self.runner.vad)
        return gain, strength

    def replayable(self):
        """``(gains, strengths, vad)``, one row per call, for :class:`Replay`."""
        return np.array(self.gains), np.array(self.strengths), np.array(self.vad, dtype=np.float64)


class Replay:
    """A gain source that returns row k of recorded (and mapped) outputs on its k-th call.

    Call by call, not frame by frame: the model's first calls, which answer for
    frames before the signal, still set the release limit's state, as they did.
    """

    def __init__(self, gains, strengths):
        self.gains, self.strengths, self._calls = np.ascontiguousarray(gains), np.ascontiguousarray(strengths), 0

    def __call__(self, features):
        row, self._calls = self._calls, self._calls + 1          # IndexError past the recording: another signal
        return self.gains[row], self.strengths[row]


def record(runner, noisy):
    """Enhance ``noisy`` with the model; returns ``(output, (gains, strengths, vad))``."""
    runner.reset()
    recorder = Recorder(runner)
    output = enhance_signal(noisy, recorder)
    return output, recorder.replayable()


def replay(noisy, recorded, gain_map=_unchanged, settings=EnhancerSettings()):
    """The output the DSP chain gives with the recorded outputs passed through ``gain_map``."""
    return enhance_signal(noisy, Replay(*gain_map(*recorded)), settings)


def score_maps(runner, clips, dnsmos, say=print):
    """``{map name: [per-clip scores]}`` over ``clips`` (each has a clean reference)."""
    rows = {name: [] for name, _, _ in MAPS}
    for index, clip in enumerate(clips):
        padded = np.pad(clip.noisy, (0, metrics.MAX_LAG))
        _, recorded = record(runner, padded)
        reference = highpass_signal(clip.clean)
        reference_16k = metrics.to_metric_rate(reference)
        for name, gain_map, settings in MAPS:
            aligned, _ = metrics.align_to(reference, replay(padded, recorded, gain_map, settings))
            scores = metrics.reference_scores(reference, aligned, reference_16k, ())
            scores.update({f"dnsmos_{k}": v for k, v in dnsmos(metrics.to_metric_rate(aligned)).items()})
            rows[name].append({**scores, "clean": bool(np.isinf(clip.snr_db)), "group": clip.group})
        say(f"[{index + 1}/{len(clips)}] {clip.name}")
    return rows


def table(rows):
    """Markdown: means over the noisy clips, and PESQ-WB over the clean-speech ones."""
    lines = ["| map | PESQ-WB | STOI | DNSMOS OVRL | SIG | BAK | clean speech PESQ-WB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, scores in rows.items():
        noisy = [s for s in scores if not s["clean"]]
        clean = [s for s in scores if s["clean"]]
        mean = lambda key, subset: np.mean([s[key] for s in subset]) if subset else float("nan")
        lines.append(f"| {name} | {mean('pesq_wb', noisy):.2f} | {mean('stoi', noisy):.3f} | "
                     f"{mean('dnsmos_ovrl', noisy):.2f} | {mean('dnsmos_sig', noisy):.2f} | "
                     f"{mean('dnsmos_bak', noisy):.2f} | {mean('pesq_wb', clean):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.gain_maps", description=__doc__.split("\n")[0])
    parser.add_argument("model", help=".tflite model with its sidecar .json")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus built by percepnet-train corpus")
    parser.add_argument("--clips-per-snr", type=int, default=2, help="as in --groups (default 2)")
    parser.add_argument("--out", help="also write the per-clip scores to this JSON file")
    args = parser.parse_args(argv)
    from edge.engine import ModelRunner
    from edge.errors import PercepnetError

    def say(message):
        print(message, file=sys.stderr, flush=True)

    try:
        runner = ModelRunner(args.model)
        clips = synthesise_groups(args.corpus, args.clips_per_snr, say=say)
    except PercepnetError as exc:
        say(f"gain_maps: {exc}")
        return 2
    dnsmos, reason = metrics.Dnsmos.load()
    if dnsmos is None:
        say(f"gain_maps: DNSMOS is needed here and cannot run: {reason}")
        return 2
    rows = score_maps(runner, clips, dnsmos, say)
    if args.out:
        Path(args.out).write_text(json.dumps(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
