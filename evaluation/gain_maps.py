"""What inference-time gain maps would buy: ``python -m evaluation.gain_maps MODEL --corpus CORPUS``.

The model runs once per clip of the validation groups (``--groups``); its
gains, strengths and voice-activity outputs are recorded and replayed through
the same DSP chain with each map applied: a power on the gains (``g**p``,
deeper suppression where the gain is low, like a Wiener gain at p = 2), a
stronger envelope post-filter, and extra attenuation where the network says
there is no speech. The pitch filter's share is mapped too: strengths set to
0 (no comb filter) or raised to a power below 1, and the oracle's gains or
strengths (from the clean reference) put in place of one of the model's two
outputs, which bounds what a better head of each kind could buy. Last, the
oracle itself, and the oracle towards a target with the reference's own
noise floor taken out: what a cleaner training target could buy. Prints
PESQ-WB, STOI and DNSMOS (OVRL, SIG, BAK) per map over the noisy clips, and
PESQ-WB on the clean-speech ones: what each map trades. docs/results.md ('Why
DNSMOS trails') has the figures.

``--realrec DIR`` scores the maps that need no reference on the real recordings
of ``python -m evaluation.realrec build`` instead: DNSMOS over the normal input
level band (-35..-15 dBFS, where models are chosen) and over all clips. With
``--teacher`` the teacher's output (DeepFilterNet3, labelled as
``percepnet-train teacher-cache`` labels: :func:`training.teacher.teacher_pair`)
stands in for the missing reference, so the oracle maps say what a student of
the teacher's targets could reach on these very clips: the ceiling of the
teacher route with our DSP. Never a training signal: the set stays for evaluation.
``--teacher-level-dbfs`` sets the level the teacher hears each clip at.

Three maps say where an oracle loses against its target: ``oracle, no
pitch filter``, ``bin oracle (481 bins)`` (the target's magnitude in every
STFT bin, no bands: the best a band representation could do) and
``reference itself`` (the target as the output). docs/training.md ('Where the
ceiling is lost') has the figures.

Four split maps say where the student loses against the oracle: the oracle's
gains on one part of the band-frames, the model's on the rest (where the oracle
removes a band or keeps it; in the reference's speech-free frames or its speech
frames). docs/training.md ('Where the student loses on real recordings') has
the figures. ``--table OUT.json`` prints a saved real-recording run's tables
again, with each map's paired difference to 'as shipped', optionally
``--without`` some sources.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge.dsp import (HOP_SAMPLES, LOOKAHEAD_FRAMES, ORACLE_SETTINGS, SAMPLE_RATE_HZ, EnhancerSettings,
                      enhance_signal, highpass_signal, oracle_gains)
from edge.dsp.constants import N_BANDS, WINDOW_SAMPLES
from edge.dsp.gains import MAX_ATTENUATION_DB, attenuation_floor
from edge.dsp.stft import analyse_frames, vorbis_window
from edge.dsp.features import ENERGY_FLOOR, LOG_ENERGY, LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE
from edge.errors import UsageError

from . import metrics
from .inputs import DEFAULT_CORPUS, synthesise_groups
from .levels import NORMAL, clip_level, level_band


class Recorded(NamedTuple):
    """The model's outputs per call (row k answers call k), and the oracle's, call-indexed alike."""
    gains: np.ndarray
    strengths: np.ndarray
    vad: np.ndarray
    oracle_gains: np.ndarray = None
    oracle_strengths: np.ndarray = None
    clean_energy: np.ndarray = None             # the reference's band energies, 0 before the first frame
    noisy_energy: np.ndarray = None             # the input's band energies of the frame each call's gains apply to
    reference: np.ndarray = None                # the reference signal itself (the teacher's output with --teacher)


def _power(p):
    return lambda rec: (rec.gains ** p, rec.strengths)


def _vad_gate(full_at, depth):
    """Gains times ``depth`` where VAD = 0, rising linearly to 1 at VAD >= ``full_at``."""
    def gate(rec):
        weight = np.clip(rec.vad / full_at, 0.0, 1.0)[:, None]
        return rec.gains * (depth + (1.0 - depth) * weight), rec.strengths
    return gate


def _background_wiener(floor_db, combine=np.minimum, alpha=0.98):
    """The gains bounded by a decision-directed Wiener gain (Ephraim and Malah's a-priori SNR, ``alpha``) against
    the background that :class:`edge.dsp.comfort.ComfortNoise` tracks, floored at ``floor_db``: a classic
    stationary-noise suppressor, applied where the network leaves noise in a band whose energy sits at the
    background. ``combine``: ``np.minimum`` (the lower of the two) or ``np.multiply``."""
    from edge.dsp.bands import band_matrix
    from edge.dsp.comfort import MINIMUM_BIAS_DB, ComfortNoise
    floor = 10.0 ** (floor_db / 20.0)

    def bound(rec):
        tracker, gains = ComfortNoise(band_matrix()), rec.gains.copy()
        kept = np.zeros(gains.shape[1])                       # the last frame's clean-energy estimate
        for k, energy in enumerate(rec.noisy_energy):
            background = tracker.track(energy) * 10.0 ** (MINIMUM_BIAS_DB / 10.0)
            known = background > 0                            # 0 while a band learns (its first 1.8 s)
            safe = np.where(known, background, 1.0)
            prior_snr = alpha * kept / safe + (1.0 - alpha) * np.maximum(energy / safe - 1.0, 0.0)
            wiener = np.where(known, np.maximum(prior_snr / (1.0 + prior_snr), floor), 1.0)
            gains[k] = combine(gains[k], wiener)
            kept = wiener ** 2 * energy
        return gains, rec.strengths
    return bound


def _decisive(exponent):
    """Both ends pushed outward: gains under 0.5 towards 0, those over it towards 1, ``exponent`` > 1 (0.5 stays).

    The student is calibrated but not decisive (docs/training.md, *How far the student stays from the
    teacher*): it keeps a quarter of the gain where the teacher removes a band and takes an eighth where
    the teacher keeps it. ``gain ** p`` only pushes down, so it buys BAK with SIG; this map asks whether
    pushing both ways buys both.
    """
    def decide(rec):
        low = 0.5 * (2.0 * rec.gains) ** exponent
        high = 1.0 - 0.5 * (2.0 * (1.0 - rec.gains)) ** exponent
        return np.where(rec.gains < 0.5, low, high), rec.strengths
    return decide


def _unchanged(rec):
    return rec.gains, rec.strengths


def _strength_power(p):
    return lambda rec: (rec.gains, rec.strengths ** p)


def _no_pitch_filter(rec):
    return rec.gains, np.zeros_like(rec.strengths)


def _oracle_strengths(rec):
    return rec.gains, rec.oracle_strengths


def _oracle_gains(rec):
    return rec.oracle_gains, rec.strengths


#: A band-frame the oracle takes 20 dB or more down: where the reference says the band holds noise only.
REMOVED_GAIN = 0.1
#: A frame whose reference energy sits this far under the clip's 95th percentile: speech-free by the reference.
SPEECH_FREE_DB = 25.0


def speech_free_frames(rec):
    """Per call: True where the reference's total band energy is :data:`SPEECH_FREE_DB` under its 95th percentile
    over the clip (calls before the first frame, whose reference energy is 0, count as speech-free)."""
    total_db = 10.0 * np.log10(np.sum(rec.clean_energy, axis=1) + 1e-20)
    return total_db < np.percentile(total_db, 95) - SPEECH_FREE_DB


def _oracle_gains_where(part):
    """The oracle's gains on one part of the band-frames, the model's on the rest; the model's strengths.

    Splitting the student's distance from the oracle in two says where it is lost: in the noise the reference
    removes (``removed``: band-frames the oracle takes :data:`REMOVED_GAIN` or lower; ``speech-free``: whole
    frames by :func:`speech_free_frames`) or in what the reference keeps (``kept``, ``speech``: the rest).
    """
    if part not in ("removed", "kept", "speech-free", "speech"):
        raise ValueError(f"unknown part {part!r}: removed, kept, speech-free or speech")

    def split(rec):
        if part in ("removed", "kept"):
            chosen = rec.oracle_gains <= REMOVED_GAIN
        else:
            chosen = np.broadcast_to(speech_free_frames(rec)[:, None], rec.gains.shape)
        if part in ("kept", "speech"):
            chosen = ~chosen
        return np.where(chosen, rec.oracle_gains, rec.gains), rec.strengths
    return split


def _oracle_without_pitch_filter(rec):
    return rec.oracle_gains, np.zeros_like(rec.oracle_strengths)


def _reference_itself(noisy, rec):
    """The reference as the output, high-passed as the DSP's input is: what the oracles aim at."""
    return highpass_signal(rec.reference)


def bin_oracle(noisy, reference, max_attenuation_db=MAX_ATTENUATION_DB):
    """``noisy`` with the ideal gain of every STFT bin (481 of 50 Hz, not 34 bands), no pitch filter.

    Each bin keeps the reference's magnitude (``|R| / |X|``, clipped to the
    attenuation floor .. 1) and the input's phase, through the enhancer's
    own window and hop, both signals high-passed as the DSP's input is:
    the ceiling of any gain a band representation could apply, and so what
    the 34 bands and the comb filter cost. Output aligned with the input.
    """
    x, r = highpass_signal(noisy), highpass_signal(reference)
    n_frames = -(-x.size // HOP_SAMPLES) + 1
    padded_x, padded_r = (np.pad(s, (HOP_SAMPLES, n_frames * HOP_SAMPLES - s.size)) for s in (x, r))
    starts = np.arange(n_frames) * HOP_SAMPLES
    rows = starts[:, None] + np.arange(WINDOW_SAMPLES)
    window = vorbis_window()
    spectra_x, spectra_r = analyse_frames(padded_x[rows], window), analyse_frames(padded_r[rows], window)
    gain = np.clip(np.abs(spectra_r) / np.maximum(np.abs(spectra_x), 1e-30), attenuation_floor(max_attenuation_db), 1.0)
    frames = np.fft.irfft(spectra_x * gain, n=WINDOW_SAMPLES, axis=1) * window
    out = np.zeros(padded_x.size)
    for start, frame in zip(starts, frames):                 # overlap-add: the window is power-complementary
        out[start:start + WINDOW_SAMPLES] += frame
    return out[HOP_SAMPLES:HOP_SAMPLES + x.size]


def _bin_oracle(noisy, rec):
    return bin_oracle(noisy, rec.reference)


def _oracle_without_reference_floor(percentile, factor):
    """Oracle gains towards a target with ``factor`` times the reference's own floor taken out of each band.

    The floor is the band's ``percentile``-th energy over the clip: the room
    and microphone noise the 'clean' recordings carry, which DNSMOS marks down.
    """
    def oracle(rec):
        floor = np.percentile(rec.clean_energy, percentile, axis=0)
        kept = np.maximum(rec.clean_energy - factor * floor, 0.0) / np.maximum(rec.clean_energy, 1e-30)
        return np.clip(rec.oracle_gains * np.sqrt(kept), 0.0, 1.0), rec.oracle_strengths
    return oracle


#: ``(name, map over a Recorded clip -> (gains, strengths), DSP settings)``; settings ``None``: a map that makes
#: the output itself, ``map(noisy, Recorded) -> signal``, without the model's outputs.
MAPS = (
    ("as shipped", _unchanged, EnhancerSettings()),
    ("gain ** 0.6", _power(0.6), EnhancerSettings()),
    ("gain ** 0.8", _power(0.8), EnhancerSettings()),
    ("gain ** 1.3", _power(1.3), EnhancerSettings()),
    ("gain ** 1.6", _power(1.6), EnhancerSettings()),
    ("gain ** 2", _power(2.0), EnhancerSettings()),
    ("decisive 1.5", _decisive(1.5), EnhancerSettings()),
    ("decisive 2", _decisive(2.0), EnhancerSettings()),
    ("post-filter beta 1", _unchanged, EnhancerSettings(postfilter_beta=1.0)),
    ("post-filter beta 2", _unchanged, EnhancerSettings(postfilter_beta=2.0)),
    ("x0.3 where VAD < 0.3", _vad_gate(0.3, 0.3), EnhancerSettings()),
    ("x0.3 where VAD < 0.5", _vad_gate(0.5, 0.3), EnhancerSettings()),
    ("no pitch filter (strength 0)", _no_pitch_filter, EnhancerSettings()),
    ("strength ** 0.5", _strength_power(0.5), EnhancerSettings()),
    ("background Wiener bound, floor -15 dB", _background_wiener(-15.0), EnhancerSettings()),
    ("background Wiener bound, floor -10 dB", _background_wiener(-10.0), EnhancerSettings()),
    ("background Wiener x gain, floor -10 dB", _background_wiener(-10.0, np.multiply), EnhancerSettings()),
    ("oracle strengths, model gains", _oracle_strengths, EnhancerSettings()),
    ("oracle gains, model strengths", _oracle_gains, EnhancerSettings()),
    ("oracle gains where it removes the band", _oracle_gains_where("removed"), EnhancerSettings()),
    ("oracle gains where it keeps the band", _oracle_gains_where("kept"), EnhancerSettings()),
    ("oracle gains in speech-free frames", _oracle_gains_where("speech-free"), EnhancerSettings()),
    ("oracle gains in speech frames", _oracle_gains_where("speech"), EnhancerSettings()),
    ("oracle", lambda rec: (rec.oracle_gains, rec.oracle_strengths), ORACLE_SETTINGS),
    ("oracle, no pitch filter", _oracle_without_pitch_filter, ORACLE_SETTINGS),
    ("bin oracle (481 bins)", _bin_oracle, None),
    ("reference itself", _reference_itself, None),
    ("oracle, reference floor x2 removed", _oracle_without_reference_floor(10, 2.0), ORACLE_SETTINGS),
    ("oracle, reference floor x4 removed", _oracle_without_reference_floor(20, 4.0), ORACLE_SETTINGS),
)
#: Maps that read the oracle's gains or strengths, so need a clean reference: left out for real recordings.
NEEDS_REFERENCE = frozenset({"oracle strengths, model gains", "oracle gains, model strengths", "oracle",
                             "oracle gains where it removes the band", "oracle gains where it keeps the band",
                             "oracle gains in speech-free frames", "oracle gains in speech frames",
                             "oracle, no pitch filter", "bin oracle (481 bins)", "reference itself",
                             "oracle, reference floor x2 removed", "oracle, reference floor x4 removed"})


class Recorder:
    """A gain source that calls the model and keeps what it returned, frame by frame."""

    def __init__(self, runner):
        self.runner, self.gains, self.strengths, self.vad, self.energy = runner, [], [], [], []
        #: A joint echo-and-noise model reads 138 features: with no far end, its 68 far-end inputs are 0.
        self.far_end_inputs = bool(getattr(runner, "far_end_inputs", False))
        self.floor_inputs = bool(getattr(runner, "floor_inputs", False))

    def __call__(self, features):
        log_energy = np.asarray(features, dtype=np.float64).reshape(-1)[LOG_ENERGY]
        self.energy.append(np.maximum(10.0 ** (log_energy / LOG_ENERGY_SCALE - LOG_ENERGY_OFFSET) - ENERGY_FLOOR, 0.0))
        gain, strength = self.runner(features)
        self.gains.append(gain.copy())
        self.strengths.append(strength.copy())
        self.vad.append(1.0 if self.runner.vad is None else self.runner.vad)
        return gain, strength

    def replayable(self):
        """A :class:`Recorded` (no oracle yet), one row per call, for :func:`replay`."""
        # Call k's features describe the newest frame; its gains apply LOOKAHEAD_FRAMES frames earlier.
        energy = np.zeros((len(self.energy), N_BANDS))
        energy[LOOKAHEAD_FRAMES:] = np.array(self.energy)[:energy.shape[0] - LOOKAHEAD_FRAMES]
        return Recorded(np.array(self.gains), np.array(self.strengths), np.array(self.vad, dtype=np.float64),
                        noisy_energy=energy)


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
    """Enhance ``noisy`` with the model; returns ``(output, Recorded)``."""
    runner.reset()
    recorder = Recorder(runner)
    output = enhance_signal(noisy, recorder)
    return output, recorder.replayable()


def with_oracle(recorded, clean, noisy):
    """``recorded`` plus the oracle's gains and strengths for ``clean``/``noisy``, indexed by call.

    Call k answers frame k - LOOKAHEAD_FRAMES (as :class:`edge.dsp.FrameGains`
    does); calls before the first frame get unity gains and no pitch filter.
    """
    n_calls = recorded.gains.shape[0]
    pad = n_calls * HOP_SAMPLES - noisy.size
    gains, strengths, _, clean_analysis = oracle_gains(np.pad(clean, (0, pad)), np.pad(noisy, (0, pad)))
    by_call = {"oracle_gains": np.ones_like(recorded.gains), "oracle_strengths": np.zeros_like(recorded.strengths),
               "clean_energy": np.zeros_like(recorded.gains)}
    for name, frames in zip(by_call, (gains, strengths, clean_analysis.energy)):
        by_call[name][LOOKAHEAD_FRAMES:] = frames[:n_calls - LOOKAHEAD_FRAMES]
    return recorded._replace(**by_call, reference=np.asarray(clean, dtype=np.float64))


def replay(noisy, recorded, gain_map=_unchanged, settings=EnhancerSettings()):
    """The output the DSP chain gives with the recorded outputs passed through ``gain_map``
    (``settings`` None: ``gain_map(noisy, recorded)`` is the output)."""
    if settings is None:
        return gain_map(noisy, recorded)
    return enhance_signal(noisy, Replay(*gain_map(recorded)), settings)


def score_maps(runner, clips, dnsmos, say=print, names=None, teacher=None, teacher_level_dbfs="default"):
    """``{map name: [per-clip scores]}`` over ``clips``, for the maps named in ``names`` (default: all
    of :data:`MAPS`). A clip without a clean reference gets DNSMOS only, its input level band and its input's
    DNSMOS BAK; give it only maps outside :data:`NEEDS_REFERENCE`, unless a ``teacher`` (a
    :class:`training.teacher.DeepFilterNetTeacher`) is given, whose output then stands in for the reference: the
    teacher hears each clip at ``teacher_level_dbfs`` RMS ("default": the teacher cache's level,
    :data:`training.teacher.TEACHER_LEVEL_DBFS`; None: as recorded)."""
    maps = [m for m in MAPS if names is None or m[0] in names]
    rows = {name: [] for name, _, _ in maps}
    for index, clip in enumerate(clips):
        if clip.clean is None:                   # a real recording: DNSMOS only, tagged with its input level
            needing = [name for name, _, _ in maps if name in NEEDS_REFERENCE]
            if needing and teacher is None:
                raise UsageError(f"{clip.name} has no clean reference, which the maps {', '.join(needing)} need: "
                                 "leave them out (--maps) for real recordings")
            _, recorded = record(runner, clip.noisy)
            if needing:
                from training.teacher import TEACHER_LEVEL_DBFS, teacher_pair
                level = TEACHER_LEVEL_DBFS if teacher_level_dbfs == "default" else teacher_level_dbfs
                target, _, _ = teacher_pair(clip.noisy, teacher, teacher.lag, level_dbfs=level)
                recorded = with_oracle(recorded, target, clip.noisy)
            band = level_band(clip_level(clip, SAMPLE_RATE_HZ)[0])
            scored = []
            for name, gain_map, settings in maps:
                output = replay(clip.noisy, recorded, gain_map, settings)
                scores = {f"dnsmos_{k}": v for k, v in dnsmos(metrics.to_metric_rate(output)).items()}
                scored.append((name, {**scores, "clean": False, "group": clip.group, "level_band": band,
                                      "clip": clip.name}))
            input_bak = dnsmos(metrics.to_metric_rate(clip.noisy))["bak"]     # for a breakdown by noisiness
            for name, scores in scored:
                rows[name].append({**scores, "input_bak": input_bak})
            say(f"[{index + 1}/{len(clips)}] {clip.name}")
            continue
        padded = np.pad(clip.noisy, (0, metrics.MAX_LAG))
        _, recorded = record(runner, padded)
        recorded = with_oracle(recorded, np.pad(clip.clean, (0, metrics.MAX_LAG)), padded)
        reference = highpass_signal(clip.clean)
        reference_16k = metrics.to_metric_rate(reference)
        for name, gain_map, settings in maps:
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


def table_without_reference(rows, baseline="as shipped", without=()):
    """Markdown: DNSMOS means over the normal-level clips and over all of them, and each map's OVRL minus the
    ``baseline`` map's over the normal-level clips, paired by clip, with its 95 % bootstrap interval (seeded).
    ``without``: sources (the part of a clip's name before '/') whose clips are left out."""
    from .report import bootstrap_interval
    sources = {s["clip"].split("/")[0] for scores in rows.values() for s in scores}
    unknown = sorted(set(without) - sources)
    if unknown:
        raise UsageError(f"no clips of {', '.join(unknown)} to leave out; the sources are {', '.join(sorted(sources))}")
    rows = {name: [s for s in scores if s["clip"].split("/")[0] not in without] for name, scores in rows.items()}
    paired_heading = f"normal: OVRL - {baseline} (95 %)" if baseline in rows else f"(no '{baseline}' map to pair with)"
    lines = [f"| map | normal level: DNSMOS OVRL | SIG | BAK | all clips: OVRL | {paired_heading} |",
             "|---|---:|---:|---:|---:|---|"]
    base = {s["clip"]: s["dnsmos_ovrl"] for s in rows.get(baseline, []) if s["level_band"] == NORMAL}
    for name, scores in rows.items():
        normal = [s for s in scores if s["level_band"] == NORMAL]
        mean = lambda key, subset: np.mean([s[key] for s in subset]) if subset else float("nan")
        diffs = [s["dnsmos_ovrl"] - base[s["clip"]] for s in normal if s["clip"] in base]
        paired = ""
        if name != baseline and len(diffs) > 1:
            low, high = bootstrap_interval(diffs, np.random.default_rng(0))
            paired = f"{np.mean(diffs):+.3f} ({low:+.3f} .. {high:+.3f})"
        lines.append(f"| {name} | {mean('dnsmos_ovrl', normal):.3f} | {mean('dnsmos_sig', normal):.3f} | "
                     f"{mean('dnsmos_bak', normal):.3f} | {mean('dnsmos_ovrl', scores):.3f} | {paired} |")
    clips = next(iter(rows.values()), [])
    normal_count = sum(s["level_band"] == NORMAL for s in clips)
    left_out = f", without {', '.join(without)}" if without else ""
    return f"{normal_count} of {len(clips)} clips at normal level ({NORMAL}){left_out}\n\n" + "\n".join(lines)


def saved_real_recording_rows(path):
    """The rows an earlier ``--realrec ... --out`` wrote to ``path``: ``{map: [per-clip scores]}``, checked."""
    needed = {"clip", "level_band", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"}
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read it as JSON ({type(exc).__name__}: {exc}); give the file "
                         f"--realrec ... --out wrote") from None
    if not (isinstance(rows, dict) and rows and all(isinstance(scores, list) and scores and all(
            isinstance(s, dict) and needed <= set(s) for s in scores) for scores in rows.values())):
        raise UsageError(f"{path} is not a --out file of --realrec (each map a list of per-clip scores with "
                         f"{', '.join(sorted(needed))}); give the file --realrec ... --out wrote")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.gain_maps", description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help=".tflite model with its sidecar .json (not with --table)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus built by percepnet-train corpus")
    parser.add_argument("--clips-per-snr", type=int, default=2, help="as in --groups (default 2)")
    parser.add_argument("--realrec", metavar="DIR", help="real recordings (python -m evaluation.realrec build) "
                        "instead of the groups: DNSMOS only, the maps that need no reference")
    parser.add_argument("--teacher", action="store_true",
                        help="with --realrec: DeepFilterNet3's output stands in for the reference, so the oracle "
                             "maps score the teacher's targets (the ceiling of a student of the teacher)")
    parser.add_argument("--teacher-level-dbfs", metavar="DB", default="default",
                        help="with --teacher: the RMS level the teacher hears each clip at, in dBFS, or 'native' "
                             "(as recorded); default: the teacher cache's (training.teacher.TEACHER_LEVEL_DBFS)")
    parser.add_argument("--out", help="also write the per-clip scores to this JSON file")
    parser.add_argument("--maps", nargs="+", metavar="NAME", choices=[name for name, _, _ in MAPS],
                        help="score only these maps (default: all); 'as shipped' is the baseline")
    parser.add_argument("--table", metavar="JSON", help="print the tables of an earlier --out file of real "
                        "recordings again (no model runs)")
    parser.add_argument("--without", nargs="+", default=(), metavar="SOURCE",
                        help="with --table: leave out the clips of these sources (the clip name before '/')")
    args = parser.parse_args(argv)
    from edge.model.engine import ModelRunner
    from edge.errors import PercepnetError

    def say(message):
        print(message, file=sys.stderr, flush=True)

    if args.without and not args.table:
        say("gain_maps: --without leaves sources out of a saved run's tables: give --table JSON with it")
        return 2
    if args.table:
        try:
            rows = saved_real_recording_rows(args.table)
            print(table_without_reference(rows, without=tuple(args.without)))
        except PercepnetError as exc:
            say(f"gain_maps: {exc}")
            return 2
        return 0
    if not args.model:
        say("gain_maps: give a MODEL (.tflite), or --table JSON to print an earlier run's tables")
        return 2

    try:
        runner = ModelRunner(args.model)
        if args.realrec:
            from .realrec import load_clips
            clips = load_clips(args.realrec, say)
        else:
            clips = synthesise_groups(args.corpus, args.clips_per_snr, say=say)
    except PercepnetError as exc:
        say(f"gain_maps: {exc}")
        return 2
    dnsmos, reason = metrics.Dnsmos.load()
    if dnsmos is None:
        say(f"gain_maps: DNSMOS is needed here and cannot run: {reason}")
        return 2
    names = args.maps
    teacher = None
    teacher_level = args.teacher_level_dbfs
    if teacher_level not in ("default", "native"):
        try:
            teacher_level = float(teacher_level)
        except ValueError:
            say(f"gain_maps: --teacher-level-dbfs takes a level in dBFS (e.g. -20) or 'native', not {teacher_level!r}")
            return 2
    teacher_level = None if teacher_level == "native" else teacher_level
    if args.teacher and not args.realrec:
        say("gain_maps: --teacher stands in for the reference of real recordings: give --realrec too")
        return 2
    if args.realrec and args.teacher:
        from training.teacher import DeepFilterNetTeacher
        try:
            teacher = DeepFilterNetTeacher()
        except PercepnetError as exc:
            say(f"gain_maps: --teacher needs DeepFilterNet3: {exc}")
            return 2
    elif args.realrec:
        asked = [name for name in names or () if name in NEEDS_REFERENCE]
        if asked:
            say(f"gain_maps: --realrec has no clean reference, which {', '.join(asked)} need: add --teacher, "
                f"or leave them out")
            return 2
        names = names or [name for name, _, _ in MAPS if name not in NEEDS_REFERENCE]
    rows = score_maps(runner, clips, dnsmos, say, names, teacher, teacher_level)
    if args.out:
        Path(args.out).write_text(json.dumps(rows))
    print(table_without_reference(rows) if args.realrec else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
