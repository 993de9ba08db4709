"""``percepnet-edge soak``: the daemon for hours of audio, with faults injected, and what it leaks.

A benchmark, not a test. It runs the real ``run`` path (signal handlers,
device locks, telemetry sinks, the audio loop, ALSA PCMs) through ALSA's
``file`` plugin, as fast as the machine allows:

* capture reads a raw S16_LE file of generated noisy speech, a little longer
  than the interval between device losses (a reopened ``file`` PCM starts
  the file again); playback goes to ``/dev/null``;
* every ``loss_every_min`` minutes of audio the capture PCM is closed under
  the loop (its next read fails inside ALSA: a vanished device), and the
  file is moved away for ``outage_opens`` reopen attempts, which fail for
  real, so the backoff runs;
* every ``sighup_every_min`` minutes of audio the process sends itself
  SIGHUP, after switching the config's post-filter strength, so that a new
  pipeline (model included) is loaded and swapped in.

It samples the resident memory, open file descriptors and OS threads once
a second, and reports them after the first minute of audio (start) and once
more when the loop has ended (end: every frame counted, devices closed, so a
leaked descriptor or thread shows there), with the loop's counters.
"""

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.io import synthetic
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.devices.alsa import AlsaDuplex

FRAMES_PER_MINUTE = 60 * SAMPLE_RATE_HZ // HOP_SAMPLES
WARM_UP_FRAMES = FRAMES_PER_MINUTE          # "start" figures: after the first minute of audio
SAMPLE_EVERY_S = 1.0


def process_figures():
    """Resident memory (MB), open file descriptors and OS threads of this process, from /proc."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024.0, "fds": len(os.listdir("/proc/self/fd")),
            "threads": int(status["Threads"])}


class FaultyCapture(AlsaDuplex):
    """The real ALSA duplex, with a device loss and an outage injected on schedule (see module doc)."""

    def __init__(self, audio_config, infile, loss_every_frames, outage_opens):
        super().__init__(audio_config)
        self.infile, self.away = Path(infile), Path(f"{infile}.away")
        self.loss_every_frames, self.outage_opens = loss_every_frames, outage_opens
        self.reads = 0
        self.losses = 0
        self._failed_opens = 0

    def read(self):
        self.reads += 1
        if self.loss_every_frames and self.reads % self.loss_every_frames == 0:
            self.losses += 1
            self.capture.close()                 # the next read fails in ALSA: "PCM device is closed"
            os.rename(self.infile, self.away)    # and reopening fails until the outage is over
            self._failed_opens = 0
        return super().read()

    def open(self):
        if self.away.exists():
            if self._failed_opens >= self.outage_opens:
                os.rename(self.away, self.infile)  # the device is back
            else:
                self._failed_opens += 1          # this attempt fails in ALSA: the infile is missing
        super().open()


def capture_file(path, minutes):
    """``minutes`` of generated noisy speech (a 20 s clip repeated) as raw S16_LE mono."""
    clip = synthetic.mix_at_snr(synthetic.speech_like(20.0, seed=21),
                                synthetic.noise("babble-like", 20.0, seed=22), 5.0)
    pcm = np.round(np.clip(clip, -1.0, 32767 / 32768) * 32768).astype("<i2")
    repeats = int(np.ceil(minutes * 60 / 20.0))
    with open(path, "wb") as stream:
        for _ in range(repeats):
            stream.write(pcm.tobytes())


class Monitor:
    """Samples the process every second while the loop runs; keeps the first sample after warm-up and the last."""

    def __init__(self, frames_total, config_path, sighup_every_frames):
        self.frames_total, self.config_path = frames_total, Path(config_path)
        self.sighup_every_frames = sighup_every_frames
        self.loop, self.start, self.end, self.peak_rss_mb = None, None, None, 0.0      # end: see stop()
        self.rss_by_ten_minutes = {}                  # minute of audio -> RSS (MB), to see a plateau from a leak
        self.sighups = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def attach(self, loop):
        self.loop = loop
        self._thread.start()

    def _sample(self):
        counters = self.loop.counters
        sample = {**process_figures(), "frames": counters.frames, "deadline_misses": counters.deadline_misses,
                  "time": time.monotonic()}
        self.peak_rss_mb = max(self.peak_rss_mb, sample["rss_mb"])
        return sample

    def _run(self):
        next_sighup = self.sighup_every_frames
        while not self._stop.wait(SAMPLE_EVERY_S):
            sample = self._sample()
            if self.start is None and sample["frames"] >= WARM_UP_FRAMES:
                self.start = sample
            minute = sample["frames"] // (10 * FRAMES_PER_MINUTE) * 10
            if minute and minute not in self.rss_by_ten_minutes:
                self.rss_by_ten_minutes[minute] = round(sample["rss_mb"], 1)
            if self.sighup_every_frames and sample["frames"] >= next_sighup:
                next_sighup += self.sighup_every_frames
                self._switch_config()
                self.sighups += 1
                os.kill(os.getpid(), signal.SIGHUP)

    def _switch_config(self):
        """Another post-filter strength, so the reload builds and swaps a new pipeline."""
        text = self.config_path.read_text()
        beta = "0.3" if "postfilter_beta: 0.4" in text else "0.4"
        self.config_path.write_text(text.replace("postfilter_beta: 0.4", "postfilter_beta: X")
                                    .replace("postfilter_beta: 0.3", "postfilter_beta: X")
                                    .replace("postfilter_beta: X", f"postfilter_beta: {beta}"))

    def stop(self):
        """Stop sampling; the end figures are taken now, after the loop has run its last frame."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.loop is not None:
            self.end = self._sample()


def run_soak(audio_minutes=60.0, model=None, loss_every_min=5.0, outage_opens=3, sighup_every_min=2.0,
             as_json=False, say=print):
    """Run the soak (see module doc); prints and returns the figures."""
    from edge.commands import run as daemon_commands
    from edge.daemon.control import SignalControl
    frames_total = int(round(audio_minutes * FRAMES_PER_MINUTE))
    with tempfile.TemporaryDirectory(prefix="percepnet-soak-") as folder:
        work = Path(folder)
        infile = work / "capture.raw"
        capture_file(infile, min(loss_every_min, audio_minutes) + 0.5)
        asoundrc = daemon_commands.file_plugin_asoundrc(work, infile, "/dev/null")
        config_path = work / "config.yaml"
        model_line = f"model: {{path: {Path(model).resolve()}}}\n" if model else ""
        config_path.write_text(
            "audio: {capture_device: pe_capture, playback_device: pe_playback, sample_format: S16_LE}\n"
            f"{model_line}dsp:\n  postfilter_beta: 0.4\nrealtime: {{device_retry_max_s: 0.2}}\n"
            f"telemetry: {{json_path: {work / 'telemetry.jsonl'}, prometheus_dir: {work}, interval_s: 2}}\n")
        monitor = Monitor(frames_total, config_path, int(sighup_every_min * FRAMES_PER_MINUTE))
        devices = []

        def faulty(audio_config):
            devices.append(FaultyCapture(audio_config, infile, int(loss_every_min * FRAMES_PER_MINUTE),
                                         outage_opens))
            return devices[-1]
        lines = []
        control = SignalControl().install()
        started = time.monotonic()
        try:
            with daemon_commands.temporary_environment(            # device locks in WORK, not /run/percepnet-edge
                    ALSA_CONFIG_PATH=f"{daemon_commands.SYSTEM_ALSA_CONF}:{asoundrc}", RUNTIME_DIRECTORY=str(work)):
                daemon_commands.run(config_path, frames=frames_total, say=lines.append, control=control,
                                    io_factory=faulty, on_loop=monitor.attach)
        finally:
            wall_s = time.monotonic() - started
            monitor.stop()
            control.restore()
        records = work / "telemetry.jsonl"
        telemetry_records = len(records.read_text().splitlines()) if records.exists() else 0
    loop = monitor.loop
    counters = loop.counters
    figures = {"audio_minutes": counters.frames / FRAMES_PER_MINUTE, "wall_s": wall_s,
               "audio_minutes_per_wall_minute": counters.frames / FRAMES_PER_MINUTE / (wall_s / 60.0),
               "start": monitor.start, "end": monitor.end, "peak_rss_mb": monitor.peak_rss_mb,
               "rss_mb_by_audio_minute": monitor.rss_by_ten_minutes,
               "device_losses_injected": devices[0].losses if devices else 0,
               "device_reopens": counters.device_reopens, "device_open_failures": counters.device_open_failures,
               "sighups": monitor.sighups, "reloads": counters.reloads, "rejected_reloads": counters.rejected_reloads,
               "deadline_misses": counters.deadline_misses, "xruns": counters.xruns,
               "policy_activations": counters.policy_activations, "telemetry_records": telemetry_records,
               "frame_ms": loop.frame_times.stats_ms(), "summary": lines[-1] if lines else ""}
    say(json.dumps(figures, indent=2) if as_json else _table(figures))
    return figures


def _table(f):
    start, end = f["start"] or {}, f["end"] or {}
    row = "| {:<22} | {:>10} | {:>10} |"
    lines = [f"soak: {f['audio_minutes']:.1f} min of audio in {f['wall_s']:.0f} s "
             f"({f['audio_minutes_per_wall_minute']:.1f} min of audio per min of wall time)",
             f"injected: {f['device_losses_injected']} device losses ({f['device_open_failures']} failed reopens), "
             f"{f['sighups']} SIGHUP; seen: {f['device_reopens']} reopens, {f['reloads']} reloads "
             f"({f['rejected_reloads']} rejected), {f['telemetry_records']} telemetry records",
             row.format("", "start", "end"), row.format("-" * 22, "-" * 10, "-" * 10)]
    for key, label in (("rss_mb", "RSS (MB)"), ("fds", "open fds"), ("threads", "threads"),
                       ("deadline_misses", "deadline misses"), ("frames", "frames")):
        lines.append(row.format(label, _cell(start, key), _cell(end, key)))
    if f["rss_mb_by_audio_minute"]:
        lines.append("RSS (MB) by minute of audio: " + ", ".join(f"{minute}: {rss}" for minute, rss
                                                                 in f["rss_mb_by_audio_minute"].items()))
    t = f["frame_ms"]
    lines.append(f"frame p50 {t['p50']:.2f} ms p99 {t['p99']:.2f} ms max {t['max']:.2f} ms (last minute); "
                 f"xruns {f['xruns']}; policy activations {f['policy_activations']}; "
                 f"peak RSS {f['peak_rss_mb']:.1f} MB")
    return "\n".join(lines)


def _cell(sample, key):
    if key not in sample:
        return "-"
    return f"{sample[key]:.1f}" if key == "rss_mb" else str(sample[key])
