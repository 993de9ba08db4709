"""Telemetry against a fake sysfs/procfs tree; Prometheus format; a slow sink never blocks the audio."""

import json
import os
import re
import threading
import urllib.request

import pytest

from edge.daemon.config import parse
from edge.daemon.loop import AudioLoop
from edge.daemon.telemetry import Sources, Telemetry, TelemetryConfig
from tests.test_daemon import FakeClock, FakeIO, FakeNetwork
from edge.io.synthetic import speech_like


def _tree(root, with_power=True):
    sysfs, procfs = root / "sys", root / "proc"
    (procfs).mkdir(parents=True)
    (procfs / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n")
    hwmon = sysfs / "class" / "hwmon"
    (hwmon / "hwmon0").mkdir(parents=True)
    (hwmon / "hwmon0" / "name").write_text("cpu_thermal\n")        # not a power sensor: skipped by name
    if with_power:
        (hwmon / "hwmon3").mkdir()
        (hwmon / "hwmon3" / "name").write_text("ina226\n")
        (hwmon / "hwmon3" / "curr1_input").write_text("500\n")      # mA
        (hwmon / "hwmon3" / "in1_input").write_text("5100\n")       # mV
    battery = sysfs / "class" / "power_supply" / "BAT0"
    battery.mkdir(parents=True)
    (battery / "capacity").write_text("87\n")
    zone = sysfs / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("51234\n")
    freq = sysfs / "devices" / "system" / "cpu" / "cpu0" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text("1800000\n")
    return TelemetryConfig(interval_s=0.5, sysfs_root=str(sysfs), procfs_root=str(procfs), vcgencmd=False)


def test_values_read_from_the_fake_tree(tmp_path):
    config = _tree(tmp_path)
    sources = Sources(config)
    (tmp_path / "proc" / "stat").write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")   # +100 busy, +100 idle
    reading = sources.sample()
    assert reading["power_w"] == pytest.approx(0.5 * 5.1)        # 500 mA x 5.1 V
    assert reading["battery_pct"] == 87 and reading["temperature_c"] == pytest.approx(51.234)
    assert reading["cpu_freq_mhz"] == pytest.approx(1800.0)
    assert reading["system_cpu_pct"] == pytest.approx(50.0)
    assert sources.missing == []


def test_power_supply_current_times_voltage_when_no_sensor(tmp_path):
    config = _tree(tmp_path, with_power=False)
    supply = tmp_path / "sys" / "class" / "power_supply" / "BAT0"
    (supply / "current_now").write_text("1200000\n")             # uA
    (supply / "voltage_now").write_text("3800000\n")             # uV
    assert Sources(config).sample()["power_w"] == pytest.approx(1.2 * 3.8)


def _vcgencmd(tmp_path, monkeypatch, body):
    """A vcgencmd on PATH that runs ``body`` (sh) and counts its calls in tmp_path/calls."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "vcgencmd"
    script.write_text(f"#!/bin/sh\necho x >> {tmp_path / 'calls'}\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return TelemetryConfig(sysfs_root=str(tmp_path / "empty"), procfs_root=str(tmp_path / "none"))


def test_a_pi_5s_pmic_rails_are_summed_into_power(tmp_path, monkeypatch):
    config = _vcgencmd(tmp_path, monkeypatch, "printf '  VDD_CORE_A current(0)=2.00000000A\\n'\n"
                                              "printf '  VDD_CORE_V volt(0)=0.80000000V\\n'\n"
                                              "printf '  EXT5V_V volt(24)=5.10000000V\\n'")
    sources = Sources(config)
    assert sources.sample()["power_w"] == pytest.approx(1.6) and not any(m.startswith("power") for m in sources.missing)


def test_a_vcgencmd_that_cannot_read_the_pmic_is_said_once_with_why(tmp_path, monkeypatch):
    """Under the shipped unit (DevicePolicy=closed) vcgencmd cannot open /dev/vcio: power was null every interval,
    with nothing said and a subprocess each time."""
    config = _vcgencmd(tmp_path, monkeypatch, "echo 'VCHI initialization failed' >&2\nexit 255")
    said = []
    loop, *_ = _loop()
    telemetry = Telemetry(config, loop, say=said.append)
    for _ in range(3):
        assert telemetry.record()["power_w"] is None
    assert [line for line in said if line.startswith("telemetry: no power")] == [
        "telemetry: no power (vcgencmd pmic_read_adc read nothing: exit status 255, 'VCHI initialization failed'; it "
        "needs /dev/vcio (under the systemd unit: DeviceAllow=/dev/vcio rw and SupplementaryGroups=video), and a Pi "
        "before the 5 has no PMIC to read) on this machine; not reported"]
    assert (tmp_path / "calls").read_text().count("x") == 1                # asked once, at start


def test_missing_sources_are_reported_once(tmp_path):
    config = TelemetryConfig(sysfs_root=str(tmp_path / "empty"), procfs_root=str(tmp_path / "none"), vcgencmd=False)
    said = []
    loop, *_ = _loop()
    telemetry = Telemetry(config, loop, say=said.append)
    for _ in range(3):
        record = telemetry.record()
    assert len(said) == 5 and all(line.startswith("telemetry: no ") for line in said)
    assert record["power_w"] is None and record["temperature_c"] is None


def _loop():
    clock = FakeClock()
    network = FakeNetwork(clock)
    network.vad = 0.8
    loop = AudioLoop(parse(""), FakeIO(speech_like(1.0, seed=1)), runner_factory=lambda c: network,
                     clock=clock, sleep=lambda s: None)
    return loop, network, clock


PROMETHEUS_LINE = re.compile(r"^(# HELP [a-z_0-9]+ .+|# TYPE [a-z_0-9]+ (gauge|counter)|[a-z_0-9]+ [-+0-9.e]+)$")


def test_records_and_prometheus_text_are_well_formed(tmp_path):
    loop, _, _ = _loop()
    loop.run(max_frames=100)
    config = _tree(tmp_path)
    telemetry = Telemetry(TelemetryConfig(**{**config.__dict__, "prometheus_dir": str(tmp_path),
                                             "json_path": str(tmp_path / "t.jsonl")}), loop, say=lambda *_: None)
    record = telemetry.record()
    assert record["frames_total"] == 100 and record["speech_share"] == pytest.approx(0.8)
    assert record["input_frames_repaired_total"] == 0 and record["output_frames_clipped_total"] == 0
    assert record["deadline_margin_ms"] <= 10.0
    telemetry.emit(record)
    text = (tmp_path / "percepnet_edge.prom").read_text()
    assert all(PROMETHEUS_LINE.match(line) for line in text.strip().splitlines()), text
    assert "percepnet_edge_frames_total 100" in text and "# TYPE percepnet_edge_power_w gauge" in text
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1])["frames_total"] == 100
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client not installed")
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["percepnet_edge_frames"].samples[0].value == 100


def test_http_endpoint_on_localhost(tmp_path):
    loop, _, _ = _loop()
    loop.run(max_frames=10)
    config = _tree(tmp_path)
    telemetry = Telemetry(TelemetryConfig(**{**config.__dict__, "http_port": 0}), loop, say=lambda *_: None)
    telemetry.start()
    host, port = telemetry._server.server_address
    assert host == "127.0.0.1"
    body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    telemetry.stop()
    assert "percepnet_edge_frames_total 10" in body


def test_a_blocked_sink_never_blocks_the_audio_loop(tmp_path):
    """The sink's write hangs for good; the loop, in its own thread and paced in fake time, still finishes.

    Frame times come from the fake clock, so they cannot show a stall: what
    shows one is the loop's thread not finishing while the sink is stuck.
    """
    from edge.commands.profile import PacedGeneratedIO
    clock = FakeClock()
    network = FakeNetwork(clock)
    io = PacedGeneratedIO(sleep=clock.advance, clock=clock)          # one period per 10 ms of fake time
    loop = AudioLoop(parse(""), io, runner_factory=lambda c: network, clock=clock, sleep=clock.advance)
    telemetry = Telemetry(_tree(tmp_path), loop, say=lambda *_: None)
    release, blocked = threading.Event(), threading.Event()

    def stuck_emit(record):
        blocked.set()
        release.wait(120)                                    # a hung NFS write, say
    telemetry.emit = stuck_emit
    telemetry.start()
    try:
        assert blocked.wait(60)                              # the sink is stuck now
        worker = threading.Thread(target=loop.run, kwargs={"max_frames": 300}, daemon=True)
        worker.start()
        worker.join(timeout=60)                              # a hang detector, not a timing: 300 frames take ~0.1 s
        loop_hung = worker.is_alive()
    finally:
        loop.stop()
        release.set()
        telemetry.stop()
    assert not loop_hung, "the audio loop waited for the stuck telemetry sink"
    assert loop.counters.frames == 300 and loop.counters.deadline_misses == 0
    assert clock.now == pytest.approx(300 * 0.010 + 0.002, abs=1e-6)      # paced: one period per 10 ms


def _profile_config(tmp_path, tiny_model):
    """TMP/config.yaml: the tiny model and the fake sysfs/procfs tree (an INA226 at 2.55 W), vcgencmd off."""
    config = _tree(tmp_path)
    (tmp_path / "config.yaml").write_text(
        f"model: {{path: {tiny_model['out']}}}\n"
        f"telemetry: {{sysfs_root: {config.sysfs_root}, procfs_root: {config.procfs_root}, vcgencmd: false}}\n")
    return tmp_path / "config.yaml"


def test_profile_writes_report_csv_and_plots(tmp_path, tiny_model):
    """A short paced run (4 s: 2 s idle, 2 s running); `profile --duration 30s` was checked by eye."""
    from edge.commands.profile import parse_duration, run_profile
    _profile_config(tmp_path, tiny_model)
    summary = run_profile(parse_duration("4s"), tmp_path / "out", tmp_path / "config.yaml", say=lambda *_: None)
    assert summary["frames"] > 100                      # ~200 paced frames in 2 s
    assert summary["power_w"]["running"]["mean"] == pytest.approx(2.55)      # the fake INA226
    assert summary["battery_life_change_pct"] == pytest.approx(0.0)
    assert sum(summary["frame_ms_histogram"].values()) == summary["frames"]
    for name in ("report.md", "summary.json", "samples.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    pytest.importorskip("matplotlib", reason="plots are optional")
    for name in ("cpu.png", "power.png", "frame_time.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_profile_frame_times_cover_the_whole_run_not_the_rings_last_minute(tmp_path, tiny_model, monkeypatch):
    """The loop's ring keeps a minute of frames; profile's report covered only that of a 10-minute run. Here the
    ring keeps 180 frames (profile reads it every second, 100 frames) against about 200 run."""
    import functools
    from edge.commands.profile import parse_duration, run_profile
    from edge.daemon import loop as loop_module
    monkeypatch.setattr(loop_module, "FrameTimes", functools.partial(loop_module.FrameTimes, capacity=180))
    _profile_config(tmp_path, tiny_model)
    summary = run_profile(parse_duration("4s"), tmp_path / "out", tmp_path / "config.yaml", say=lambda *_: None)
    assert summary["frames"] > 100 and sum(summary["frame_ms_histogram"].values()) == summary["frames"]


def test_profile_refuses_a_bad_out_or_model_before_the_baseline(tmp_path, monkeypatch):
    from edge.commands import profile
    from edge.errors import ModelError, UsageError
    phases = []
    monkeypatch.setattr(profile, "_phase", lambda *args, **kwargs: phases.append(args) or [])
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UsageError, match="--out .*taken: it is a file; name a folder"):
        profile.run_profile(60, tmp_path / "taken", say=lambda *_: None)
    (tmp_path / "config.yaml").write_text(f"model: {{path: {tmp_path / 'missing.tflite'}}}\n")
    with pytest.raises(ModelError):
        profile.run_profile(60, tmp_path / "out", tmp_path / "config.yaml", say=lambda *_: None)
    assert phases == []                                  # no idle baseline waited for


def test_profile_without_a_single_frame_says_so_and_writes_nothing(tmp_path, tiny_model, monkeypatch):
    from edge.commands import profile
    from edge.errors import DeviceError

    def no_device(self):
        raise DeviceError("cannot open capture device 'hw:9,0': No such device")
    monkeypatch.setattr(profile.PacedGeneratedIO, "open", no_device)
    _profile_config(tmp_path, tiny_model)
    with pytest.raises(DeviceError, match="no frame was processed in 2 s .*nothing written"):
        profile.run_profile(4, tmp_path / "out", tmp_path / "config.yaml", say=lambda *_: None)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_profile_keeps_what_it_measured(tmp_path, tiny_model, monkeypatch, capsys, signame):
    """Ctrl-C (or SIGTERM) a minute into a 10-minute profile lost everything; the report now covers what ran."""
    import json
    import os
    import signal
    import threading
    from edge.commands.cli import main
    from edge.daemon import frame_times
    collect, calls = frame_times.FrameTimeLog.collect, []

    def interrupted_once(self):
        collect(self)
        calls.append(self.seen)
        if len(calls) == 2:                              # a second into the running phase
            if signame == "SIGINT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)         # raised by stop_signals_raise, as a real one would be
    monkeypatch.setattr(frame_times.FrameTimeLog, "collect", interrupted_once)
    _profile_config(tmp_path, tiny_model)
    out, threads = tmp_path / "out", set(threading.enumerate())
    status = main(["profile", "--duration", "8s", "--out", str(out), "--config", str(tmp_path / "config.yaml")])
    assert status == 128 + getattr(signal, signame)
    assert f"stopped by {signame} before the end; the report of what ran is {out / 'report.md'}" \
        in capsys.readouterr().err
    assert set(threading.enumerate()) == threads         # the pipeline's thread stopped, not left running
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] > 0 and summary["frames_timed"] == summary["frames"]
    assert 4 <= summary["interrupted_after_s"] < 8
    assert "**Interrupted after" in (out / "report.md").read_text()


def test_a_second_signal_inside_the_loops_stop_still_stops_the_pipeline(tmp_path, tiny_model, monkeypatch, capsys):
    """Ctrl-C twice: the second struck inside loop.stop(), before the stop was set, and the pipeline's thread ran
    on to the end of the duration while the report was written."""
    import threading
    from edge.commands.cli import main
    from edge.daemon import frame_times, loop as loop_module
    collect, stop, stops = frame_times.FrameTimeLog.collect, loop_module.AudioLoop.stop, []

    def interrupted_once(self):
        collect(self)
        if self.seen and not stops:                      # in the running phase: the first Ctrl-C
            raise KeyboardInterrupt

    def stop_hit_by_a_second_signal(self):
        stops.append(self)
        if len(stops) == 1:
            raise KeyboardInterrupt                      # before the event is set
        stop(self)
    monkeypatch.setattr(frame_times.FrameTimeLog, "collect", interrupted_once)
    monkeypatch.setattr(loop_module.AudioLoop, "stop", stop_hit_by_a_second_signal)
    _profile_config(tmp_path, tiny_model)
    out, threads = tmp_path / "out", set(threading.enumerate())
    assert main(["profile", "--duration", "8s", "--out", str(out), "--config", str(tmp_path / "config.yaml")]) == 130
    assert set(threading.enumerate()) == threads         # stopped, not left to run out its 4 s
    assert len(stops) == 2 and "**Interrupted after" in (out / "report.md").read_text()


@pytest.mark.parametrize("struck", ["summary.json", "plots"])
def test_a_signal_while_the_profile_report_is_written_says_what_is_on_disk(tmp_path, tiny_model, monkeypatch, capsys,
                                                                          struck):
    from edge.commands import profile
    from edge.commands.cli import main
    real_write = profile.atomic_write

    def write(path, data, **kwargs):
        if path.name == struck:
            raise KeyboardInterrupt
        real_write(path, data, **kwargs)

    def plots(out_dir, samples):
        raise KeyboardInterrupt
    monkeypatch.setattr(profile, "atomic_write", write)
    if struck == "plots":
        monkeypatch.setattr(profile, "_plots", plots)
    _profile_config(tmp_path, tiny_model)
    out = tmp_path / "out"
    assert main(["profile", "--duration", "4s", "--out", str(out), "--config", str(tmp_path / "config.yaml")]) == 130
    said = capsys.readouterr().err
    if struck == "plots":                                # the report was whole before the plots began
        assert f"the report of what ran is {out / 'report.md'} (its plots may be missing" in said
        assert sorted(p.name for p in out.iterdir()) == ["report.md", "samples.csv", "summary.json"]
    else:
        assert f"stopped while writing into {out}: files there may be from an earlier run" in said
        assert [p.name for p in out.iterdir()] == ["samples.csv"]     # what was whole before the signal


def test_a_profile_interrupted_in_its_idle_baseline_writes_nothing(tmp_path, monkeypatch, capsys):
    from edge.commands import profile
    from edge.commands.cli import main

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(profile.Sources, "sample", interrupted)
    out = tmp_path / "out"
    assert main(["profile", "--duration", "8s", "--out", str(out)]) == 130
    assert "stopped by SIGINT before the end; nothing was written (no frame had been processed)" \
        in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_duration_parsing():
    from edge.commands.profile import parse_duration
    assert parse_duration("10m") == 600 and parse_duration("30s") == 30 and parse_duration("45") == 45
    with pytest.raises(ValueError, match="use seconds or a suffix"):
        parse_duration("ten minutes")


def _telemetry(tmp_path, **settings):
    loop, _, _ = _loop()
    loop.run(max_frames=10)
    config = TelemetryConfig(**{**_tree(tmp_path).__dict__, **settings})
    return Telemetry(config, loop, say=lambda *_: None)


def test_a_failing_sink_is_counted_logged_once_and_retried(tmp_path, caplog):
    """Item 3: a json_path in a missing folder: no exception, one log line, a metric, and it recovers."""
    import logging
    target = tmp_path / "later" / "t.jsonl"
    telemetry = _telemetry(tmp_path, json_path=str(target))
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        for _ in range(3):
            telemetry.emit(telemetry.record())
        failures = [r.getMessage() for r in caplog.records if str(target) in r.getMessage()]
        assert len(failures) == 1 and "No such file or directory" in failures[0] and "retrying" in failures[0]
        target.parent.mkdir()
        telemetry.emit(telemetry.record())
    written = json.loads(target.read_text())
    assert written["telemetry_sink_errors_total"] == 3
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_the_telemetry_thread_survives_an_error_in_an_interval(tmp_path):
    """Item 3: one interval that raises does not end the thread: the next intervals still emit."""
    telemetry = _telemetry(tmp_path, interval_s=0.01)
    emitted, calls = threading.Event(), []
    real_record = telemetry.record

    def flaky_record():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a sensor vanished mid-read")
        if len(calls) >= 3:
            emitted.set()
        return real_record()
    telemetry.record = flaky_record
    telemetry.start()
    try:
        assert emitted.wait(10), "the telemetry thread died after the first error"
    finally:
        telemetry.stop()
    assert telemetry.errors["interval"] == 1


def test_the_json_sink_does_not_follow_a_symlink(tmp_path):
    """Item 6: json_path pointing at a symlink writes nothing through it; the error is counted."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "t.jsonl"
    link.symlink_to(victim)
    telemetry = _telemetry(tmp_path, json_path=str(link))
    telemetry.emit(telemetry.record())
    assert victim.read_text() == "keep me\n" and link.is_symlink()
    assert telemetry.errors["json"] == 1


def test_the_prometheus_file_is_world_readable_under_the_units_umask(tmp_path):
    """Item 4: under the unit's UMask=0077 the .prom file is still 0644, so node_exporter can read it."""
    import os
    import stat
    from pathlib import Path
    unit = (Path(__file__).resolve().parents[1] / "systemd" / "percepnet-edge.service").read_text()
    umask = int([line for line in unit.splitlines() if line.startswith("UMask=")][0].split("=")[1], 8)
    telemetry = _telemetry(tmp_path, prometheus_dir=str(tmp_path))
    previous = os.umask(umask)
    try:
        telemetry.emit(telemetry.record())
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "percepnet_edge.prom").stat().st_mode) == 0o644


def test_http_requests_are_served_from_a_cached_body(tmp_path):
    """Item 11: a request renders nothing: the body is rendered once per interval, off the request path."""
    import edge.daemon.telemetry as telemetry_module
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    renders = []
    real_render = telemetry_module.prometheus_text
    telemetry_module_render = lambda record: renders.append(1) or real_render(record)  # noqa: E731
    try:
        telemetry_module.prometheus_text = telemetry_module_render
        telemetry.start()
        host, port = telemetry._server.server_address
        before = len(renders)
        bodies = {urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read() for _ in range(20)}
    finally:
        telemetry_module.prometheus_text = real_render
        telemetry.stop()
    assert len(renders) == before and len(bodies) == 1
    assert b"percepnet_edge_frames_total 10" in bodies.pop()


def test_http_clients_are_served_by_one_thread(tmp_path, monkeypatch):
    """Issue 15 item 11: 16 clients at once get one server thread, not a thread each."""
    from concurrent.futures import ThreadPoolExecutor
    import edge.daemon.metrics_http as metrics_http
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    serving = []
    real_answer = metrics_http.answer_request

    def spy(received, body):
        serving.append(threading.current_thread().name)
        return real_answer(received, body)
    monkeypatch.setattr(metrics_http, "answer_request", spy)
    telemetry.start()
    host, port = telemetry._server.server_address
    try:
        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(lambda _: urllib.request.urlopen(f"http://{host}:{port}/metrics",
                                                                    timeout=30).read(), range(32)))
    finally:
        telemetry.stop()
    assert len(bodies) == 32 and len(set(bodies)) == 1
    assert len(serving) >= 32 and set(serving) == {"metrics-http"}


def test_http_client_disconnects_are_quiet(tmp_path, capfd):
    """Issue 15 item 11: a client that hangs up (here with a reset) is counted, never a traceback."""
    import socket
    import struct
    import time
    telemetry = _telemetry(tmp_path, http_port=0)
    telemetry.start()
    try:
        for _ in range(2):
            client = socket.create_connection(telemetry._server.server_address)
            client.sendall(b"GET /metr")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()                                           # RST
        deadline = time.monotonic() + 5
        while telemetry.http_disconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        telemetry.stop()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Broken pipe" not in captured.err
    assert telemetry.http_disconnects == 2


def _scrape_s(address):
    import time
    started = time.monotonic()
    body = urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=30).read()
    assert b"percepnet_edge_frames_total" in body
    return time.monotonic() - started


def test_a_slow_client_delays_no_scrape_and_is_cut_at_its_deadline(tmp_path):
    """Issue 24 item 3: a client sending one byte every 1.5 s held the only worker (2 s per receive); a scrape
    waited for it. Now it delays no one, and its whole request has REQUEST_DEADLINE_S."""
    import socket
    import time
    from edge.daemon.metrics_http import REQUEST_DEADLINE_S
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    telemetry.start()
    address = telemetry._server.server_address
    slow = socket.create_connection(address)
    stop = threading.Event()
    closed_after = []

    def trickle():
        started = time.monotonic()
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" * 4:
                slow.send(bytes([byte]))
                if stop.wait(0.3):
                    return
        except OSError:
            pass
        closed_after.append(time.monotonic() - started)
    writer = threading.Thread(target=trickle, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)
        scrapes = [_scrape_s(address) for _ in range(3)]
        writer.join(REQUEST_DEADLINE_S + 5)
    finally:
        stop.set()
        slow.close()
        telemetry.stop()
    assert max(scrapes) < 0.5, scrapes
    assert closed_after and closed_after[0] < REQUEST_DEADLINE_S + 1.0, closed_after      # cut, not served forever
    assert telemetry.http["http_timeouts"] >= 1


def test_idle_connections_cannot_lock_a_scrape_out(tmp_path):
    """Issue 24 item 3: thirty idle connections made a scrape wait 17 s. Now they wait side by side (at most
    MAX_CONNECTIONS open; the oldest is closed for a new one) and a scrape is answered at once."""
    import socket
    from edge.daemon.metrics_http import MAX_CONNECTIONS
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    telemetry.start()
    address = telemetry._server.server_address
    idle = [socket.create_connection(address) for _ in range(30)]
    try:
        seconds = [_scrape_s(address) for _ in range(3)]
    finally:
        for connection in idle:
            connection.close()
        telemetry.stop()
    assert max(seconds) < 0.5, seconds
    assert telemetry.http["http_evicted"] >= 30 - MAX_CONNECTIONS


def test_stopping_the_endpoint_waits_for_no_client(tmp_path):
    """Issue 24 item 3: after SIGTERM the process lived 39 s more, waiting for a slow client."""
    import socket
    import time
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    telemetry.start()
    address = telemetry._server.server_address
    clients = [socket.create_connection(address) for _ in range(5)]
    clients[0].send(b"GET /met")
    time.sleep(0.2)
    started = time.monotonic()
    telemetry.stop()
    took_s = time.monotonic() - started
    for client in clients:
        client.close()
    assert took_s < 0.5, took_s
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1)                  # the port is closed


def test_methods_other_than_get_and_oversized_requests_get_an_answer_not_a_hang(tmp_path):
    import socket
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    telemetry.start()
    address = telemetry._server.server_address
    try:
        answers = []
        for request in (b"POST /metrics HTTP/1.0\r\n\r\n", b"nonsense\r\n\r\n",
                        b"GET /" + b"a" * 10_000 + b" HTTP/1.0\r\n\r\n"):
            with socket.create_connection(address, timeout=5) as client:
                client.sendall(request)
                answers.append(client.recv(100).split(b"\r\n")[0])
    finally:
        telemetry.stop()
    assert answers == [b"HTTP/1.0 405 Method Not Allowed", b"HTTP/1.0 400 Bad Request",
                       b"HTTP/1.0 431 Request Header Fields Too Large"]


def test_a_port_another_process_holds_never_stops_the_daemon(tmp_path, caplog):
    """Issue 24 item 4: any local user who took the port first made the daemon exit 2. Now telemetry starts
    without the endpoint, says so once, retries every interval, and listens once the port is free."""
    import logging
    import socket
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    telemetry = _telemetry(tmp_path, http_port=port, interval_s=3600)
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        telemetry.start()
        try:
            assert telemetry._server is None
            telemetry._interval()                                     # still taken: no second warning
            assert telemetry.latest["http_listening"] == 0
            squatter.close()
            telemetry._interval()
            assert telemetry._server is not None
            assert _scrape_s(("127.0.0.1", port)) < 1.0
        finally:
            telemetry.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"127.0.0.1:{port} cannot listen; the daemon runs without it" in warnings[0]
    assert f"the http endpoint 127.0.0.1:{port} listens now" in caplog.text


def test_an_endpoint_the_units_socket_filter_refuses_says_how_to_allow_it(tmp_path, caplog, monkeypatch):
    """The shipped units allow only AF_UNIX (RestrictAddressFamilies=): socket() for the endpoint fails with
    EAFNOSUPPORT, as it does there. The warning says which unit settings let it listen."""
    import errno
    import logging
    import socket
    import types
    from edge.daemon import metrics_http

    def filtered(*args, **kwargs):
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
    monkeypatch.setattr(metrics_http, "socket", types.SimpleNamespace(**{**vars(socket), "socket": filtered}))
    telemetry = _telemetry(tmp_path, http_port=9, interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="percepnet-edge"):
        telemetry.start()
        telemetry.stop()
    assert "127.0.0.1:9 cannot listen; the daemon runs without it" in caplog.text
    assert ("Address family not supported by protocol; under the systemd unit, add AF_INET AF_INET6 to "
            "RestrictAddressFamilies= and drop PrivateNetwork= and IPAddressDeny= (docs/deployment.md)") in caplog.text


def test_a_missing_prometheus_dir_is_a_sink_error_not_a_refusal(tmp_path):
    """Issue 24 item 4: a prometheus_dir missing at start exited 2, and a SIGHUP while it was missing was
    rejected. Now the config loads, the write fails and is counted, and it works once the folder exists."""
    folder = tmp_path / "later"
    assert parse(f"telemetry: {{prometheus_dir: {folder}}}").telemetry.prometheus_dir == str(folder)
    (tmp_path / "parent-is-a-file").write_text("")
    telemetry = _telemetry(tmp_path, prometheus_dir=str(tmp_path / "parent-is-a-file" / "metrics"))
    telemetry.emit(telemetry.record())
    assert telemetry.errors["prometheus"] == 1


def test_a_prometheus_dir_removed_mid_run_comes_back_0755_not_0700(tmp_path):
    """Issue 24 (smaller): recreated under the unit's UMask=0077 it was 0700, unreadable for node_exporter."""
    import os
    import stat
    folder = tmp_path / "metrics"
    telemetry = _telemetry(tmp_path, prometheus_dir=str(folder))
    previous = os.umask(0o077)
    try:
        telemetry.emit(telemetry.record())
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "percepnet_edge.prom").stat().st_mode) == 0o644


def test_a_telemetry_change_on_reload_says_it_needs_a_restart(tmp_path, caplog):
    """Issue 24 (smaller): the telemetry section changed, SIGHUP said "reloaded" and nothing changed. Now the
    log says which part needs a restart, at every reload until then."""
    import logging
    from edge.daemon.control import StopLatch
    from edge.daemon.event_log import EventLog
    from edge.daemon.loop import Counters
    from edge.daemon.reloader import Reloader
    events = EventLog(StopLatch())
    reloader = Reloader(lambda config: config, events, Counters())
    started = parse("")
    path = tmp_path / "config.yaml"
    path.write_text("telemetry: {interval_s: 1}\n")
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        for _ in range(2):
            reloader.request(str(path))
            reloader.start(started).join()
            reloader.take()                                          # swapped in, as the loop does
            events.drain()
    changed = [r.getMessage() for r in caplog.records if "telemetry section changed" in r.getMessage()]
    assert len(changed) == 2 and "need a restart" in changed[0]


def test_a_non_loopback_http_bind_warns_loudly(tmp_path, caplog):
    """Item 11: http_host 0.0.0.0 works, and says that the metrics are open to the network."""
    import logging
    telemetry = _telemetry(tmp_path, http_port=0, http_host="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="percepnet-edge"):
        telemetry.start()
        telemetry.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("0.0.0.0 is not a loopback address" in w and "reachable from the network" in w for w in warnings)


def test_an_instance_labels_the_metrics_and_names_its_file(tmp_path):
    """Issue 14 item 3: one daemon per headset; each instance's metrics carry its name and never share a file."""
    loop, _, _ = _loop()
    loop.run(max_frames=20)
    config = _tree(tmp_path)
    telemetry = Telemetry(TelemetryConfig(**{**config.__dict__, "prometheus_dir": str(tmp_path),
                                             "json_path": str(tmp_path / "t.jsonl")}), loop, say=lambda *_: None,
                          instance="Headset_1")
    telemetry.emit(telemetry.record())
    assert not (tmp_path / "percepnet_edge.prom").exists()
    text = (tmp_path / "percepnet_edge_Headset_1.prom").read_text()
    assert 'percepnet_edge_frames_total{instance_name="Headset_1"} 20' in text
    assert json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1])["instance"] == "Headset_1"
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client not installed")
    samples = [s for f in parser.text_string_to_metric_families(text) for s in f.samples]
    assert samples and all(s.labels == {"instance_name": "Headset_1"} for s in samples)


def test_a_full_disk_cuts_one_record_and_the_next_starts_on_a_clean_line(tmp_path):
    """Issue 24 item 8: a write cut short by a full disk (here RLIMIT_FSIZE, which cuts a write the same way)
    is an error, counted; the next record starts on its own line, so it parses."""
    import resource
    target = tmp_path / "t.jsonl"
    telemetry = _telemetry(tmp_path, json_path=str(target))
    telemetry.emit(telemetry.record())
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (target.stat().st_size + 100, hard))    # Python ignores SIGXFSZ
    try:
        telemetry.emit(telemetry.record())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert telemetry.errors["json"] == 1
    telemetry.emit(telemetry.record())                                  # space again
    lines = target.read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 4
    whole = [json.loads(lines[0]), json.loads(lines[2])]
    assert all(record["frames_total"] == 10 for record in whole)
    with pytest.raises(ValueError):
        json.loads(lines[1])                                            # the cut record, alone on its line


def test_the_endpoint_survives_an_error_on_one_connection(tmp_path, monkeypatch):
    """Issue 24 item 3: in the soak under load, a connection evicted earlier in the same batch of events was
    read after its close (EBADF) and the endpoint's thread died. An error now closes that connection only."""
    import socket
    import edge.daemon.metrics_http as metrics_http
    telemetry = _telemetry(tmp_path, http_port=0, interval_s=3600)
    telemetry.start()
    server = telemetry._server
    address = server.server_address
    real_answer = metrics_http.answer_request
    calls = []

    def failing_once(received, body):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(9, "Bad file descriptor")
        return real_answer(received, body)
    monkeypatch.setattr(metrics_http, "answer_request", failing_once)
    try:
        with socket.create_connection(address, timeout=5) as client:
            client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert client.recv(100) == b""                       # closed, no answer
        assert _scrape_s(address) < 1.0                          # the thread lives on
        closed = metrics_http.Connection(socket.socket(), ("127.0.0.1", 1), 0.0)
        closed.sock.close()
        server._service(closed, metrics_http.selectors.EVENT_READ)   # a closed one is skipped, not read
    finally:
        telemetry.stop()
    assert telemetry.http["http_errors"] == 1
