"""The systemd unit lints clean, scores well on hardening, and the installer stages it."""

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
    from edge.pcm import LOCK_FOLDER
    from edge.telemetry import NODE_EXPORTER_TEXTFILE_DIR
    assert _unit_values("ProtectSystem") == ["strict"]
    writable = [path.lstrip("-") for value in _unit_values("ReadWritePaths") for path in value.split()]
    assert NODE_EXPORTER_TEXTFILE_DIR in writable
    assert f"/run/{_unit_values('RuntimeDirectory')[0]}" == LOCK_FOLDER        # $RUNTIME_DIRECTORY = the locks
    default = (REPO / "configs" / "default.yaml").read_text()
    assert f"e.g. {NODE_EXPORTER_TEXTFILE_DIR}" in default                    # the documented set-up
