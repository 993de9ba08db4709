"""The systemd unit lints clean, scores well on hardening, and the installer stages it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "percepnet-edge.service"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not found (apt-get install systemd)")


@pytest.fixture
def unit_here(tmp_path):
    """The shipped unit with ExecStart pointing at this checkout's entry point (verify checks it exists)."""
    entry = Path(sys.executable).with_name("percepnet-edge")
    if not entry.exists():
        pytest.skip(f"{entry} not installed (pip install -e .)")
    text = UNIT.read_text().replace("/opt/percepnet-edge/venv/bin/percepnet-edge", str(entry))
    path = tmp_path / "percepnet-edge.service"
    path.write_text(text)
    return path


def test_unit_verifies_without_any_output(unit_here):
    result = subprocess.run(["systemd-analyze", "verify", str(unit_here)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_unit_hardening_exposure_is_at_most_2(unit_here):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit_here)],
                            capture_output=True, text=True)
    line = [l for l in result.stdout.splitlines() if "Overall exposure level" in l][0]
    score = float(line.split(":")[1].split()[0])
    assert score <= 2.0, line


def test_unit_has_the_promised_settings():
    text = UNIT.read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "DynamicUser=yes",
                    "SupplementaryGroups=audio", "LimitRTPRIO=", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX",
                    "MemoryDenyWriteExecute=yes", "DeviceAllow=char-alsa rw", "ConfigurationDirectory=",
                    "StateDirectory=", "LogsDirectory=", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert setting in text, setting


def test_installer_stages_and_removes_the_files(tmp_path):
    root = tmp_path / "root"
    install = REPO / "systemd" / "install.sh"
    subprocess.run([str(install), "--root", str(root), "--no-pip", "--no-start"], check=True, capture_output=True)
    config = root / "etc" / "percepnet-edge" / "config.yaml"
    assert (root / "etc" / "systemd" / "system" / "percepnet-edge.service").read_text() == UNIT.read_text()
    assert "path: /opt/percepnet-edge/models/lite/percepnet_lite.tflite" in config.read_text()
    assert load(config).model.path == "/opt/percepnet-edge/models/lite/percepnet_lite.tflite"
    subprocess.run([str(install), "--root", str(root), "--uninstall", "--no-start"], check=True, capture_output=True)
    assert not (root / "opt" / "percepnet-edge").exists() and config.exists()


def _unit_values(key):
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def test_the_unit_lets_the_service_write_its_locks_and_the_documented_prometheus_folder():
    """Issue 15 items 4 and 10: ProtectSystem=strict makes / read-only; the unit must open what the service writes."""
    from edge.alsa import LOCK_FOLDER
    from edge.telemetry import NODE_EXPORTER_TEXTFILE_DIR
    assert _unit_values("ProtectSystem") == ["strict"]
    writable = [path.lstrip("-") for value in _unit_values("ReadWritePaths") for path in value.split()]
    assert NODE_EXPORTER_TEXTFILE_DIR in writable
    assert f"/run/{_unit_values('RuntimeDirectory')[0]}" == LOCK_FOLDER        # $RUNTIME_DIRECTORY = the locks
    default = (REPO / "configs" / "default.yaml").read_text()
    assert f"e.g. {NODE_EXPORTER_TEXTFILE_DIR}" in default                    # the documented set-up


def _stage(root, *extra, env=None):
    install = REPO / "systemd" / "install.sh"
    return subprocess.run([str(install), "--root", str(root), "--no-pip", *extra], capture_output=True, text=True,
                          env=env, timeout=120)


def test_an_upgrade_replaces_model_files_by_rename_never_in_place(tmp_path):
    """Issue 15 item 5: a running daemon maps the model; truncating it in place killed it with SIGBUS."""
    root = tmp_path / "root"
    assert _stage(root, "--no-start").returncode == 0
    model = root / "opt" / "percepnet-edge" / "models" / "lite" / "percepnet_lite.tflite"
    before = model.read_bytes()
    with open(model, "rb") as running:                      # what the running daemon holds open
        inode = os.fstat(running.fileno()).st_ino
        assert _stage(root, "--no-start").returncode == 0
        assert model.stat().st_ino != inode                  # a new file took the name
        assert running.read() == before                      # the old one is intact for its reader
    assert model.read_bytes() == before
    leftovers = [p.name for p in model.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def _fake_tools(tmp_path, root, check_passes):
    """A recording systemctl on PATH and a staged `percepnet-edge` whose check passes or fails."""
    log = tmp_path / "systemctl.log"
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "systemctl").write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    entry = root / "opt" / "percepnet-edge" / "venv" / "bin" / "percepnet-edge"
    entry.parent.mkdir(parents=True)
    entry.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\nexit {0 if check_passes else 1}\n")
    for script in (tools / "systemctl", entry):
        script.chmod(0o755)
    return log, {**os.environ, "SYSTEMCTL": str(tools / "systemctl")}


def test_the_installer_restarts_only_after_check_passes(tmp_path):
    """Issue 15 item 5: `check` runs on the new files first; only then enable and restart."""
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=True)
    result = _stage(root, env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "daemon-reload" and calls[1].startswith("check --config ")
    assert calls[2:4] == ["enable percepnet-edge.service", "restart percepnet-edge.service"]


def test_the_installer_never_enables_a_unit_whose_check_failed(tmp_path):
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=False)
    result = _stage(root, env=env)
    assert result.returncode != 0
    assert "check" in result.stderr and "not enabled or restarted" in result.stderr
    calls = log.read_text().splitlines()
    assert not any(call.startswith(("enable", "restart", "start")) for call in calls), calls
