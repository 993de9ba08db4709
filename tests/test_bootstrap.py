"""scripts/bootstrap: one venv serves both README commands (issue 26 item 6) and carries its build tools (item 10).

The venv's python is a stand-in that records how it was called, so the tests see what bootstrap would install
without installing anything.
"""
import hashlib
import os
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fake_venv(tmp_path, stamp=None):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    if stamp is not None:
        (venv / ".percepnet-stamp").write_text(stamp)
    return venv


def bootstrap(tmp_path, venv, extras):
    env = {**os.environ, "PERCEPNET_VENV": str(venv)}
    result = subprocess.run([str(REPO / "scripts" / "bootstrap"), extras], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    calls = tmp_path / "calls"
    text = calls.read_text() if calls.exists() else ""
    calls.unlink(missing_ok=True)
    return text.splitlines()


def pyproject_hash():
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def test_asking_for_extras_the_venv_has_installs_nothing(tmp_path):
    venv = fake_venv(tmp_path, f"{pyproject_hash()} dev,edge\n")
    assert bootstrap(tmp_path, venv, "edge") == []          # scripts/demo after scripts/test
    assert bootstrap(tmp_path, venv, "dev") == []           # and back


def test_a_new_extra_installs_the_union_with_the_build_tools(tmp_path):
    venv = fake_venv(tmp_path, f"{pyproject_hash()} dev\n")
    calls = bootstrap(tmp_path, venv, "edge")
    assert calls[0] == "-m pip install --quiet --upgrade pip setuptools>=77 wheel"
    assert calls[1] == f"-m pip install --quiet -e {REPO}[dev,edge]"
    assert (venv / ".percepnet-stamp").read_text() == f"{pyproject_hash()} dev,edge\n"


def test_a_changed_pyproject_reinstalls_only_what_is_asked(tmp_path):
    venv = fake_venv(tmp_path, "0000 dev,edge,eval\n")
    calls = bootstrap(tmp_path, venv, "edge")
    assert calls[-1] == f"-m pip install --quiet -e {REPO}[edge]"


def test_the_stamp_of_older_checkouts_is_understood(tmp_path):
    venv = fake_venv(tmp_path, f"{pyproject_hash()} extras=dev\n")
    assert bootstrap(tmp_path, venv, "dev") == []
