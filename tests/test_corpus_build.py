"""The corpus builder on a tiny generated fixture: quality filter, fixed splits, licences, held-out refusal."""

import csv

import numpy as np
import pytest

from edge.io.synthetic import noise

pytest.importorskip("soundfile", reason="the training extra (soundfile) is not installed")

from training.corpus import scan  # noqa: E402
from training.corpus_build import (VALIDATION_PERCENT, CorpusBuildError, build_corpus, measure,  # noqa: E402
                                   split_for, verdict)
from training.sources import SOURCES, HELD_OUT_RAVDESS_ACTORS, gcompris_credits, precise_owners  # noqa: E402
from training.noise_build import speech_training_speakers  # noqa: E402
from training.teacher import select_material  # noqa: E402

from .conftest import clean_speech as _clean  # noqa: E402
from .conftest import write_wav16 as _wav  # noqa: E402


def test_the_filter_keeps_clean_speech_and_rejects_noisy_and_clipped_files():
    rate = 16_000
    clean = _clean(1)
    assert verdict(measure(clean, rate)) == "pass"
    noisy = clean + 10 ** (-36 / 20) * noise("white", 2.0, seed=1, rate=rate)
    assert verdict(measure(noisy, rate)).startswith("noisy")
    assert verdict(measure(np.clip(40 * clean, -1, 1), rate)).startswith("clipped")
    assert verdict(measure(clean[:rate // 10], rate)).startswith("short")
    assert verdict(measure(np.zeros(rate), rate)) == "silent"
    # Bandwidth: speech band-limited to 4 kHz measures below 4 kHz, 16 kHz audio at most 8 kHz.
    from scipy import signal as sps
    narrow = sps.sosfilt(sps.butter(10, 3500, fs=rate, output="sos"), clean)
    assert measure(narrow, rate).bandwidth_hz < 4000 < measure(clean, rate).bandwidth_hz <= 8000


def test_splits_are_fixed_by_speaker_name_and_hold_out_whole_languages():
    speakers = [f"speaker{n:04d}" for n in range(400)]
    first = [split_for("speechocean762", s, "en") for s in speakers]
    assert first == [split_for("speechocean762", s, "en") for s in speakers]      # deterministic
    share = first.count("validation") / len(first)
    assert abs(share - VALIDATION_PERCENT / 100) < 0.05
    assert split_for("gcompris", "nl-someone", "nl") == "validation"              # a held-out language
    assert split_for("ravdess", "actor-17", "en") == "validation"
    assert split_for("ravdess", "actor-16", "en") == "train"
    assert split_for("festvox-ru", "msu-ru-nsh", "ru") == "train"                  # pinned


def test_build_writes_filtered_speech_a_manifest_and_licences_and_scan_reads_its_splits(downloads, tmp_path):
    out = tmp_path / "corpus"
    rows = build_corpus(out, {"speechocean762": downloads["speechocean762"]}, downloads["shared"], workers=1,
                        say=lambda *_: None)
    verdicts = {row["original"].split("/")[-1]: row["verdict"] for row in rows}
    assert verdicts["noisy.WAV"].startswith("noisy") and verdicts["clipped.WAV"].startswith("clipped")
    assert sum(row["verdict"] == "pass" for row in rows) == 38               # 36 speechocean + 2 RAVDESS
    with open(out / "manifest.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert {row["licence"] for row in manifest if row["source"] == "speechocean762"} == {"CC BY 4.0"}
    assert "CC BY-NC-SA" in (out / "SOURCES.md").read_text()
    by_speaker = {}
    for row in manifest:
        by_speaker.setdefault((row["source"], row["speaker"]), set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_speaker.values())           # a speaker is never in both
    train, validation = scan(out)
    assert "ravdess/actor-17" in validation.speech and "ravdess/actor-01" in train.speech
    assert not set(train.speech) & set(validation.speech)
    assert {path.name.split("-")[0] for path, _ in validation.realworld} == {"noisy", "clipped"}
    assert all(path.suffix == ".flac" and path.is_file() for paths in train.speech.values() for path in paths)
    # A second run keeps what is there and gives the same manifest.
    again = build_corpus(out, {"speechocean762": downloads["speechocean762"]}, downloads["shared"], workers=1,
                         say=lambda *_: None)
    assert sorted(r["path"] for r in again) == sorted(r["path"] for r in rows)


def test_held_out_material_and_wrong_folders_are_refused_with_advice(downloads, tmp_path):
    actor = sorted(HELD_OUT_RAVDESS_ACTORS)[0]                   # a generated file under a held-out actor's name
    _wav(downloads["shared"] / "speech" / "ravdess" / actor / "x.wav", _clean(5, rate=48_000), 48_000)
    with pytest.raises(CorpusBuildError, match="held-out list"):
        build_corpus(tmp_path / "c1", {}, downloads["shared"], workers=1, say=lambda *_: None)
    with pytest.raises(CorpusBuildError, match="git clone https://github.com/gcompris"):
        build_corpus(tmp_path / "c2", {"gcompris": tmp_path}, None, workers=1, say=lambda *_: None)
    with pytest.raises(ValueError, match="unknown speech source"):
        build_corpus(tmp_path / "c3", {"nonesuch": tmp_path}, None, workers=1, say=lambda *_: None)


def test_gcompris_credits_name_the_voice_and_the_licence():
    text = ("./fr/alphabet:\nU0061.ogg   Zohra Coudoin 2015 / GPL V3+\nU0062.ogg   GPL V3+\n\n"
            "./en/words:\ncat.ogg   http://www.art4apps.org/ Creative Common License BY-SA\n")
    credits = gcompris_credits(text)
    assert credits["fr/alphabet/U0061.ogg"] == ("Zohra Coudoin 2015", "GPL V3+")
    assert credits["fr/alphabet/U0062.ogg"] == ("", "GPL V3+")
    assert credits["en/words/cat.ogg"][0] == ""


def _common_voice(root, volunteers, rate=32_000):
    """A Common Voice subset as public repositories hold one: clips/*.mp3 and the tables naming the volunteers."""
    import soundfile
    tables = {"validated.tsv": [], "other.tsv": [], "invalidated.tsv": []}
    (root / "clips").mkdir(parents=True)

    def clip(name, seed):
        soundfile.write(root / "clips" / name, _clean(seed, rate=rate), rate, format="MP3")
    for index, volunteer in enumerate(volunteers):
        for take, table in enumerate(("validated.tsv", "other.tsv")):
            clip(f"common_voice_fa_{index:03d}{take}.mp3", 100 + 2 * index + take)
            tables[table].append((volunteer, f"common_voice_fa_{index:03d}{take}.mp3"))
    clip("common_voice_fa_rejected.mp3", 1)                  # the community rejected it
    tables["invalidated.tsv"].append((volunteers[0], "common_voice_fa_rejected.mp3"))
    clip("common_voice_fa_untabled.mp3", 2)                  # no table names its volunteer
    for table, entries in tables.items():
        # A sentence that opens a quote it never closes: read with csv's default quoting, it swallows the rows after.
        sentences = ['"unclosed'] + ["text"] * len(entries)
        (root / table).write_text("client_id\tpath\tsentence\n"
                                  + "".join(f"{v}\t{n}\t{said}\n" for (v, n), said in zip(entries, sentences)))


def test_a_real_only_source_is_all_real_recordings_even_where_the_filter_passes_it(downloads, tmp_path):
    volunteers = [f"{n:02d}" * 32 for n in range(30)]                   # 64-character client ids
    _common_voice(tmp_path / "cv", volunteers)
    out = tmp_path / "corpus"
    rows = build_corpus(out, {"speechocean762": downloads["speechocean762"], "commonvoice-fa": tmp_path / "cv"},
                        downloads["shared"], workers=1, say=lambda *_: None)
    voice = [row for row in rows if row["source"] == "commonvoice-fa"]
    assert len(voice) == 2 * len(volunteers)                            # not the rejected or the untabled clip
    assert {row["speaker"] for row in voice} == {f"cv-{v[:16]}" for v in volunteers}
    assert sum(row["verdict"] == "pass" for row in voice) >= len(volunteers)    # the filter would keep these
    assert all(row["group"] == "realworld" and row["path"].startswith("realworld/commonvoice-fa/") for row in voice)
    assert all((out / row["path"]).is_file() for row in voice)
    train, validation = scan(out)
    assert not [s for s in set(train.speech) | set(validation.speech) if s.startswith("commonvoice-fa/")]
    assert {str(out / row["path"]) for row in voice} <= {str(path) for path, _ in validation.realworld}
    babble = speech_training_speakers(out)                            # the noise corpus's babble voices
    assert babble and not [s for s in babble if s.startswith("commonvoice-fa/")]
    assert sum(r["verdict"] == "pass" for r in rows if r["source"] == "speechocean762") == 36   # others unchanged
    table = (out / "SOURCES.md").read_text()
    assert "| commonvoice-fa | CC0 1.0" in table and "| 60 | 0 | 0.00 | 0.00 | 0 | 0 |" in table
    # The teacher takes the passing clips too, from a corpus of real-only sources alone (no speech/, no noise/).
    alone = tmp_path / "real-only"
    build_corpus(alone, {"commonvoice-fa": tmp_path / "cv"}, None, workers=1, say=lambda *_: None)
    material = select_material(alone / "realworld", eval_per_source=1)      # 8 of the 60 files read by it
    chosen = {str(p) for split in (material.train, material.validation) for paths in split.speech.values()
              for p in paths}
    with open(alone / "manifest.csv", newline="") as handle:
        verdicts = {str(alone / row["path"]): row["verdict"] for row in csv.DictReader(handle)}
    assert chosen and sum(verdicts[path] == "pass" for path in chosen) >= len(chosen) // 2
    # Without the tables that name the volunteers, the folder is refused, not read as empty.
    for table in ("validated.tsv", "other.tsv"):
        (tmp_path / "cv" / table).unlink()
    with pytest.raises(CorpusBuildError, match="validated.tsv nor other.tsv"):
        build_corpus(tmp_path / "c2", {"commonvoice-fa": tmp_path / "cv"}, None, workers=1, say=lambda *_: None)


def test_a_common_voice_sample_reads_every_language_folder_but_french(tmp_path):
    # omnilingo's sample: one Common Voice subset per language folder. French is left out (the evaluation holds a
    # French Common Voice clip), with its volunteers' clips in other languages; a folder without clips/ (a
    # README's) is not a language.
    root = tmp_path / "sample"
    for language, volunteers in (("en", ["aa" * 32, "bb" * 32, "dd" * 32]), ("fy-NL", ["cc" * 32]),
                                 ("fr", ["dd" * 32])):
        _common_voice(root / language, volunteers, rate=48_000)
    (root / "docs").mkdir()
    files = SOURCES["commonvoice-sample"].files(root)
    assert {(f.path.parent.parent.name, f.speaker, f.language) for f in files} == {
        ("en", "cv-" + "aa" * 8, "en"), ("en", "cv-" + "bb" * 8, "en"), ("fy-NL", "cv-" + "cc" * 8, "fy-NL")}
    assert len(files) == 6 and SOURCES["commonvoice-sample"].real_only     # 2 tabled clips a volunteer
    (root / "fy-NL" / "validated.tsv").unlink()
    (root / "fy-NL" / "other.tsv").unlink()
    with pytest.raises(ValueError, match="fy-NL: neither validated.tsv nor other.tsv"):
        SOURCES["commonvoice-sample"].files(root)


def test_precise_community_data_keeps_the_files_a_public_domain_waiver_lists(tmp_path):
    root = tmp_path / "precise"
    (root / "licenses").mkdir(parents=True)
    (root / "licenses" / "license-20190801-someone.txt").write_text(
        "I, Some One (https://example.org), hereby agree to waive all claim of copyright and immediately place "
        "any and all contributions by me into the public domain.\n\nFiles released into public domain:\n"
        "amelia-en-1.wav\nheycomputer/es/wakeword-es-2.wav\n")
    (root / "licenses" / "license-template.txt").write_text("I, [author name], ... public domain\nx.wav\n")
    for relative in ("amelia/en/amelia-en-1.wav", "heycomputer/es/wakeword-es-2.wav", "computer/en/unlisted.wav",
                     "heysavant/wake-word/en/amelia-en-1.wav", "heysavant/not-wake-words/en/Say/amelia-en-1.wav"):
        _wav(root / relative, _clean(3))
    assert precise_owners(root / "licenses") == {"amelia-en-1.wav": "Some One",
                                                 "heycomputer/es/wakeword-es-2.wav": "Some One"}
    files = SOURCES["precise-community"].files(root)
    assert [(f.path.relative_to(root).as_posix(), f.speaker, f.language) for f in files] == [
        ("amelia/en/amelia-en-1.wav", "some-one", "en"), ("heycomputer/es/wakeword-es-2.wav", "some-one", "es")]
    assert SOURCES["precise-community"].real_only and not SOURCES["speechocean762"].real_only
    for waiver in (root / "licenses").glob("license-2*.txt"):
        waiver.unlink()
    with pytest.raises(ValueError, match="no public-domain waiver"):
        SOURCES["precise-community"].files(root)
