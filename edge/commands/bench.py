"""``percepnet-edge bench``: what the per-frame path costs, beside RNNoise in the same run.

Prints per-frame wall time (median, p99, max, in microseconds) and CPU
seconds per audio second (this thread's CPU time over the audio duration),
for our DSP chain and, when ``pyrnnoise`` is installed, for RNNoise 0.2 on
the same generated signal. Both run in alternating rounds so that a busy
machine slows both alike; the table quotes medians over rounds and the ratio.
"""

import importlib.util
import json
import time

import numpy as np

from edge.io import synthetic
from edge.dsp import HOP_SAMPLES, N_BANDS, SAMPLE_RATE_HZ, Enhancer
from edge.daemon.frame_times import time_stats
from edge.daemon.memory import peak_rss_mb


def _constant_gains():
    """A gain source with mid-range values, so every stage does real work."""
    gain, strength = np.full(N_BANDS, 0.5), np.full(N_BANDS, 0.5)
    return lambda features: (gain, strength)


def _time_ours(audio):
    enhancer = Enhancer(_constant_gains())
    frames = audio.reshape(-1, HOP_SAMPLES)
    for frame in frames[:50]:                       # warm caches and the pitch track
        enhancer.process(frame)
    wall, cpu = np.empty(len(frames)), np.empty(len(frames))
    for i, frame in enumerate(frames):
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        enhancer.process(frame)
        wall[i], cpu[i] = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
    return wall * 1e-9, cpu * 1e-9


class _TimedNetwork:
    """Wraps the model runner to time the network stage of each frame."""

    def __init__(self, runner):
        self.runner, self.seconds = runner, 0.0

    def __call__(self, features):
        t0 = time.perf_counter_ns()
        result = self.runner(features)
        self.seconds += (time.perf_counter_ns() - t0) * 1e-9
        return result


def _time_whole_path(audio, model_path, stages):
    """DSP + int8 network + S16_LE decode/encode per frame, as the daemon runs it."""
    from edge.model.engine import ModelRunner
    from edge.devices.alsa import decode, encode
    network = _TimedNetwork(ModelRunner(model_path))
    enhancer = Enhancer(network)
    pcm = [encode(frame, "S16_LE", np.zeros(HOP_SAMPLES)) for frame in audio.reshape(-1, HOP_SAMPLES)]
    frame, out, scratch = np.zeros(HOP_SAMPLES), np.zeros(HOP_SAMPLES), np.zeros(HOP_SAMPLES)
    for data in pcm[:50]:
        enhancer.process(decode(data, "S16_LE", 1, "downmix", 0, frame), out=out)
    wall, cpu = np.empty(len(pcm)), np.empty(len(pcm))
    network_s, format_s = np.empty(len(pcm)), np.empty(len(pcm))
    for i, data in enumerate(pcm):
        network.seconds = 0.0
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        decode(data, "S16_LE", 1, "downmix", 0, frame)
        t1 = time.perf_counter_ns()
        enhancer.process(frame, out=out)
        t2 = time.perf_counter_ns()
        encode(out, "S16_LE", scratch)
        t3 = time.perf_counter_ns()
        wall[i], cpu[i] = t3 - t0, time.thread_time_ns() - c0
        network_s[i], format_s[i] = network.seconds, (t1 - t0 + t3 - t2) * 1e-9
    stages.setdefault("network", []).append(network_s)
    stages.setdefault("format_conversion", []).append(format_s)
    stages.setdefault("dsp", []).append(wall * 1e-9 - network_s - format_s)
    return wall * 1e-9, cpu * 1e-9


#: The enhancer's stages, as the names its module calls them by (see ``Enhancer.process``).
DSP_STAGES = {"analyse": "stft", "synthesise": "stft", "comb_filter": "comb",
              "band_energies_and_cross": "features", "coherence_from_cross": "features", "assemble": "features"}


def dsp_stage_times(audio, gain_source):
    """Median ms per frame of each DSP stage: pitch, comb, stft (analysis + synthesis), features, gains.

    A separate pass from the timed rounds: each stage is wrapped in a clock
    (about 0.3 us per call), by rebinding the names ``edge.dsp.enhancer``
    calls for the length of this pass, then put back.
    """
    import edge.dsp.enhancer as module
    spent = {}

    def timed(function, stage):
        def clocked(*args, **kwargs):
            t0 = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0) + time.perf_counter_ns() - t0
        return clocked

    enhancer = Enhancer(gain_source)
    originals = {name: getattr(module, name) for name in DSP_STAGES}
    enhancer.pitch.step = timed(enhancer.pitch.step, "pitch")
    enhancer._limit_gains = timed(enhancer._limit_gains, "gains")
    enhancer.applier.apply = timed(enhancer.applier.apply, "gains")
    enhancer.gain_source = timed(enhancer.gain_source, "network")
    per_frame = {}
    try:
        for name, stage in DSP_STAGES.items():
            setattr(module, name, timed(originals[name], stage))
        for frame in audio.reshape(-1, HOP_SAMPLES):
            spent.clear()
            t0 = time.perf_counter_ns()
            enhancer.process(frame)
            total = time.perf_counter_ns() - t0
            spent["other"] = total - sum(spent.values())
            for stage, ns in spent.items():
                per_frame.setdefault(stage, []).append(ns * 1e-6)
    finally:
        for name, function in originals.items():
            setattr(module, name, function)
    return {stage: float(np.median(ms)) for stage, ms in per_frame.items()}


def _time_rnnoise(audio):
    from evaluation import peers
    wall = peers.rnnoise_frame_times(audio, time.perf_counter)
    cpu = peers.rnnoise_frame_times(audio, time.thread_time)
    return wall, cpu


def _summary(wall_rounds, cpu_rounds, audio_seconds):
    wall_us = time_stats(np.concatenate(wall_rounds) * 1e6)
    return {
        "frame_us_p50": wall_us["p50"],
        "frame_us_p99": wall_us["p99"],
        "frame_us_max": wall_us["max"],
        "cpu_s_per_audio_s": float(np.median([c.sum() / audio_seconds for c in cpu_rounds])),
    }


def _stage_ms(rounds):
    stats = time_stats(np.concatenate(rounds) * 1e3)
    return {"ms_p50": stats["p50"], "ms_p99": stats["p99"]}


def run_bench(seconds=20.0, rounds=3, with_peers=True, as_json=False, model=None, say=print):
    """Run the benchmark and print a table (or one JSON object). Returns the report dict.

    With ``model``, the whole per-frame path (S16_LE decode, DSP, int8 network,
    encode) is measured too, and the report gains the daemon's figures:
    ``cpu_s_per_audio_s``, ``frame_ms_p50/p99/p999/max``, ``deadline_misses``,
    ``rss_mb``, ``startup_s`` and per-stage medians in ``stages``.
    """
    n_samples = int(seconds * SAMPLE_RATE_HZ) // HOP_SAMPLES * HOP_SAMPLES
    clean = synthetic.speech_like(seconds, seed=3)
    audio = synthetic.mix_at_snr(clean, synthetic.noise("pink", seconds, seed=4), 5.0)[:n_samples]
    audio_seconds = n_samples / SAMPLE_RATE_HZ
    methods, stages, skipped = {}, {}, {}
    whole = "percepnet-edge whole path (DSP + int8 model + S16 I/O)"
    startup_s = None
    if model is not None:
        from edge.model.engine import ModelRunner
        started = time.perf_counter()
        Enhancer(ModelRunner(model))
        startup_s = time.perf_counter() - started
        methods[whole] = lambda signal: _time_whole_path(signal, model, stages)
    methods["percepnet-edge DSP only (no network)"] = _time_ours
    if with_peers and importlib.util.find_spec("evaluation") is None:
        skipped["RNNoise"] = ("its adapter, evaluation.peers, is host code and not part of a device install; "
                              "compare on a checkout (pip install -e '.[bench]')")
    elif with_peers:
        from evaluation import peers
        reason = peers.rnnoise_available()
        if reason is None:
            methods["RNNoise 0.2 (pyrnnoise), whole"] = _time_rnnoise
        else:
            skipped["RNNoise"] = reason
    timings = {name: ([], []) for name in methods}
    for _ in range(rounds):
        for name, timer in methods.items():
            wall, cpu = timer(audio)
            timings[name][0].append(wall)
            timings[name][1].append(cpu)
    results = {name: _summary(*timings[name], audio_seconds) for name in methods}
    report = {"audio_seconds": audio_seconds, "rounds": rounds, "results": results, "skipped": skipped}
    rnnoise = results.get("RNNoise 0.2 (pyrnnoise), whole")
    if rnnoise:
        report["cpu_ratio_to_rnnoise"] = {name: row["cpu_s_per_audio_s"] / rnnoise["cpu_s_per_audio_s"]
                                          for name, row in results.items() if row is not rnnoise}
    if model is not None:
        frame_ms = np.concatenate(timings[whole][0]) * 1e3
        report.update({
            "model": str(model), "cpu_s_per_audio_s": results[whole]["cpu_s_per_audio_s"],
            **{f"frame_ms_{key}": value for key, value in time_stats(frame_ms).items()},
            "deadline_misses": int(np.count_nonzero(frame_ms > 10.0)), "frames_timed": int(frame_ms.size),
            "rss_mb": peak_rss_mb(),
            "startup_s": startup_s,
            "stages": {name: _stage_ms(rounds) for name, rounds in stages.items()},
        })
        from edge.model.engine import ModelRunner
        report["dsp_stages_ms_p50"] = dsp_stage_times(audio, ModelRunner(model))
    if as_json:
        say(json.dumps(report, indent=2))
        return report
    say(f"{audio_seconds:.0f} s of generated speech in pink noise, 48 kHz, 10 ms frames, "
        f"{rounds} alternating rounds, one thread")
    say("| method | frame p50 (us) | frame p99 (us) | frame max (us) | CPU s per audio s | ratio to RNNoise |")
    say("|---|---:|---:|---:|---:|---:|")
    ratios = report.get("cpu_ratio_to_rnnoise", {})
    for name, row in results.items():
        ratio = f"{ratios[name]:.2f}" if name in ratios else ("1.00" if row is rnnoise else "-")
        say(f"| {name} | {row['frame_us_p50']:.0f} | {row['frame_us_p99']:.0f} | "
            f"{row['frame_us_max']:.0f} | {row['cpu_s_per_audio_s']:.4f} | {ratio} |")
    if model is not None:
        say(f"whole path: frame p99.9 {report['frame_ms_p999']:.2f} ms, max {report['frame_ms_max']:.2f} ms, "
            f"deadline misses {report['deadline_misses']} in {report['frames_timed']} frames ({rounds} rounds), "
            f"peak RSS {report['rss_mb']:.0f} MB, "
            f"start-up {report['startup_s']:.2f} s")
        say("stages (median ms): " + ", ".join(f"{name} {v['ms_p50']:.3f}" for name, v in report["stages"].items()))
        say("DSP stages, separate pass (median ms): "
            + ", ".join(f"{name} {ms:.3f}" for name, ms in report["dsp_stages_ms_p50"].items()))
    for name, reason in skipped.items():
        say(f"skipped {name}: {reason}")
    return report


def run_model_bench(model_paths, frames=2000, as_json=False, say=print):
    """``percepnet-edge bench-model``: the network alone, per frame, XNNPACK on and off.

    Times :class:`~edge.model.engine.ModelRunner` calls (quantise, invoke, dequantise,
    state hand-over) on features of generated noisy speech.
    """
    from edge.dsp import analyse_signal
    from edge.model.engine import ModelRunner
    seconds = frames / 100.0
    noisy = synthetic.mix_at_snr(synthetic.speech_like(seconds, seed=5),
                                 synthetic.noise("pink", seconds, seed=6), 5.0)
    features = analyse_signal(noisy).features
    rows = []
    for path in model_paths:
        for xnnpack in (True, False):
            runner = ModelRunner(path, use_xnnpack=xnnpack)
            # A joint echo-and-noise model's far-end inputs are 0 here (no loudspeaker): an int8 network's cost
            # does not depend on its inputs' values, only on their number.
            frames_in = np.pad(features, ((0, 0), (0, runner.n_features - features.shape[1])))
            for frame in frames_in[:50]:
                runner(frame)
            times = np.empty(len(frames_in))
            for i, frame in enumerate(frames_in):
                t0 = time.perf_counter_ns()
                runner(frame)
                times[i] = time.perf_counter_ns() - t0
            times *= 1e-3
            meta, times_us = runner.metadata, time_stats(times)
            rows.append({"model": str(path), "size": meta.size, "quantization": meta.quantization,
                         "weights": meta.weights, "megabytes": meta.model_bytes / 1e6, "runtime": runner.runtime,
                         "xnnpack": runner.xnnpack_active, "frame_us_p50": times_us["p50"],
                         "frame_us_p99": times_us["p99"]})
    if as_json:
        say(json.dumps(rows, indent=2))
        return rows
    say(f"network alone, {len(features)} frames of generated noisy speech, one thread")
    say("| model | size | quantization | MB | runtime | XNNPACK | frame p50 (us) | frame p99 (us) |")
    say("|---|---|---|---:|---|---|---:|---:|")
    for row in rows:
        say(f"| {row['model'].rsplit('/', 1)[-1]} | {row['size']} | {row['quantization']} | "
            f"{row['megabytes']:.2f} | {row['runtime']} | {'on' if row['xnnpack'] else 'off'} | "
            f"{row['frame_us_p50']:.0f} | {row['frame_us_p99']:.0f} |")
    return rows


#: What the daemon loads, in the order it loads it (``run``), for :func:`run_import_footprint`.
DAEMON_IMPORTS = ("numpy", "yaml", "edge.dsp", "edge.io.wav", "edge.daemon.config", "edge.daemon.telemetry",
                  "edge.daemon.loop", "edge.devices.alsa", "edge.commands.run", "alsaaudio", "edge.model.engine")

_FOOTPRINT_PROBE = """
import importlib, json, sys
def rss_mb():
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmRSS')) / 1024
rows, last = [['python', rss_mb(), rss_mb()]], rss_mb()
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        rows.append([name + ' (not installed: ' + str(exc) + ')', 0.0, last])
        continue
    now = rss_mb(); rows.append([name, now - last, now]); last = now
if sys.argv[1]:
    from edge.model.engine import ModelRunner
    from edge.dsp import Enhancer
    Enhancer(ModelRunner(sys.argv[1]))
    now = rss_mb(); rows.append(['the model and the enhancer', now - last, now]); last = now
print(json.dumps({'rows': rows, 'scipy_loaded': 'scipy' in sys.modules}))
"""


def run_import_footprint(model=None, as_json=False, say=print):
    """Print the resident memory (VmRSS, MB) each daemon import adds, measured in a fresh interpreter.

    Linux only (it reads /proc/self/status). With ``model``, the model load
    and an enhancer are the last row. Returns the report dict.
    """
    import subprocess
    import sys
    if model:                               # a bad model is the user's to fix: its message, not the probe's traceback
        from edge.model.model_meta import load_metadata
        load_metadata(model)
    done = subprocess.run([sys.executable, "-c", _FOOTPRINT_PROBE, model or "", *DAEMON_IMPORTS],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the import probe failed: {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if as_json:
        say(json.dumps(report, indent=2))
        return report
    say("| import | RSS added (MB) | RSS after (MB) |")
    say("|---|---:|---:|")
    for name, added, total in report["rows"]:
        say(f"| {name} | {added:.1f} | {total:.1f} |")
    say(f"scipy loaded: {'yes' if report['scipy_loaded'] else 'no'}")
    return report
