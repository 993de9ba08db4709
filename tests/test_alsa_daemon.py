"""The daemon through real ALSA PCMs (the file plugin), as a separate process: output, signals, sd_notify."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed (needs libasound2-dev to build)")

from edge.dsp import HOP_SAMPLES, LATENCY_SAMPLES, enhance_signal, with_flush_padding  # noqa: E402
from edge.model.engine import ModelRunner  # noqa: E402
from edge.model.model_meta import DEFAULT_MODEL_PATH  # noqa: E402
from edge.devices.alsa import output_delay_samples  # noqa: E402
from edge.daemon.config import load  # noqa: E402
from edge.commands.run import SYSTEM_ALSA_CONF, file_plugin_asoundrc  # noqa: E402
from edge.io.synthetic import mix_at_snr, noise, speech_like  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if not Path(SYSTEM_ALSA_CONF).exists():
    pytest.skip(f"{SYSTEM_ALSA_CONF} not found (libasound2's configuration)", allow_module_level=True)




@pytest.fixture
def daemon_model():
    """The shipped lite model: these tests need a real model, not the conversion pipeline."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    if not DEFAULT_MODEL_PATH.exists():
        pytest.skip(f"{DEFAULT_MODEL_PATH} is missing")
    return DEFAULT_MODEL_PATH


@pytest.fixture
def rig(tmp_path, daemon_model):
    """Capture/playback raw files, an asoundrc, and a config using them."""
    noisy = mix_at_snr(speech_like(2.0, seed=7), noise("pink", 2.0, seed=8), 5.0).astype(np.float32)
    capture = with_flush_padding(noisy, np.float32)
    frames = capture.size // HOP_SAMPLES
    capture.tofile(tmp_path / "capture.raw")
    asoundrc = file_plugin_asoundrc(tmp_path, tmp_path / "capture.raw", tmp_path / "playback.raw")
    config = tmp_path / "config.yaml"
    config.write_text(f"""audio:
  capture_device: pe_capture
  playback_device: pe_playback
  sample_format: FLOAT_LE
model:
  path: {daemon_model}
""")
    (tmp_path / "run").mkdir()                           # device locks live here, not in /run/percepnet-edge
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{asoundrc}", "PYTHONUNBUFFERED": "1",
           "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    return {"dir": tmp_path, "noisy": noisy, "frames": frames, "config": config, "env": env,
            "model": daemon_model}


def _daemon(rig, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(rig["config"]), *args],
                            cwd=REPO, env=rig["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_daemon_output_equals_denoise_through_real_alsa_pcms(rig):
    # Policy off: on a busy test machine a skipped network call would (correctly) change the output.
    rig["config"].write_text(rig["config"].read_text() + "realtime:\n  overrun_policy: \"off\"\n")
    process = _daemon(rig, "--frames", str(rig["frames"]))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    played = np.fromfile(rig["dir"] / "playback.raw", np.float32)
    audio = load(rig["config"]).audio
    prefill = audio.playback_prefill_periods * HOP_SAMPLES
    assert played.size == prefill + rig["frames"] * HOP_SAMPLES             # no frame lost or duplicated
    assert prefill > 0 and not played[:prefill].any()                       # the default prefill: silence first
    noisy = rig["noisy"].astype(np.float64)
    reference = enhance_signal(noisy, ModelRunner(rig["model"]))   # what `denoise` computes
    delay = output_delay_samples(audio)
    assert delay == LATENCY_SAMPLES + prefill
    daemon = played[delay:delay + noisy.size].astype(np.float64)
    np.testing.assert_allclose(daemon, np.clip(reference, -1, 1), atol=1e-6)
    assert f"{rig['frames']} frames" in out and "xruns 0" in out


def _wait_until_processing(rig, process):
    """Until the daemon has written its first period of audio (or exited)."""
    playback = rig["dir"] / "playback.raw"
    while (not playback.exists() or playback.stat().st_size == 0) and process.poll() is None:
        time.sleep(0.05)


def test_signals_bypass_reload_and_stop(rig):
    """SIGUSR1 bypasses, a bad config on SIGHUP is rejected, SIGTERM stops (the exit timeout only catches a hang)."""
    process = _daemon(rig)                               # unbounded: the file plugin never runs dry
    try:
        _wait_until_processing(rig, process)
        process.send_signal(signal.SIGUSR1)
        rig["config"].write_text("audio: {sample_format: S24_LE}\n")
        process.send_signal(signal.SIGHUP)
        logged = []
        while not any("rejected" in line for line in logged) and (line := process.stderr.readline()):
            logged.append(line)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        err = "".join(logged) + err
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "bypass on (SIGUSR1)" in err
    assert "rejected, keeping the running config" in err and "audio.sample_format" in err
    assert "bypass;" in out                               # the summary: still in bypass, old config kept


def test_sd_notify_ready_watchdog_status_stopping(rig, tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    rig["env"].update(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    process = _daemon(rig, "--frames", "600")
    messages = []
    try:
        while "STOPPING=1" not in messages:
            messages.append(server.recv(4096).decode())
    finally:
        process.communicate(timeout=60)
        server.close()
    assert messages[0].startswith("STATUS=starting")
    assert [m for m in messages if not m.startswith("STATUS=")][0] == "READY=1"
    assert messages.count("WATCHDOG=1") >= 5
    assert any(m.startswith("STATUS=denoising; ") for m in messages)


def test_check_reports_config_model_devices_and_permissions(rig):
    run = lambda: subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(rig["config"])],  # noqa: E731
                                 cwd=REPO, env=rig["env"], capture_output=True, text=True, timeout=120)
    good = run()
    assert good.returncode == 0, good.stdout + good.stderr
    assert "[ok] model" in good.stdout and "[ok] devices" in good.stdout and "check passed" in good.stdout
    rig["config"].write_text(rig["config"].read_text().replace("pe_playback", "no_such_pcm")
                             .replace(str(rig["model"]), "/nowhere/model.tflite"))
    bad = run()
    assert bad.returncode == 2
    assert "[FAIL] model: /nowhere/model.tflite: no such model file" in bad.stdout
    assert "[FAIL] devices: cannot open playback device 'no_such_pcm'" in bad.stdout


def test_run_with_a_missing_model_exits_with_a_clear_error(rig):
    rig["config"].write_text(rig["config"].read_text().replace(str(rig["model"]), "/nowhere/model.tflite"))
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(rig["config"]), "--frames", "1"],
                            cwd=REPO, env=rig["env"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such model file" in result.stderr


def _notify_socket(rig, tmp_path, watchdog_usec=200000):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    rig["env"].update(NOTIFY_SOCKET=path, WATCHDOG_USEC=str(watchdog_usec))
    return server


def test_a_capture_device_that_appears_later_keeps_systemd_informed(rig, tmp_path):
    """Item 1: READY, WATCHDOG and STATUS flow while the capture device is missing; then it is used."""
    capture, hidden = rig["dir"] / "capture.raw", rig["dir"] / "capture.hidden"
    capture.rename(hidden)                               # the file plugin cannot open a missing infile
    rig["config"].write_text(rig["config"].read_text() + "realtime:\n  device_retry_max_s: 0.2\n")
    server = _notify_socket(rig, tmp_path)
    process = _daemon(rig, "--frames", "600")          # STATUS= comes every 500 frames
    messages = []
    try:
        while messages.count("WATCHDOG=1") < 6:          # 0.6 s of pings at WatchdogSec=0.2's pace
            messages.append(server.recv(4096).decode())
        waiting = list(messages)
        hidden.rename(capture)                           # the device appears
        while "STOPPING=1" not in messages:
            messages.append(server.recv(4096).decode())
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        server.close()
    assert "READY=1" in waiting
    assert any(m.startswith("STATUS=waiting for the audio device: cannot open capture device 'pe_capture'")
               and "retry in" in m for m in waiting), waiting
    assert process.returncode == 0, err
    assert "600 frames" in out and messages.count("READY=1") == 1
    assert any(m.startswith("STATUS=denoising; ") for m in messages[len(waiting):])


def test_a_second_daemon_on_the_same_devices_is_refused(rig):
    """Item 10: the second daemon exits with status 2 and names the first one's pid."""
    first = _daemon(rig)                                 # unbounded: the file plugin never runs dry
    try:
        _wait_until_processing(rig, first)
        second = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(rig["config"]),
                                 "--frames", "100"], cwd=REPO, env=rig["env"], capture_output=True, text=True,
                                timeout=120)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"capture device 'pe_capture' is already used by another percepnet-edge (pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0


def _open_fifo_writer(fifo, process):
    """Wait until the daemon opens the FIFO for reading (it blocks there, mid start-up); return a writer fd."""
    while process.poll() is None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:                                  # ENXIO: no reader yet
            time.sleep(0.02)
    raise AssertionError(f"the daemon exited during start-up: {process.communicate()}")


def test_signals_during_start_up_are_handled_not_fatal(rig):
    """Item 12: start-up is held while the daemon reads its config from a FIFO; signals arrive meanwhile."""
    text = rig["config"].read_text().encode()
    fifo = rig["dir"] / "config.fifo"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "edge", "run", "--config", str(fifo)]
    popen = dict(cwd=REPO, env=rig["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # SIGHUP and SIGUSR1 during start-up: bypass is applied, and the config re-read once running.
    process = subprocess.Popen(command + ["--frames", "20000"], **popen)
    try:
        writer = _open_fifo_writer(fifo, process)
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGUSR1)
        os.write(writer, text)
        os.close(writer)
        assert process.stdout.readline().startswith("model: ")     # start-up is over: the FIFO was closed
        writer = _open_fifo_writer(fifo, process)        # the reload reads the config again
        os.write(writer, text)
        os.close(writer)
        logged = []
        while not any("reloaded" in line for line in logged) and (line := process.stderr.readline()):
            logged.append(line)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
        err = "".join(logged) + err
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "bypass on (SIGUSR1)" in err and "bypass;" in out and f"reloaded {fifo}" in err
    # SIGINT during start-up: a clean stop, no traceback, no frame processed.
    process = subprocess.Popen(command, **popen)
    try:
        writer = _open_fifo_writer(fifo, process)
        process.send_signal(signal.SIGINT)
        os.write(writer, text)
        os.close(writer)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "stopped during start-up" in err


def test_the_daemon_demo_leaves_no_temporary_folder_behind(tmp_path, monkeypatch):
    """Item 13: the demo's raw capture/playback files and asoundrc go away with the run."""
    from edge.commands import run as daemon_commands
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    monkeypatch.setenv("ALSA_CONFIG_PATH", SYSTEM_ALSA_CONF)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    assert daemon_commands.run_daemon_demo(None, tmp_path / "out", say=lambda *_: None, seconds=1.0) == 0
    assert (tmp_path / "out" / "enhanced.wav").stat().st_size > 0
    assert list(scratch.iterdir()) == []
    assert os.environ["ALSA_CONFIG_PATH"] == SYSTEM_ALSA_CONF      # the demo's asoundrc is not left in force


def test_a_stopped_daemon_demo_exits_nonzero_and_writes_no_truncated_result(tmp_path, monkeypatch):
    """Issue 24 (smaller): SIGTERM during `run --demo` exited 0 with a 1.5 s enhanced.wav against 10 s of input.
    (The stop is set before the loop starts here; a SIGTERM sets the same latch.)"""
    from edge.commands import run as daemon_commands
    from edge.daemon.control import SignalControl
    monkeypatch.setenv("ALSA_CONFIG_PATH", SYSTEM_ALSA_CONF)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    control = SignalControl()
    control.stop.set()
    said = []
    status = daemon_commands.run_daemon_demo(None, tmp_path / "out", say=said.append, control=control, seconds=1.0)
    assert status == 143
    assert any("demo stopped by a signal after 0.0 s of 1 s" in line for line in said), said
    assert list((tmp_path / "out").iterdir()) == []
