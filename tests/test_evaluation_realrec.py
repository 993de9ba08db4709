"""The real-recording set's builder (``python -m evaluation.realrec``), on generated files only."""

import csv

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ
from edge.io.synthetic import set_level, speech_like
from edge.io.wav import write_wav
from evaluation import levels, realrec
from evaluation.realrec import RawFile, RealRecError, RealSource

pytest.importorskip("soundfile", reason="soundfile reads the originals (the eval extra)")


def _source(tmp_path, name, files):
    """A source whose raw files are written under tmp_path/raw/NAME: ``files`` maps a path to (signal, rate)."""
    raw = []
    for path, (signal, rate) in files.items():
        target = tmp_path / "raw" / name / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_wav(target, signal, rate)
        raw.append(RawFile(path, realrec.sha256_of(target)))
    return RealSource(name, f"https://example.org/{name}", "0" * 40, tuple(raw), "CC0 (fixture)",
                      "LICENSE (fixture)", "fixture speech")


@pytest.fixture
def sources(tmp_path, monkeypatch):
    long_file = set_level(speech_like(25.0, seed=1, rate=16000), -45.0)        # 3 windows, quiet
    short_file = set_level(speech_like(4.0, seed=2), -26.0)
    tiny_file = set_level(speech_like(2.0, seed=3), -26.0)                       # below 3 s: dropped
    made = (_source(tmp_path, "alpha", {"a/long.wav": (long_file, 16000), "b/short.wav": (short_file, 48000)}),
            _source(tmp_path, "beta", {"tiny.wav": (tiny_file, 48000), "silent.wav": (np.zeros(48000 * 4), 48000),
                                       "ok.wav": (short_file, 48000)}))
    monkeypatch.setattr(realrec, "SOURCES", made)
    return made


def test_windows_cut_long_files_and_keep_short_ones_whole():
    assert realrec.windows(2 * 100, 100, 10.0) == []
    assert realrec.windows(12 * 100, 100, 10.0) == [(0, 1200)]
    assert realrec.windows(25 * 100, 100, 10.0) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert realrec.windows(21 * 100, 100, 10.0) == [(0, 1000), (1000, 2000)]         # a 1 s tail is dropped
    with pytest.raises(RealRecError, match="clip-seconds"):
        realrec.windows(1000, 100, 20.0)


def test_round_robin_spreads_over_files():
    assert realrec.round_robin([[1, 2, 3], [4], [5, 6]], 4) == [1, 4, 5, 2]
    assert realrec.round_robin([[1], []], 5) == [1]


def test_build_writes_clips_manifest_and_licences(sources, tmp_path):
    out = tmp_path / "clips"
    rows = realrec.build(tmp_path / "raw", out, max_per_source=3, say=lambda message: None)
    assert [row["clip"] for row in rows] == ["alpha/long_000.0s", "alpha/short_000.0s", "alpha/long_010.0s",
                                             "beta/ok_000.0s"]
    with open(out / realrec.MANIFEST, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [row["clip"] for row in written] == [row["clip"] for row in rows]
    assert all(row["licence"] == "CC0 (fixture)" and row["licence_where"] == "LICENSE (fixture)" and
               row["commit"] == "0" * 40 and len(row["sha256"]) == 64 for row in written)
    assert written[0]["original_rate_hz"] == "16000" and written[1]["original_rate_hz"] == "48000"
    assert written[0]["level_band"] == levels.QUIET and written[1]["level_band"] == levels.NORMAL
    for row in written:
        assert (out / f"{row['clip']}.wav").is_file()
    clips = realrec.load_clips(out, say=lambda message: None)
    assert [clip.group for clip in clips] == ["realrec/alpha"] * 3 + ["realrec/beta"]
    assert clips[0].clean is None and clips[0].noisy.size == 10 * SAMPLE_RATE_HZ


def test_build_refuses_a_changed_or_missing_file(sources, tmp_path):
    changed = tmp_path / "raw" / "beta" / "ok.wav"
    changed.write_bytes(changed.read_bytes()[:-2] + b"\x01\x02")
    with pytest.raises(RealRecError, match="sha256"):
        realrec.build(tmp_path / "raw", tmp_path / "clips", ["beta"], say=lambda message: None)
    changed.unlink()
    with pytest.raises(RealRecError, match="git clone https://example.org/beta"):
        realrec.build(tmp_path / "raw", tmp_path / "clips", ["beta"], say=lambda message: None)
    with pytest.raises(RealRecError, match="unknown real-recording source 'gamma'"):
        realrec.build(tmp_path / "raw", tmp_path / "clips", ["gamma"], say=lambda message: None)


def test_load_clips_needs_a_manifest(tmp_path):
    with pytest.raises(RealRecError, match="build the set first"):
        realrec.load_clips(tmp_path)


def test_recorded_sources_are_outside_the_corpus_and_the_held_out_lists():
    """Five or more sources, none of the training corpus's, none held out (DATA-MORE.md, DATA-NOISE.md)."""
    assert len(realrec.SOURCES) >= 5
    forbidden = ("gcompris", "speechocean", "festvox", "tuxpaint", "artikulate", "fillets", "childsplay",
                 "ravdess", "klettres", "ktuberling", "voicebank", "valentini", "demand", "dns-challenge",
                 "dns_challenge", "deepfilternet", "blanket", "ms-snsd")
    for source in realrec.SOURCES:
        text = f"{source.name} {source.url} {' '.join(f.path for f in source.files)}".lower()
        assert not any(word in text for word in forbidden), source.name
        assert source.licence and source.licence_where and len(source.commit) == 40
        assert all(len(raw.sha256) == 64 for raw in source.files)
