"""``python -m evaluation.echo_eval SET OUT``: echo control side by side on the echo set (issue 21).

Methods (every output aligned with the microphone before scoring):

- the microphone untouched; our ``denoise`` without the far end (noise suppression alone);
- ours: ``denoise --far-end`` (:func:`edge.commands.files.run_denoise` with the far end: exactly the command),
  and its echo stage alone (:class:`edge.echo.EchoCanceller`, no network);
- the oracle: the echo stage, then our DSP with ideal gains towards the near talker (:func:`oracle`: the
  ceiling of a joint model in this DSP), and the same with an ideal mask per STFT bin instead of per band
  (:func:`oracle_bins`: what a finer representation would buy);
- SpeexDSP MDF + its preprocessor as a plain library call (200 ms tail, no delay compensation);
- WebRTC AEC3 (``pywebrtc_audio.EchoCanceller``, 430-sample output delay) and APM with AEC3 + NS
  (``AudioProcessor``, 718 samples), both at 48 kHz, 10 ms calls.

Metrics per talk type (means over clips):

- far-end single talk: ERLE = 10 log10(mic energy / output energy) over t >= 2 s (``ERLE 2s+``, the
  issue's "after 2 s", path changes included) and over the last 3 s (``ERLE end``); convergence = the first
  0.5 s window (hop 0.1 s, far end audible) reaching 15 dB; re-convergence = the same after a path change;
  AECMOS echo and degradation (``speechmos``, Microsoft's 48 kHz model, talk type "st");
- double talk: AECMOS echo and degradation ("dt"), PESQ-WB of the output against the near talker as the
  microphone hears it;
- near-end single talk: PESQ-WB against the near talker, AECMOS degradation ("nst", silent far end);
- cost: this thread's CPU time per 10 ms frame (mean, p50, p99, p99.9, max), every method timed frame by
  frame over the double-talk clips played in a row, in the same run (RNNoise beside them).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.dsp import HOP_SAMPLES, SAMPLE_RATE_HZ as FS, EnhancerSettings
from edge.io.wav import WavReader

from .metrics import Dnsmos, pesq_wb, to_metric_rate

AEC3_DELAY = 430
APM_DELAY = 718
CONVERGED_DB = 15.0
TARGETS = {"st_erle_2s": 20.0, "st_echo_mos": 3.0, "dt_deg_mos": 3.0, "dt_echo_mos": 2.5, "nst_pesq_vs_ns": -0.05}


def _read(path):
    with WavReader(path) as reader:
        return reader.read_all()[:, 0]


def _frames(n):
    return range(0, n - HOP_SAMPLES + 1, HOP_SAMPLES)


def _shift(out, delay, n):
    return np.concatenate([out[delay:], np.zeros(delay)])[:n]


def _with_a_frame_more(signal):
    """``signal`` and a frame of silence: what brings the last samples out of a stage that gives them back late."""
    return np.concatenate([signal, np.zeros(HOP_SAMPLES)])


def mdf_preprocessor(mic, far):
    from edge.echo.speex_mdf import SpeexMdf
    mdf = SpeexMdf(HOP_SAMPLES, 9600, FS, residual_suppression=True)
    to16 = lambda x: np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)   # noqa: E731
    m16, f16, out16 = to16(_with_a_frame_more(mic)), to16(_with_a_frame_more(far)), np.zeros(HOP_SAMPLES, np.int16)
    out = np.zeros(m16.size)
    for s in _frames(m16.size):
        mdf.process(m16[s:s + HOP_SAMPLES], f16[s:s + HOP_SAMPLES], out16)
        out[s:s + HOP_SAMPLES] = out16 / 32768.0
    latency = mdf.latency_samples                          # its preprocessor gives each frame back a frame late
    mdf.close()
    return _shift(out, latency, mic.size)


#: EchoSettings fields for "ours" and "echo-stage" (--echo KEY=VALUE,...): the defaults unless given.
ECHO_OVERRIDES = {}


def _echo_settings():
    from edge.echo import EchoSettings
    return EchoSettings(**ECHO_OVERRIDES)


def echo_stage(mic, far, settings=None):
    """Our echo stage alone over a clip (``settings``: EchoSettings; None: the run's, as "ours" uses)."""
    from edge.echo import EchoCanceller
    n, mic, far = mic.size, _with_a_frame_more(mic), _with_a_frame_more(far)
    canceller, out = EchoCanceller(settings or _echo_settings()), np.zeros_like(mic)
    for s in _frames(mic.size):
        canceller.process(mic[s:s + HOP_SAMPLES], far[s:s + HOP_SAMPLES], out[s:s + HOP_SAMPLES])
    canceller.close()
    return _shift(out, canceller.latency_samples, n)


def _cancelled_for_a_joint_model(clip):
    """The echo stage's output as a joint model gets it (SpeexDSP's residual suppression off)."""
    from edge.echo import for_model
    return echo_stage(clip["mic"], clip["far"], for_model(_echo_settings(), far_end_inputs=True))


def oracle(clip):
    """The joint model's ceiling: our echo stage as it runs ahead of a joint model (no SpeexDSP residual
    suppression), then our DSP driven by the ideal band gains and pitch-filter strengths computed from the near
    talker as the microphone hears it (the PESQ reference). A perfect network could do no better in this DSP."""
    from edge.dsp import oracle_enhance
    return oracle_enhance(clip["near"], _cancelled_for_a_joint_model(clip))


def oracle_bins(clip):
    """What a finer representation would buy: the echo stage, then the ideal magnitude mask of every STFT bin
    (20 ms Hann windows, 10 ms hop: 481 bins instead of 34 bands), capped at 1, towards the near talker."""
    from scipy.signal import istft, stft
    cancelled = _cancelled_for_a_joint_model(clip)
    window = 2 * HOP_SAMPLES
    _, _, mixed = stft(cancelled, FS, "hann", window, HOP_SAMPLES)
    _, _, near = stft(clip["near"], FS, "hann", window, HOP_SAMPLES)
    mask = np.minimum(1.0, np.abs(near) / np.maximum(np.abs(mixed), 1e-9))
    return istft(mask * mixed, FS, "hann", window, HOP_SAMPLES)[1][:cancelled.size]


def _webrtc(processor, mic, far, delay):
    m32, f32 = mic.astype(np.float32), far.astype(np.float32)
    out = np.zeros(mic.size, np.float32)
    for s in _frames(mic.size):
        out[s:s + HOP_SAMPLES] = processor.process(m32[s:s + HOP_SAMPLES], f32[s:s + HOP_SAMPLES])
    return _shift(out.astype(np.float64), delay, mic.size)


def aec3(mic, far):
    from pywebrtc_audio import EchoCanceller
    return _webrtc(EchoCanceller(sample_rate=FS), mic, far, AEC3_DELAY)


def apm(mic, far):
    from pywebrtc_audio import AudioProcessor
    return _webrtc(AudioProcessor(sample_rate=FS, echo_cancellation=True, noise_suppression=True), mic, far,
                   APM_DELAY)


#: The model "ns", "ours" and the cost run (--model; None: the shipped default).
MODEL_PATH = None
#: EnhancerSettings fields for "ns" and "ours" (--max-attenuation-db, --gain-exponent, --comfort-noise-db): the
#: defaults unless given.
DSP_OVERRIDES = {}


def _model_path():
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    return MODEL_PATH or DEFAULT_MODEL_PATH


def _denoise_file(mic_path, far_path):
    from edge.commands.files import run_denoise
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.wav"
        run_denoise(mic_path, out, model_path=_model_path(), settings=EnhancerSettings(**DSP_OVERRIDES),
                    say=lambda text: None, far_end_path=far_path,
                    echo_settings=_echo_settings() if far_path is not None else None)
        return _read(out)


#: key -> (label in the table, function of a clip -> output aligned with the microphone)
METHODS = {
    "mic": ("microphone, untouched", lambda clip: clip["mic"]),
    "ns": ("our denoise (no far end)", lambda clip: _denoise_file(clip["paths"]["mic"], None)),
    "ours": ("ours: denoise --far-end (echo stage + NS)",
             lambda clip: _denoise_file(clip["paths"]["mic"], clip["paths"]["far"])),
    "echo-stage": ("ours: echo stage alone", lambda clip: echo_stage(clip["mic"], clip["far"])),
    "oracle": ("oracle: echo stage + ideal band gains (upper bound)", oracle),
    "oracle-bins": ("oracle: echo stage + ideal mask per STFT bin (finer than our bands)", oracle_bins),
    "mdf": ("SpeexDSP MDF + preprocessor (200 ms)", lambda clip: mdf_preprocessor(clip["mic"], clip["far"])),
    "aec3": ("WebRTC AEC3", lambda clip: aec3(clip["mic"], clip["far"])),
    "apm": ("WebRTC APM (AEC3 + NS)", lambda clip: apm(clip["mic"], clip["far"])),
}


def _energy(x):
    return float(np.sum(x ** 2)) + 1e-12


def erle_db(mic, out, start_s, end_s=None):
    part = slice(int(start_s * FS), None if end_s is None else int(end_s * FS))
    return 10 * np.log10(_energy(mic[part]) / _energy(out[part]))


def convergence_s(mic, out, echo, after_s=0.0):
    """Seconds from ``after_s`` to the end of the first 0.5 s window (far end audible) with ERLE >= 15 dB."""
    window, hop = FS // 2, FS // 10
    for end in range(int(after_s * FS) + window, mic.size + 1, hop):
        part = slice(end - window, end)
        if np.sqrt(np.mean(echo[part] ** 2)) < 10 ** (-50 / 20):
            continue
        if 10 * np.log10(_energy(mic[part]) / _energy(out[part])) >= CONVERGED_DB:
            return end / FS - after_s
    return None


class Aecmos:
    def __init__(self):
        import onnxruntime as ort
        from speechmos.aecmos import AECMOS
        self.model = AECMOS("aecmos_48kHz")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.model.ort_session = ort.InferenceSession(self.model.model_path, options)

    def __call__(self, far, mic, out, talk_type):
        clip = lambda x: np.clip(x, -1.0, 1.0).astype(np.float32)        # noqa: E731
        lpb = np.zeros_like(far) if talk_type == "nst" else far
        result = self.model({"lpb": clip(lpb), "mic": clip(mic), "enh": clip(out)}, talk_type)
        return float(result["echo_mos"]), float(result["deg_mos"])


def score(clip, out, aecmos, dnsmos=None):
    talk, mic, far, near, echo = clip["talk_type"], clip["mic"], clip["far"], clip["near"], clip["echo"]
    scores = {}
    scores["echo_mos"], scores["deg_mos"] = aecmos(far, mic, out, talk)
    if dnsmos is not None and talk != "st":          # the near end's quality as a listener hears it
        scores["dnsmos_ovrl"] = dnsmos(to_metric_rate(out))["ovrl"]
    if talk == "st":
        scores["erle_2s"] = erle_db(mic, out, 2.0)
        scores["erle_end"] = erle_db(mic, out, clip["seconds"] - 3.0)
        scores["convergence_s"] = convergence_s(mic, out, echo)
        if clip.get("path_change_s") is not None:
            scores["reconvergence_s"] = convergence_s(mic, out, echo, clip["path_change_s"])
    else:
        scores["pesq_wb"] = pesq_wb(near, out)
    return scores


def frame_costs(clips):
    """Per-frame cost of every method, each timed frame by frame over the same clips in one run.

    ``clips`` are played one after another through one state per method (the double-talk clips: the far end on
    and a talker, the daemon's busiest case). Returns {method: {"mean", "p50", "p99", "p99.9", "max", "frames"}}
    in microseconds of this thread's CPU (``time.thread_time``: what the method costs, not what the other jobs on
    the machine cost it; the daemon's wall-clock frame times are in ``run``'s summary).
    """
    from edge.dsp import Enhancer
    from edge.echo import EchoCanceller, for_model
    from edge.echo.speex_mdf import SpeexMdf
    from edge.model.engine import ModelRunner
    mic = np.concatenate([c["mic"] for c in clips])
    far = np.concatenate([c["far"] for c in clips])
    starts = _frames(mic.size)
    timer = time.thread_time

    def timed(step):
        times = np.empty(len(starts))
        for i, s in enumerate(starts):
            begin = timer()
            step(s)
            times[i] = timer() - begin
        return times

    runner, both_runner = ModelRunner(_model_path()), ModelRunner(_model_path())
    joint = runner.far_end_inputs                        # a joint model reads the canceller's echo estimate
    canceller, buffer, out = EchoCanceller(_echo_settings()), np.zeros(HOP_SAMPLES), np.zeros(HOP_SAMPLES)
    settings = EnhancerSettings(**DSP_OVERRIDES)          # what "ns" and "ours" ran with, comfort noise included
    enhancer = Enhancer(runner, settings)
    both_echo, both_enhancer = EchoCanceller(for_model(_echo_settings(), joint)), Enhancer(both_runner, settings)
    mdf = SpeexMdf(HOP_SAMPLES, 9600, FS)
    m16 = np.clip(np.rint(mic * 32768), -32768, 32767).astype(np.int16)
    f16 = np.clip(np.rint(far * 32768), -32768, 32767).astype(np.int16)
    o16 = np.zeros(HOP_SAMPLES, np.int16)
    from pywebrtc_audio import AudioProcessor, EchoCanceller as Aec3
    aec, processor = Aec3(sample_rate=FS), AudioProcessor(sample_rate=FS, echo_cancellation=True,
                                                          noise_suppression=True)
    m32, f32 = mic.astype(np.float32), far.astype(np.float32)
    times = {
        "ours: echo stage": timed(lambda s: canceller.process(mic[s:s + HOP_SAMPLES], far[s:s + HOP_SAMPLES],
                                                              buffer)),
        "ours: NS (DSP + int8 network)": timed(lambda s: enhancer.process(mic[s:s + HOP_SAMPLES], out=out)),
        "ours: echo stage + NS": timed(lambda s: both_enhancer.process(
            both_echo.process(mic[s:s + HOP_SAMPLES], far[s:s + HOP_SAMPLES], buffer), out=out,
            echo_estimate=both_echo.echo_estimate)),
        "SpeexDSP MDF + preprocessor (200 ms)": timed(lambda s: mdf.process(m16[s:s + HOP_SAMPLES],
                                                                          f16[s:s + HOP_SAMPLES], o16)),
        "WebRTC AEC3": timed(lambda s: aec.process(m32[s:s + HOP_SAMPLES], f32[s:s + HOP_SAMPLES])),
        "WebRTC APM (AEC3 + NS)": timed(lambda s: processor.process(m32[s:s + HOP_SAMPLES],
                                                                    f32[s:s + HOP_SAMPLES])),
    }
    from . import peers
    why_not = peers.rnnoise_available()
    if why_not is None:
        times["RNNoise (NS only)"] = peers.rnnoise_frame_times(mic, timer)
    else:                                             # the cost table says so rather than losing a row unseen
        print(f"no RNNoise cost row: {why_not}", file=sys.stderr)
    return {name: cost_summary(t) for name, t in times.items()}


def cost_summary(seconds):
    """Mean, median, p99, p99.9 and max of per-frame times (seconds in), in microseconds."""
    us = 1e6 * np.asarray(seconds, dtype=np.float64)
    return {"mean": float(us.mean()), "p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "p99.9": float(np.percentile(us, 99.9)), "max": float(us.max()), "frames": int(us.size)}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(rows):
    table = {}
    for method, per_clip in rows.items():
        by = lambda talk, key: [s.get(key) for s in per_clip if s["talk_type"] == talk]    # noqa: E731
        conv = by("st", "convergence_s")
        reconv = [v for s in per_clip if s["talk_type"] == "st" and "reconvergence_s" in s
                  for v in [s["reconvergence_s"]]]
        table[method] = {
            "st_erle_2s": _mean(by("st", "erle_2s")), "st_erle_end": _mean(by("st", "erle_end")),
            "st_echo_mos": _mean(by("st", "echo_mos")), "st_deg_mos": _mean(by("st", "deg_mos")),
            "st_converged": f"{sum(v is not None for v in conv)}/{len(conv)}",
            "st_convergence_s": _mean(conv),
            "st_reconverged": f"{sum(v is not None for v in reconv)}/{len(reconv)}",
            "st_reconvergence_s": _mean(reconv),
            "dt_echo_mos": _mean(by("dt", "echo_mos")), "dt_deg_mos": _mean(by("dt", "deg_mos")),
            "dt_pesq_wb": _mean(by("dt", "pesq_wb")), "dt_dnsmos_ovrl": _mean(by("dt", "dnsmos_ovrl")),
            "nst_pesq_wb": _mean(by("nst", "pesq_wb")), "nst_deg_mos": _mean(by("nst", "deg_mos")),
            "nst_dnsmos_ovrl": _mean(by("nst", "dnsmos_ovrl")),
        }
    return table


def _cell(value, digits=2):
    return "n/a" if value is None else (value if isinstance(value, str) else f"{value:.{digits}f}")


def report(table, costs, n_clips, command):
    columns = [("st_erle_2s", "st ERLE 2s+ dB", 1), ("st_erle_end", "st ERLE end dB", 1),
               ("st_echo_mos", "st AECMOS echo", 2), ("st_convergence_s", "st conv. s (reached)", 1),
               ("st_reconvergence_s", "st re-conv. s (reached)", 1),
               ("dt_echo_mos", "dt AECMOS echo", 2), ("dt_deg_mos", "dt AECMOS deg.", 2),
               ("dt_pesq_wb", "dt PESQ-WB", 2), ("dt_dnsmos_ovrl", "dt DNSMOS OVRL", 2),
               ("nst_pesq_wb", "nst PESQ-WB", 2), ("nst_deg_mos", "nst AECMOS deg.", 2),
               ("nst_dnsmos_ovrl", "nst DNSMOS OVRL", 2)]
    lines = [f"Echo set: {n_clips} clips. Reproduce: `{command}`", "",
             "| method | " + " | ".join(title for _, title, _ in columns) + " | cost us/frame |",
             "|---|" + "---:|" * (len(columns) + 1)]
    cost_of = {"our denoise (no far end)": "ours: NS (DSP + int8 network)",
               "ours: denoise --far-end (echo stage + NS)": "ours: echo stage + NS",
               "ours: echo stage alone": "ours: echo stage"}
    for method, row in table.items():
        cells = []
        for key, _, digits in columns:
            cell = _cell(row[key], digits)
            if key == "st_convergence_s":
                cell += f" ({row['st_converged']})"
            if key == "st_reconvergence_s":
                cell += f" ({row['st_reconverged']})"
            cells.append(cell)
        cost = costs.get(cost_of.get(method, method))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_cell(cost and cost['mean'], 0)} |")
    if costs:
        frames = next(iter(costs.values()))["frames"]
        lines += ["", f"Cost, this thread's CPU per 10 ms frame, us (same run, the double-talk clips in a row, "
                  f"{frames} frames):", "", "| method | mean | p50 | p99 | p99.9 | max |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | " + " | ".join(f"{c[k]:.0f}" for k in ("mean", "p50", "p99", "p99.9", "max")) + " |"
                  for name, c in costs.items()]
    ours, ns = table.get("ours: denoise --far-end (echo stage + NS)"), table.get("our denoise (no far end)")
    if ours and ns and ours["nst_pesq_wb"] is not None:
        lines += ["", "Targets (issue 21), ours (`denoise --far-end`):", ""]
        checks = [("far-end single talk ERLE after 2 s >= 20 dB", ours["st_erle_2s"], 20.0),
                  ("far-end single talk AECMOS echo >= 3.0", ours["st_echo_mos"], 3.0),
                  ("double talk AECMOS degradation >= 3.0", ours["dt_deg_mos"], 3.0),
                  ("double talk AECMOS echo >= 2.5", ours["dt_echo_mos"], 2.5)]
        for text, value, target in checks:
            lines.append(f"- {text}: {value:.2f} -> {'met' if value >= target else 'NOT met'}")
        delta = ours["nst_pesq_wb"] - ns["nst_pesq_wb"]
        lines.append(f"- near-end single talk PESQ-WB within 0.05 of NS alone: {delta:+.3f} -> "
                     f"{'met' if delta >= -0.05 else 'NOT met'}")
    return "\n".join(lines) + "\n"


def load_set(folder):
    folder = Path(folder)
    meta = json.loads((folder / "set.json").read_text())
    clips = []
    for recipe in meta["clips"]:
        paths = {part: folder / f"{recipe['name']}.{part}.wav" for part in ("mic", "far", "near", "echo")}
        clips.append({**recipe, "seconds": meta["seconds"], "paths": paths,
                      **{part: _read(path) for part, path in paths.items()}})
    return clips


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.echo_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("set_dir", help="a folder written by python -m evaluation.echo_set")
    parser.add_argument("out_dir")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--echo", default="", metavar="KEY=VALUE,...",
                        help="EchoSettings for ours, e.g. tail_ms=250,delay_search_ms=0 (default: the defaults)")
    parser.add_argument("--talk-types", default="st,dt,nst", help="score only these talk types")
    parser.add_argument("--no-cost", action="store_true", help="skip the per-frame cost measurement")
    parser.add_argument("--model", default=None, help="the .tflite model of ns, ours and the cost run (default: "
                        "the shipped one); a joint echo model gets the canceller's echo estimate")
    parser.add_argument("--max-attenuation-db", type=float, default=None,
                        help="our network's deepest band suppression, as dsp.max_attenuation_db (default: the DSP's)")
    parser.add_argument("--gain-exponent", type=float, default=None,
                        help="power on our network's gains, as dsp.gain_exponent (default: the DSP's)")
    parser.add_argument("--comfort-noise-db", type=float, default=None,
                        help="our comfort noise relative to the input's background, as dsp.comfort_noise_db "
                             "(default: the DSP's, off)")
    parser.add_argument("--far-end-comfort-noise-db", type=float, default=None,
                        help="the same, only while the far end plays, as echo.comfort_noise_db (default: off)")
    args = parser.parse_args(argv)
    global MODEL_PATH
    MODEL_PATH = args.model
    dsp_keys = ("max_attenuation_db", "gain_exponent", "comfort_noise_db", "far_end_comfort_noise_db")
    dsp = {key: getattr(args, key) for key in dsp_keys if getattr(args, key) is not None}
    try:
        EnhancerSettings(**dsp)
    except ValueError as exc:
        parser.error(str(exc))
    echo = {}
    for item in filter(None, args.echo.split(",")):
        key, value = item.split("=", 1)
        echo[key.strip()] = None if value == "null" else float(value)
    # this run's settings only: a second main() in the same process starts from the defaults again
    DSP_OVERRIDES.clear()
    DSP_OVERRIDES.update(dsp)
    ECHO_OVERRIDES.clear()
    ECHO_OVERRIDES.update(echo)
    clips = [c for c in load_set(args.set_dir) if c["talk_type"] in args.talk_types.split(",")]
    aecmos = Aecmos()
    dnsmos, why = Dnsmos.load()
    if dnsmos is None:
        print(f"no DNSMOS column: {why}", file=sys.stderr)
    chosen = [m.strip() for m in args.methods.split(",")]
    rows = {}
    for key in chosen:
        method, function = METHODS[key]
        rows[method] = []
        for clip in clips:
            out = function(clip)
            scores = score(clip, out, aecmos, dnsmos)
            rows[method].append({"clip": clip["name"], "talk_type": clip["talk_type"], **scores})
            print(f"{method} {clip['name']}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()
                                                        if isinstance(v, float)), file=sys.stderr)
    costs = {} if args.no_cost else frame_costs([c for c in clips if c["talk_type"] == "dt"] or clips)
    table = summarise(rows)
    text = report(table, costs, len(clips), " ".join(["python -m evaluation.echo_eval"] + (argv or sys.argv[1:])))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "echo_results.md").write_text(text)
    (out / "echo_results.json").write_text(json.dumps({"table": table, "costs": costs, "per_clip": rows,
                                                        "set": [{k: v for k, v in c.items() if not isinstance(
                                                            v, (np.ndarray, dict))} for c in clips]},
                                                       indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
