"""Measure the noise corpus's speech detector on known speech and known noise (numbers in docs/noise-corpus.md).

    python -m training.noise_detect_check --speech-corpus CORPUS --shared ../shared/data --music DIR [--speakers 40]

Known speech: 10 s of one speaker (clips joined by 0-0.4 s pauses) for each of
``--speakers`` speakers of the speech corpus, alone and mixed with a synthetic
noise (coloured, traffic, fan or modulated) at +10, +5 and 0 dB SNR. Known
noise: 5 clips of each non-speech synthetic family of :mod:`training.synth`,
and up to three 10 s segments of every team noise file and of the first
wesnoth (6) and singularity (4) music tracks.
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from .corpus import load_audio
from .corpus_build import is_clean_target
from .noise_detect import speech_evidence
from .synth import synthetic_noise

SEGMENT_SAMPLES = 48_000 * 10
NOISE_FAMILIES = ("coloured", "hum", "fan", "modulated", "clicks", "traffic", "tonal", "impacts")


def _speakers(corpus):
    by_speaker = {}
    with open(Path(corpus) / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if is_clean_target(row):
                by_speaker.setdefault((row["source"], row["speaker"]), []).append(Path(corpus) / row["path"])
    return by_speaker


def _speech_segment(paths, rng):
    pieces, total = [], 0
    for _ in range(40):
        audio = load_audio(paths[rng.integers(len(paths))])
        gap = np.zeros(int(rng.uniform(0, 0.4) * 48_000))
        pieces += [gap, audio]
        total += audio.size + gap.size
        if total >= SEGMENT_SAMPLES:
            break
    return np.resize(np.concatenate(pieces), SEGMENT_SAMPLES)


def _rms(x):
    return np.sqrt(np.mean(x ** 2)) + 1e-12


def measure(speech_corpus, shared, music, n_speakers=40, say=print):
    """``{condition: (flagged, total)}``; prints the flagged noise segments."""
    rng = np.random.default_rng(0)
    by_speaker = _speakers(speech_corpus)
    keys = sorted(by_speaker)
    rng.shuffle(keys)
    counts = {}

    def count(kind, flagged):
        hit, total = counts.get(kind, (0, 0))
        counts[kind] = (hit + int(flagged), total + 1)

    for key in keys[30:30 + n_speakers]:
        speech = _speech_segment(by_speaker[key], rng)
        count("speech", speech_evidence(speech).is_speech)
        noise = synthetic_noise(("coloured", "traffic", "fan", "modulated")[rng.integers(4)], SEGMENT_SAMPLES, rng)
        for snr_db in (10, 5, 0):
            mixed = speech + noise / _rms(noise) * _rms(speech) / 10 ** (snr_db / 20)
            count(f"speech +{snr_db} dB SNR", speech_evidence(mixed).is_speech)
    for family in NOISE_FAMILIES:
        for _ in range(5):
            count("synthetic noise", speech_evidence(synthetic_noise(family, SEGMENT_SAMPLES, rng)).is_speech)
    files = sorted(Path(shared).glob("noise/*/*.*"))
    files += sorted(Path(music).glob("wesnoth-1.16-music/**/*.ogg"))[:6]
    files += sorted(Path(music).glob("singularity-music/**/*.ogg"))[:4]
    for path in files:
        try:
            audio = load_audio(path)
        except Exception:                           # licence files and the like beside the audio
            continue
        kind = "music" if "music" in str(path) else "recorded noise (team data)"
        for start in list(range(0, max(1, audio.size - SEGMENT_SAMPLES + 1), SEGMENT_SAMPLES))[:3]:
            segment = audio[start:start + SEGMENT_SAMPLES]
            if segment.size >= 48_000:
                flagged = speech_evidence(segment).is_speech
                count(kind, flagged)
                if flagged:
                    say(f"flagged: {path.parent.name}/{path.name} @ {start // 48_000} s")
    for kind, (hit, total) in counts.items():
        say(f"{kind}: {hit}/{total} flagged as speech ({100 * hit / total:.0f} %)")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech-corpus", required=True)
    parser.add_argument("--shared", required=True)
    parser.add_argument("--music", required=True, help="folder holding wesnoth-1.16-music/ and singularity-music/")
    parser.add_argument("--speakers", type=int, default=40)
    args = parser.parse_args(argv)
    measure(args.speech_corpus, args.shared, args.music, args.speakers)


if __name__ == "__main__":
    main()
