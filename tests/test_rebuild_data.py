"""scripts/lib/step.bash, the unit of work of scripts/rebuild-data and scripts/build-pool: a step runs a program or
one of the script's own functions, logs it, and skips done work."""

import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_both_scripts_take_their_steps_from_the_library():
    for name in ("rebuild-data", "build-pool"):
        text = (SCRIPTS / name).read_text()
        assert 'source "$root/scripts/lib/step.bash"' in text and "\nstep() {" not in text, name


def _run(tmp_path, body):
    script = f"set -euo pipefail\nlogs={tmp_path} tag=test\nsource {SCRIPTS / 'lib' / 'step.bash'}\n{body}\n"
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


def test_resume_only_takes_0_or_1_and_says_so_before_any_download(tmp_path):
    import os
    done = subprocess.run([str(SCRIPTS / "rebuild-data"), str(tmp_path / "data")], capture_output=True, text=True,
                          env={**os.environ, "RESUME_ONLY": "yes"}, timeout=60)
    assert done.returncode == 2 and "RESUME_ONLY must be 0 or 1, not 'yes'" in done.stderr
    assert not (tmp_path / "data" / "sources").exists()


def test_teacher_real_takes_0_or_1_and_says_so_before_any_download(tmp_path):
    import os
    done = subprocess.run([str(SCRIPTS / "rebuild-data"), str(tmp_path / "data")], capture_output=True, text=True,
                          env={**os.environ, "TEACHER_REAL": "2"}, timeout=60)
    assert done.returncode == 2 and "TEACHER_REAL must be 0 or 1, not '2'" in done.stderr
    assert not (tmp_path / "data" / "sources").exists()
