"""``percepnet-train noise-corpus``: public noise sources + synthesis -> one noise corpus, filtered, split, licensed.

Output (``OUT``)::

    noise/<split>/<class>/<source>-<name>-<digest>-<k>.flac   segments that pass (48 kHz mono 16-bit)
    manifest.csv      one row per segment, passed or rejected, and per file rejected whole
    SOURCES.md        per source: licence as written, where read, attribution, files, hours
    summary.json      hours per split, classes, files per source, rejects by reason

Per file: decode (python-soundfile; a format it cannot read is a recorded
reject, e.g. the AAC in .caf and .m4a), mix to mono, resample to 48 kHz
(soxr), trim leading and trailing digital silence, cut into
:data:`SEGMENT_S` segments (the last kept when at least :data:`MIN_SEGMENT_S`).
Per segment: reject digital silence (:data:`SILENT_SAMPLE` for at least
:data:`MAX_SILENT_SHARE` of samples, or RMS under :data:`SILENT_RMS_DBFS`)
and speech (:mod:`training.noise_detect`; not for :data:`SPEECH_BY_DESIGN`); scale to :data:`TARGET_RMS_DBFS`
RMS unless the peak would pass :data:`MAX_PEAK`, and record the level before and
the gain applied.

**Splits** are fixed by name, never random (:func:`split_for`): whole
sources (:data:`VALIDATION_SOURCES`) and whole classes
(:data:`VALIDATION_CLASSES`) validate, and every ``source/class`` pair whose
SHA-1 falls in the first :data:`VALIDATION_PERCENT` of 100 buckets validates
too; all segments of a file share its split.
"""

import csv
import hashlib
import json
import multiprocessing
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.errors import DataError, MissingDependencyError

from .noise_detect import speech_evidence
from .noise_sources import NOISE_SOURCES
from .noise_synth import NEEDS_SPEECH, PROJECT_LICENCE, SYNTHETIC_CLASSES, synthesise

RATE = SAMPLE_RATE_HZ
SEGMENT_S = 10.0
MIN_SEGMENT_S = 2.0
MIN_FILE_S = 1.0
SILENT_SAMPLE = 2.0 ** -15            # below one 16-bit step: digital silence
MAX_SILENT_SHARE = 0.5
SILENT_RMS_DBFS = -80.0
TARGET_RMS_DBFS = -30.0
MAX_PEAK = 0.99
VALIDATION_PERCENT = 15
VALIDATION_SOURCES = frozenset({"berlin-noise", "max-audio-classifier"})   # real microphones nobody trains on
VALIDATION_CLASSES = frozenset({"helicopter", "chopping", "fridge"})      # classes the network never hears
SYNTHETIC_SOURCE = "synthetic"
#: Classes made of speech on purpose (many overlapping training talkers; a talker through a wall): the
#: detector's evidence is recorded but does not reject them.
SPEECH_BY_DESIGN = frozenset({"babble", "tv-radio"})

MANIFEST_FIELDS = ("path", "source", "class", "split", "reject_reason", "duration_s", "offset_s", "licence",
                   "licence_where", "attribution", "original", "rate_hz", "level_dbfs", "gain_db", "speech")


class NoiseCorpusError(DataError):
    """The noise corpus cannot be built as asked; the message says what to change."""


def _bucket(text):
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % 100


def split_for(source, label):
    """``"train"`` or ``"validation"`` for every file of ``source`` in class ``label`` (see module doc)."""
    if source in VALIDATION_SOURCES or label in VALIDATION_CLASSES:
        return "validation"
    return "validation" if _bucket(f"{source}/{label}") < VALIDATION_PERCENT else "train"


def dbfs(value):
    return float(20 * np.log10(max(value, 1e-12)))


def decode(path):
    """Mono float64 at 48 kHz and the file's own rate, or raise ValueError saying why not."""
    import soundfile
    try:
        data, rate = soundfile.read(str(path), always_2d=True, dtype="float64")
    except Exception as exc:                       # soundfile raises several types; the reason is recorded
        raise ValueError(f"undecodable: {str(exc).split(':')[-1].strip() or type(exc).__name__}") from None
    mono = data.mean(axis=1)
    return resample_to_48k(mono, int(rate)), int(rate)


def resample_to_48k(audio, rate):
    if rate == RATE:
        return audio
    # soxr (the `train` extra), always: a fallback to another resampler would build another corpus from the same
    # sources, depending on what happened to be installed.
    import soxr
    return soxr.resample(audio, rate, RATE, quality="HQ")


def trim_silence(audio):
    """Drop leading and trailing digital silence (game sounds pad their one-shots)."""
    loud = np.flatnonzero(np.abs(audio) >= SILENT_SAMPLE)
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio[:0]


def segment_bounds(n_samples, cap=0):
    """(start, end) sample ranges of the segments of a trimmed file; ``cap`` > 0 keeps that many, spread out."""
    seg, min_seg = int(SEGMENT_S * RATE), int(MIN_SEGMENT_S * RATE)
    if n_samples < seg:
        bounds = [(0, n_samples)]
    else:
        bounds = [(start, min(start + seg, n_samples)) for start in range(0, n_samples, seg)]
        bounds = [(s, e) for s, e in bounds if e - s >= min_seg]
    if cap and len(bounds) > cap:
        bounds = [bounds[i] for i in sorted(set(np.linspace(0, len(bounds) - 1, cap).round().astype(int)))]
    return bounds


def silence_reason(segment):
    """Why a segment is digital silence, or '' when it is not."""
    if np.mean(np.abs(segment) < SILENT_SAMPLE) >= MAX_SILENT_SHARE:
        return "digital silence"
    if dbfs(np.sqrt(np.mean(segment ** 2))) < SILENT_RMS_DBFS:
        return "silent"
    return ""


def normalisation_gain(segment):
    """Gain to :data:`TARGET_RMS_DBFS`, lowered so the peak stays under :data:`MAX_PEAK`."""
    rms, peak = np.sqrt(np.mean(segment ** 2)), np.max(np.abs(segment))
    return min(10 ** (TARGET_RMS_DBFS / 20) / max(rms, 1e-12), MAX_PEAK / max(peak, 1e-12))


def judge_and_write(out_dir, segment, record, relative):
    """Filter one 48 kHz segment; write it (normalised) when it passes. Returns the completed manifest row."""
    import soundfile
    row = {**record, "duration_s": f"{segment.size / RATE:.3f}",
           "level_dbfs": f"{dbfs(np.sqrt(np.mean(segment ** 2))):.1f}" if segment.size else ""}
    reason = silence_reason(segment)
    if not reason:
        evidence = speech_evidence(segment)
        row["speech"] = evidence.describe()
        if evidence.is_speech and record["class"] not in SPEECH_BY_DESIGN:
            reason = "speech"
    if reason:
        return {**row, "reject_reason": reason, "path": ""}
    gain = normalisation_gain(segment)
    target = Path(out_dir) / relative
    if not target.exists():                      # a second run keeps what exists
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        soundfile.write(str(tmp), segment * gain, RATE, format="FLAC", subtype="PCM_16")
        os.replace(tmp, target)
    return {**row, "reject_reason": "", "path": relative, "gain_db": f"{dbfs(gain):.1f}"}


def _base_record(source, label, split, licence, licence_where, attribution, original, rate_hz=""):
    return {"source": source, "class": label or "", "split": split, "licence": licence,
            "licence_where": licence_where, "attribution": attribution, "original": str(original),
            "rate_hz": rate_hz, "offset_s": "", "gain_db": "", "speech": "", "reject_reason": "", "path": "",
            "duration_s": "", "level_dbfs": ""}


def process_file(job):
    """All manifest rows of one source file: its segments, or one row saying why it was rejected whole."""
    out_dir, source_name, path, relative = job
    source = NOISE_SOURCES[source_name]
    label = source.class_of(relative)
    split = split_for(source_name, label) if label else ""
    record = _base_record(source_name, label, split, source.licence_of(relative), source.licence_where,
                          source.attribution, path)
    if label is None:
        return [{**record, "reject_reason": "no class rule"}]
    try:
        audio, rate = decode(path)
    except ValueError as exc:
        return [{**record, "reject_reason": str(exc)}]
    record["rate_hz"] = rate
    audio = trim_silence(audio)
    if audio.size < MIN_FILE_S * RATE:
        reason = "digital silence" if audio.size == 0 else "short"
        return [{**record, "reject_reason": reason, "duration_s": f"{audio.size / RATE:.3f}"}]
    digest = hashlib.sha1(str(relative).encode()).hexdigest()[:8]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(relative).stem)[:40]
    rows = []
    for k, (start, end) in enumerate(segment_bounds(audio.size, source.max_segments_per_file)):
        name = f"noise/{split}/{label}/{source_name}-{stem}-{digest}-{k:03d}.flac"
        rows.append(judge_and_write(out_dir, audio[start:end], {**record, "offset_s": f"{start / RATE:.2f}"}, name))
    return rows


def speech_training_speakers(speech_corpus):
    """``{source/speaker: [paths]}`` of the speech corpus's passing training files (its manifest)."""
    from .corpus_build import is_clean_target, read_manifest
    rows = read_manifest(speech_corpus) if speech_corpus else None
    if not rows:
        return {}
    speakers = defaultdict(list)
    for row in rows:
        if is_clean_target(row) and row["split"] == "train":
            speakers[f"{row['source']}/{row['speaker']}"].append(str(Path(speech_corpus) / row["path"]))
    return dict(speakers)


def _load_48k(path):
    return decode(path)[0]


def synthetic_rows(out_dir, clips_per_class, seed, speech_by_speaker, music_paths):
    """Manifest rows of the synthetic classes (source ``synthetic``, the project's licence)."""
    rows = []
    for label in SYNTHETIC_CLASSES:
        split = split_for(SYNTHETIC_SOURCE, label)
        record = _base_record(SYNTHETIC_SOURCE, label, split, PROJECT_LICENCE,
                              "training/noise_synth.py (generated)", "generated by training.noise_synth (no third party)",
                              f"synthetic:{label}", RATE)
        if label in NEEDS_SPEECH and not speech_by_speaker:
            rows.append({**record, "reject_reason": "no speech corpus (pass --speech-corpus)"})
            continue
        for index in range(clips_per_class):
            clip = synthesise(label, seed, index, SEGMENT_S, speech_by_speaker, _load_48k, music_paths)
            clip = clip * 10 ** (TARGET_RMS_DBFS / 20)
            name = f"noise/{split}/{label}/{SYNTHETIC_SOURCE}-{label}-s{seed}-{index:04d}.flac"
            rows.append(judge_and_write(out_dir, clip, {**record, "original": f"synthetic:{label}:{seed}:{index}",
                                                        "offset_s": "0.00"}, name))
    return rows


def list_jobs(out_dir, roots, only=None, say=print):
    """(out, source, path, relative) per source file; a missing source folder is skipped with a note."""
    jobs = []
    for name, source in NOISE_SOURCES.items():
        if only and name not in only:
            continue
        root = roots.get(source.root)
        if root is None:
            say(f"{name}: skipped (no --{source.root} folder given)")
            continue
        try:
            files = source.files(root)
        except FileNotFoundError as exc:
            say(f"{name}: skipped ({exc})")
            continue
        kept = [(path, rel) for path, rel in files if not source.excluded(rel)]
        say(f"{name}: {len(kept)} files ({len(files) - len(kept)} excluded by rule) in {Path(root) / source.folder}")
        jobs += [(str(out_dir), name, path, rel) for path, rel in kept]
    return jobs


def build_noise_corpus(out_dir, sources_dir=None, shared_dir=None, speech_corpus=None, workers=1,
                       clips_per_class=30, seed=1, only=None, say=print):
    """Build the noise corpus; returns the manifest rows (existing segment files are kept)."""
    out_dir = Path(out_dir)
    for module in ("soundfile", "soxr"):              # said now, not from a worker at the first file that needs it
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(f"the noise-corpus builder needs {module} ({exc}): "
                                         "pip install 'percepnet-edge[train]'") from None
    roots = {key: value for key, value in (("sources", sources_dir), ("shared", shared_dir)) if value}
    jobs = list_jobs(out_dir, roots, only, say)
    if not jobs and clips_per_class <= 0:
        raise NoiseCorpusError("nothing to build: give --sources and/or --shared, or --synthetic-clips > 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers and workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rows = [row for rows in pool.imap(process_file, jobs, chunksize=8) for row in rows]
    else:
        rows = [row for job in jobs for row in process_file(job)]
    music = sorted({row["original"] for row in rows if row["class"] == "music" and row["split"] == "train"
                    and row["path"]})
    speakers = speech_training_speakers(speech_corpus)
    if clips_per_class > 0:
        say(f"synthesising {len(SYNTHETIC_CLASSES)} classes x {clips_per_class} clips "
            f"({len(speakers)} training speakers, {len(music)} training music files)")
        rows += synthetic_rows(out_dir, clips_per_class, seed, speakers, music)
    write_manifest(out_dir / "manifest.csv", rows)
    stats = summary(rows)
    (out_dir / "summary.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    (out_dir / "SOURCES.md").write_text(sources_table(rows))
    say(json.dumps({key: stats[key] for key in ("hours", "classes", "rejects")}, sort_keys=True))
    return rows


def write_manifest(path, rows):
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["source"], r["original"], float(r["offset_s"] or 0))))
    os.replace(tmp, path)


def read_noise_manifest(noise_corpus):
    """Rows of a built noise corpus's manifest; a clear error when it has none."""
    path = Path(noise_corpus) / "manifest.csv"
    if not path.exists():
        raise NoiseCorpusError(f"{noise_corpus}: no manifest.csv; build it with percepnet-train noise-corpus")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _hours(rows):
    return round(sum(float(row["duration_s"] or 0) for row in rows) / 3600, 3)


def summary(rows):
    """Hours per split, classes per split, files and hours per source, rejects by reason."""
    kept = [row for row in rows if row["path"]]
    by_split = {split: [r for r in kept if r["split"] == split] for split in ("train", "validation")}
    files = defaultdict(set)
    for row in rows:
        files[row["source"]].add(row["original"])
    return {
        "hours": {split: _hours(split_rows) for split, split_rows in by_split.items()},
        "classes": {split: sorted({r["class"] for r in split_rows}) for split, split_rows in by_split.items()},
        "class_hours": {label: _hours([r for r in kept if r["class"] == label])
                        for label in sorted({r["class"] for r in kept})},
        "sources": {name: {"files": len(files[name]),
                           "segments": sum(1 for r in kept if r["source"] == name),
                           "hours": _hours([r for r in kept if r["source"] == name])}
                    for name in sorted(files)},
        "rejects": dict(Counter(_reason_key(r["reject_reason"]) for r in rows if r["reject_reason"])),
        "rejected_hours": {reason: _hours([r for r in rows if _reason_key(r["reject_reason"]) == reason])
                           for reason in sorted({_reason_key(r["reject_reason"]) for r in rows
                                                 if r["reject_reason"]})},
    }


def _reason_key(reason):
    return reason.split(":")[0] if reason.startswith("undecodable") else reason


def sources_table(rows):
    """Markdown: per source, its licence as written, where read, attribution, and what was kept."""
    lines = ["# Sources of this noise corpus", "",
             "| source | licence (as written) | read in | attribution | files | segments kept | hours kept |",
             "|---|---|---|---|---:|---:|---:|"]
    by_source = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    for name, source_rows in sorted(by_source.items()):
        kept = [r for r in source_rows if r["path"]]
        licences = " ; ".join(sorted({r["licence"] for r in source_rows}))
        lines.append(f"| {name} | {licences} | {source_rows[0]['licence_where']} | {source_rows[0]['attribution']} "
                     f"| {len({r['original'] for r in source_rows})} | {len(kept)} | {_hours(kept):.2f} |")
    return "\n".join(lines) + "\n"
