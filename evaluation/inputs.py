"""What the methods are run on: a list of :class:`Clip` objects, all 48 kHz mono float64.

Three sources:

* :func:`synthesise` (the default): speech from the corpus **validation** split
  (RAVDESS actors 17-20 and the other held-out speakers) mixed with held-out
  noise at fixed SNRs (-5, 0, 5, 10, 20 dB), cycling through the noise
  conditions: recorded noise by folder, and each synthetic family of
  :mod:`training.synth`. Fixed seed, so two runs see the same clips.
* :func:`load_pairs`: ``DIR/clean/*.wav`` and ``DIR/noisy/*.wav`` of the same names.
* :func:`load_noisy_only`: noisy WAVs without a reference (DNSMOS and cost only).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.errors import AudioFileError, DataError
from edge.io.quality import snr_db
from edge.io.synthetic import level_gain, mix_at_snr
from edge.io.wav import read_wav, to_dsp_format

#: Input SNRs of the synthesised clips; +inf is clean speech (no noise): how much a method harms it.
SNR_BUCKETS_DB = (-5.0, 0.0, 5.0, 10.0, 20.0, float("inf"))
SPEECH_LEVEL_DBFS = -26.0
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data"
#: --realworld: files read per clip wanted (the clips are the longest of them), and the default seed.
REALWORLD_CANDIDATES_PER_CLIP = 8
REALWORLD_SEED = 2024


class InputError(DataError):
    """The inputs cannot be found or read; the message says where we looked and what to pass."""


@dataclass
class Clip:
    """One test item. ``clean`` is None for noisy-only inputs; ``snr_db`` is nominal or measured."""

    name: str
    noisy: np.ndarray
    clean: Optional[np.ndarray] = None
    snr_db: Optional[float] = None
    family: str = "unknown"
    group: str = "all"

    @property
    def snr_bucket(self):
        """The nearest of :data:`SNR_BUCKETS_DB`, or None when the SNR is unknown."""
        if self.snr_db is None or np.isnan(self.snr_db):
            return None
        if np.isinf(self.snr_db):
            return float(self.snr_db)
        finite = [bucket for bucket in SNR_BUCKETS_DB if np.isfinite(bucket)]
        return float(min(finite, key=lambda bucket: abs(bucket - self.snr_db)))


def noise_conditions(split, corpus_dir):
    """``[(family label, how)]``: one per recorded-noise folder, then one per synthetic family."""
    from training.synth import NOISE_FAMILIES
    noise_root = Path(corpus_dir) / "noise"
    folders = sorted({path.relative_to(noise_root).parts[0] for path in split.noise})
    return ([(f"recorded/{folder}", ("recorded", folder)) for folder in folders] +
            [(f"synthetic/{family}", ("synthetic", family)) for family in NOISE_FAMILIES])


def make_clip(split, rng, seconds, bank, snr, condition, corpus_dir, speaker=None, room=None,
              floor_dbfs=None):
    """One ``(target, noisy)`` pair at a fixed SNR: a variant of :func:`training.synth.make_example`.

    Reuses its speech picker (validation speakers, with its speed/tilt
    augmentation) and noise generators; speech at :data:`SPEECH_LEVEL_DBFS`;
    peak kept below 0.99 as in training. ``speaker`` fixes the talker;
    ``room`` reverberates the speech (the target is then its early
    reflections, as in training); ``floor_dbfs`` adds a microphone's
    self-noise to the input (real microphones never deliver digital silence).
    """
    from training.corpus import Split
    from training.synth import RATE, recorded_noise, reverberate, self_noise, speech_signal, synthetic_noise
    n_samples = int(seconds * RATE)
    speech = speech_signal(split, rng, n_samples, bank, speaker)
    reverberant = speech
    if room is not None:
        speech, reverberant = reverberate(speech, room)
    gain = level_gain(speech, SPEECH_LEVEL_DBFS)
    target, reverberant = speech * gain, reverberant * gain
    kind, which = condition
    if kind == "recorded":
        folder = Path(corpus_dir) / "noise" / which
        files = Split(speech=split.speech, noise=[p for p in split.noise if folder in p.parents])
        noise = recorded_noise(files, rng, n_samples, bank)
    else:
        noise = synthetic_noise(which, n_samples, rng, split, bank)
    noisy = mix_at_snr(target, noise, snr) - target + reverberant
    if floor_dbfs is not None:
        noisy = noisy + self_noise(n_samples, floor_dbfs, rng)
    peak = np.abs(noisy).max()
    if peak > 0.99:
        target, noisy = target * 0.99 / peak, noisy * 0.99 / peak
    return target, noisy


def synthesise(corpus_dir, clips_per_snr=4, seconds=4.0, seed=2024, say=print, split="validation"):
    """``clips_per_snr`` clips at each SNR of :data:`SNR_BUCKETS_DB`.

    ``split="validation"`` (held-out speakers and noises) is for reporting;
    ``split="train"`` gives tuning clips from the training speakers and noises,
    the only ones inference settings may be chosen on.
    """
    from training.corpus import CorpusError, scan
    from training.synth import AudioBank
    corpus_dir = Path(corpus_dir)
    try:
        train, validation = scan(corpus_dir)
    except (CorpusError, OSError) as exc:
        raise InputError(f"no usable corpus at {corpus_dir.resolve()} ({exc}). Pass --corpus DIR, a "
                         f"folder with speech/ and noise/ inside (the team data is at ../shared/data "
                         f"beside the checkout), or use --pairs DIR / --noisy-only DIR.") from None
    if split not in ("validation", "train"):
        raise InputError(f"unknown split {split!r}: use validation (reporting) or train (tuning)")
    source = validation if split == "validation" else train
    if not source.speech or not source.noise:
        raise InputError(f"{corpus_dir}: the {split} split is empty ({source.describe()})")
    conditions = noise_conditions(source, corpus_dir)
    bank = AudioBank(say=say)
    clips = []
    for s_index, snr in enumerate(SNR_BUCKETS_DB):
        for k in range(clips_per_snr):
            label, condition = conditions[(s_index * clips_per_snr + k) % len(conditions)]
            rng = np.random.default_rng([seed, s_index, k])           # stable per clip
            clean, noisy = make_clip(source, rng, seconds, bank, snr, condition, corpus_dir)
            clips.append(Clip(f"snr{snr:+.0f}_{k:02d}_{label.replace('/', '-')}", noisy, clean, snr, label))
    say(f"synthesised {len(clips)} clips of {seconds:g} s from the {split} split of {corpus_dir} "
        f"({source.describe()}); noise conditions: {', '.join(label for label, _ in conditions)}")
    return clips


#: Share of the per-group clips that are reverberant (every third), and the microphone floor of all of them.
REVERBERANT_EVERY = 3
FLOOR_DBFS = -85.0


def synthesise_groups(corpus_dir, clips_per_snr=2, seconds=4.0, seed=2024, say=print):
    """Clips per validation **group** of a built corpus (``percepnet-train corpus``): the real-world check.

    For each report group (e.g. acted English at 48 kHz, read English at
    16 kHz from children and adults, 40+ languages at 44.1 kHz, acted Czech at
    22 kHz), ``clips_per_snr`` clips at each SNR of :data:`SNR_BUCKETS_DB`
    from that group's held-out speakers, in held-out noise (recorded folders
    and every synthetic family, competing talkers and babble from held-out
    speakers); every third clip is reverberant; every input carries a
    microphone floor at :data:`FLOOR_DBFS`. Fixed seeds: two runs see the same clips.
    """
    from training.synth import AudioBank, simulated_rooms
    validation, groups = _validation_groups(corpus_dir)
    conditions = noise_conditions(validation, corpus_dir)
    rooms = simulated_rooms(8, seed)
    bank = AudioBank(say=say)
    clips = []
    for group_index, (group, speakers) in enumerate(sorted(groups.items())):
        for s_index, snr in enumerate(SNR_BUCKETS_DB):
            for k in range(clips_per_snr):
                number = s_index * clips_per_snr + k
                label, condition = conditions[(group_index + number) % len(conditions)]
                rng = np.random.default_rng([seed, group_index, s_index, k])
                speaker = speakers[rng.integers(len(speakers))]
                room = rooms[number % len(rooms)] if number % REVERBERANT_EVERY == 1 else None
                clean, noisy = make_clip(validation, rng, seconds, bank, snr, condition, corpus_dir, speaker,
                                         room, FLOOR_DBFS)
                clips.append(Clip(f"{group}_snr{snr:+.0f}_{k:02d}_{label.replace('/', '-')}", noisy, clean, snr,
                                  label, group))
    say(f"synthesised {len(clips)} clips of {seconds:g} s in {len(groups)} groups "
        f"({', '.join(f'{g}: {len(s)} speakers' for g, s in sorted(groups.items()))}) from {corpus_dir}")
    return clips


#: Bounds of the reference-quality classes of :func:`synthesise_clean`, in dB below the speech level.
REFERENCE_FLOOR_CLASSES_DB = (-60.0, -45.0)
#: Frames quieter than this are digital silence (the pauses the corpus joins clips with), not a floor.
DIGITAL_SILENCE_DBFS = -120.0


def reference_floor_db(speech, frame_samples=480):
    """The speech's own noise floor, in dB relative to its loud frames: how clean a "clean" reference is.

    The 10th percentile of the 10 ms frame levels, digital silence left out
    (the pauses the clips are joined with), minus the 95th percentile. Quiet
    speech frames count too, so this is an upper bound of the floor: a clip
    below -60 dB is clean for sure, while speech gated to digital silence reads
    as its quietest speech frames and may land in a noisier class than it is.
    -inf when fewer than 10 frames are not digital silence.
    """
    frames = speech[:speech.size // frame_samples * frame_samples].reshape(-1, frame_samples)
    levels = 10.0 * np.log10(np.mean(np.square(frames), axis=1) + 1e-30)
    heard = levels[levels > DIGITAL_SILENCE_DBFS]
    if heard.size < 10:
        return float("-inf")
    return float(np.percentile(heard, 10) - np.percentile(levels, 95))


def reference_class(floor_db):
    """A label for :func:`reference_floor_db`: clean references and noisy ones are reported apart."""
    low, high = REFERENCE_FLOOR_CLASSES_DB
    if floor_db < low:
        return f"reference floor < {low:.0f} dB"
    if floor_db < high:
        return f"reference floor {low:.0f}..{high:.0f} dB"
    return f"reference floor >= {high:.0f} dB"


def synthesise_clean(corpus_dir, per_group=10, seconds=4.0, seed=2024, say=print):
    """Clean speech with no noise added, per validation group: how much a method harms speech.

    Dry speech (no room) from each group's held-out speakers at
    :data:`SPEECH_LEVEL_DBFS`, with the microphone floor at :data:`FLOOR_DBFS`
    on the input only. The references are the corpus's recordings, and some
    carry their own room noise: a method that removes it loses PESQ against
    such a reference without harming the speech. So each clip's ``family``
    is its :func:`reference_class`, and the report shows the classes apart.
    """
    from training.synth import AudioBank
    validation, groups = _validation_groups(corpus_dir)
    bank = AudioBank(say=say)
    silent = ("synthetic", "coloured")                        # scaled to nothing at +inf dB SNR
    clips = []
    for group_index, (group, speakers) in enumerate(sorted(groups.items())):
        for k in range(per_group):
            rng = np.random.default_rng([seed, group_index, 99, k])
            speaker = speakers[k % len(speakers)]
            clean, noisy = make_clip(validation, rng, seconds, bank, float("inf"), silent, corpus_dir, speaker,
                                     None, FLOOR_DBFS)
            label = reference_class(reference_floor_db(clean))
            clips.append(Clip(f"{group}_clean_{k:02d}", noisy, clean, float("inf"), label, group))
    classes = sorted({clip.family for clip in clips})
    say(f"synthesised {len(clips)} clean-speech clips of {seconds:g} s in {len(groups)} groups from {corpus_dir}; "
        + ", ".join(f"{sum(c.family == label for c in clips)} with {label}" for label in classes))
    return clips


def realworld_clips(corpus_dir, per_source=4, seconds=4.0, seed=REALWORLD_SEED, say=print):
    """Noisy-only clips from the corpus's real recordings (``realworld/``): real microphones, hum and rooms.

    ``per_source`` files from each source (at least ``seconds`` long where
    possible, cut to that length), drawn with a fixed seed. No reference:
    DNSMOS and cost only.
    """
    from training.corpus import load_audio
    validation = _validation_split(corpus_dir)
    if not validation.realworld:
        raise InputError(f"{corpus_dir}: no real-world files (the corpus builder keeps the files its filter "
                         f"rejects, and real-only sources, under realworld/); build the corpus with "
                         f"percepnet-train corpus")
    candidates = realworld_candidates(validation.realworld, per_source, seed)
    clips = []
    for source, picked in candidates.items():
        audio = [load_audio(path) for path in picked]
        audio = sorted(audio, key=lambda a: -min(a.size, seconds * SAMPLE_RATE_HZ))[:per_source]
        for index, signal in enumerate(audio):
            clip = signal[:int(seconds * SAMPLE_RATE_HZ)].astype(np.float64)
            clips.append(Clip(f"realworld_{source}_{index:02d}", clip,
                              family=f"realworld/{source}", group=f"realworld/{source}"))
    say(f"{len(clips)} real-world noisy clips from {len(candidates)} sources of {corpus_dir}")
    return clips


def realworld_candidates(realworld, per_source=4, seed=REALWORLD_SEED):
    """``{source: [paths]}``: every file :func:`realworld_clips` reads, in the order it reads them.

    ``realworld`` is a corpus split's ``(path, "source/speaker")`` list. Per
    source (in sorted order, one generator for all), a fixed-seed permutation
    of its files, cut to :data:`REALWORLD_CANDIDATES_PER_CLIP` per clip; the
    clips are the longest of these. The permutation does not depend on
    ``per_source``, so a smaller ``per_source`` reads a prefix of a larger
    one's files: what training must never see (``training.teacher``).
    """
    by_source = {}
    for path, speaker in realworld:
        by_source.setdefault(speaker.split("/")[0], []).append(path)
    rng = np.random.default_rng(seed)
    return {source: [paths[i] for i in rng.permutation(len(paths))][:per_source * REALWORLD_CANDIDATES_PER_CLIP]
            for source, paths in sorted(by_source.items())}


def _validation_groups(corpus_dir):
    """``(validation split, {group: [speakers]})`` of a corpus built with groups."""
    validation = _validation_split(corpus_dir)
    groups = {}
    for speaker in sorted(validation.speech):
        groups.setdefault(validation.group_of(speaker), []).append(speaker)
    if len(groups) < 2:
        raise InputError(f"{corpus_dir}: the validation split has {len(groups)} group(s); build the corpus with "
                         f"percepnet-train corpus (it assigns groups), or use --split on a plain folder")
    return validation, groups


def _validation_split(corpus_dir):
    from training.corpus import CorpusError, scan
    try:
        return scan(corpus_dir)[1]
    except (CorpusError, OSError) as exc:
        raise InputError(f"no usable corpus at {Path(corpus_dir).resolve()} ({exc})") from None


def _read_mono(path, say):
    try:
        samples, rate = read_wav(path)
    except AudioFileError as exc:
        raise InputError(str(exc)) from None
    mono, notes = to_dsp_format(samples, rate)
    if notes:
        say(f"{path.name}: " + "; ".join(notes))
    return mono


def load_pairs(folder, say=print):
    """Clips from ``folder/clean/NAME.wav`` and ``folder/noisy/NAME.wav``; the SNR is measured."""
    folder = Path(folder)
    clean_dir, noisy_dir = folder / "clean", folder / "noisy"
    if not clean_dir.is_dir() or not noisy_dir.is_dir():
        raise InputError(f"{folder.resolve()}: expected sub-folders clean/ and noisy/ holding WAVs "
                         f"of the same names")
    clean_names = {p.name for p in clean_dir.glob("*.wav")}
    noisy_names = {p.name for p in noisy_dir.glob("*.wav")}
    names = sorted(clean_names & noisy_names)
    if not names:
        raise InputError(f"{folder}: no WAV name is in both clean/ and noisy/")
    unmatched = sorted(clean_names ^ noisy_names)
    if unmatched:
        say(f"ignoring {len(unmatched)} file(s) without a partner: {', '.join(unmatched[:5])}")
    clips = []
    for name in names:
        clean, noisy = _read_mono(clean_dir / name, say), _read_mono(noisy_dir / name, say)
        if clean.size != noisy.size:
            say(f"{name}: clean and noisy differ in length ({clean.size} vs {noisy.size}); "
                f"using the first {min(clean.size, noisy.size)} samples")
        n = min(clean.size, noisy.size)
        clips.append(Clip(Path(name).stem, noisy[:n], clean[:n], snr_db(clean[:n], noisy[:n]), "pairs"))
    return clips


def load_noisy_only(folder, say=print):
    """Clips from every ``*.wav`` under ``folder`` (no reference); the family is the sub-folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder.resolve()}: no such folder (--noisy-only takes a folder of WAVs)")
    paths = sorted(folder.rglob("*.wav"))
    if not paths:
        raise InputError(f"{folder}: holds no .wav files")
    clips = []
    for path in paths:
        parent = path.parent.relative_to(folder).as_posix()
        clips.append(Clip(path.relative_to(folder).with_suffix("").as_posix(), _read_mono(path, say),
                          family=parent if parent != "." else "noisy-only"))
    return clips
