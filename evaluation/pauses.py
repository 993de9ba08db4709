"""Noise in the pauses: ``python -m evaluation.pauses MODEL --corpus CORPUS --noise-corpus NOISE``.

Real recordings pause: in conversations, meetings and wake-word demos the
talker is silent for half the frames or more, while the training examples'
utterances follow each other within 0.4 s. Does the model keep noise in a
long pause that it removes in a short one? Each trial joins three utterances
of one validation speaker (the corpus's validation split, 1.5 s or longer)
with pauses of each length asked (default 0.2 and 2 s), after 1 s of noise
alone, in one validation noise file of the noise corpus at ``--snr-db`` over
the speech (default 5 dB), scaled to -26 dBFS. The same utterances and noise
serve every pause length. The model runs as the device runs it
(:func:`evaluation.gain_maps.record`); a call's gains apply two frames back.
Per noise class and pause length it prints the mean gain over the band-frames
of the pauses (frames with no speech within 50 ms, after the first utterance
starts: the noise before it is no pause), the model's median voice activity
there, and the mean gain over the frames that hold speech (within 20 dB of the
utterances' mean power), each averaged over the class's mixtures. docs/training.md (*Where the student loses on real
recordings*) quotes these figures.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge.dsp import HOP_SAMPLES, LOOKAHEAD_FRAMES, SAMPLE_RATE_HZ
from edge.errors import UsageError

#: A frame is in a pause when the speech is silent over it and this long on either side (the window reaches
#: 10 ms back, and a tail or onset inside the guard is speech the model should keep).
GUARD_SECONDS = 0.05
#: Noise alone before the first utterance: the model's state settles on the noise before anyone speaks. Not a
#: pause: the question is the noise between words, after the model has heard the talker.
LEAD_SECONDS = 1.0
#: The mixture's RMS level, a talker at normal level.
LEVEL_DBFS = -26.0
#: A frame holds speech when its power is within this many dB of the utterances' mean power (level-free).
SPEECH_FRAME_DB = -20.0
#: Utterances shorter than this are skipped: a pause needs words on both sides.
MIN_UTTERANCE_S = 1.5


class ProbeError(UsageError):
    """The probe cannot measure what was asked (no pause or speech frames, no usable material)."""


def pause_trial(runner, utterances, noise, pause_s, snr_db, lead_s=LEAD_SECONDS):
    """``(gain in pauses, median VAD in pauses, gain in speech)`` of one mixture: ``utterances`` (arrays at
    48 kHz) each followed by ``pause_s`` of silence, after ``lead_s`` of silence, in ``noise`` (looped) at
    ``snr_db`` over the utterances' power, the whole at -26 dBFS."""
    from .gain_maps import record
    gap = np.zeros(int(round(pause_s * SAMPLE_RATE_HZ)))
    speech = np.concatenate([np.zeros(int(round(lead_s * SAMPLE_RATE_HZ)))]
                            + [part for utterance in utterances for part in (utterance, gap)])
    noise = np.resize(np.asarray(noise, dtype=np.float64), speech.size)
    speech_power = np.mean(np.concatenate(utterances) ** 2)
    noisy = speech + noise * np.sqrt(speech_power / max(np.mean(noise ** 2), 1e-20) / 10 ** (snr_db / 10))
    scale = 10 ** (LEVEL_DBFS / 20) / np.sqrt(np.mean(noisy ** 2))
    _, rec = record(runner, noisy * scale)
    paused, speaking = frame_labels(speech, rec.gains.shape[0], speech_power)
    if not paused.any() or not speaking.any():
        raise ProbeError(f"a mixture with {pause_s:g} s pauses has {paused.sum()} pause and {speaking.sum()} speech "
                         f"frames; give pauses longer than {2 * GUARD_SECONDS:g} s and utterances with speech")
    return float(rec.gains[paused].mean()), float(np.median(rec.vad[paused])), float(rec.gains[speaking].mean())


def frame_labels(speech, n_calls, speech_power):
    """Per model call: ``(in a pause, holds speech)``. Call k's gains apply to frame k - LOOKAHEAD_FRAMES. A pause
    frame comes after the first utterance's start and has no speech sample within :data:`GUARD_SECONDS` either
    side; a speech frame's power is within :data:`SPEECH_FRAME_DB` of ``speech_power``."""
    guard = int(GUARD_SECONDS * SAMPLE_RATE_HZ)
    first = int(np.flatnonzero(speech)[0]) if np.any(speech) else speech.size
    threshold = speech_power * 10 ** (SPEECH_FRAME_DB / 10)
    paused, speaking = np.zeros(n_calls, bool), np.zeros(n_calls, bool)
    for call in range(LOOKAHEAD_FRAMES, n_calls):
        start = (call - LOOKAHEAD_FRAMES) * HOP_SAMPLES
        if start + HOP_SAMPLES > speech.size:
            break
        around = speech[max(0, start - guard):start + HOP_SAMPLES + guard]
        paused[call] = start > first and not np.any(around)
        speaking[call] = np.mean(speech[start:start + HOP_SAMPLES] ** 2) > threshold
    return paused, speaking


def run(runner, corpus, noise_corpus, pauses_s=(0.2, 2.0), trials=12, snr_db=5.0, seed=5, say=print):
    """``{(noise class, pause_s): [(gain in pauses, VAD there, gain in speech), ...]}`` over ``trials`` mixtures."""
    from training.corpus import CorpusError, scan
    from training.synth import AudioBank
    _, validation = scan(corpus, noise_corpus)
    bank = AudioBank(say=say)
    rng = np.random.default_rng(seed)
    speakers = sorted(validation.speech)
    if not speakers or not validation.noise:
        raise CorpusError(f"{corpus}: its validation split holds no speech or no noise ({validation.describe()}); "
                          f"the probe uses held-out material only: give a built corpus (and --noise-corpus)")
    classes = sorted(validation.noise_classes) or ["(all)"]
    results, skipped = defaultdict(list), 0
    for trial in range(trials):
        speaker = speakers[rng.integers(len(speakers))]
        paths = validation.speech[speaker]
        utterances = []
        for _ in range(30):
            audio = bank.get(paths[rng.integers(len(paths))])
            if audio is not None and audio.size >= MIN_UTTERANCE_S * SAMPLE_RATE_HZ:
                utterances.append(np.asarray(audio, np.float64))
            if len(utterances) == 3:
                break
        noise_class = classes[trial % len(classes)]
        files = validation.noise_classes.get(noise_class, validation.noise)
        noise = bank.get(files[rng.integers(len(files))])
        if len(utterances) < 3 or noise is None:             # the bank has reported an unreadable file
            skipped += 1
            reason = (f"{speaker} has fewer than 3 readable utterances of {MIN_UTTERANCE_S:g} s or more"
                      if len(utterances) < 3 else f"a {noise_class} noise file is unreadable")
            say(f"[{trial + 1}/{trials}] skipped: {reason}")
            continue
        for pause_s in pauses_s:
            results[(noise_class, pause_s)].append(pause_trial(runner, utterances, noise, pause_s, snr_db))
        say(f"[{trial + 1}/{trials}] {speaker} in {noise_class}")
    if not results:
        raise CorpusError(f"{corpus}: all {trials} trials were skipped; the probe needs validation speakers with "
                          f"3 or more readable utterances of {MIN_UTTERANCE_S:g} s or more")
    if skipped:
        say(f"{skipped} of {trials} trials skipped (above)")
    return results


def table(results, pauses_s):
    """Markdown, a row per noise class and one for all: per pause length, the mean over mixtures of the gain in
    the pauses, of the median voice activity there and of the gain in speech; the mixtures each row holds."""
    lines = ["| noise class | mixtures | " + " | ".join(f"{p:g} s pauses: gain / VAD there / gain in speech"
                                                       for p in pauses_s) + " |",
             "|---|---:|" + "---|" * len(pauses_s)]
    classes = sorted({name for name, _ in results})
    for name in classes + ["all"]:
        cells = []
        for pause_s in pauses_s:
            rows = [r for (c, p), rs in results.items() for r in rs if p == pause_s and name in (c, "all")]
            means = np.mean(rows, axis=0) if rows else [np.nan] * 3
            cells.append(f"{means[0]:.3f} / {means[1]:.2f} / {means[2]:.3f}")
        count = sum(len(rs) for (c, p), rs in results.items() if p == pauses_s[0] and name in (c, "all"))
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.pauses", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help=".tflite model with its .json")
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus built by percepnet-train corpus")
    parser.add_argument("--noise-corpus", type=Path, help="a noise corpus (percepnet-train noise-corpus)")
    parser.add_argument("--pauses", type=float, nargs="+", default=[0.2, 2.0], metavar="S",
                        help="pause lengths in seconds (default 0.2 2)")
    parser.add_argument("--trials", type=int, default=12, help="mixtures, noise classes in turn (default 12)")
    parser.add_argument("--snr-db", type=float, default=5.0, help="noise SNR over the speech (default 5)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    from edge.model.engine import ModelRunner
    from edge.errors import PercepnetError
    if args.trials < 1 or any(p < 0 for p in args.pauses):
        print("evaluation.pauses: --trials must be 1 or more and --pauses 0 or more seconds", file=sys.stderr)
        return 2
    try:
        runner = ModelRunner(args.model)
        results = run(runner, args.corpus, args.noise_corpus, tuple(args.pauses), args.trials, args.snr_db,
                      args.seed, say=lambda message: print(message, file=sys.stderr, flush=True))
    except PercepnetError as exc:
        print(f"evaluation.pauses: {exc}", file=sys.stderr)
        return 2
    print(table(results, args.pauses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
