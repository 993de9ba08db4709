"""``percepnet-train corpus``: public speech sources -> one corpus folder, filtered, split and licensed.

Output (``OUT``)::

    speech/<source>/<speaker>/<name>.flac     files that pass the quality filter (16-bit, native rate)
    realworld/<source>/<speaker>/<name>.flac  files that fail it, and every usable file of a real-only source
                                              (``training.sources``): real microphones, hum and rooms,
                                              never a clean target; a no-reference validation set
    noise -> SHARED/noise, rir -> SHARED/rir  (links, when --shared is given)
    manifest.csv                              one row per file: source, speaker, language, split,
                                              group, verdict, measurements, licence, original path
    SOURCES.md                                per source: licence, files, hours, speakers, languages

**Quality filter** (per file, the rule of ``../shared/DATA-MORE.md``): the SNR
estimate (95th minus 5th percentile of 20 ms frame energy) must reach
:data:`MIN_SNR_DB` and the clipped share (samples at or above
:data:`CLIP_LEVEL` of full scale) stay under :data:`MAX_CLIPPED_FRACTION`.
Files under :data:`MIN_SECONDS` or without signal are dropped.

**Splits** are fixed by name, never random, so adding a source never moves a
speaker: a speaker is held out for validation when the SHA-1 of
``source/speaker`` falls in the first :data:`VALIDATION_PERCENT` of 100
buckets, or when its language is one of :data:`VALIDATION_LANGUAGES` (whole
languages the network never hears in training). RAVDESS keeps its historic
split (actors 17-20 validate); single-speaker sources are pinned in
:data:`PINNED_SPLITS`.
"""

import csv
import hashlib
import multiprocessing
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError

from .sources import SOURCES, source_named

MIN_SNR_DB = 30.0
MAX_CLIPPED_FRACTION = 1e-4
CLIP_LEVEL = 0.99
MIN_SECONDS = 0.25
FRAME_SECONDS = 0.02
BANDWIDTH_ENERGY_SHARE = 0.995

VALIDATION_PERCENT = 12
VALIDATION_LANGUAGES = frozenset({"el", "gr", "nl", "hi", "sl"})     # gr: Artikulate's code for Greek
VALIDATION_RAVDESS_ACTORS = frozenset(f"actor-{number}" for number in range(17, 21))
PINNED_SPLITS = {
    "festvox-ru/msu-ru-nsh": "train",          # the only long read sentences in Russian: one speaker
    "fillets-cs/small-fish": "train",
    "fillets-cs/big-fish": "validation",       # the acted Czech dialogue group needs one voice
}
#: Validation report group of files that fail the filter (scored without a reference, DNSMOS only).
REALWORLD_GROUP = "realworld"

MANIFEST_FIELDS = ("path", "source", "speaker", "language", "split", "group", "verdict", "seconds",
                   "rate_hz", "snr_db", "bandwidth_hz", "clipped_fraction", "licence", "original")


class CorpusBuildError(DataError):
    """The corpus cannot be built as asked; the message says what to change."""


@dataclass(frozen=True)
class Quality:
    """What the filter looks at, measured on one file (mono, float in [-1, 1])."""

    seconds: float
    snr_db: float
    bandwidth_hz: float
    clipped_fraction: float
    peak: float


def measure(audio, rate):
    """Duration, SNR estimate, 99.5 % energy bandwidth, clipped share and peak of a mono signal."""
    from scipy import signal as sps
    audio = np.asarray(audio, dtype=np.float64)
    frame = max(1, int(round(FRAME_SECONDS * rate)))
    n_frames = audio.size // frame
    if n_frames >= 2:
        energy_db = 10 * np.log10(np.mean(audio[:n_frames * frame].reshape(n_frames, frame) ** 2, axis=1)
                                  + 1e-12)
        snr_db = float(np.percentile(energy_db, 95) - np.percentile(energy_db, 5))
    else:
        snr_db = float("nan")
    if audio.size >= 64 and np.any(audio):
        freqs, psd = sps.welch(audio, fs=rate, nperseg=min(1024, audio.size))
        share = np.cumsum(psd) / np.sum(psd)
        bandwidth_hz = float(freqs[min(int(np.searchsorted(share, BANDWIDTH_ENERGY_SHARE)), freqs.size - 1)])
    else:
        bandwidth_hz = 0.0
    return Quality(seconds=audio.size / rate, snr_db=snr_db, bandwidth_hz=bandwidth_hz,
                   clipped_fraction=float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if audio.size else 0.0,
                   peak=float(np.max(np.abs(audio))) if audio.size else 0.0)


def verdict(quality):
    """``"pass"``, or why the file cannot be a clean target ("noisy: ...", "clipped: ...", ...)."""
    if quality.seconds < MIN_SECONDS:
        return f"short: {quality.seconds:.2f} s"
    if quality.peak < 1e-4:
        return "silent"
    if quality.clipped_fraction >= MAX_CLIPPED_FRACTION:
        return f"clipped: {quality.clipped_fraction:.1e} of samples"
    if not quality.snr_db >= MIN_SNR_DB:
        return f"noisy: SNR estimate {quality.snr_db:.1f} dB"
    return "pass"


def _bucket(text):
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % 100


def split_for(source, speaker, language):
    """``"train"`` or ``"validation"`` for a speaker, by name only (see the module doc)."""
    key = f"{source}/{speaker}"
    if key in PINNED_SPLITS:
        return PINNED_SPLITS[key]
    if source == "ravdess":
        return "validation" if speaker in VALIDATION_RAVDESS_ACTORS else "train"
    if language.lower() in VALIDATION_LANGUAGES:
        return "validation"
    return "validation" if _bucket(key) < VALIDATION_PERCENT else "train"


def _read(path):
    import soundfile
    try:
        data, rate = soundfile.read(str(path), always_2d=True, dtype="float64")
    except Exception as exc:                        # soundfile raises several types; the file is reported
        return None, 0, f"unreadable: {exc}"
    return data.mean(axis=1), int(rate), None


def _process(job):
    """Measure one file, judge it, and write it where its verdict sends it (kept if already there)."""
    import soundfile
    out_dir, source_name, group, real_only, row = job
    audio, rate, error = _read(row.path)
    record = {"source": source_name, "speaker": row.speaker, "language": row.language,
              "split": split_for(source_name, row.speaker, row.language), "licence": row.licence,
              "original": str(row.path)}
    if error:
        return {**record, "path": "", "group": "", "verdict": error, "seconds": "", "rate_hz": "",
                "snr_db": "", "bandwidth_hz": "", "clipped_fraction": ""}
    quality = measure(audio, rate)
    judged = verdict(quality)
    clean_target = judged == "pass" and not real_only
    folder = "speech" if clean_target else "realworld"
    usable_elsewhere = judged.startswith(("noisy", "clipped")) or (judged == "pass" and real_only)
    # Sources reuse names across folders (a Tux Paint "banana" per stamp set): a digest keeps them apart.
    unique = hashlib.sha1(str(row.path).encode()).hexdigest()[:8]
    relative = (f"{folder}/{source_name}/{row.speaker}/{row.path.stem}-{unique}.flac"
                if clean_target or usable_elsewhere else "")
    if relative:
        target = Path(out_dir) / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            peak = max(quality.peak, 1e-9)
            scaled = audio / peak * min(peak, 32767 / 32768)       # a decoder may overshoot full scale
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            soundfile.write(str(tmp), scaled, rate, format="FLAC", subtype="PCM_16")
            os.replace(tmp, target)
    group_name = group if clean_target else (REALWORLD_GROUP if usable_elsewhere else "")
    return {**record, "path": relative, "group": group_name, "verdict": judged,
            "seconds": f"{quality.seconds:.3f}", "rate_hz": rate, "snr_db": f"{quality.snr_db:.1f}",
            "bandwidth_hz": f"{quality.bandwidth_hz:.0f}", "clipped_fraction": f"{quality.clipped_fraction:.2e}"}


def _link(link, target):
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        raise CorpusBuildError(f"{link} exists and is not a link to {target}; remove it or use a new --out")
    link.symlink_to(target, target_is_directory=True)


def build_corpus(out_dir, source_roots, shared_dir=None, workers=None, say=print):
    """Build the corpus folder from ``{source name: downloaded folder}`` (plus ../shared/data's speech).

    Returns the manifest rows. Existing output files are kept, so a second
    run only measures again and writes what is missing.
    """
    out_dir = Path(out_dir)
    roots = dict(source_roots)
    if shared_dir is not None:
        shared_dir = Path(shared_dir).resolve()
        for name in ("ravdess", "words"):
            if (shared_dir / SOURCES[name].layout_hint).is_dir():
                roots.setdefault(name, shared_dir)
    if not roots:
        raise CorpusBuildError("no sources given; pass --source NAME=DIR (known: "
                               f"{', '.join(SOURCES)}) and/or --shared ../shared/data")
    jobs = []
    for name, root in sorted(roots.items()):
        source = source_named(name)
        try:
            files = source.files(root)
        except (FileNotFoundError, ValueError) as exc:
            raise CorpusBuildError(str(exc)) from None
        say(f"{name}: {len(files)} files in {root}")
        jobs += [(str(out_dir), name, source.group, source.real_only, row) for row in files]
    out_dir.mkdir(parents=True, exist_ok=True)
    if shared_dir is not None:
        for folder in ("noise", "rir"):
            if (shared_dir / folder).is_dir():
                _link(out_dir / folder, shared_dir / folder)
    with multiprocessing.get_context("spawn").Pool(workers or os.cpu_count() or 1) as pool:
        rows = list(pool.imap(_process, jobs, chunksize=32))
    _write_manifest(out_dir / "manifest.csv", rows)
    (out_dir / "SOURCES.md").write_text(sources_table(rows))
    say(summary(rows))
    return rows


def _write_manifest(path, rows):
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: (row["source"], row["speaker"], row["original"])))
    os.replace(tmp, path)


def read_manifest(corpus_dir):
    """The manifest rows of a built corpus, or None when the folder has no manifest."""
    path = Path(corpus_dir) / "manifest.csv"
    if not path.exists():
        return None
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _hours(rows):
    return sum(float(row["seconds"] or 0) for row in rows) / 3600


def is_clean_target(row):
    """A manifest row that passed the filter and went to speech/ (a real-only source's passing files did not)."""
    return row["verdict"] == "pass" and bool(row["path"]) and row["group"] != REALWORLD_GROUP


def is_real_recording(row):
    """A manifest row kept under realworld/: a file the filter rejected, or a usable file of a real-only source."""
    return bool(row["path"]) and row["group"] == REALWORLD_GROUP


def _clean_targets(rows):
    return [row for row in rows if is_clean_target(row)]


def sources_table(rows):
    """Markdown: per source, its licence, its clean targets by split, and its real recordings."""
    by_source = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    lines = ["# Sources of this corpus", "",
             f"Filter: SNR estimate >= {MIN_SNR_DB:g} dB, clipped share < {MAX_CLIPPED_FRACTION:g}, "
             f"at least {MIN_SECONDS:g} s. Clean targets are the passing files, except a real-only source's "
             f"(every file of one is a real recording); their hours and speakers are counted.", "",
             "| source | licence | files | clean targets | hours train | hours validation | speakers | languages "
             "| real recordings (h) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, source_rows in sorted(by_source.items()):
        passed = _clean_targets(source_rows)
        lines.append(
            f"| {name} | {SOURCES[name].licence} | {len(source_rows)} | {len(passed)} | "
            f"{_hours([r for r in passed if r['split'] == 'train']):.2f} | "
            f"{_hours([r for r in passed if r['split'] == 'validation']):.2f} | "
            f"{len({r['speaker'] for r in passed})} | {len({r['language'] for r in passed})} | "
            f"{_hours(list(filter(is_real_recording, source_rows))):.2f} |")
    return "\n".join(lines) + "\n"


def summary(rows):
    passed = _clean_targets(rows)
    train = [row for row in passed if row["split"] == "train"]
    realworld = list(filter(is_real_recording, rows))
    return (f"{len(rows)} files: {len(passed)} clean targets ({_hours(passed):.2f} h; train {_hours(train):.2f} h, "
            f"{len({(r['source'], r['speaker']) for r in train})} speakers, "
            f"{len({r['language'] for r in train})} languages), {len(realworld)} real-world files "
            f"({_hours(realworld):.2f} h) kept for no-reference validation and the teacher")
