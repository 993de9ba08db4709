"""training.git_export: a mirror's absent blobs are named and skipped, the rest is exported whole."""

import subprocess

import pytest

from edge.errors import UsageError
from training.git_export import export


def _repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    (repo / "samples").mkdir()
    (repo / "samples" / "rain.wav").write_bytes(b"RIFF rain")
    (repo / "samples" / "siren.wav").write_bytes(b"RIFF siren, large in the real mirror")
    (repo / "README.md").write_text("readme\n")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "files")
    return repo, run


def test_export_writes_every_file_of_the_commit(tmp_path):
    repo, _ = _repo(tmp_path)
    assert export(repo, tmp_path / "out") == []
    assert (tmp_path / "out" / "samples" / "rain.wav").read_bytes() == b"RIFF rain"
    assert (tmp_path / "out" / "README.md").read_text() == "readme\n"
    assert not (tmp_path / "out.part").exists()


def test_export_of_paths_keeps_only_them(tmp_path):
    repo, _ = _repo(tmp_path)
    export(repo, tmp_path / "out", ["samples"])
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["rain.wav", "siren.wav"]


def test_absent_blob_is_skipped_and_named(tmp_path):
    repo, run = _repo(tmp_path)
    sha = run("rev-parse", "HEAD:samples/siren.wav").stdout.decode().strip()
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()       # a mirror that lists the file but lacks it
    assert export(repo, tmp_path / "out") == ["samples/siren.wav"]
    assert (tmp_path / "out" / "samples" / "rain.wav").is_file()
    assert not (tmp_path / "out" / "samples" / "siren.wav").exists()


def test_not_a_repository_says_what_to_pass(tmp_path):
    with pytest.raises(UsageError, match="git checkout or bare repository"):
        export(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_file_links_are_written_as_their_targets_and_folder_links_skipped(tmp_path):
    repo, run = _repo(tmp_path)
    (repo / "en").mkdir()
    (repo / "en" / "rain.wav").symlink_to("../samples/rain.wav")          # a file link, as GCompris-voices has 115
    (repo / "en" / "again.wav").symlink_to("rain.wav")                    # a link to a link
    (repo / "nn").symlink_to("samples")                                    # a folder link: builders never walk it
    (repo / "outside.wav").symlink_to("../elsewhere.wav")                  # out of the tree
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "links")
    assert export(repo, tmp_path / "out") == []
    out = tmp_path / "out"
    assert (out / "en" / "rain.wav").read_bytes() == b"RIFF rain" and not (out / "en" / "rain.wav").is_symlink()
    assert (out / "en" / "again.wav").read_bytes() == b"RIFF rain"
    assert not (out / "nn").exists() and not (out / "outside.wav").exists()
