"""scripts/build-pool and scripts/measure-checkpoint refuse what would waste an hour, before they start it."""

import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(name, *args):
    return subprocess.run([str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True, timeout=60)


def _data(tmp_path, *parts):
    """A DATA folder holding just ``parts`` (files or folders, as scripts/rebuild-data leaves them)."""
    data = tmp_path / "data"
    for part in parts:
        path = data / part
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        else:
            path.mkdir(parents=True, exist_ok=True)
    data.mkdir(exist_ok=True)
    return data


def test_build_pool_refuses_seeds_the_run_has_seen_or_that_measure_it(tmp_path):
    data = _data(tmp_path, "corpus/manifest.csv", "noise-corpus/manifest.csv")
    for base, used in ((211, 221), (401, 421), (441, 441), (321, 321), (101, 141), (21, 21)):
        done = _run("build-pool", data, base)
        assert done.returncode == 2 and f"seed {used} (from base {base})" in done.stderr, (base, done.stderr)
        assert not (data / f"pool-{base}").exists()              # refused before anything is made


def test_build_pool_rebuilds_a_used_pool_on_request_and_stops_when_a_lane_fails(tmp_path):
    # Base 221 is the run's first pool: rebuilt (after a machine reset), said, not refused. The corpora here are
    # empty files, so every cache step fails: the script must say so and exit 1, whichever lane fails first
    # (`wait $l1 && wait $l2` once printed "all built" and exited 0 with the second lane still running).
    data = _data(tmp_path, "corpus/manifest.csv", "noise-corpus/manifest.csv")
    done = subprocess.run([str(SCRIPTS / "build-pool"), str(data), "221"], capture_output=True, text=True,
                          timeout=600)
    assert "rebuilding it (the same examples, not fresh)" in done.stdout
    assert done.returncode == 1 and "a lane failed" in done.stderr and "all built" not in done.stdout


def test_build_pool_refuses_a_bad_seed_or_missing_corpora_with_what_to_do(tmp_path):
    data = _data(tmp_path, "corpus/manifest.csv")
    for bad_seed in ("4x1", "0221", "-5"):
        bad = _run("build-pool", data, bad_seed)
        assert bad.returncode == 2 and "SEED must be a whole number without a leading zero" in bad.stderr
    missing = _run("build-pool", data, 421)
    assert missing.returncode == 2 and "noise-corpus/manifest.csv is missing" in missing.stderr
    assert "scripts/rebuild-data" in missing.stderr


def test_measure_checkpoint_checks_its_inputs_before_converting(tmp_path):
    parts = ("corpus", "cache/v4-echo", "cache/v3-noise", "realrec/clips/manifest.csv", "echo-sel/set.json")
    weights = tmp_path / "e1.weights.h5"
    weights.write_text("x")
    assert "not a folder" in _run("measure-checkpoint", tmp_path / "nowhere", weights, tmp_path / "o").stderr
    partial = _data(tmp_path, *parts[:-1])
    done = _run("measure-checkpoint", partial, weights, tmp_path / "o")
    assert done.returncode == 2 and "echo-sel/set.json is missing" in done.stderr
    data = _data(tmp_path, *parts)
    no_weights = _run("measure-checkpoint", data, tmp_path / "e2.weights.h5", tmp_path / "o")
    assert no_weights.returncode == 2 and "e2.weights.h5 is not a file" in no_weights.stderr
    (tmp_path / "taken").mkdir()
    taken = _run("measure-checkpoint", data, weights, tmp_path / "taken")
    assert taken.returncode == 2 and "nothing is overwritten" in taken.stderr
    no_base = _run("measure-checkpoint", data, weights, tmp_path / "o", tmp_path / "base.json")
    assert no_base.returncode == 2 and "base.json is not a file" in no_base.stderr
    assert not (tmp_path / "o").exists()
