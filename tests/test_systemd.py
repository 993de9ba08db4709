"""The systemd unit lints clean, scores well on hardening, and the installer stages it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.daemon.config import load

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "percepnet-edge.service"
TEMPLATE = SYSTEMD / "percepnet-edge@.service"
USER_TEMPLATE = SYSTEMD / "user" / "percepnet-edge@.service"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not found (apt-get install systemd)")


def _here(tmp_path, unit, instance="Headset"):
    """A shipped unit with ExecStart pointing at this checkout's entry point (verify checks it exists); for a
    template, the path of one of its instances (systemd-analyze loads the template beside it)."""
    entry = Path(sys.executable).with_name("percepnet-edge")
    if not entry.exists():
        pytest.skip(f"{entry} not installed (pip install -e .)")
    text = unit.read_text().replace("/opt/percepnet-edge/venv/bin/percepnet-edge", str(entry))
    (tmp_path / unit.name).write_text(text)
    return tmp_path / unit.name.replace("@.", f"@{instance}.")


@pytest.fixture(params=[UNIT, TEMPLATE], ids=["unit", "template"])
def unit_here(request, tmp_path):
    return _here(tmp_path, request.param)


def test_unit_verifies_without_any_output(unit_here):
    result = subprocess.run(["systemd-analyze", "verify", str(unit_here)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def _exposure(*command):
    result = subprocess.run([*command], capture_output=True, text=True)
    line = [l for l in result.stdout.splitlines() if "Overall exposure level" in l][0]
    return float(line.split(":")[1].split()[0]), line


def test_unit_hardening_exposure_is_at_most_2(unit_here):
    score, line = _exposure("systemd-analyze", "security", "--offline=yes", str(unit_here))
    assert score <= 2.0, line


def test_the_template_loads_the_instance_config_and_labels_it(tmp_path):
    """One service per card: %I is the card's ALSA id (its config, its telemetry label), %i its escaped form
    (its device binding)."""
    text = TEMPLATE.read_text()
    assert "run --config /etc/percepnet-edge/%I.yaml --instance %I" in text
    assert "ConditionPathExists=/etc/percepnet-edge/%I.yaml" in text
    assert "BindsTo=sys-subsystem-sound-percepnet-%i.device" in text
    broken = tmp_path / "broken"                                      # the verify test sees a real mistake
    broken.mkdir()
    instance = _here(broken, TEMPLATE)
    (broken / TEMPLATE.name).write_text((broken / TEMPLATE.name).read_text().replace("%I.yaml --instance %I",
                                                                                      "%I.yaml --instance %I\nBogus=1"))
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True)
    assert "Unknown key 'Bogus'" in result.stderr


def _systemd_escape(*args):
    return subprocess.run(["systemd-escape", *args], capture_output=True, text=True, check=True).stdout.strip()


def _expand(value, instance):
    """A unit setting with %i (the instance as named) and %I (unescaped) expanded, as systemd does."""
    return value.replace("%i", instance).replace("%I", _systemd_escape("--unescape", instance))


@pytest.mark.parametrize("card", ["Headset", "Headset_1", "Device2", "USB-Audio", "my-usb-mic-2"])
def test_the_udev_rule_names_the_device_unit_the_template_binds_to(card):
    """Issue 24 item 10: for a card id with a '-', udev's device unit is ...percepnet-USB\x2dAudio.device, but
    BindsTo= expanded %i to ...percepnet-USB-Audio.device, which never appears. The rule now escapes the instance
    (systemd-escape, as systemd escapes the alias), the template binds with %i and reads files with %I."""
    rule = (SYSTEMD / "90-percepnet-edge.rules").read_text()
    alias = re.search(r'SYSTEMD_ALIAS}\+="([^"]+)"', rule).group(1)
    wants = re.search(r'SYSTEMD_WANTS}\+="([^"]+)"', rule).group(1)
    program = re.search(r'PROGRAM="([^"]+)"', rule).group(1)
    assert program == "/usr/bin/systemd-escape $attr{id}" and wants == "percepnet-edge@%c.service"
    result = _systemd_escape(program.split()[1].replace("$attr{id}", card))      # what udev's %c will hold
    unit = wants.replace("%c", result)
    instance = unit[len("percepnet-edge@"):-len(".service")]
    device = _systemd_escape("--path", "--suffix=device", alias.replace("$attr{id}", card))
    template = TEMPLATE.read_text()
    bound = _expand(re.search(r"^BindsTo=(\S+)$", template, re.MULTILINE).group(1), instance)
    assert bound == device
    after = _expand(re.search(r"^After=(.+)$", template, re.MULTILINE).group(1), instance).split()
    assert device in after
    assert _expand(re.search(r"^ConditionPathExists=(\S+)$", template, re.MULTILINE).group(1), instance) == \
        f"/etc/percepnet-edge/{card}.yaml"
    exec_start = _expand(re.search(r"^ExecStart=(.+)$", template, re.MULTILINE).group(1), instance)
    assert exec_start.endswith(f"run --config /etc/percepnet-edge/{card}.yaml --instance {card}")
    assert 'ACTION=="change", SUBSYSTEM=="sound", KERNEL=="card*", ENV{SOUND_INITIALIZED}=="1"' in rule
    assert 'TAG+="systemd"' in rule


def test_an_instance_with_a_dash_verifies(tmp_path):
    """Issue 24 item 10: the escaped instance loads and verifies like any other."""
    unit = _here(tmp_path, TEMPLATE, instance=_systemd_escape("USB-Audio"))
    assert unit.name == "percepnet-edge@USB\\x2dAudio.service"
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_the_user_unit_for_pipewire_verifies_without_any_output(tmp_path):
    unit = _here(tmp_path, USER_TEMPLATE, "pipewire")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr
    text = USER_TEMPLATE.read_text()
    assert "PartOf=pipewire.service" in text and "RuntimeDirectoryPreserve=yes" in text


def test_unit_has_the_promised_settings():
    text = UNIT.read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "DynamicUser=yes",
                    "SupplementaryGroups=audio", "LimitRTPRIO=", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX",
                    "MemoryDenyWriteExecute=yes", "DeviceAllow=char-alsa rw", "ConfigurationDirectory=",
                    "StateDirectory=", "LogsDirectory=", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert setting in text, setting


#: Every file the installer places, from systemd/.
PLACED = {"percepnet-edge.service": "etc/systemd/system/percepnet-edge.service",
          "percepnet-edge@.service": "etc/systemd/system/percepnet-edge@.service",
          "user/percepnet-edge@.service": "etc/systemd/user/percepnet-edge@.service",
          "percepnet-edge.tmpfiles.conf": "etc/tmpfiles.d/percepnet-edge.conf",
          "90-percepnet-edge.rules": "etc/udev/rules.d/90-percepnet-edge.rules",
          "snd-aloop.modules-load.conf": "etc/modules-load.d/percepnet-edge.conf",
          "snd-aloop.modprobe.conf": "etc/modprobe.d/percepnet-edge.conf",
          "asound-percepnet.conf": "etc/alsa/conf.d/60-percepnet-edge.conf",
          "pipewire-percepnet-edge.conf": "etc/pipewire/pipewire.conf.d/percepnet-edge.conf"}


def test_installer_stages_and_removes_the_files(tmp_path):
    root = tmp_path / "root"
    install = REPO / "systemd" / "install.sh"
    subprocess.run([str(install), "--root", str(root), "--no-pip", "--no-start"], check=True, capture_output=True)
    config = root / "etc" / "percepnet-edge" / "config.yaml"
    for source, target in PLACED.items():
        assert (root / target).read_text() == (SYSTEMD / source).read_text(), target
    assert "path: /opt/percepnet-edge/models/lite/percepnet_lite.tflite" in config.read_text()
    assert load(config).model.path == "/opt/percepnet-edge/models/lite/percepnet_lite.tflite"
    assert load(config).audio.playback_device == "hw:Loopback,0,0"                      # the denoised microphone
    pipewire = load(root / "etc" / "percepnet-edge" / "pipewire.yaml")
    assert pipewire.audio.playback_device == "pipewire:NODE=percepnet-edge.input"
    assert pipewire.model.path == "/opt/percepnet-edge/models/lite/percepnet_lite.tflite"
    subprocess.run([str(install), "--root", str(root), "--uninstall", "--no-start"], check=True, capture_output=True)
    assert not (root / "opt" / "percepnet-edge").exists() and config.exists()
    assert not any((root / target).exists() for target in PLACED.values())


def test_the_device_install_gets_the_int8_models_and_no_training_files(tmp_path):
    """Issue 14 item 4: the Pi gets the model, its metadata and card; never the .keras checkpoint or history."""
    root = tmp_path / "root"
    subprocess.run([str(SYSTEMD / "install.sh"), "--root", str(root), "--no-pip", "--no-start"], check=True,
                   capture_output=True)
    models = root / "opt" / "percepnet-edge" / "models"
    placed = sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file())
    assert "lite/percepnet_lite.tflite" in placed and "lite/percepnet_lite.json" in placed
    assert "lite/MODEL_CARD.md" in placed
    assert [name for name in placed if not name.endswith((".tflite", ".json", "MODEL_CARD.md"))] == []
    assert any((REPO / "models").rglob("*.keras"))                    # there is something to leave out


def test_a_card_gets_its_own_config_and_loopback_substream(tmp_path):
    root = tmp_path / "root"
    install = SYSTEMD / "install.sh"
    subprocess.run([str(install), "--root", str(root), "--no-pip", "--no-start"], check=True, capture_output=True)
    result = subprocess.run([str(install), "--root", str(root), "--card", "Headset_1", "--loopback", "1"],
                            capture_output=True, text=True, check=True)
    config = load(root / "etc" / "percepnet-edge" / "Headset_1.yaml")
    assert config.audio.capture_device == "plughw:CARD=Headset_1"
    assert config.audio.playback_device == "hw:Loopback,0,1"
    assert "'percepnet:1'" in result.stdout and "percepnet-edge@Headset_1" in result.stdout
    bad = subprocess.run([str(install), "--root", str(root), "--card", "Head set"], capture_output=True, text=True)
    assert bad.returncode == 1 and "an ALSA card id is letters, digits, '_' and '-'" in bad.stderr
    dashed = subprocess.run([str(install), "--root", str(root), "--card", "USB-Audio"], capture_output=True,
                            text=True, check=True)
    assert "sudo systemctl start percepnet-edge@USB\\x2dAudio.service" in dashed.stdout


def _unit_values(key, unit=UNIT):
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=["unit", "template"])
def test_the_unit_lets_the_service_write_its_locks_and_the_documented_prometheus_folder(unit):
    """Issue 15 items 4 and 10: ProtectSystem=strict makes / read-only; the unit must open what the service writes.
    Issue 14: one lock folder for every instance (each a different dynamic user), made by tmpfiles.d."""
    from edge.devices.alsa import LOCK_FOLDER
    from edge.daemon.telemetry import NODE_EXPORTER_TEXTFILE_DIR
    assert _unit_values("ProtectSystem", unit) == ["strict"]
    writable = [path for value in _unit_values("ReadWritePaths", unit) for path in value.split()]
    assert "-" + NODE_EXPORTER_TEXTFILE_DIR in writable
    assert LOCK_FOLDER in writable and not _unit_values("RuntimeDirectory", unit)    # shared, so not per unit
    tmpfiles = (SYSTEMD / "percepnet-edge.tmpfiles.conf").read_text().splitlines()
    assert f"d {LOCK_FOLDER} 1775 root audio -" in tmpfiles              # every instance's group may add locks
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
    assert calls[0].startswith("check --config ") and calls[1] == "daemon-reload"
    assert calls[2:4] == ["enable percepnet-edge.service", "restart percepnet-edge.service"]


def test_the_installer_never_enables_a_unit_whose_check_failed(tmp_path):
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=False)
    result = _stage(root, env=env)
    assert result.returncode != 0
    assert "check" in result.stderr and "nothing was changed" in result.stderr
    calls = log.read_text().splitlines()
    assert not any(call.startswith(("enable", "restart", "start")) for call in calls), calls


def _live_release(root):
    return (root / "opt" / "percepnet-edge" / "models").resolve().parent


def test_an_upgrade_that_fails_check_changes_nothing_live(tmp_path):
    """Issue 24 item 5: the models and units were renamed into place and daemon-reload ran before `check`, so a
    failed upgrade left an incompatible model for the next restart. Now check runs on the new release (its
    models, the live config) first; a failure removes the release and leaves every live file as it was."""
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=True)
    assert _stage(root, env=env).returncode == 0
    live = _live_release(root)
    model = root / "opt" / "percepnet-edge" / "models" / "lite" / "percepnet_lite.tflite"
    unit = root / "etc" / "systemd" / "system" / "percepnet-edge@.service"
    before = {path: path.read_bytes() for path in (model, unit)}
    unit_inode = unit.stat().st_ino
    log.write_text("")
    entry = root / "opt" / "percepnet-edge" / "venv" / "bin" / "percepnet-edge"
    entry.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\ncat \"$3\" >> {tmp_path / 'checked.yaml'}\nexit 1\n")
    result = _stage(root, env=env)
    assert result.returncode == 1 and "nothing was changed" in result.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("check --config ")        # no daemon-reload, no restart
    checked = (tmp_path / "checked.yaml").read_text()
    assert "/opt/percepnet-edge/models/" not in checked and "/releases/" in checked   # the NEW models
    assert _live_release(root) == live and unit.stat().st_ino == unit_inode
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in (root / "opt" / "percepnet-edge" / "releases").iterdir()) == [live.name]


def test_an_upgrade_keeps_the_previous_version_to_roll_back_to(tmp_path):
    """Issue 24 item 5: the previous release stays (models, venv, units) and --rollback brings it back."""
    import time
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=True)
    assert _stage(root, env=env).returncode == 0
    first = _live_release(root)
    time.sleep(1.1)                                               # release folders are named by the second
    upgrade = _stage(root, env=env)
    assert upgrade.returncode == 0 and "install.sh --rollback" in upgrade.stdout
    second = _live_release(root)
    assert second != first
    assert (root / "opt" / "percepnet-edge" / "previous").resolve() == first
    (first / "systemd" / "percepnet-edge.service").write_text("# the old unit\n")
    log.write_text("")
    rollback = subprocess.run([str(REPO / "systemd" / "install.sh"), "--root", str(root), "--rollback"],
                              capture_output=True, text=True, env=env, timeout=60)
    assert rollback.returncode == 0, rollback.stderr
    assert _live_release(root) == first
    assert (root / "opt" / "percepnet-edge" / "previous").resolve() == second
    assert (root / "etc" / "systemd" / "system" / "percepnet-edge.service").read_text() == "# the old unit\n"
    assert log.read_text().splitlines()[:3] == ["daemon-reload", "enable percepnet-edge.service",
                                                "restart percepnet-edge.service"]
    time.sleep(1.1)
    assert _stage(root, env=env).returncode == 0                  # a third: only two releases are kept
    assert len(list((root / "opt" / "percepnet-edge" / "releases").iterdir())) == 2


def test_uninstall_stops_every_instance_and_users_instances(tmp_path):
    """Issue 24 item 5: --uninstall disabled only percepnet-edge.service; percepnet-edge@ instances and user
    instances kept running with /opt deleted under them."""
    root = tmp_path / "root"
    log, env = _fake_tools(tmp_path, root, check_passes=True)
    loginctl = tmp_path / "bin" / "loginctl"
    loginctl.write_text("#!/bin/sh\necho '1000 pi no active'\necho '1001 kiosk no active'\n")
    loginctl.chmod(0o755)
    env["LOGINCTL"] = str(loginctl)
    assert _stage(root, "--no-start").returncode == 0
    wants = root / "home" / "pi" / ".config" / "systemd" / "user" / "default.target.wants"
    wants.mkdir(parents=True)
    (wants / "percepnet-edge@pipewire.service").symlink_to("/etc/systemd/user/percepnet-edge@.service")
    result = subprocess.run([str(REPO / "systemd" / "install.sh"), "--root", str(root), "--uninstall"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "disable --now percepnet-edge.service" in calls
    assert "stop percepnet-edge@*.service" in calls
    assert "--user -M pi@ stop percepnet-edge@*.service" in calls
    assert "--user -M kiosk@ stop percepnet-edge@*.service" in calls
    assert not os.path.lexists(wants / "percepnet-edge@pipewire.service")
    assert calls[-1] == "daemon-reload" and not (root / "opt" / "percepnet-edge").exists()
