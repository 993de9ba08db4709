"""Real recordings without a reference, from public sources outside the training corpus (issue 25).

``python -m evaluation.realrec list`` prints the sources, their licences and
how to get the files; ``python -m evaluation.realrec build --raw RAW --out DIR``
cuts them into clips and writes ``DIR/SOURCE/CLIP.wav`` (48 kHz mono, 16-bit)
and ``DIR/manifest.csv`` (one row per clip: source, file, licence as written
and where it was read, URL and commit, sha256 of the original, cut, level);
``python -m evaluation --realrec DIR`` scores every method on them (DNSMOS and
cost only, per source and per input level).

``RAW/SOURCE/PATH`` holds each source's files at their path in the source
repository, at the commit recorded below (``git clone URL && git -C REPO
checkout COMMIT``, or ``git show COMMIT:PATH``). The builder checks each
file's sha256 against the recorded one and refuses any other version.

None of these sources is in the training corpus (docs/corpus.md), the noise
corpus (docs/noise-corpus.md) or on the held-out lists of ../shared/DATA-MORE.md
and DATA-NOISE.md. The audio never enters the repository.
"""

import argparse
import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.errors import DataError

from . import levels

MIN_CLIP_SECONDS = 3.0
MAX_CLIP_SECONDS = 15.0
DEFAULT_CLIP_SECONDS = 10.0
DEFAULT_MAX_PER_SOURCE = 8
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("clip", "source", "file", "start_s", "seconds", "original_rate_hz", "level_dbfs", "level_band",
                   "licence", "licence_where", "content", "url", "commit", "sha256")


class RealRecError(DataError):
    """The real-recording set cannot be built or read as given; the message says why and what to do."""


@dataclass(frozen=True)
class RawFile:
    """One original file: its path in the source repository and its sha256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class RealSource:
    """A public source of real recordings, with its licence as written and where that was read."""

    name: str
    url: str
    commit: str
    files: tuple
    licence: str
    licence_where: str
    content: str


SOURCES = (
    RealSource(
        "whisper-cpp", "https://github.com/ggerganov/whisper.cpp", "f0d2bfbfb77e01df6160f64d249bd43e75e11660",
        (RawFile("samples/jfk.wav", "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e"),),
        "MIT (the repository); the recording is J. F. Kennedy's 1961 inaugural address, a US federal work "
        "(public domain), which the repository does not state",
        "LICENSE at that commit; samples/README.md says only 'audio files used for testing'",
        "an archival speech recording (1961), 16 kHz"),
    RealSource(
        "silero-vad", "https://github.com/snakers4/silero-vad", "806dcba3f0b5d95282d0889a074954a2f8c6397b",
        (RawFile("tests/data/test.wav", "89f17d9c94c4b31eb320f424628bcbc920abaddbee6e2760fd868bfb1d9a2e47"),),
        "MIT (the repository); the recording's origin is not stated",
        "LICENSE at that commit", "a 60 s test recording, 16 kHz"),
    RealSource(
        "vosk", "https://github.com/alphacep/vosk-api", "9adbd76c77338b48399caa622d7cba15037d83c0",
        (RawFile("python/example/test.wav", "dcfea5712c43a43ba7ae8083afb39d36993e5a69c46e88b68aaa72b65cb615bb"),),
        "Apache-2.0 (the repository); the recording's origin is not stated",
        "COPYING at that commit", "the Python example's test utterance, 16 kHz, low level"),
    RealSource(
        "pyannote", "https://github.com/pyannote/pyannote-audio", "b749285c5cdd4636b2edc7f766f1352c8dde9369",
        (RawFile("src/pyannote/audio/sample/sample.wav",
                 "c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e"),
         RawFile("tests/data/dev00.wav", "187386cda67317574da5b30068a8b853e52cc6df0d13abfec381912dfa9e7461"),
         RawFile("tests/data/dev01.wav", "13834217e1bd46a581af1b8040018bfba1e65ce1e0b9ee46cdcefa9334b9ddea"),
         RawFile("tests/data/trn01.wav", "b5e8d91105604d25cb05cc3840d015d88bd6689a2acba35506dd0d7dcb00668a"),
         RawFile("tests/data/trn02.wav", "2e4ce968332e68cac5ed74cd00f96b63ed6c034667583be34a32a7c2aa260803"),
         RawFile("tests/data/trn03.wav", "d12d132a6d4788f85efaa8e18563e575746e6a6fcc928e919c7c0e6a3e0238b2"),
         RawFile("tests/data/tst00.wav", "0af781fb566501f7950479fd8bd92329276782c7ac930a03497d553b21c33397"),
         RawFile("tests/data/tst01.wav", "a40925742870d05363eb781bd2cf1501fc37883cf003389175a39b24a5b2c7c9")),
        "MIT (the repository, Copyright (c) 2020 CNRS); the recordings' origin is not stated",
        "LICENSE at that commit; tests/data came with commit f820edb1 'add a debugging dataset'",
        "conversational multi-speaker recordings (diarization sample and test data), 16 kHz"),
    RealSource(
        "librosa-data", "https://github.com/librosa/data", "450cdd8a002c98e7bdbfebb309fc1ed024001f77",
        (RawFile("audio/198-209-0000.hq.ogg", "6a8d2c16e56dcb27b7f5fe5aa99bfd26b4722a6dabca1968eff951b456936514"),
         RawFile("audio/3436-172162-0000.hq.ogg",
                 "8e034529f2f171c7e5e772df6eccc2d169183c39605b45b351c2bfabddf14162"),
         RawFile("audio/5703-47212-0000.hq.ogg",
                 "f09254a0daf4b14b292868d46dc2e3c8e158d19fafff739ad4c3931e2ce7b1b0")),
        "CC BY 4.0 (LibriSpeech SLR12, read by Heather Barnett, Anders Lankford and Garth Comira)",
        "audio/NAME.txt beside each file at that commit (the repository's LICENSE is CC0 1.0)",
        "LibriVox audiobook readers at home, 16 kHz, Ogg Vorbis"),
    RealSource(
        "speechbrain-cv", "https://github.com/speechbrain/speechbrain", "4c08ff593489c527263ba29aadc51d6ce8187f7d",
        (RawFile("tests/samples/S2ST/common_voice_fr_17299458.wav",
                 "8c4a9ae37707da74c4452a42a2a3f6f37b212c0f9aa2aa16a16f594460af37f0"),),
        "Apache-2.0 (the repository); the file is named as a Common Voice clip (Common Voice is CC0), which "
        "the repository does not state",
        "LICENSE of the repository; removed from it in commit b0309cf5 ('remove local samples')",
        "a French Common Voice volunteer's own microphone, 16 kHz"),
    # Added 2026-12-04 (ninth session), so that a 0.03 OVRL difference can be told from the clips' spread.
    RealSource(
        "deepgram-sdk", "https://github.com/deepgram/deepgram-python-sdk", "7da415db533daac723716455c8a1142c2e39a66b",
        (RawFile("examples/fixtures/audio.wav", "154e291ecfa8be6ab8343560bcc109008fa7853eb5372533e8efdefc9b504c33"),),
        "MIT (the repository); the recording is a NASA interview (first all-female spacewalk), a US federal work "
        "(public domain), which the repository does not state",
        "LICENSE at that commit; the file's sha256 is named in the repository's wiremock mappings",
        "an astronaut interview over the space-to-ground link, band-limited, 44.1 kHz"),
    RealSource(
        "whisper-timestamped", "https://github.com/linto-ai/whisper-timestamped",
        "137f4e0415d6c1ccf00a2008231b74dc8a01c1d9",
        (RawFile("tests/data/apollo11.mp3", "32b19f6d3a3fad628073e21fe0f73b7a778b4ab6eee1e80f7799c95fdbaad6e2"),),
        "AGPL-3.0 (the repository); the recording is NASA's Apollo 11 air-to-ground audio, a US federal work "
        "(public domain), which the repository does not state",
        "LICENSE at that commit", "Apollo 11 air-to-ground radio, heavy channel noise, 8 kHz MP3"),
    RealSource(
        "porcupine", "https://github.com/Picovoice/porcupine", "b42ec9f849c05bb2aa99e6cbd1c85c9b66e103bb",
        (RawFile("resources/audio_samples/multiple_keywords.wav",
                 "230c93ab2b97890351fb7d75207dc213fb7b4c1738ae481dea47f1c8e546e095"),
         RawFile("resources/audio_samples/porcupine.wav",
                 "34937bc4399a2b5e123c87a17b74c58a2aed4c30bd71ea7e7cf0b2ee26b888d2"),
         RawFile("resources/audio_samples/multiple_keywords_es.wav",
                 "6a56ab5a892bf7be013527236a7005339237fa6ace2d6674bb84db5a9f4fb034"),
         RawFile("resources/audio_samples/multiple_keywords_it.wav",
                 "b7023a3c82d1ac32011da8361cd4c7c8549be4e2f6c2f9f10c6ce7989a6fd864"),
         RawFile("resources/audio_samples/multiple_keywords_pt.wav",
                 "fe32449663c0dd6042ad316297dc6e5fa2baaaaa16b952aad3a8db76aef50e77")),
        "Apache-2.0 (the repository); the speakers are not named", "LICENSE at that commit",
        "wake words spoken into room and desk microphones (English, Spanish, Italian, Portuguese), 16 kHz"),
    RealSource(
        "rhino", "https://github.com/Picovoice/rhino", "b65a53b8c449cc93d66ab5a122133cc94bdb6635",
        (RawFile("resources/audio_samples/test_within_context.wav",
                 "b328dc4321aacbd52349d69d0393be5ff47f441e9aaa28e7fefa0f8987d0f728"),
         RawFile("resources/audio_samples/test_out_of_context.wav",
                 "e11ce90b20140eeaa4a2b6133a9aad8a7847d89145421d975610b530b522f90a"),
         RawFile("resources/audio_samples/test_within_context_es.wav",
                 "41463d772bcdbec778c97d230ae205bd0460ab8ea791de44e152211686f7aa55")),
        "Apache-2.0 (the repository); the speakers are not named", "LICENSE at that commit",
        "spoken voice commands (English, Spanish), 16 kHz"),
    RealSource(
        "azure-speech-sdk", "https://github.com/Azure-Samples/cognitive-services-speech-sdk",
        "af304cc2298f99c58e21d1e17e00afd8496bf2f1",
        (RawFile("quickstart/java/jre/conversation-transcription/katiesteve_mono.wav",
                 "19de9b1d9796ab7ae9835b60068565009e28678a13c041ae40848794cf5a38d7"),
         RawFile("quickstart/java/jre/meeting-transcription/enrollment_audio_katie.wav",
                 "92524de7939fc5246c66a991464137335848a42833c6f1cddec11142cfe8e66a"),
         RawFile("quickstart/java/jre/meeting-transcription/enrollment_audio_steve.wav",
                 "fc0c02c00b9f632de415fc999e4344b3c144f0ba5d1f2a3a0d54b255eeef7ddc")),
        "MIT (the repository); the recordings' origin is not stated", "LICENSE.md at that commit",
        "a two-speaker conversation (far field) and each speaker's enrollment speech, 16 kHz"),
    RealSource(
        "pyaudioanalysis", "https://github.com/tyiannak/pyAudioAnalysis", "ae00ebd446d497dbbb654c40a71810e7fdf2cc1b",
        (RawFile("pyAudioAnalysis/data/diarizationExample.wav",
                 "96e18c15c4a8a83f1491ee3ed58c3ce9bb508497362823e1d662c0af658eed6e"),
         RawFile("pyAudioAnalysis/data/recording1.wav",
                 "5a654ae53829669113c5c537d30b0ddc3c6c50ecc875b95e773b9c133f0a68fd"),
         RawFile("pyAudioAnalysis/data/recording3.wav",
                 "7d15793aaec7026c5b7cd387b086ec5968aaa72e9467eff802cb58f715b621f6"),
         RawFile("pyAudioAnalysis/data/count.wav",
                 "42ec8b40feb8036aae84b14292aab347a77e399d302a9eb720eeb41ac6d96a04")),
        "Apache-2.0 (the repository); the recordings' origin is not stated", "LICENSE.md at that commit",
        "demo recordings: a four-speaker discussion in low-frequency room noise, sparse speech in a room, "
        "counting aloud at a desk, 16 kHz"),
    RealSource(
        "auct", "https://github.com/fergusdixon/AuCT", "efb8f549e54656fb550dd209725bbf70f8098b14",
        (RawFile("samples/wav/challenging/sample_fruit_thunderstorm.wav",
                 "307cfdbbebf44926120640f705654c3435f40c5e22ccb64a1816c59d391f4ec5"),),
        "MIT (the repository at that commit; a later commit removed samples/)",
        "LICENSE and samples/README.md at that commit",
        "an iPhone 6 voice memo: a word list read over a thunderstorm, 44.1 kHz"),
)


def source_named(name):
    """The :class:`RealSource` called ``name``; clear error listing the known ones."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise RealRecError(f"unknown real-recording source {name!r}; known: {', '.join(s.name for s in SOURCES)}")


def sha256_of(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def raw_path(raw_dir, source, raw_file):
    """Where ``raw_file`` of ``source`` must be under ``raw_dir``, checked: present and the recorded version."""
    path = Path(raw_dir) / source.name / raw_file.path
    if not path.is_file():
        raise RealRecError(f"{path}: missing. Get it with: git clone {source.url} CLONE && git -C CLONE show "
                           f"{source.commit}:{raw_file.path} > {path}  (see python -m evaluation.realrec list)")
    found = sha256_of(path)
    if found != raw_file.sha256:
        raise RealRecError(f"{path}: sha256 {found[:12]}... is not the recorded {raw_file.sha256[:12]}... "
                           f"(another version of the file than {source.url} at {source.commit[:12]})")
    return path


def windows(n_samples, rate_hz, clip_seconds):
    """``[(start, stop)]`` sample ranges: the whole file up to :data:`MAX_CLIP_SECONDS`, else ``clip_seconds``
    windows one after another, the last kept only when at least :data:`MIN_CLIP_SECONDS` long."""
    if not MIN_CLIP_SECONDS <= clip_seconds <= MAX_CLIP_SECONDS:
        raise RealRecError(f"--clip-seconds must be within {MIN_CLIP_SECONDS:g}..{MAX_CLIP_SECONDS:g}, "
                           f"got {clip_seconds:g}")
    if n_samples < MIN_CLIP_SECONDS * rate_hz:
        return []
    if n_samples <= MAX_CLIP_SECONDS * rate_hz:
        return [(0, n_samples)]
    step = int(round(clip_seconds * rate_hz))
    cuts = [(start, min(start + step, n_samples)) for start in range(0, n_samples, step)]
    return [(a, b) for a, b in cuts if b - a >= MIN_CLIP_SECONDS * rate_hz]


def round_robin(per_file, limit):
    """Up to ``limit`` items taking the first of every file, then the second of every file, and so on."""
    picked, depth = [], 0
    while len(picked) < limit and any(depth < len(items) for items in per_file):
        picked += [items[depth] for items in per_file if depth < len(items)][:limit - len(picked)]
        depth += 1
    return picked


def source_clips(source, raw_dir, clip_seconds=DEFAULT_CLIP_SECONDS, max_per_source=DEFAULT_MAX_PER_SOURCE):
    """``[(row, samples at 48 kHz)]`` of one source: its files cut into windows, digital silence dropped."""
    from training.corpus import load_audio
    import soundfile
    per_file = []
    for raw_file in source.files:
        path = raw_path(raw_dir, source, raw_file)
        audio = load_audio(path, SAMPLE_RATE_HZ)
        original_rate = soundfile.info(str(path)).samplerate
        items = []
        for start, stop in windows(audio.size, SAMPLE_RATE_HZ, clip_seconds):
            samples = audio[start:stop]
            level = levels.active_level_dbfs(samples, SAMPLE_RATE_HZ)
            if not np.isfinite(level):
                continue
            stem = Path(raw_file.path).name.split(".")[0]
            row = {"clip": f"{source.name}/{stem}_{start / SAMPLE_RATE_HZ:05.1f}s", "source": source.name,
                   "file": raw_file.path, "start_s": f"{start / SAMPLE_RATE_HZ:.3f}",
                   "seconds": f"{samples.size / SAMPLE_RATE_HZ:.3f}", "original_rate_hz": original_rate,
                   "level_dbfs": f"{level:.1f}", "level_band": levels.level_band(level),
                   "licence": source.licence, "licence_where": source.licence_where, "content": source.content,
                   "url": source.url, "commit": source.commit, "sha256": raw_file.sha256}
            items.append((row, samples))
        per_file.append(items)
    return round_robin(per_file, max_per_source)


def build(raw_dir, out_dir, names=None, clip_seconds=DEFAULT_CLIP_SECONDS, max_per_source=DEFAULT_MAX_PER_SOURCE,
          say=print):
    """Write the clips and ``manifest.csv`` under ``out_dir``; returns the manifest rows."""
    from edge.io.wav import write_wav
    chosen = [source_named(name) for name in names] if names else list(SOURCES)
    out_dir = Path(out_dir)
    rows = []
    for source in chosen:
        clips = source_clips(source, raw_dir, clip_seconds, max_per_source)
        (out_dir / source.name).mkdir(parents=True, exist_ok=True)
        for row, samples in clips:
            write_wav(out_dir / f"{row['clip']}.wav", samples, SAMPLE_RATE_HZ)
            rows.append(row)
        say(f"{source.name}: {len(clips)} clips, {sum(float(r['seconds']) for r, _ in clips):.0f} s")
    with open(out_dir / MANIFEST, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    say(f"wrote {len(rows)} clips from {len(chosen)} sources and {out_dir / MANIFEST}")
    return rows


def load_clips(folder, say=print):
    """Noisy-only :class:`~.inputs.Clip` objects of a built set, grouped by source (``python -m evaluation
    --realrec DIR``)."""
    from .inputs import Clip, _read_mono
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise RealRecError(f"{manifest}: not found; build the set first: python -m evaluation.realrec build "
                           f"--raw RAW --out {folder}")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise RealRecError(f"{manifest}: lists no clips")
    return [Clip(row["clip"], _read_mono(folder / f"{row['clip']}.wav", say), family=f"realrec/{row['source']}",
                 group=f"realrec/{row['source']}") for row in rows]


def _print_sources():
    for source in SOURCES:
        print(f"{source.name}: {source.url} at {source.commit}\n  licence: {source.licence}\n"
              f"  read in: {source.licence_where}\n  content: {source.content}")
        for raw_file in source.files:
            print(f"  RAW/{source.name}/{raw_file.path}  (git show {source.commit[:12]}:{raw_file.path}; "
                  f"sha256 {raw_file.sha256[:16]}...)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.realrec", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the sources, their licences and where each file comes from")
    builder = commands.add_parser("build", help="cut the raw files into clips and write the manifest")
    builder.add_argument("--raw", required=True, help="folder with SOURCE/PATH of every original file")
    builder.add_argument("--out", required=True, help="output folder (clips and manifest.csv)")
    builder.add_argument("--sources", help=f"comma-separated subset of {','.join(s.name for s in SOURCES)}")
    builder.add_argument("--clip-seconds", type=float, default=DEFAULT_CLIP_SECONDS,
                         help=f"window length for files longer than {MAX_CLIP_SECONDS:g} s "
                              f"(default {DEFAULT_CLIP_SECONDS:g})")
    builder.add_argument("--max-per-source", type=int, default=DEFAULT_MAX_PER_SOURCE,
                         help=f"clips kept per source, spread over its files (default {DEFAULT_MAX_PER_SOURCE})")
    args = parser.parse_args(argv)
    if args.command == "list":
        _print_sources()
        return 0
    names = [n.strip() for n in args.sources.split(",") if n.strip()] if args.sources else None
    try:
        build(args.raw, args.out, names, args.clip_seconds, args.max_per_source,
              say=lambda message: print(message, file=sys.stderr))
    except (DataError, OSError) as exc:
        print(f"evaluation.realrec: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
