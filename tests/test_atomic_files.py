"""Temporary files beside an output: none is left whenever a signal comes, even while the file is being made."""

import os

import numpy as np
import pytest

from edge.commands.files import prepare_output
from edge.io.atomic import TempFile, atomic_write
from edge.io.wav import WavWriter, pcm16_mono_fmt


@pytest.fixture
def signal_as_made(monkeypatch):
    """os.open makes the exclusive file, then a signal arrives before its descriptor is returned.

    ``tempfile.mkstemp`` was hit this way too: its file existed, its name had not come back, and the caller's
    clean-up had nothing to remove. Every exclusive create is hit, whoever makes it."""
    real_open, hit = os.open, []

    def open_then_signal(path, flags, mode=0o777, *args, **kwargs):
        handle = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_EXCL:
            os.close(handle)
            hit.append(os.fspath(path))
            raise KeyboardInterrupt
        return handle
    monkeypatch.setattr(os, "open", open_then_signal)
    return hit


@pytest.mark.parametrize("make", [
    lambda folder: atomic_write(folder / "report.md", b"text"),
    lambda folder: WavWriter(folder / "out.wav", 48_000, 10),
    lambda folder: prepare_output(folder / "out.wav", 100),
], ids=["atomic_write", "WavWriter", "prepare_output's probe"])
def test_a_signal_while_the_temporary_file_is_made_leaves_nothing(tmp_path, signal_as_made, make):
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path)
    assert len(signal_as_made) == 1 and os.path.dirname(signal_as_made[0]) == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_temp_file_is_hidden_beside_its_target_and_removed_once(tmp_path):
    tmp = TempFile(tmp_path / "model.tflite")
    os.close(tmp.create())
    made = tmp.path
    assert made.parent == tmp_path and made.name.startswith(".model.tflite.") and made.name.endswith(".tmp")
    assert (made.stat().st_mode & 0o777) == 0o600 & ~_umask()
    tmp.remove()
    assert not made.exists() and tmp.path is None
    tmp.remove()                                        # a second time (or after a rename took it): nothing to do


def test_temp_file_passes_over_a_taken_name_and_never_removes_it(tmp_path, monkeypatch):
    """A name already taken (another writer's temporary file) is skipped, and left alone by remove()."""
    from edge.io import atomic
    theirs = tmp_path / ".out.wav.aaaa.tmp"
    theirs.write_bytes(b"another writer's")
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(names))
    tmp = TempFile(tmp_path / "out.wav")
    os.close(tmp.create())
    assert tmp.path.name == ".out.wav.bbbb.tmp"
    tmp.remove()
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "aaaa")      # every name taken
    full = TempFile(tmp_path / "out.wav")
    with pytest.raises(FileExistsError, match="no free temporary name beside .*out.wav"):
        full.create()
    full.remove()
    assert [p.name for p in tmp_path.iterdir()] == [theirs.name] and theirs.read_bytes() == b"another writer's"


def test_a_name_too_long_for_a_temporary_file_is_the_usual_error_not_one_from_the_clean_up(tmp_path):
    """A failed create made no file: its name is forgotten, so the clean-up cannot raise over the real error
    (here ENAMETOOLONG; a read-only filesystem or a folder without search permission fail the same way)."""
    from edge.errors import AudioFileError
    long_name = tmp_path / ("a" * 250 + ".wav")          # a legal name; its temporary sibling is not
    with pytest.raises(AudioFileError, match="cannot write in .*File name too long"):
        prepare_output(long_name, 100)
    tmp = TempFile(long_name)
    with pytest.raises(OSError, match="File name too long"):
        tmp.create()
    assert tmp.path is None
    tmp.remove()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_and_the_wav_writer_still_write(tmp_path):
    atomic_write(tmp_path / "a.json", b"{}")
    with WavWriter(tmp_path / "b.wav", 48_000, 4, pcm16_mono_fmt(48_000)) as out:
        out.write(np.zeros(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.wav"]
    assert (tmp_path / "a.json").read_bytes() == b"{}"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
