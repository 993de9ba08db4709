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

With ``http_load``, the telemetry's HTTP endpoint listens on a loopback port
and a separate process (:func:`http_load_main`) loads it for the whole run:
``HTTP_SLOW_CLIENTS`` clients that send one byte every 1.5 s, ``HTTP_IDLE_CLIENTS``
connections that send nothing (each reconnects when closed), and a scrape a
second whose latency is reported; bounded in count and time, loopback only.

It samples the resident memory, open file descriptors and OS threads once
a second, and reports them after the first minute of audio (start) and once
more when the loop has ended (end: every frame counted, devices closed, so a
leaked descriptor or thread shows there), with the loop's counters.
"""

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.io import synthetic
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.devices.alsa import AlsaDuplex
from edge.errors import PercepnetError

FRAMES_PER_MINUTE = 60 * SAMPLE_RATE_HZ // HOP_SAMPLES
WARM_UP_FRAMES = FRAMES_PER_MINUTE          # "start" figures: after the first minute of audio
SAMPLE_EVERY_S = 1.0
#: The HTTP load of ``--http-load`` (issue 24): clients in a separate process, on loopback only.
HTTP_SLOW_CLIENTS = 4
HTTP_IDLE_CLIENTS = 30
HTTP_SLOW_BYTE_EVERY_S = 1.5
HTTP_SCRAPE_EVERY_S = 1.0
HTTP_RECONNECT_AFTER_S = 0.5                 # a closed load client comes back after this (a crowd, not a flood)


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
        self._frame_log = None                        # every frame's time, for whole-run percentiles
        self.http_thread_cpu_s = None                 # CPU time of the metrics-http thread, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-monitor", daemon=True)

    def attach(self, loop):
        from edge.daemon.frame_times import FrameTimeLog
        self.loop, self._frame_log = loop, FrameTimeLog(loop.frame_times)
        self._thread.start()

    def _collect_frame_times(self):
        self._frame_log.collect()                     # < 1 min of frames a second: the ring has not wrapped

    def frame_stats_ms(self):
        """Percentiles over every frame of the run (the loop's own ring holds the last minute only)."""
        from edge.daemon.frame_times import time_stats
        return time_stats(self._frame_log.all_ms() if self._frame_log is not None else [])

    def _sample_http_thread(self):
        """CPU seconds the endpoint's thread has used (utime + stime from /proc), while it exists."""
        for thread in threading.enumerate():
            if thread.name == "metrics-http" and thread.native_id:
                try:
                    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    return
                self.http_thread_cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self):
        self._collect_frame_times()
        self._sample_http_thread()
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


def _free_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_load_main(port, slow=HTTP_SLOW_CLIENTS, idle=HTTP_IDLE_CLIENTS):
    """The ``--http-load`` client process: slow and idle connections plus one scrape a second against
    127.0.0.1:``port`` until SIGTERM, then one JSON line of scrape latencies and counts on stdout."""
    import urllib.request
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scrapes_s, failures = [], [0]
    while not stop.is_set():                             # the daemon is still loading its model: wait for it
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            stop.wait(0.1)

    def scrape():
        while not stop.wait(HTTP_SCRAPE_EVERY_S):
            started = time.monotonic()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
                scrapes_s.append(time.monotonic() - started)
            except OSError:
                failures[0] += 1
    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    selector = selectors.DefaultSelector()
    connections = {}                                     # socket -> "slow" | "idle"
    reconnects, pending = 0, []                          # pending: (when, kind) to reconnect

    def connect(kind):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            return
        sock.setblocking(False)
        connections[sock] = kind
        selector.register(sock, selectors.EVENT_READ)
    for kind, count in (("slow", slow), ("idle", idle)):
        for _ in range(count):
            connect(kind)
    request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n" * 100
    next_byte = time.monotonic()
    while not stop.is_set():
        for key, _ in selector.select(0.1):              # readable: the server answered or closed it
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                kind = connections.pop(sock)
                selector.unregister(sock)
                sock.close()
                reconnects += 1
                pending.append((time.monotonic() + HTTP_RECONNECT_AFTER_S, kind))
        for due, kind in [p for p in pending if p[0] <= time.monotonic()]:
            pending.remove((due, kind))
            connect(kind)
        if time.monotonic() >= next_byte:
            next_byte += HTTP_SLOW_BYTE_EVERY_S
            for sock, kind in list(connections.items()):
                if kind == "slow":
                    try:
                        sock.send(request[:1])
                    except OSError:
                        pass
    times = sorted(scrapes_s)
    print(json.dumps({"scrapes": len(times), "scrape_failures": failures[0], "reconnects": reconnects,
                      "scrape_ms_p50": 1000 * times[len(times) // 2] if times else None,
                      "scrape_ms_max": 1000 * times[-1] if times else None}), flush=True)


def run_soak(audio_minutes=60.0, model=None, loss_every_min=5.0, outage_opens=3, sighup_every_min=2.0,
             as_json=False, say=print, http_load=False):
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
        model_line = f"model: {{path: {json.dumps(str(Path(model).resolve()))}}}\n" if model else ""   # quoted
        port = _free_loopback_port() if http_load else None
        http_line = f", http_port: {port}, http_host: 127.0.0.1" if http_load else ""
        config_path.write_text(
            "audio: {capture_device: pe_capture, playback_device: pe_playback, sample_format: S16_LE}\n"
            f"{model_line}dsp:\n  postfilter_beta: 0.4\nrealtime: {{device_retry_max_s: 0.2}}\n"
            f"telemetry: {{json_path: {work / 'telemetry.jsonl'}, prometheus_dir: {work}, interval_s: 2{http_line}}}\n")
        monitor = Monitor(frames_total, config_path, int(sighup_every_min * FRAMES_PER_MINUTE))
        devices = []

        def faulty(audio_config):
            devices.append(FaultyCapture(audio_config, infile, int(loss_every_min * FRAMES_PER_MINUTE),
                                         outage_opens))
            return devices[-1]
        lines = []
        control = SignalControl().install()
        load = None
        if http_load:
            load = subprocess.Popen([sys.executable, "-c", f"from edge.commands.soak import http_load_main; "
                                     f"http_load_main({port})"], stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
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
            http_figures = None
            if load is not None:
                load.terminate()
                out, _ = load.communicate(timeout=30)
                http_figures = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
                if http_figures is not None:
                    import resource
                    children = resource.getrusage(resource.RUSAGE_CHILDREN)
                    http_figures["load_process_cpu_s"] = children.ru_utime + children.ru_stime
                    http_figures["server_thread_cpu_s"] = monitor.http_thread_cpu_s
        records = work / "telemetry.jsonl"
        telemetry_records = len(records.read_text().splitlines()) if records.exists() else 0
    loop = monitor.loop
    if loop is None:                                  # a signal during the daemon's start-up: _serve returned
        why = "stopped by a signal during the daemon's start-up" if control.stop.is_set() else (
            "; ".join(lines[-2:]) if lines else "no output")
        raise PercepnetError(f"soak: the daemon ended before its audio loop started ({why}); nothing to report")
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
               "frame_ms": loop.frame_times.stats_ms(), "frame_ms_whole_run": monitor.frame_stats_ms(),
               "http_load": http_figures, "summary": lines[-1] if lines else ""}
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
    w = f["frame_ms_whole_run"]
    lines.append(f"whole run: frame p50 {w['p50']:.2f} ms p99 {w['p99']:.2f} ms p99.9 {w['p999']:.2f} ms "
                 f"max {w['max']:.2f} ms; deadline misses {f['deadline_misses']}")
    h = f.get("http_load")
    if h:
        lines.append(f"http load ({HTTP_SLOW_CLIENTS} slow + {HTTP_IDLE_CLIENTS} idle clients, loopback): "
                     f"{h['scrapes']} scrapes, {h['scrape_failures']} failed, scrape p50 "
                     f"{h['scrape_ms_p50'] or 0:.1f} ms max {h['scrape_ms_max'] or 0:.1f} ms; "
                     f"{h['reconnects']} client reconnects (closed by the server); CPU: the server thread "
                     f"{h.get('server_thread_cpu_s') or 0:.2f} s (sampled once a second), the load process "
                     f"{h.get('load_process_cpu_s', 0):.1f} s")
    return "\n".join(lines)


def _cell(sample, key):
    if key not in sample:
        return "-"
    return f"{sample[key]:.1f}" if key == "rss_mb" else str(sample[key])
