"""`percepnet-edge check` finds at check time what would otherwise break the running daemon (issue 15)."""

import pytest

from edge.commands.run import check
from edge.model.model_meta import DEFAULT_MODEL_PATH


@pytest.fixture
def run_check(tmp_path, monkeypatch):
    """check() on a config made of the given YAML lines (shipped model); returns (status, output lines)."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))

    def run(text):
        config = tmp_path / "config.yaml"
        config.write_text(f"model: {{path: {DEFAULT_MODEL_PATH}}}\n{text}")
        lines = []
        return check(config, say=lines.append), lines
    return run


def test_check_fails_a_json_sink_in_a_missing_folder(run_check, tmp_path):
    """Item 3: `check` passed this config, then `run` lost its telemetry at the first write."""
    status, lines = run_check(f"telemetry: {{json_path: {tmp_path / 'nowhere' / 't.jsonl'}}}\n")
    assert status == 2
    assert f"[FAIL] telemetry: json_path {tmp_path / 'nowhere' / 't.jsonl'}: the folder {tmp_path / 'nowhere'} " \
           "does not exist" in lines


def test_check_passes_writable_sinks_and_refuses_a_symlinked_json_path(run_check, tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "elsewhere")
    sinks = f"json_path: {tmp_path / 't.jsonl'}, prometheus_dir: {tmp_path / 'metrics'}"
    status, lines = run_check(f"telemetry: {{{sinks}}}\n")
    assert f"[ok] telemetry: json_path {tmp_path / 't.jsonl'} is writable" in lines
    assert f"[ok] telemetry: prometheus_dir {tmp_path / 'metrics'} is writable" in lines
    assert not (tmp_path / "t.jsonl").exists() and list((tmp_path / "metrics").iterdir()) == []   # nothing left
    status, lines = run_check(f"telemetry: {{json_path: {tmp_path / 'link.jsonl'}}}\n")
    assert any(line.startswith("[FAIL] telemetry: json_path") and "symbolic link" in line for line in lines)


def test_check_fails_cpus_that_do_not_exist(run_check):
    """Item 9: `cpu_affinity: [999]` passed `check`."""
    status, lines = run_check("realtime: {cpu_affinity: [999]}\n")
    assert status == 2
    assert any(line.startswith("[FAIL] realtime: realtime.cpu_affinity [999]: not all of these CPUs exist here")
               for line in lines), lines


def test_check_names_what_is_wrong_with_a_foreign_model(run_check, tmp_path):
    """Item 8: `check` printed only `'features'` for a valid .tflite that is not ours."""
    import json
    from edge.model.model_meta import file_sha256
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(DEFAULT_MODEL_PATH.read_bytes().replace(b"features", b"featureX"))
    meta = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    meta["sha256"] = file_sha256(foreign)
    foreign.with_suffix(".json").write_text(json.dumps(meta))
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {foreign}}}\n")
    lines = []
    assert check(config, say=lines.append) == 2
    assert f"[FAIL] model: {foreign}: not a percepnet-edge model: its signature has no input 'features' " \
           "(inputs:" in "\n".join(lines)


def test_check_as_root_warns_when_the_service_group_cannot_write_the_prometheus_folder(run_check, tmp_path):
    """Item 4: root can write anywhere, the unit's dynamic user (group audio) cannot: say so with the fix."""
    import os
    if os.geteuid() != 0:
        pytest.skip("the warning is for `sudo percepnet-edge check`")
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    status, lines = run_check(f"telemetry: {{prometheus_dir: {folder}}}\n")
    assert f"[warn] telemetry: prometheus_dir {folder}: the systemd service (a dynamic user in group audio) " \
           f"cannot write here; run: chgrp audio {folder} && chmod g+w {folder}" in lines
    folder.chmod(0o777)
    status, lines = run_check(f"telemetry: {{prometheus_dir: {folder}}}\n")
    assert not any(line.startswith("[warn] telemetry: prometheus_dir") for line in lines)


def test_a_huge_model_is_refused_before_it_is_read(tmp_path):
    """Issue 24 item 2: a 2 GB model made `check` peak at 2.2 GB (hashed whole in memory). Now it is refused by
    its size before one byte is read; under a 1 GiB address-space limit `check` ends with a one-line FAIL."""
    import subprocess
    import sys
    from pathlib import Path
    huge = tmp_path / "huge.tflite"
    with open(huge, "wb") as stream:
        stream.truncate(2 << 30)                                # sparse: no disk used
    huge.with_suffix(".json").write_text(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{path: {huge}}}\n")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    run = f"from edge.commands.cli import main; raise SystemExit(main(['check', '--config', {str(config)!r}]))"
    env = {**__import__("os").environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    result = subprocess.run([sys.executable, "-c", limit + run], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"[FAIL] model: {huge}: 2048 MiB, larger than any percepnet-edge model (at most 64 MiB" in result.stdout


def test_the_model_hash_reads_in_chunks(tmp_path):
    """Issue 24 item 2: hashing a 48 MB file allocates about one 1 MiB chunk, not the file."""
    import hashlib
    import tracemalloc
    from edge.model.model_meta import file_sha256
    big = tmp_path / "big.bin"
    with open(big, "wb") as stream:
        stream.truncate(48 << 20)
    tracemalloc.start()
    try:
        digest = file_sha256(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(bytes(48 << 20)).hexdigest()
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"
