"""``percepnet-edge profile``: what the denoiser costs on this device, against an idle baseline.

The run has two phases, measured the same way (one sample per second):

1. *idle*: the process waits (a fifth of the duration, at least 5 s); the
   device's own CPU load and power, the baseline;
2. *running*: the real pipeline, from the configured ALSA devices or from a
   virtual source (generated audio paced at real time, 10 ms per period).

Writes ``DIR/samples.csv`` (every sample), ``DIR/summary.json`` and
``DIR/report.md`` (mean and p95 CPU, mean power and energy per hour, the
battery-life change against idle, the frame-time histogram and misses), and
with matplotlib installed ``DIR/cpu.png``, ``DIR/power.png`` and
``DIR/frame_time.png``.
"""

import csv
import io
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.daemon import config as config_module
from edge.io.atomic import atomic_write, probe_writable
from edge.io import synthetic
from edge.daemon.loop import AudioLoop
from edge.errors import DeviceError, UsageError
from edge.daemon.frame_times import FrameTimeLog, time_stats
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.daemon.telemetry import Sources, Telemetry

SAMPLE_INTERVAL_S = 1.0
HISTOGRAM_EDGES_MS = [0, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 1e9]


#: The shortest profile: half of it idle, half running, one sample a second each.
MIN_DURATION_S = 2.0


def parse_duration(text):
    """'30', '30s', '10m', '1h' -> seconds (at least MIN_DURATION_S)."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = str(text).strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise UsageError(f"--duration {text!r}: use seconds or a suffix, e.g. 30s, 10m, 1h") from None
    if not (MIN_DURATION_S <= seconds < float("inf")):                     # also refuses NaN
        raise UsageError(f"--duration {text!r}: must be at least {MIN_DURATION_S:g} s (half idle baseline, "
                         "half running), e.g. 30s or 10m")
    return seconds


class PacedGeneratedIO:
    """A virtual sound card: generated noisy speech, one period every 10 ms of wall time."""

    xruns = 0

    def __init__(self, sleep=time.sleep, clock=time.monotonic):
        noisy = synthetic.mix_at_snr(synthetic.speech_like(20.0, seed=11),
                                     synthetic.noise("babble-like", 20.0, seed=12), 5.0)
        self.frames = noisy[: len(noisy) // HOP_SAMPLES * HOP_SAMPLES].reshape(-1, HOP_SAMPLES)
        self.sleep, self.clock = sleep, clock
        self._next = None
        self._index = 0

    def open(self):
        self._next = self.clock()

    def read(self):
        self._next += HOP_SAMPLES / SAMPLE_RATE_HZ
        wait = self._next - self.clock()
        if wait > 0:
            self.sleep(wait)
        frame = self.frames[self._index % len(self.frames)]
        self._index += 1
        return frame

    def write(self, frame):
        pass

    def close(self):
        pass


def _phase(samples, sources, seconds, label, telemetry=None, each_second=None):
    """Sample every SAMPLE_INTERVAL_S for ``seconds`` into ``samples`` (kept as they come: an interrupt keeps them)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(SAMPLE_INTERVAL_S, max(0.0, end - time.monotonic())))
        record = telemetry.record() if telemetry else sources.sample()
        samples.append({"phase": label, "t": round(time.monotonic(), 3), **record})
        if each_second is not None:
            each_second()


def _writable_folder(out_dir):
    """Make ``out_dir`` and prove it takes files, before the run: a bad --out fails at once, not after it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: it is a file; name a folder for report.md, summary.json and samples.csv")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe_writable(out_dir / "report.md")
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot write there ({exc.strerror}); name a folder you can write to") \
            from None


def _stats(values):
    values = np.array([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return None
    return {"mean": float(values.mean()), "p95": float(np.percentile(values, 95))}


def run_profile(duration_s, out_dir, config_path=None, source="virtual", say=print):
    """Run both phases and write the report; returns the summary dict."""
    out_dir = Path(out_dir)
    _writable_folder(out_dir)
    config = config_module.load(config_path) if config_path else config_module.Config()
    idle_s = max(5.0, duration_s / 5.0) if duration_s >= 10 else duration_s / 2
    run_s = duration_s - idle_s
    locks = None
    if source == "alsa":
        from edge.devices.alsa import AlsaDuplex, DeviceLocks
        device = AlsaDuplex(config.audio)           # opens nothing yet
    else:
        device = PacedGeneratedIO()
    loop = AudioLoop(config, device)                # the model loads now: a bad one fails before the baseline
    frame_log = FrameTimeLog(loop.frame_times)      # the loop's ring holds a minute; the report covers the run
    samples, interrupted, started, written = [], None, time.monotonic(), []
    try:
        if source == "alsa":
            locks = DeviceLocks(config.audio, say=say).acquire()      # never beside a daemon on the same devices
        _measure(samples, loop, frame_log, config, idle_s, run_s, source, say)
    except KeyboardInterrupt as exc:                # SIGINT (SIGTERM, SIGHUP): what was measured is kept
        interrupted = exc
    finally:
        if locks is not None:
            locks.release()
    if loop.counters.frames == 0:
        if interrupted is not None:
            raise interrupted
        raise DeviceError(f"profile: no frame was processed in {run_s:.0f} s (the audio device never opened: its "
                          "reason is in the lines above); nothing written")
    try:
        summary = _summarise(samples, loop, frame_log.all_ms(), idle_s, run_s, source)
        if interrupted is not None:
            summary["interrupted_after_s"] = round(time.monotonic() - started, 1)
        _write(out_dir, samples, summary, say, written)
    except KeyboardInterrupt as exc:                # a (second) signal while writing: say what is on disk
        exc.profile_report, exc.profile_writing = (written[0] if written else None), True
        raise
    if interrupted is not None:
        interrupted.profile_report, interrupted.profile_writing = written[0], False   # for the last words
        raise interrupted
    return summary


def _measure(samples, loop, frame_log, config, idle_s, run_s, source, say):
    """The idle baseline, then the pipeline in a thread, sampled into ``samples``."""
    sources = Sources(replace(config.telemetry, interval_s=SAMPLE_INTERVAL_S))
    for what in sources.missing:
        say(f"profile: no {what} on this machine; not reported")
    say(f"profile: {idle_s:.0f} s idle baseline, then {run_s:.0f} s of the pipeline ({source} source)")
    _phase(samples, sources, idle_s, "idle")
    telemetry = Telemetry(config.telemetry, loop, say=lambda *_: None)
    telemetry.sources = sources
    ended = threading.Event()

    def pipeline():
        try:
            loop.run(duration_s=run_s)
        finally:
            ended.set()
    threading.Thread(target=pipeline, daemon=True).start()
    try:
        _phase(samples, sources, run_s, "running", telemetry, each_second=frame_log.collect)
    finally:                                        # an interrupt too: the loop stops, its frames are collected
        _stop_and_wait(loop, ended)
        frame_log.collect()


def _stop_and_wait(loop, ended, wait_s=5.0):
    """Stop the loop and wait up to ``wait_s`` for ``ended`` (set by its thread), through further signals.

    A second signal may strike inside ``loop.stop()`` itself, before the stop is set: asking again is harmless
    (the stop is an event), so every attempt asks before it waits. The wait is on an event of our own, not
    ``Thread.join``: a KeyboardInterrupt inside ``join`` can mark a running thread as stopped (bpo-45274).
    """
    give_up = time.monotonic() + wait_s
    while True:
        try:
            if ended.is_set() or time.monotonic() >= give_up:
                return
            loop.stop()
            ended.wait(timeout=max(0.0, give_up - time.monotonic()))
        except KeyboardInterrupt:                   # a second signal: the loop is stopping; wait for it still
            continue


def _summarise(samples, loop, times_ms, idle_s, run_s, source):
    """The report's figures; ``times_ms``: every frame's time over the run."""
    idle = [s for s in samples if s["phase"] == "idle"]
    running = [s for s in samples if s["phase"] == "running"]
    frames = times_ms.size
    frame_ms = time_stats(times_ms)
    histogram, _ = np.histogram(times_ms, bins=HISTOGRAM_EDGES_MS)
    summary = {
        "source": source, "idle_s": idle_s, "run_s": run_s, "frames": loop.counters.frames, "frames_timed": frames,
        "process_cpu_pct": {"idle": _stats([s["process_cpu_pct"] for s in idle]),
                            "running": _stats([s["process_cpu_pct"] for s in running])},
        "system_cpu_pct": {"idle": _stats([s.get("system_cpu_pct") for s in idle]),
                           "running": _stats([s.get("system_cpu_pct") for s in running])},
        "power_w": {"idle": _stats([s.get("power_w") for s in idle]),
                    "running": _stats([s.get("power_w") for s in running])},
        "deadline_misses": loop.counters.deadline_misses, "xruns": loop.counters.xruns,
        "policy_activations": loop.counters.policy_activations,
        "frame_ms": {key: frame_ms[key] if frames else None for key in ("p50", "p99", "max")},
        "frame_ms_histogram": {f"{lo:g}-{hi:g}" if hi < 1e9 else f">{lo:g}": int(count)
                               for lo, hi, count in zip(HISTOGRAM_EDGES_MS[:-1], HISTOGRAM_EDGES_MS[1:], histogram)},
    }
    power = summary["power_w"]
    if power["idle"] and power["running"]:
        idle_w, run_w = power["idle"]["mean"], power["running"]["mean"]
        summary["energy_wh_per_hour"] = run_w                        # W sustained for an hour = Wh
        summary["added_power_w"] = run_w - idle_w
        summary["battery_life_change_pct"] = 100.0 * (idle_w / run_w - 1.0) if run_w > 0 else None
    return summary


def _write(out_dir, samples, summary, say, written):
    """The three files, each whole or not at all, report.md last (its name goes into ``written``), then the plots."""
    keys = sorted({key for sample in samples for key in sample})
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=keys)
    writer.writeheader()
    writer.writerows(samples)
    atomic_write(out_dir / "samples.csv", table.getvalue().encode())
    atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    atomic_write(out_dir / "report.md", _markdown(summary).encode())
    written.append(out_dir / "report.md")
    say(_markdown(summary))
    try:
        _plots(out_dir, samples)
        say(f"plots: {out_dir / 'cpu.png'}, {out_dir / 'power.png'}, {out_dir / 'frame_time.png'}")
    except ImportError:
        say("plots skipped: matplotlib is not installed (pip install matplotlib); the report is complete")
    say(f"wrote {out_dir / 'report.md'}, {out_dir / 'summary.json'}, {out_dir / 'samples.csv'}")


def _fmt(stats, unit):
    return "n/a" if not stats else f"{stats['mean']:.2f} {unit} (p95 {stats['p95']:.2f})"


def _markdown(summary):
    lines = [f"# percepnet-edge profile ({summary['source']} source)", "",
             f"Idle baseline {summary['idle_s']:.0f} s, then {summary['run_s']:.0f} s running "
             f"({summary['frames']} frames).", ""]
    if "interrupted_after_s" in summary:
        lines += [f"**Interrupted after {summary['interrupted_after_s']:.0f} s**: the figures cover what ran until "
                  "then.", ""]
    lines += ["| measure | idle | running |", "|---|---|---|"]
    for key, unit in (("process_cpu_pct", "%"), ("system_cpu_pct", "%"), ("power_w", "W")):
        lines.append(f"| {key} | {_fmt(summary[key]['idle'], unit)} | {_fmt(summary[key]['running'], unit)} |")
    lines.append("")
    if "added_power_w" in summary:
        lines.append(f"Energy while running: {summary['energy_wh_per_hour']:.2f} Wh per hour; the denoiser adds "
                     f"{summary['added_power_w']:.3f} W, which changes battery life by "
                     f"{summary['battery_life_change_pct']:+.1f}% against idle.")
    else:
        lines.append("Power: no power source on this machine (see docs/daemon.md, 'Power': INA2xx hwmon, power_supply, Pi 5 vcgencmd).")
    frame = summary["frame_ms"]
    lines += ["", f"Frame time: p50 {frame['p50']:.2f} ms, p99 {frame['p99']:.2f} ms, max {frame['max']:.2f} ms; "
              f"deadline misses {summary['deadline_misses']}, xruns {summary['xruns']}, "
              f"policy activations {summary['policy_activations']}.", "",
              "| frame time (ms) | frames |", "|---|---:|"]
    if summary["frames_timed"] < summary["frames"] and "interrupted_after_s" not in summary:   # a stalled reader
        lines[-2:-2] = [f"Frame times of {summary['frames'] - summary['frames_timed']} frames were not collected "
                        "(the reader fell more than a minute behind).", ""]
    lines += [f"| {band} | {count} |" for band, count in summary["frame_ms_histogram"].items()]
    return "\n".join(lines) + "\n"


def _plots(out_dir, samples):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    start = samples[0]["t"] if samples else 0.0
    t = np.array([s["t"] - start for s in samples])
    running = np.array([s["phase"] == "running" for s in samples])
    series = {"cpu.png": [("process_cpu_pct", "process CPU %"), ("system_cpu_pct", "system CPU %")],
              "power.png": [("power_w", "power W")],
              "frame_time.png": [("frame_ms_p50", "frame p50 ms"), ("frame_ms_p99", "frame p99 ms"),
                                 ("frame_ms_max", "frame max ms")]}
    for name, keys in series.items():
        figure, axis = plt.subplots(figsize=(8, 3.2))
        for key, label in keys:
            values = np.array([np.nan if s.get(key) is None else s[key] for s in samples], dtype=float)
            axis.plot(t, values, label=label)
        if running.any():
            axis.axvspan(t[running][0], t[-1], color="tab:green", alpha=0.08, label="pipeline running")
        if name == "frame_time.png":
            axis.axhline(10.0, color="tab:red", linestyle="--", linewidth=1, label="10 ms deadline")
        axis.set_xlabel("time (s)")
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=100)
        plt.close(figure)
