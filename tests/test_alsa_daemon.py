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

from edge.dsp import LATENCY_SAMPLES, enhance_signal  # noqa: E402
from edge.engine import ModelRunner  # noqa: E402
from edge.service import SYSTEM_ALSA_CONF, file_plugin_asoundrc  # noqa: E402
from edge.synthetic import mix_at_snr, noise, speech_like  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if not Path(SYSTEM_ALSA_CONF).exists():
    pytest.skip(f"{SYSTEM_ALSA_CONF} not found (libasound2's configuration)", allow_module_level=True)


@pytest.fixture
def rig(tmp_path, tiny_model):
    """Capture/playback raw files, an asoundrc, and a config using them."""
    noisy = mix_at_snr(speech_like(2.0, seed=7), noise("pink", 2.0, seed=8), 5.0).astype(np.float32)
    frames = -(-(noisy.size + LATENCY_SAMPLES) // 480)
    capture = np.zeros(frames * 480, np.float32)
    capture[:noisy.size] = noisy
    capture.tofile(tmp_path / "capture.raw")
    asoundrc = file_plugin_asoundrc(tmp_path, tmp_path / "capture.raw", tmp_path / "playback.raw")
    config = tmp_path / "config.yaml"
    config.write_text(f"""audio:
  capture_device: pe_capture
  playback_device: pe_playback
  sample_format: FLOAT_LE
model:
  path: {tiny_model['out']}
""")
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{asoundrc}", "PYTHONUNBUFFERED": "1"}
    return {"dir": tmp_path, "noisy": noisy, "frames": frames, "config": config, "env": env,
            "model": tiny_model["out"]}


def _daemon(rig, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(rig["config"]), *args],
                            cwd=REPO, env=rig["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_daemon_output_equals_denoise_through_real_alsa_pcms(rig):
    # Policy off: on a busy test machine a skipped network call would (correctly) change the output.
    rig["config"].write_text(rig["config"].read_text() + "realtime:\n  overrun_policy: \"off\"\n")
    process = _daemon(rig, "--frames", str(rig["frames"]))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    played = np.fromfile(rig["dir"] / "playback.raw", np.float32)
    assert played.size == rig["frames"] * 480                       # no frame lost or duplicated
    noisy = rig["noisy"].astype(np.float64)
    reference = enhance_signal(noisy, ModelRunner(rig["model"]))   # what `denoise` computes
    daemon = played[LATENCY_SAMPLES:LATENCY_SAMPLES + noisy.size].astype(np.float64)
    np.testing.assert_allclose(daemon, np.clip(reference, -1, 1), atol=1e-6)
    assert f"{rig['frames']} frames" in out and "xruns 0" in out


def test_signals_bypass_reload_and_stop(rig):
    process = _daemon(rig)                               # unbounded: the file plugin never runs dry
    try:
        time.sleep(3.0)
        process.send_signal(signal.SIGUSR1)
        rig["config"].write_text("audio: {sample_format: S24_LE}\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        stopped_s = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "bypass on (SIGUSR1)" in err
    assert "rejected, keeping the running config" in err and "audio.sample_format" in err
    assert "bypass;" in out                               # the summary: still in bypass, old config kept
    assert stopped_s < 2.0


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
    assert messages[0] == "READY=1"
    assert messages.count("WATCHDOG=1") >= 5
    assert any(m.startswith("STATUS=denoising; ") for m in messages)


def test_check_reports_config_model_devices_and_permissions(rig):
    run = lambda: subprocess.run([sys.executable, "-m", "edge.cli", "check", "--config", str(rig["config"])],  # noqa: E731
                                 cwd=REPO, env=rig["env"], capture_output=True, text=True, timeout=120)
    good = run()
    assert good.returncode == 0, good.stdout + good.stderr
    assert "[ok] model" in good.stdout and "[ok] devices" in good.stdout and "check passed" in good.stdout
    rig["config"].write_text(rig["config"].read_text().replace("pe_playback", "no_such_pcm")
                             .replace(str(rig["model"]), "/nowhere/model.tflite"))
    bad = run()
    assert bad.returncode == 1
    assert "[FAIL] model: /nowhere/model.tflite: no such model file" in bad.stdout
    assert "[FAIL] devices: cannot open ALSA devices" in bad.stdout and "no_such_pcm" in bad.stdout


def test_run_with_a_missing_model_exits_with_a_clear_error(rig):
    rig["config"].write_text(rig["config"].read_text().replace(str(rig["model"]), "/nowhere/model.tflite"))
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(rig["config"]), "--frames", "1"],
                            cwd=REPO, env=rig["env"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such model file" in result.stderr
