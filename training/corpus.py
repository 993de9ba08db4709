"""Find speech, noise and room responses in a corpus folder, and split them.

Layout expected (that of ``../shared/data``; any folder of the same shape works):
``speech/**`` audio files (the speaker is the first folder under ``speech/``
with its sub-folder, e.g. ``ravdess/Actor_17`` or ``words/klettres/it``),
``noise/**`` audio files, ``rir/**`` impulse responses.

Splits are by speaker and by noise file, fixed by name (never random), so the
validation material is never seen in training:

* validation speakers: a corpus built by ``percepnet-train corpus`` carries
  them in its ``manifest.csv`` (see :mod:`training.corpus_build`: held-out
  speakers and whole languages, with a report group each); a plain folder
  holds out RAVDESS actors 17-20 and every 7th other speaker in sorted order;
* validation noises: in each noise folder, every 5th file in sorted order (index 2, 7, ...);
  with a noise corpus (``percepnet-train noise-corpus``, :mod:`training.noise_build`) its
  manifest's splits instead (whole classes and sources held out), and training draws a class
  evenly, then a file of it (:attr:`Split.noise_classes`).

Speakers are drawn balanced by source, then by speaker (:func:`pick_speaker`),
never by duration: otherwise one source with many speakers, or one
long-winded speaker, would fill most examples.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.errors import DataError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
VALIDATION_ACTORS = {f"Actor_{number}" for number in range(17, 21)}


class CorpusError(DataError):
    """The corpus folder cannot be used; the message says why and what to do."""


@dataclass
class Split:
    speech: dict = field(default_factory=dict)     # "source/speaker" -> [paths]
    noise: list = field(default_factory=list)
    rir: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)     # "source/speaker" -> validation report group
    realworld: list = field(default_factory=list)  # (path, "source/speaker") of the corpus's real recordings
    noise_classes: dict = field(default_factory=dict)  # class -> [paths], from a noise corpus only

    def describe(self):
        n_files = sum(len(paths) for paths in self.speech.values())
        return (f"{len(self.speech)} speakers ({n_files} files) from {len(self.sources())} sources, "
                f"{len(self.noise)} noise files, {len(self.rir)} room responses")

    def sources(self):
        """``{source: [speakers]}``; the source is the first part of the speaker key."""
        by_source = {}
        for speaker in sorted(self.speech):
            by_source.setdefault(speaker.split("/")[0], []).append(speaker)
        return by_source

    def group_of(self, speaker):
        return self.groups.get(speaker, speaker.split("/")[0])


def pick_speaker(split, rng):
    """A speaker drawn by source first (weight: square root of its speaker count), then uniformly.

    The square root is the compromise between one vote per source (a source
    of one reader would fill a ninth of the data) and one per speaker (250
    learners of English would drown the 40 other languages).
    """
    by_source = split.sources()
    names = list(by_source)
    weights = np.sqrt([len(by_source[name]) for name in names])
    speakers = by_source[names[rng.choice(len(names), p=weights / weights.sum())]]
    return speakers[rng.integers(len(speakers))]


def _audio_files(folder):
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES)


def speaker_of(path, speech_root):
    parts = path.relative_to(speech_root).parts
    if parts[0] == "ravdess":
        return "/".join(parts[:2])
    return "/".join(parts[:3]) if len(parts) > 3 else "/".join(parts[:-1])


def is_validation_speaker(speaker, index_among_others):
    if speaker.startswith("ravdess/"):
        return speaker.split("/")[1] in VALIDATION_ACTORS
    return index_among_others % 7 == 3


def realworld_from_manifest(root, rows):
    """``[(path, speaker)]``: a built corpus's real recordings (its realworld/ files), in manifest order."""
    from .corpus_build import is_real_recording
    return [(Path(root) / row["path"], f"{row['source']}/{row['speaker']}") for row in rows
            if is_real_recording(row)]


def _speech_from_manifest(root, rows, train, validation):
    from .corpus_build import is_clean_target
    for row in filter(is_clean_target, rows):
        speaker = f"{row['source']}/{row['speaker']}"
        split = validation if row["split"] == "validation" else train
        split.speech.setdefault(speaker, []).append(root / row["path"])
        split.groups[speaker] = row["group"]
    validation.realworld.extend(realworld_from_manifest(root, rows))


def scan(corpus_dir, noise_corpus=None):
    """Return ``(train, validation)`` :class:`Split` objects for a corpus folder.

    ``noise_corpus``: a folder built by ``percepnet-train noise-corpus``; its
    manifest replaces the corpus's own ``noise/`` folder (which may then be absent).
    """
    from .corpus_build import read_manifest
    root = Path(corpus_dir)
    speech_root, noise_root = root / "speech", root / "noise"
    if not speech_root.is_dir() or (noise_corpus is None and not noise_root.is_dir()):
        raise CorpusError(f"{root}: expected folders speech/ and noise/ inside (got "
                          f"{sorted(p.name for p in root.iterdir()) if root.is_dir() else 'no such folder'})")
    train, validation = Split(), Split()
    manifest = read_manifest(root)
    if manifest is not None:
        _speech_from_manifest(root, manifest, train, validation)
    else:
        _speech_by_rule(speech_root, train, validation)
    _noise_and_rooms(root, noise_root, train, validation)
    if noise_corpus is not None:
        _noise_from_corpus(Path(noise_corpus), train, validation)
    if not train.speech or not train.noise:
        raise CorpusError(f"{root}: found no usable audio for training ({train.describe()}); "
                          f"supported formats: {', '.join(sorted(AUDIO_SUFFIXES))}")
    return train, validation


def _speech_by_rule(speech_root, train, validation):
    by_speaker = {}
    for path in _audio_files(speech_root):
        by_speaker.setdefault(speaker_of(path, speech_root), []).append(path)
    others = [s for s in sorted(by_speaker) if not s.startswith("ravdess/")]
    for speaker, paths in sorted(by_speaker.items()):
        index = others.index(speaker) if speaker in others else -1
        (validation if is_validation_speaker(speaker, index) else train).speech[speaker] = paths


def _noise_from_corpus(noise_root, train, validation):
    """Replace the noise of both splits with a noise corpus's kept segments, by its manifest's split."""
    from .noise_build import read_noise_manifest
    for split in (train, validation):
        split.noise, split.noise_classes = [], {}
    # Sorted by path: the manifest's row order depends on how many runs built the corpus, and the cache's draws
    # must not (a rebuilt corpus must give the same shards, or validation losses stop being comparable).
    for row in sorted(read_noise_manifest(noise_root), key=lambda r: r["path"] or ""):
        if row["path"] and not row["reject_reason"]:
            split = validation if row["split"] == "validation" else train
            split.noise.append(noise_root / row["path"])
            split.noise_classes.setdefault(row["class"], []).append(noise_root / row["path"])


def _noise_and_rooms(root, noise_root, train, validation):
    noise_files = _audio_files(noise_root) if noise_root.is_dir() else []     # absent: a noise corpus stands in
    for folder in sorted({path.parent for path in noise_files}):
        for index, path in enumerate(p for p in noise_files if p.parent == folder):
            (validation if index % 5 == 2 else train).noise.append(path)
    rirs = _audio_files(root / "rir") if (root / "rir").is_dir() else []
    train.rir, validation.rir = rirs, rirs            # rooms are augmentation, not held-out content


def load_audio(path, rate=SAMPLE_RATE_HZ):
    """Read any supported file as mono float64 at ``rate``; raises CorpusError with the file name."""
    import soundfile
    from edge.io.wav import resample
    try:
        data, file_rate = soundfile.read(str(path), always_2d=True)
    except Exception as exc:                                  # soundfile raises several types
        raise CorpusError(f"{path}: unreadable ({exc})") from None
    if data.shape[0] == 0:
        raise CorpusError(f"{path}: holds no samples")
    return resample(data.mean(axis=1), file_rate, rate)
