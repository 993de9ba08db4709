"""scripts/rebuild-data: its `step` runs a program or one of the script's own functions, logs it, and skips done work."""

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rebuild-data"


def _step_function():
    match = re.search(r"^step\(\) \{.*?^\}\n", SCRIPT.read_text(), flags=re.S | re.M)
    assert match, "scripts/rebuild-data has no step() function"
    return match.group(0)


def _run(tmp_path, body):
    script = f"set -euo pipefail\nlogs={tmp_path}\n{_step_function()}\n{body}\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_a_step_runs_a_function_of_the_script_and_a_program_alike(tmp_path):
    # The real-recording step is a function; `nice FUNCTION` cannot run one, which stopped a rebuild (2026-12-04).
    done = _run(tmp_path, f"build() {{ echo built \"$1\"; touch {tmp_path}/made; }}\n"
                          f"step fn {tmp_path}/made build clips\nstep prog {tmp_path}/never echo from-a-program")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fn.log").read_text() == "built clips\n"
    assert (tmp_path / "prog.log").read_text() == "from-a-program\n"


def test_a_step_whose_output_exists_is_skipped_and_a_failure_stops_with_the_log(tmp_path):
    (tmp_path / "there").touch()
    skipped = _run(tmp_path, f"step old {tmp_path}/there false")
    assert skipped.returncode == 0 and "already there" in skipped.stdout
    failed = _run(tmp_path, f"broken() {{ echo half-way; return 3; }}\nstep bad {tmp_path}/x broken\necho after")
    assert failed.returncode != 0 and "bad FAILED" in failed.stderr and "half-way" in failed.stderr
    assert "after" not in failed.stdout
