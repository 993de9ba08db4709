"""``percepnet-edge bench``: what the per-frame path costs, beside RNNoise in the same run.

Prints per-frame wall time (median, p99, max, in microseconds) and CPU
seconds per audio second (this thread's CPU time over the audio duration),
for our DSP chain and, when ``pyrnnoise`` is installed, for RNNoise 0.2 on
the same generated signal. Both run in alternating rounds so that a busy
machine slows both alike; the table quotes medians over rounds and the ratio.
"""

import json
import time

import numpy as np

from . import peers, synthetic
from .dsp import HOP_SAMPLES, N_BANDS, SAMPLE_RATE_HZ, Enhancer


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


def _time_rnnoise(audio):
    wall = peers.rnnoise_frame_times(audio, time.perf_counter)
    cpu = peers.rnnoise_frame_times(audio, time.thread_time)
    return wall, cpu


def _summary(wall_rounds, cpu_rounds, audio_seconds):
    wall = np.concatenate(wall_rounds) * 1e6
    return {
        "frame_us_p50": float(np.median(wall)),
        "frame_us_p99": float(np.percentile(wall, 99)),
        "frame_us_max": float(wall.max()),
        "cpu_s_per_audio_s": float(np.median([c.sum() / audio_seconds for c in cpu_rounds])),
    }


def run_bench(seconds=20.0, rounds=3, with_peers=True, as_json=False, say=print):
    """Run the benchmark and print a table (or one JSON object). Returns the results dict."""
    n_samples = int(seconds * SAMPLE_RATE_HZ) // HOP_SAMPLES * HOP_SAMPLES
    clean = synthetic.speech_like(seconds, seed=3)
    audio = synthetic.mix_at_snr(clean, synthetic.noise("pink", seconds, seed=4), 5.0)[:n_samples]
    audio_seconds = n_samples / SAMPLE_RATE_HZ
    methods = {"percepnet-edge DSP (no network)": _time_ours}
    skipped = {}
    if with_peers:
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
    names = list(results)
    if len(names) == 2:
        report["cpu_ratio_ours_to_rnnoise"] = (results[names[0]]["cpu_s_per_audio_s"]
                                               / results[names[1]]["cpu_s_per_audio_s"])
    if as_json:
        say(json.dumps(report, indent=2))
        return report
    say(f"{audio_seconds:.0f} s of generated speech in pink noise, 48 kHz, 10 ms frames, "
        f"{rounds} alternating rounds, one thread")
    say(f"| method | frame p50 (us) | frame p99 (us) | frame max (us) | CPU s per audio s |")
    say("|---|---:|---:|---:|---:|")
    for name, row in results.items():
        say(f"| {name} | {row['frame_us_p50']:.0f} | {row['frame_us_p99']:.0f} | "
            f"{row['frame_us_max']:.0f} | {row['cpu_s_per_audio_s']:.4f} |")
    if "cpu_ratio_ours_to_rnnoise" in report:
        say(f"CPU ratio, our DSP / RNNoise: {report['cpu_ratio_ours_to_rnnoise']:.2f}")
    for name, reason in skipped.items():
        say(f"skipped {name}: {reason}")
    return report


def run_model_bench(model_paths, frames=2000, as_json=False, say=print):
    """``percepnet-edge bench-model``: the network alone, per frame, XNNPACK on and off.

    Times :class:`~edge.engine.ModelRunner` calls (quantise, invoke, dequantise,
    state hand-over) on features of generated noisy speech.
    """
    from .dsp import analyse_signal
    from .engine import ModelRunner
    seconds = frames / 100.0
    noisy = synthetic.mix_at_snr(synthetic.speech_like(seconds, seed=5),
                                 synthetic.noise("pink", seconds, seed=6), 5.0)
    features = analyse_signal(noisy).features
    rows = []
    for path in model_paths:
        for xnnpack in (True, False):
            runner = ModelRunner(path, use_xnnpack=xnnpack)
            for frame in features[:50]:
                runner(frame)
            times = np.empty(len(features))
            for i, frame in enumerate(features):
                t0 = time.perf_counter_ns()
                runner(frame)
                times[i] = time.perf_counter_ns() - t0
            times *= 1e-3
            meta = runner.metadata
            rows.append({"model": str(path), "size": meta.size, "quantization": meta.quantization,
                         "weights": meta.weights, "megabytes": meta.model_bytes / 1e6, "runtime": runner.runtime,
                         "xnnpack": runner.xnnpack_active, "frame_us_p50": float(np.median(times)),
                         "frame_us_p99": float(np.percentile(times, 99))})
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
