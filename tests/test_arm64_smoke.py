"""The device package on an emulated aarch64 Debian bookworm userland (scripts/arm64-check).

Too slow and too network-hungry for every run (a first run downloads about 200 MB of
Debian packages and wheels, then emulates the model under qemu), so it runs only with
PERCEPNET_ARM64=1. Optional: PERCEPNET_ARM64_MODEL (default models/lite/percepnet_lite.tflite),
PERCEPNET_ARM64_WORK (cache, default /work/arm64), PERCEPNET_ARM64_ARGS (extra arguments).

  PERCEPNET_ARM64=1 scripts/test tests/test_arm64_smoke.py     # both; the offline bundle one as root
"""

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "arm64-check"

pytestmark = pytest.mark.skipif(
    os.environ.get("PERCEPNET_ARM64") != "1",
    reason="the arm64 emulation check is slow (minutes, downloads ~200 MB): set PERCEPNET_ARM64=1 to run it")


def test_arm64_check_passes():
    if platform.machine() != "x86_64":
        pytest.skip(f"the check emulates aarch64 on an x86_64 host; this host is {platform.machine()}")
    model = Path(os.environ.get("PERCEPNET_ARM64_MODEL", REPO / "models" / "lite" / "percepnet_lite.tflite"))
    if not model.exists():
        pytest.skip(f"no model at {model}: set PERCEPNET_ARM64_MODEL to an int8 .tflite with its .json")
    # The x86 side runs with the interpreter running the tests (it has the device dependencies).
    args = [sys.executable, str(SCRIPT), "--model", str(model), "--native-python", sys.executable,
            *shlex.split(os.environ.get("PERCEPNET_ARM64_ARGS", ""))]
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "arm64-check: PASS" in result.stdout, output[-6000:]
    # the echo canceller: Debian's arm64 libspeexdsp1 through the ctypes binding removes the echo as on x86
    assert "ok   denoise --far-end (libspeexdsp1 " in result.stdout, output[-6000:]


def test_the_offline_bundle_installs_without_network_and_check_runs_from_it(tmp_path):
    """Issue 14 item 4: `scripts/arm64-check --offline-bundle` builds the bundle, installs it with
    `install.sh --offline` into a bare arm64 userland in a chroot without network (binfmt_misc runs its
    programs through qemu), and runs `percepnet-edge check` from the installed venv (about 3 minutes)."""
    if platform.machine() != "x86_64":
        pytest.skip(f"the check emulates aarch64 on an x86_64 host; this host is {platform.machine()}")
    if os.geteuid() != 0:
        pytest.skip("the offline install runs in a chroot and registers binfmt_misc: run as root")
    # Issue 26 item 10: as a newcomer runs it, from a fresh clone whose venv only `scripts/bootstrap edge` made
    # (it once lacked `wheel`, and pip's build of pyalsaaudio's sdist failed with "invalid command 'bdist_wheel'").
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    made = subprocess.run([str(clone / "scripts" / "bootstrap"), "edge"], env={**os.environ, "PERCEPNET_VENV": str(venv)},
                          capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr[-3000:]
    args = [sys.executable, str(clone / "scripts" / "arm64-check"), "--offline-bundle", "--native-python",
            str(venv / "bin" / "python"), *shlex.split(os.environ.get("PERCEPNET_ARM64_ARGS", ""))]
    result = subprocess.run(args, cwd=clone, capture_output=True, text=True, timeout=3600)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "arm64-check: PASS" in result.stdout, output[-6000:]
    for line in ("ok   no network in the chroot", "ok   installed: the edge package in the venv, no host code",
                 "ok   check on the installed config names snd-aloop", "ok   check with ALSA's null devices passes",
                 "ok   install.sh added libspeexdsp1 from the bundle, and the echo canceller loads it"):
        assert line in result.stdout, output[-6000:]
