"""Field telemetry: what the denoiser costs, sampled every N seconds off the audio path.

Sources are detected once at start-up, under configurable sysfs/procfs roots
(tests point them at a fake tree); a missing source is reported once, never
per interval. Every interval the :class:`Telemetry` thread reads the audio
loop's counters (plain numbers the loop writes; the thread only reads) and the
sources, then writes a JSON line and/or the Prometheus text format (a
node_exporter textfile, renamed atomically, or an HTTP endpoint bound to
localhost). A slow sink delays only this thread, never the audio.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .atomic import atomic_write

POWER_SENSOR_NAMES = ("ina219", "ina226", "ina260", "ina3221", "ina2xx")


@dataclass(frozen=True)
class TelemetryConfig:
    interval_s: float = 10.0
    json_path: Optional[str] = None            # a file to append to, or "-" for stdout
    prometheus_dir: Optional[str] = None       # node_exporter textfile-collector folder
    http_port: Optional[int] = None            # Prometheus endpoint, off by default
    http_host: str = "127.0.0.1"
    sysfs_root: str = "/sys"
    procfs_root: str = "/proc"
    vcgencmd: bool = True                      # Pi 5 PMIC power via `vcgencmd pmic_read_adc` when present


def _read_number(path):
    try:
        return float(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Sources:
    """The optional sources found on this machine; ``missing`` lists what was not found, once."""

    def __init__(self, config: TelemetryConfig):
        sysfs, procfs = Path(config.sysfs_root), Path(config.procfs_root)
        self.found, self.missing = [], []
        self._stat = procfs / "stat"
        self._stat_file = open(self._stat) if self._stat.exists() else None
        self._note(self._stat_file is not None, f"system CPU ({self._stat})")
        self.power = self._find_power(sysfs)
        self.vcgencmd = shutil.which("vcgencmd") if config.vcgencmd and self.power is None else None
        self._note(self.power is not None or self.vcgencmd is not None,
                   "power (hwmon INA2xx, power_supply, or vcgencmd pmic_read_adc)")
        self.battery = self._first(sysfs / "class" / "power_supply", "*/capacity")
        self._note(self.battery is not None, "battery capacity (power_supply/*/capacity)")
        self.temperature = self._first(sysfs / "class" / "thermal", "thermal_zone0/temp")
        self._note(self.temperature is not None, "SoC temperature (thermal_zone0)")
        self.frequency = self._first(sysfs / "devices" / "system" / "cpu", "cpu0/cpufreq/scaling_cur_freq")
        self._note(self.frequency is not None, "CPU frequency (cpu0 scaling_cur_freq)")
        self._last_system = self._system_times()
        self._last_process = (time.monotonic(), sum(os.times()[:2]))

    def _note(self, present, what):
        (self.found if present else self.missing).append(what)

    @staticmethod
    def _first(folder, pattern):
        matches = sorted(folder.glob(pattern)) if folder.is_dir() else []
        return matches[0] if matches else None

    @staticmethod
    def _find_power(sysfs):
        """A callable returning watts, from the first power source found (by name, not number)."""
        hwmon = sysfs / "class" / "hwmon"
        for device in sorted(hwmon.glob("hwmon*")) if hwmon.is_dir() else []:
            name = (device / "name").read_text().strip() if (device / "name").exists() else ""
            if name not in POWER_SENSOR_NAMES:
                continue
            if (device / "power1_input").exists():
                return lambda d=device: _scaled(_read_number(d / "power1_input"), 1e-6)     # uW
            if (device / "curr1_input").exists() and (device / "in1_input").exists():
                return lambda d=device: _product(_read_number(d / "curr1_input"),          # mA x mV
                                                 _read_number(d / "in1_input"), 1e-6)
        supplies = sysfs / "class" / "power_supply"
        for supply in sorted(supplies.iterdir()) if supplies.is_dir() else []:
            if (supply / "power_now").exists():
                return lambda s=supply: _scaled(_read_number(s / "power_now"), 1e-6)         # uW
            if (supply / "current_now").exists() and (supply / "voltage_now").exists():
                return lambda s=supply: _product(_read_number(s / "current_now"),            # uA x uV
                                                 _read_number(s / "voltage_now"), 1e-12)
        return None

    def _system_times(self):
        if self._stat_file is None:
            return None
        self._stat_file.seek(0)
        values = [float(v) for v in self._stat_file.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        return sum(values), idle

    def sample(self):
        """One reading of every source that exists (absent ones are None)."""
        now, process = time.monotonic(), sum(os.times()[:2])
        then, process_then = self._last_process
        self._last_process = (now, process)
        reading = {"process_cpu_pct": 100.0 * (process - process_then) / max(now - then, 1e-9)}
        system = self._system_times()
        if system is not None and self._last_system is not None:
            total, idle = system[0] - self._last_system[0], system[1] - self._last_system[1]
            reading["system_cpu_pct"] = 100.0 * (1.0 - idle / total) if total > 0 else 0.0
        self._last_system = system
        reading["power_w"] = self.power() if self.power else (self._pmic_watts() if self.vcgencmd else None)
        reading["battery_pct"] = _read_number(self.battery) if self.battery else None
        reading["temperature_c"] = _scaled(_read_number(self.temperature), 1e-3) if self.temperature else None
        reading["cpu_freq_mhz"] = _scaled(_read_number(self.frequency), 1e-3) if self.frequency else None
        return reading

    def _pmic_watts(self):
        """Sum of current x voltage over the Pi 5 PMIC rails (one subprocess, once per interval)."""
        try:
            text = subprocess.run([self.vcgencmd, "pmic_read_adc"], capture_output=True, text=True,
                                  timeout=2).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        currents, volts = {}, {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and "=" in parts[1]:
                rail, value = parts[0], parts[1].split("=")[1]
                if rail.endswith("_A") and value.endswith("A"):
                    currents[rail[:-2]] = float(value[:-1])
                elif rail.endswith("_V") and value.endswith("V"):
                    volts[rail[:-2]] = float(value[:-1])
        return sum(currents[r] * volts[r] for r in currents if r in volts) if currents else None


def _scaled(value, factor):
    return None if value is None else value * factor


def _product(a, b, factor):
    return None if a is None or b is None else a * b * factor


def prometheus_text(record):
    """The Prometheus text exposition format of one record (gauges and counters, with HELP/TYPE)."""
    lines = []
    for key, value in record.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value is None:
            continue
        kind = "counter" if key.endswith("_total") else "gauge"
        name = f"percepnet_edge_{key}"
        lines += [f"# HELP {name} percepnet-edge {key.replace('_', ' ')}", f"# TYPE {name} {kind}",
                  f"{name} {float(value):.6g}"]
    return "\n".join(lines) + "\n"


class Telemetry:
    """Samples the loop and the sources every interval, in its own daemon thread."""

    def __init__(self, config: TelemetryConfig, loop, say=print):
        self.config, self.loop = config, loop
        self.sources = Sources(config)
        for what in self.sources.missing:
            say(f"telemetry: no {what} on this machine; not reported")
        self.latest = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._last_frames = 0
        self._vad = (0.0, 0)
        self._server = None

    def start(self):
        if self.config.http_port is not None:
            self._serve()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()

    def record(self):
        """One telemetry record from the loop's counters and the sources."""
        loop, counters = self.loop, self.loop.counters
        frames = counters.frames
        times = loop.frame_times_ms(last=frames - self._last_frames)
        self._last_frames = frames
        if times.size == 0:
            times = np.zeros(1)
        deadline_ms = loop.config.realtime.deadline_ms
        vad_sum, vad_frames = counters.vad_sum - self._vad[0], counters.vad_frames - self._vad[1]
        self._vad = (counters.vad_sum, counters.vad_frames)
        record = {"time": round(time.time(), 3), "frames_total": frames,
                  "frame_ms_p50": float(np.percentile(times, 50)), "frame_ms_p99": float(np.percentile(times, 99)),
                  "frame_ms_max": float(times.max()), "deadline_margin_ms": deadline_ms - float(np.percentile(times, 99)),
                  "deadline_misses_total": counters.deadline_misses, "xruns_total": counters.xruns,
                  "policy_activations_total": counters.policy_activations,
                  "device_reopens_total": counters.device_reopens,
                  "speech_share": vad_sum / vad_frames if vad_frames else None}
        record.update(self.sources.sample())
        return record

    def _run(self):
        while not self._stop.wait(self.config.interval_s):
            self.emit(self.record())

    def emit(self, record):
        self.latest = record
        if self.config.json_path == "-":
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        elif self.config.json_path:
            with open(self.config.json_path, "a") as stream:
                stream.write(json.dumps(record) + "\n")
        if self.config.prometheus_dir:
            # node_exporter reads *.prom only, so the temporary name is never half-read.
            atomic_write(Path(self.config.prometheus_dir) / "percepnet_edge.prom", prometheus_text(record).encode())

    def _serve(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        telemetry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):                           # noqa: N802 (http.server's name)
                body = prometheus_text(telemetry.latest or telemetry.record()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((self.config.http_host, self.config.http_port), Handler)
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()
