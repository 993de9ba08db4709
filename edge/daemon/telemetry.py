"""Field telemetry: what the denoiser costs, sampled every N seconds off the audio path.

Sources are detected once at start-up, under configurable sysfs/procfs roots
(tests point them at a fake tree); a missing source is reported once, never
per interval. Every interval the :class:`Telemetry` thread reads the audio
loop's counters (plain numbers the loop writes; the thread only reads) and the
sources, then writes a JSON line and/or the Prometheus text format (a
node_exporter textfile, renamed atomically, or an HTTP endpoint bound to
localhost). A slow sink delays only this thread, never the audio.

Telemetry never stops the audio. Sinks survive their errors: a failed write
is counted (``telemetry_sink_errors_total``), logged once per kind of error,
and retried next interval; nothing that goes wrong in an interval ends the
thread. A missing ``prometheus_dir`` or an HTTP port another process holds is
such an error too: the daemon starts without that sink, says so, and retries
every interval. The HTTP endpoint serves a body rendered once per interval
(see :mod:`edge.daemon.metrics_http` for its deadlines and limits).
"""

import collections
import errno
import ipaddress
import json
import logging
import math
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge.daemon.metrics_http import MetricsServer, socket_family
from edge.io.atomic import atomic_write, probe_writable

POWER_SENSOR_NAMES = ("ina219", "ina226", "ina260", "ina3221", "ina2xx")
#: node_exporter's textfile folder on Debian / Raspberry Pi OS; the shipped unit may write there.
NODE_EXPORTER_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
PROMETHEUS_FILE = "percepnet_edge.prom"
INSTANCE_LABEL = "instance_name"
PROMETHEUS_FILE_MODE = 0o644     # node_exporter runs as another user; the unit's UMask=0077 would give 0600
#: A prometheus_dir removed under a running daemon is made again with this mode (node_exporter's package
#: makes it 0755), not the 0700 that the unit's UMask=0077 would give it.
PROMETHEUS_DIR_MODE = 0o755

log = logging.getLogger("percepnet-edge")


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
        why = None
        if self.vcgencmd is not None:                # asked once: a vcgencmd that cannot read the PMIC stays so
            watts, why = self._pmic_reading()
            self.vcgencmd = self.vcgencmd if watts is not None else None
        self._note(self.power is not None or self.vcgencmd is not None,
                   "power (hwmon INA2xx, power_supply, or vcgencmd pmic_read_adc)" if why is None else
                   f"power (vcgencmd pmic_read_adc read nothing: {why})")
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
        reading["power_w"] = self.power() if self.power else (self._pmic_reading()[0] if self.vcgencmd else None)
        reading["battery_pct"] = _read_number(self.battery) if self.battery else None
        reading["temperature_c"] = _scaled(_read_number(self.temperature), 1e-3) if self.temperature else None
        reading["cpu_freq_mhz"] = _scaled(_read_number(self.frequency), 1e-3) if self.frequency else None
        return reading

    def _pmic_reading(self):
        """(watts, None): the sum of current x voltage over the Pi 5 PMIC rails (one subprocess, once per interval);
        (None, why) when there is no reading."""
        try:
            done = subprocess.run([self.vcgencmd, "pmic_read_adc"], capture_output=True, text=True, timeout=2)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        currents, volts = {}, {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and "=" in parts[1]:
                rail, value = parts[0], parts[1].split("=")[1]
                if rail.endswith("_A") and value.endswith("A"):
                    currents[rail[:-2]] = float(value[:-1])
                elif rail.endswith("_V") and value.endswith("V"):
                    volts[rail[:-2]] = float(value[:-1])
        if currents:
            return sum(currents[r] * volts[r] for r in currents if r in volts), None
        said = (done.stderr or done.stdout).strip().splitlines()
        why = f"exit status {done.returncode}" + (f", {said[0][:120]!r}" if said else "")
        if done.returncode != 0:
            return None, (f"{why}; it needs /dev/vcio (under the systemd unit: DeviceAllow=/dev/vcio rw and "
                          "SupplementaryGroups=video), and a Pi before the 5 has no PMIC to read")
        return None, f"{why}, with no PMIC rails in its answer (a Pi 5 has them)"


def _scaled(value, factor):
    return None if value is None else value * factor


def _product(a, b, factor):
    return None if a is None or b is None else a * b * factor


def prometheus_text(record):
    """The Prometheus text exposition format of one record (gauges and counters, with HELP/TYPE).

    A record with an ``instance`` (``run --instance``, the templated unit's ``%i``) labels every sample
    ``instance_name="..."`` (not ``instance``, which Prometheus gives the scrape target).
    """
    instance = record.get("instance")
    labels = f'{{{INSTANCE_LABEL}="{_label_value(instance)}"}}' if instance else ""
    lines = []
    for key, value in record.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value is None:
            continue
        kind = "counter" if key.endswith("_total") else "gauge"
        name = f"percepnet_edge_{key}"
        lines += [f"# HELP {name} percepnet-edge {key.replace('_', ' ')}", f"# TYPE {name} {kind}",
                  f"{name}{labels} {float(value):.6g}"]
    return "\n".join(lines) + "\n"


def _label_value(text):
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_file(instance=None):
    """The textfile's name: one per instance, so that instances sharing node_exporter's folder never collide."""
    return f"percepnet_edge_{instance}.prom" if instance else PROMETHEUS_FILE


def is_loopback_host(host):
    """True for 127.0.0.0/8, ::1 and "localhost"; False for anything reachable from the network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def append_line(path, text):
    """Append one line to a regular file: never through a symlink, never into a FIFO or a device.

    A full disk cuts a write short: that is an error (ENOSPC, counted by the caller), and the next record
    starts on a clean line: when the file does not end with a newline (a cut-off record), one is written first,
    so a reader loses the cut record only, never the one after it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = text.encode()
        if info.st_size and _last_byte(path) != b"\n":
            data = b"\n" + data
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes (is the disk full?)", str(path))
    finally:
        os.close(fd)


def _last_byte(path):
    """The file's last byte, read through a separate O_RDONLY descriptor (the append one cannot read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, 1, size - 1) if size else b""
    finally:
        os.close(fd)


def describe_os_error(exc):
    """An OSError in words, with what to do where that is known."""
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which is not followed; name the real file"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"{exc.strerror}; under the systemd unit, add the folder to ReadWritePaths= and let the "
                "service's group (audio) write there")
    if exc.errno == errno.EAFNOSUPPORT:       # the shipped units allow only AF_UNIX sockets
        return (f"{exc.strerror}; under the systemd unit, add AF_INET AF_INET6 to RestrictAddressFamilies= and "
                "drop PrivateNetwork= and IPAddressDeny= (docs/deployment.md)")
    return exc.strerror or str(exc)


class Telemetry:
    """Samples the loop and the sources every interval, in its own daemon thread."""

    def __init__(self, config: TelemetryConfig, loop, say=print, instance=None):
        self.config, self.loop, self.instance = config, loop, instance
        self.sources = Sources(config)
        for what in self.sources.missing:
            say(f"telemetry: no {what} on this machine; not reported")
        self.latest = {}
        self.errors = collections.Counter()        # per sink ("json", "prometheus", "http") and "interval"
        self.http = collections.Counter()          # the endpoint's own counts (metrics_http.MetricsServer)
        self._failing = {}                         # sink -> the kind of error last logged for it
        self._body = b""                           # the HTTP body, rendered once per interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._last_frames = 0
        self._vad = (0.0, 0)
        self._server = None

    @property
    def http_disconnects(self):
        return self.http["http_disconnects"]

    def start(self):
        if self.config.http_port is not None:
            self._body = prometheus_text(self.record()).encode()
            self._listen()
        self._thread.start()
        return self

    def stop(self):
        """Stop the thread and the endpoint at once: no client, and no slow sink, is waited for."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def record(self):
        """One telemetry record from the loop's counters and the sources."""
        loop, counters = self.loop, self.loop.counters
        frames = counters.frames
        times = loop.frame_times.stats_ms(frames - self._last_frames)      # this interval's frames
        self._last_frames = frames
        deadline_ms = loop.config.realtime.deadline_ms
        vad_sum, vad_frames = counters.vad_sum - self._vad[0], counters.vad_frames - self._vad[1]
        self._vad = (counters.vad_sum, counters.vad_frames)
        record = {"time": round(time.time(), 3), "instance": self.instance, "frames_total": frames,
                  "frame_ms_p50": times["p50"], "frame_ms_p99": times["p99"], "frame_ms_max": times["max"],
                  "deadline_margin_ms": deadline_ms - times["p99"],
                  "deadline_misses_total": counters.deadline_misses, "xruns_total": counters.xruns,
                  "policy_activations_total": counters.policy_activations,
                  "device_reopens_total": counters.device_reopens,
                  "device_open_failures_total": counters.device_open_failures,
                  "waiting_for_device": int(getattr(loop, "waiting_for_device", False)),
                  "input_frames_repaired_total": counters.nonfinite_frames,
                  "output_frames_clipped_total": counters.clipped_frames,
                  "echo_cancelling_frames_total": counters.echo_cancelling_frames,
                  "echo_no_reference_frames_total": counters.echo_no_reference_frames,
                  "telemetry_sink_errors_total": self.errors["json"] + self.errors["prometheus"],
                  "telemetry_errors_total": sum(self.errors.values()),
                  "http_disconnects_total": self.http["http_disconnects"],
                  "http_timeouts_total": self.http["http_timeouts"] + self.http["http_evicted"],
                  "http_errors_total": self.http["http_errors"],
                  "http_listening": int(self._server is not None) if self.config.http_port is not None else None,
                  "speech_share": vad_sum / vad_frames if vad_frames else None}
        canceller = getattr(getattr(loop, "pipeline", None), "canceller", None)
        if canceller is not None:               # the echo stage's state: where the echo is, how the clocks agree
            record.update({"echo_delay_ms": canceller.delay_ms,
                           "echo_delay_found": int(canceller.delay_found),
                           "echo_reference_xruns_total": counters.echo_reference_xruns,
                           "echo_reference_retries_total": counters.echo_reference_retries,
                           "echo_reference_gain_db": 20.0 * math.log10(canceller.reference_gain),
                           "echo_drift_ppm": canceller.drift_ppm,
                           "echo_drift_followed": int(canceller.drift_followed)})
        record.update(self.sources.sample())
        return record

    def _run(self):
        while not self._stop.wait(self.config.interval_s):
            self._interval()

    def _interval(self):
        """One record to every sink. Nothing that goes wrong here may end the thread."""
        try:
            if self.config.http_port is not None and self._server is None:
                self._listen()                      # the port was taken at start: try again
            self.emit(self.record())
        except Exception as exc:                    # a vanished source, a bug: report it, try next interval
            self._failed("interval", "the telemetry interval", exc)

    def emit(self, record):
        """Write ``record`` to every sink; a failing sink is counted, logged once per kind, retried next time."""
        self.latest = record
        body = prometheus_text(record).encode()
        self._body = body                           # the HTTP endpoint serves this, never renders
        path = self.config.json_path
        if path == "-":
            self._write("json", "stdout", lambda: (sys.stdout.write(json.dumps(record) + "\n"), sys.stdout.flush()))
        elif path:
            self._write("json", path, lambda: append_line(path, json.dumps(record) + "\n"))
        if self.config.prometheus_dir:
            # node_exporter reads *.prom only, so the temporary name is never half-read.
            target = Path(self.config.prometheus_dir) / prometheus_file(self.instance)
            self._write("prometheus", target, lambda: atomic_write(target, body, mode=PROMETHEUS_FILE_MODE,
                                                                    folder_mode=PROMETHEUS_DIR_MODE))

    def _write(self, sink, target, write):
        try:
            write()
        except OSError as exc:
            self._failed(sink, target, exc)
            return
        if sink in self._failing:
            del self._failing[sink]
            log.info(f"telemetry: the {sink} sink {target} works again after {self.errors[sink]} error(s)")

    def _failed(self, sink, target, exc, what="failed"):
        self.errors[sink] += 1
        kind = (type(exc).__name__, getattr(exc, "errno", None))
        if self._failing.get(sink) == kind:
            return                                  # already said; counted in telemetry_*errors_total
        self._failing[sink] = kind
        reason = describe_os_error(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        log.warning(f"telemetry: the {sink} sink {target} {what}: {reason}; retrying every "
                    f"{self.config.interval_s:g} s (errors are counted in percepnet_edge_telemetry_errors_total)")

    def _listen(self):
        """Open the HTTP endpoint; a port that cannot be bound (another process holds it) is a sink error:
        logged once, counted, retried every interval, and the audio runs on."""
        host, port = self.config.http_host, self.config.http_port
        try:
            server = MetricsServer((host, port), lambda: self._body, self.http)
        except OSError as exc:
            self._failed("http", f"endpoint {host}:{port}", exc, "cannot listen; the daemon runs without it")
            return False
        self._server = server.start()
        if "http" in self._failing:
            del self._failing["http"]
            log.info(f"telemetry: the http endpoint {host}:{port} listens now")
        if not is_loopback_host(host):
            log.warning(f"telemetry.http_host {host} is not a loopback address: the metrics endpoint is "
                        "reachable from the network, without authentication; bind 127.0.0.1 unless that is "
                        "intended")
        return True


def check_sinks(config: TelemetryConfig):
    """What ``check`` reports about the telemetry sinks: ``(level, text)`` with level ok, FAIL or warn.

    Every sink path is tried for writing, without changing anything: a
    temporary file is created and removed in the folder; an existing JSON
    file is opened for appending (nothing written).
    """
    results = []
    path = config.json_path
    if path and path != "-":
        problem = _json_sink_problem(Path(path))
        results.append(("FAIL", f"json_path {path}: {problem}") if problem else ("ok", f"json_path {path} is writable"))
    if config.prometheus_dir:
        folder = Path(config.prometheus_dir)
        problem = _folder_problem(folder)
        results.append(("FAIL", f"prometheus_dir {folder}: {problem}") if problem
                       else ("ok", f"prometheus_dir {folder} is writable"))
        if not problem and os.geteuid() == 0 and not _service_group_may_write(folder):
            results.append(("warn", f"prometheus_dir {folder}: the systemd service (a dynamic user in group "
                                    f"audio) cannot write here; run: chgrp audio {folder} && chmod g+w {folder}"))
    if config.http_port is not None:
        problem = _listen_problem(config.http_host, config.http_port)
        results.append(("FAIL", problem) if problem
                       else ("ok", f"http {config.http_host}:{config.http_port} can listen"))
        if not is_loopback_host(config.http_host):
            results.append(("warn", f"http_host {config.http_host} is not a loopback address: the metrics "
                                    "are reachable from the network, without authentication"))
    return results


def _json_sink_problem(path):
    if path.is_symlink():
        return "it is a symbolic link, which is not followed; name the real file"
    if path.exists():
        if not path.is_file():
            return "exists and is not a regular file"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as exc:
            return describe_os_error(exc)
        return None
    return _folder_problem(path.parent)


def _folder_problem(folder):
    if not folder.is_dir():
        return f"the folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder"
    try:
        probe_writable(folder / "percepnet-edge-check")
    except OSError as exc:
        return f"cannot write in {folder}: {describe_os_error(exc)}"
    return None


def _service_group_may_write(folder):
    """Whether the unit's dynamic user, whose only useful group is audio, may create files in ``folder``."""
    import grp
    info = folder.stat()
    try:
        audio_gid = grp.getgrnam("audio").gr_gid
    except KeyError:
        return bool(info.st_mode & stat.S_IWOTH)
    return bool(info.st_mode & stat.S_IWOTH or (info.st_gid == audio_gid and info.st_mode & stat.S_IWGRP))


def _listen_problem(host, port):
    import socket
    try:
        with socket.socket(socket_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return f"http {host}:{port}: cannot listen ({exc.strerror}); choose a free port, or set http_port: null"
    return None
