"""The noise-corpus builder on a small generated fixture: licences, splits, filters, synthesis, cache."""

import csv
import sys

import numpy as np
import pytest

pytest.importorskip("soundfile")
import soundfile  # noqa: E402

from edge.io.synthetic import speech_like  # noqa: E402
from training.cache import CacheSpec, build_cache  # noqa: E402
from training.corpus import scan  # noqa: E402
from training.noise_build import (PROJECT_LICENCE, SYNTHETIC_SOURCE, VALIDATION_CLASSES,  # noqa: E402
                                  VALIDATION_SOURCES, build_noise_corpus, split_for)
from training.noise_synth import SYNTHETIC_CLASSES, synthesise  # noqa: E402

RATE_HZ = 16_000


def _noise(seconds, seed):
    rng = np.random.default_rng(seed)
    return 0.05 * np.cumsum(rng.standard_normal(int(seconds * RATE_HZ))) / 30 + 0.02 * rng.standard_normal(
        int(seconds * RATE_HZ))


def _write(path, audio, rate=RATE_HZ):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate)


@pytest.fixture
def raw_sources(tmp_path):
    """Raw downloads in the real layout: 0 A.D. weather and building ambience, MAX samples, FlightGear."""
    root = tmp_path / "sources"
    zero_ad = root / "noise/0ad-data/audio/ambient"
    _write(zero_ad / "weather/rain_11.wav", _noise(12.0, 1))             # rain: two segments
    _write(zero_ad / "weather/wind_11.wav", _noise(4.0, 2))
    _write(zero_ad / "water/river_fast_21.wav", speech_like(12.0, seed=0, rate=RATE_HZ))   # contaminated
    _write(zero_ad / "building/amb_farm_10.wav", np.zeros(5 * RATE_HZ))                      # digital silence
    _write(zero_ad / "building/amb_port_10.wav", _noise(0.4, 3))                             # too short
    samples = root / "noise/MAX-Audio-Classifier/samples"
    _write(samples / "typing.wav", _noise(3.0, 4))
    _write(samples / "dog.wav", _noise(3.0, 5))                          # licence unknown: never used
    _write(root / "noise/flightgear-data-base/usr/share/games/flightgear/Sounds/helicopter.wav", _noise(3.0, 6))
    return root


def _build(out, sources, clips=1, **kwargs):
    return build_noise_corpus(out, sources_dir=sources, only=("0ad", "max-audio-classifier", "flightgear"),
                              clips_per_class=clips, say=lambda message: None, **kwargs)


def _manifest(folder):
    with open(folder / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_row_records_licence_where_read_and_attribution(raw_sources, tmp_path):
    _build(tmp_path / "out", raw_sources)
    rows = _manifest(tmp_path / "out")
    assert rows and all(row["licence"] and row["licence_where"] and row["attribution"] for row in rows)
    typing = [row for row in rows if row["source"] == "max-audio-classifier"]
    assert {row["licence"] for row in typing} == {"CC0 (Creative Commons 0)"}   # per file, from its README
    assert not any("dog" in row["original"] for row in rows)
    kept = [row for row in rows if row["path"]]
    for row in kept:
        info = soundfile.info(str(tmp_path / "out" / row["path"]))
        assert info.samplerate == 48_000 and info.channels == 1
        assert row["gain_db"] and row["level_dbfs"]


def test_splits_are_fixed_by_source_and_class_and_hold_out_whole_classes_and_sources(raw_sources, tmp_path):
    assert split_for("0ad", "rain") == split_for("0ad", "rain")
    for source in VALIDATION_SOURCES:
        assert split_for(source, "rain") == "validation"
    for label in VALIDATION_CLASSES:
        assert split_for("0ad", label) == split_for(SYNTHETIC_SOURCE, label) == "validation"
    first, second = _build(tmp_path / "a", raw_sources), _build(tmp_path / "b", raw_sources)
    assert [(r["path"], r["split"]) for r in _manifest(tmp_path / "a")] == \
           [(r["path"], r["split"]) for r in _manifest(tmp_path / "b")]
    assert len(first) == len(second)
    rows = _manifest(tmp_path / "a")
    by_key = {}
    for row in rows:
        if row["class"]:
            by_key.setdefault((row["source"], row["class"]), set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_key.values())           # a source/class never straddles
    assert {r["split"] for r in rows if r["source"] == "max-audio-classifier"} == {"validation"}
    assert {r["split"] for r in rows if r["class"] == "helicopter"} == {"validation"}
    assert all(row["path"].startswith(f"noise/{row['split']}/{row['class']}/") for row in rows if row["path"])


def test_speech_silence_and_short_files_are_rejected_with_their_reason(raw_sources, tmp_path):
    _build(tmp_path / "out", raw_sources)
    reasons = {}
    for row in _manifest(tmp_path / "out"):
        name = row["original"].rsplit("/", 1)[-1]
        reasons.setdefault(name, set()).add(row["reject_reason"])
    assert "speech" in reasons["river_fast_21.wav"]
    assert reasons["amb_farm_10.wav"] == {"digital silence"}
    assert reasons["amb_port_10.wav"] == {"short"}
    assert reasons["rain_11.wav"] == {""} and reasons["wind_11.wav"] == {""}


def test_real_speech_from_the_team_data_is_rejected(shared_data, tmp_path):
    clips = sorted((shared_data / "speech" / "ravdess" / "Actor_01").glob("*.*"))[:4]
    rate = soundfile.info(str(clips[0])).samplerate
    gap = np.zeros(int(0.3 * rate))
    speech = np.concatenate([part for path in clips
                             for part in (soundfile.read(str(path), always_2d=True)[0].mean(axis=1), gap)])
    assert speech.size < 10 * rate                       # one segment
    root = tmp_path / "sources"
    _write(root / "noise/0ad-data/audio/ambient/weather/rain_12.wav", speech, rate)
    _build(tmp_path / "out", root, clips=0)
    assert {row["reject_reason"] for row in _manifest(tmp_path / "out")} == {"speech"}


def test_synthetic_classes_are_present_labelled_and_deterministic(raw_sources, tmp_path):
    _build(tmp_path / "out", raw_sources, clips=2)
    synthetic = [row for row in _manifest(tmp_path / "out") if row["source"] == SYNTHETIC_SOURCE]
    assert {row["class"] for row in synthetic} == set(SYNTHETIC_CLASSES)
    assert all(row["licence"] == PROJECT_LICENCE for row in synthetic)
    kept = {row["class"] for row in synthetic if row["path"]}
    assert kept == set(SYNTHETIC_CLASSES) - {"babble", "tv-radio"}      # no speech corpus given here
    assert all("speech corpus" in row["reject_reason"] for row in synthetic if row["class"] in ("babble", "tv-radio"))
    assert np.array_equal(synthesise("hvac", 3, 1, 1.0), synthesise("hvac", 3, 1, 1.0))
    assert not np.array_equal(synthesise("hvac", 3, 1, 1.0), synthesise("hvac", 3, 2, 1.0))


def test_the_cache_draws_noise_from_the_noise_corpus_by_its_splits(raw_sources, mini_corpus, tmp_path):
    noise = tmp_path / "noise-corpus"
    _build(noise, raw_sources, clips=1)
    train, validation = scan(mini_corpus, noise)
    kept = [row for row in _manifest(noise) if row["path"]]
    assert sorted(train.noise) == sorted(noise / r["path"] for r in kept if r["split"] == "train")
    assert sorted(validation.noise) == sorted(noise / r["path"] for r in kept if r["split"] == "validation")
    assert "helicopter" in validation.noise_classes and "helicopter" not in train.noise_classes
    # the manifest's row order (one build or several --only runs) does not change what the cache draws from
    manifest = noise / "manifest.csv"
    header, *rows = manifest.read_text().splitlines(keepends=True)
    manifest.write_text(header + "".join(reversed(rows)))
    train_again, validation_again = scan(mini_corpus, noise)
    assert train_again.noise == train.noise and validation_again.noise == validation.noise
    assert list(train_again.noise_classes.items()) == list(train.noise_classes.items())
    default_train, _ = scan(mini_corpus)                    # without the option: the corpus's noise/ as before
    assert all(str(mini_corpus) in str(path) for path in default_train.noise)
    for split in ("train", "validation"):
        build_cache(CacheSpec(str(mini_corpus), split, shards=1, examples_per_shard=1, seconds=1.0, seed=1,
                              simulated_rooms=1, noise_corpus=str(noise)), tmp_path / "cache", workers=1,
                    say=lambda message: None)
        with np.load(tmp_path / "cache" / f"{split}-00000.npz") as shard:
            assert shard["features"].shape[0] == 1


@pytest.mark.parametrize("module", ["soxr", "soundfile"])
def test_a_missing_decoder_or_resampler_is_said_before_any_file_is_read(module, raw_sources, tmp_path, monkeypatch):
    """soxr resamples every source that is not at 48 kHz, always (no fallback to another resampler, which would
    build another corpus from the same files); without it the build stops at once, naming the extra."""
    from edge.errors import MissingDependencyError
    monkeypatch.setitem(sys.modules, module, None)                 # importing it now raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"needs {module} .*percepnet-edge\[train\]"):
        build_noise_corpus(tmp_path / "out", sources_dir=raw_sources, workers=1, clips_per_class=0)
    assert not (tmp_path / "out").exists()
