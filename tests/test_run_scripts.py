"""scripts/build-pool, measure-checkpoint and fit-joint-run refuse what would waste an hour, before they start it."""

import json
import os
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
    for base, used in ((211, 221), (401, 421), (441, 441), (501, 501), (541, 541), (321, 321), (101, 141), (21, 21)):
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
    import os
    bad_flag = subprocess.run([str(SCRIPTS / "measure-checkpoint"), str(data), str(weights), str(tmp_path / "o")],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "REALREC_ONLY": "yes"})
    assert bad_flag.returncode == 2 and "REALREC_ONLY must be 0 or 1, not 'yes'" in bad_flag.stderr
    assert not (tmp_path / "o").exists()


POOL = tuple(f"pool-471/{name}" for name in ("v2", "v3-noise", "v4-echo", "v5-echo", "v6-double-talk"))
VALIDATION = ("cache/v2", "cache/v3-noise", "cache/v4-echo")


def _cache(folder, split, promised=2, made=None):
    """A cache folder whose meta.json promises ``promised`` shards of ``split`` and that holds ``made`` of them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps({split: {"shards": promised}}))
    for index in range(promised if made is None else made):
        (folder / f"{split}-{index:05d}.npz").write_text("x")


def _built(tmp_path):
    """A DATA folder with the pool of base 471 and the caches the joint run reads, every shard in place."""
    data = _data(tmp_path)
    for folder in POOL + ("cache/teacher-v2-train",):
        _cache(data / folder, "train")
    for folder in VALIDATION:
        _cache(data / folder, "validation")
    return data


def _card_fit_command():
    """The last `percepnet-train fit` of the joint run's model card, as tokens (the command the run resumes with)."""
    card = (SCRIPTS.parent / "models/lite_echo/MODEL_CARD.md").read_text()
    block = card[card.rindex("percepnet-train fit --cache POOL/"):]
    return block[:block.index("```")].replace("\\\n", " ").split()


def test_fit_joint_run_runs_the_model_cards_command_on_the_pool_it_is_given(tmp_path):
    data = _built(tmp_path)
    run = tmp_path / "run"
    done = subprocess.run([str(SCRIPTS / "fit-joint-run"), str(data), "471", str(run), "2",
                           "--restart-learning-rate", "5e-5"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PRINT_ONLY": "1"})
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert printed[1:4] == ["-m", "training.cli", "fit"]
    card = _card_fit_command()[2:]
    card = [word.replace("POOL/", f"{data}/pool-471/").replace("CACHE/", f"{data}/cache/").replace("RUN", str(run))
            for word in card]
    card[card.index("--threads") + 1] = "2"
    card[card.index("--init-from") + 1] = str(SCRIPTS.parent / "models/lite/percepnet_lite.keras")
    assert printed[4:] == card + ["--restart-learning-rate", "5e-5"]
    assert not run.exists()                                      # PRINT_ONLY makes nothing


def test_fit_joint_run_refuses_a_missing_or_unfinished_pool_and_a_run_without_state(tmp_path):
    data = _built(tmp_path)
    no_pool = _run("fit-joint-run", data, 481, tmp_path / "run", 2)
    assert no_pool.returncode == 2 and f"scripts/build-pool {data} 481" in no_pool.stderr
    _cache(data / "pool-471/v5-echo", "train", promised=200, made=91)     # an interrupted build
    unfinished = _run("fit-joint-run", data, 471, tmp_path / "run", 2)
    assert unfinished.returncode == 2 and "v5-echo holds 91 of the 200 train shards" in unfinished.stderr
    assert f"rerun scripts/build-pool {data} 471" in unfinished.stderr
    _cache(data / "pool-471/v5-echo", "train")
    (data / "cache/v3-noise/meta.json").unlink()
    no_meta = _run("fit-joint-run", data, 471, tmp_path / "run", 2)
    assert no_meta.returncode == 2 and "v3-noise/meta.json is missing or names no validation shards" in no_meta.stderr
    _cache(data / "cache/v3-noise", "validation")
    (tmp_path / "stateless").mkdir()
    stateless = _run("fit-joint-run", data, 471, tmp_path / "stateless", 2)
    assert stateless.returncode == 2 and "has no resume/latest.weights.h5" in stateless.stderr
    bad_threads = _run("fit-joint-run", data, 471, tmp_path / "run", 0)
    assert bad_threads.returncode == 2 and "THREADS must be a whole number above 0" in bad_threads.stderr
    assert not (tmp_path / "run").exists()


def test_fit_joint_run_makes_a_new_run_from_the_committed_snapshot(tmp_path):
    # The caches here hold no real shards, so the fit itself fails once it reads them: what is checked is the
    # folder it resumes from, made before, as the committed run's state with its best model under fit's name.
    data = _built(tmp_path)
    run = tmp_path / "runs/run"
    done = subprocess.run([str(SCRIPTS / "fit-joint-run"), str(data), "471", str(run), "1", "--epochs", "0"],
                          capture_output=True, text=True, timeout=600)
    committed = SCRIPTS.parent / "models/lite_echo/run-v2"
    epoch = json.loads((committed / "resume/training_metadata.json").read_text())["epoch"]
    assert f"made from {committed} (resume/ after epoch {epoch})" in done.stdout
    assert (run / "percepnet_lite_echo.keras").read_bytes() == (committed / "best.keras").read_bytes()
    assert (run / "resume/latest.weights.h5").read_bytes() == (committed / "resume/latest.weights.h5").read_bytes()
    assert not (run / "best.keras").exists() and not (run.parent / "run.part").exists()
    # A fit already writing to the run (its command line, as `python -m training.cli fit` shows it) is not joined.
    busy = subprocess.Popen(["bash", "-c", f'exec -a "python -m training.cli fit --out {run} --keep-epochs" sleep 60'])
    try:
        refused = _run("fit-joint-run", data, 471, run, 1)
    finally:
        busy.kill()
    assert refused.returncode == 2 and f"a fit already writes to {run}" in refused.stderr
