"""Echo examples for the joint echo-and-noise model: what the microphone of a smart speaker or intercom hears.

One example (:func:`make_echo_example`), stage by stage:

1. **Talk type**: double talk (near talker and far end, 40 %), far-end single
   talk (echo and noise only, the target is silence, 35 %), near-end single talk
   (the far end stops during the warm-up, 25 %: the canceller passes the
   microphone through and the far-end inputs fall to 0, as the device does).
2. **Near end**: :func:`training.synth.make_example` (speech, room, noise, channel,
   level, converter), so the near-end side is exactly the noise model's data.
3. **Far end**: speech of another training speaker, or in 30 % music from
   training-split music sources that the echo test set does not use (it plays
   Debian game music of hyperrogue, singularity, warzone2100 and wesnoth).
4. **Loudspeaker**: a small driver's high-pass and amplifier overdrive
   (:func:`loudspeaker`, the echo test set's model, with a wider overdrive range
   including none) and, in half the examples, a driver resonance (+3..+9 dB peak
   at 600-2500 Hz).
5. **Echo path**: a system delay of 5-100 ms, then a direct path and a room
   response (the split's measured and simulated rooms) at a direct-to-reverberant
   ratio of -6..+20 dB; in 30 % of the far-end examples the path changes inside
   the kept part (the device is moved).
6. **Level**: the echo at -10..+15 dB relative to the near talker (signal-to-echo
   ratio -15..+10 dB); everything is turned down together where the microphone
   would pass full scale (its gain is set not to clip).
7. **The device's own linear stage**: :class:`edge.echo.EchoCanceller`, the
   daemon's, without SpeexDSP's residual suppression (the network does that),
   over a warm-up (4 s by default) and the kept part. The example keeps the
   canceller's output, the echo estimate (microphone - output) and the target
   of the kept part only, so that most of the training sees a converged filter,
   as a device that has been running does; re-convergence after a path change
   is inside it.

The target is the near talker's early-reflection signal (silence in far-end
single talk): the network learns to keep only the near end.
"""

import numpy as np
from scipy import signal as sps

from edge.dsp.constants import HOP_SAMPLES
from edge.echo import EchoCanceller, EchoSettings

from .synth import RATE, SNR_RANGE_DB, _room, make_example, noise_signal, speech_signal

TALK_TYPES = ("dt", "st", "nst")
TALK_TYPE_PROBABILITIES = (0.4, 0.35, 0.25)
ECHO_ABOVE_NEAR_DB = (-10.0, 15.0)          # signal-to-echo ratio +10 .. -15 dB
MUSIC_PROBABILITY = 0.3
#: Music sources the echo test set plays as its far end (evaluation/echo_set.py): never a training far end.
ECHO_SET_MUSIC_SOURCES = ("hyperrogue", "singularity", "warzone2100", "wesnoth")
OVERDRIVE_DB = (0.0, 9.0)
PATH_CHANGE_PROBABILITY = 0.3
WARMUP_S = 4.0


def loudspeaker(x, rng, overdrive_range_db=(3.0, 9.0)):
    """A small device's loudspeaker: high-pass driver and amplifier overdrive (clipping). Returns (y, recipe).

    ``overdrive_range_db`` (0, 0): no clipping (a diagnostic: how much of what is left is nonlinear)."""
    cutoff_hz = float(rng.uniform(150, 400))
    overdrive_db = float(rng.uniform(*overdrive_range_db))
    y = sps.sosfilt(sps.butter(2, cutoff_hz, "highpass", fs=RATE, output="sos"), x)
    if overdrive_db <= 0:
        return y, {"driver_highpass_hz": round(cutoff_hz), "overdrive_db": 0.0}
    limit = np.percentile(np.abs(y), 99.9) * 10 ** (-overdrive_db / 20)      # the amplifier's rail
    y = np.tanh(np.clip(y, -limit, limit) / max(limit, 1e-12) * 1.2) * limit
    return y, {"driver_highpass_hz": round(cutoff_hz), "overdrive_db": round(overdrive_db, 1)}


def _resonance(x, rng):
    """A driver resonance: one peaking biquad (RBJ) of +3..+9 dB at 600-2500 Hz, Q 1-4."""
    freq, gain_db, q = rng.uniform(600, 2500), rng.uniform(3, 9), rng.uniform(1, 4)
    a, w = 10 ** (gain_db / 40), 2 * np.pi * freq / RATE
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return sps.lfilter(b / den[0], den / den[0], x)


def _far_end(split, rng, n_samples, bank):
    music = [path for path in split.noise_classes.get("music", ())
             if not any(str(path).split("/")[-1].startswith(name) for name in ECHO_SET_MUSIC_SOURCES)]
    if music and rng.random() < MUSIC_PROBABILITY:
        for _ in range(8):
            audio = bank.get(music[rng.integers(len(music))])
            if audio is not None and np.any(audio):
                audio = np.resize(audio, n_samples) if audio.size < n_samples else audio
                start = rng.integers(0, audio.size - n_samples + 1)
                return audio[start:start + n_samples].astype(np.float64)
    return speech_signal(split, rng, n_samples, bank)


def _echo_path(split, rng, rooms, bank):
    """Direct path plus a room response's reverberation at a random direct-to-reverberant ratio."""
    response = _room(split, rng, rooms, bank)
    h = np.zeros(int(0.3 * RATE))
    h[0] = 1.0
    if response is not None:
        start = int(np.argmax(np.abs(response))) + int(0.001 * RATE)
        tail = np.asarray(response[start:start + h.size - 1], np.float64)
        if np.any(tail):
            tail = tail / np.sqrt(np.sum(tail ** 2)) * 10 ** (-rng.uniform(-6, 20) / 20)
            h[1:1 + tail.size] += tail
    return h


def _rms(x):
    return float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0


def talk_type_probabilities(double_talk_share=None):
    """(dt, st, nst) probabilities: ``double_talk_share`` for double talk (None: the default 0.4), the rest
    split between far-end and near-end single talk as in the default mix (35:25)."""
    if double_talk_share is None:
        return TALK_TYPE_PROBABILITIES
    rest = 1.0 - double_talk_share
    st, nst = TALK_TYPE_PROBABILITIES[1:]
    return (double_talk_share, rest * st / (st + nst), rest * nst / (st + nst))


def make_echo_example(split, rng, seconds, bank, rooms=(), snr_range_db=SNR_RANGE_DB, clean_probability=0.1,
                      warmup_s=WARMUP_S, settings=None, talk_types=None, signals=None):
    """``(target, output, echo_estimate, talk_type)`` of the kept ``seconds``, float64 at 48 kHz.

    ``output`` is the linear canceller's output (what the enhancer processes) and
    ``echo_estimate`` = microphone - output (what :mod:`edge.dsp.echo_features` reads).
    ``talk_types``: (dt, st, nst) probabilities (None: :data:`TALK_TYPE_PROBABILITIES`).
    ``signals``: a dict that receives ``"loudspeaker_at_delay"``, what the loudspeaker played, delayed as it
    reaches the microphone (before the room), for studies of candidate inputs (``training.echo_cues``); the
    example drawn is the same with or without it.
    """
    talk_type = TALK_TYPES[rng.choice(len(TALK_TYPES), p=talk_types or TALK_TYPE_PROBABILITIES)]
    warmup = int(round(warmup_s * RATE / HOP_SAMPLES)) * HOP_SAMPLES
    kept = int(seconds * RATE)
    n = warmup + kept
    if talk_type == "st":
        target = np.zeros(n)
        level = 10 ** (rng.uniform(-45, -6) / 20)            # the talker who is not there sets the echo's scale
        snr_db = rng.uniform(*snr_range_db)
        near = noise_signal(split, rng, n, bank) * level * 10 ** (-snr_db / 20)
        reference_level = level
    else:
        target, near = make_example(split, rng, n / RATE, bank, rooms, snr_range_db, clean_probability)
        reference_level = max(_rms(target[np.abs(target) > 1e-4]), 1e-6)
    far = _far_end(split, rng, n, bank)
    played, _ = loudspeaker(far, rng, OVERDRIVE_DB)
    if rng.random() < 0.5:
        played = _resonance(played, rng)
    delay = int(rng.uniform(0.005, 0.1) * RATE)
    delayed = np.concatenate([np.zeros(delay), played])[:n]
    echo = sps.fftconvolve(delayed, _echo_path(split, rng, rooms, bank))[:n]
    if talk_type != "nst" and rng.random() < PATH_CHANGE_PROBABILITY:
        moved = sps.fftconvolve(delayed, _echo_path(split, rng, rooms, bank))[:n]
        moved *= _rms(echo) / max(_rms(moved), 1e-12)
        at = warmup + int(rng.uniform(0.2, 0.8) * kept)
        echo[at:] = moved[at:]
    active = np.abs(echo) > 1e-4 * max(np.abs(echo).max(), 1e-12)
    echo *= reference_level * 10 ** (rng.uniform(*ECHO_ABOVE_NEAR_DB) / 20) / max(_rms(echo[active]), 1e-12)
    if talk_type == "nst":                                  # the far end stops during the warm-up
        stop = int(rng.uniform(0.3, 0.8) * warmup)
        far[stop:] = 0.0
        echo[stop + delay + int(0.3 * RATE):] = 0.0
        echo[stop:] *= np.exp(-np.arange(n - stop) / (0.05 * RATE))   # the room's decay after the last sound
    mic = near + echo
    peak = np.abs(mic).max()
    if peak > 0.99:                       # the microphone's gain would be set so that it does not clip: turn down
        mic, target = mic * (0.99 / peak), target * (0.99 / peak)
    canceller = EchoCanceller(settings or EchoSettings(residual_suppression=False))
    output = np.zeros(n)
    try:
        for start in range(0, n - HOP_SAMPLES + 1, HOP_SAMPLES):
            frame = slice(start, start + HOP_SAMPLES)
            canceller.process(mic[frame], far[frame], output[frame])
    finally:
        canceller.close()
    echo_estimate = mic - output
    if signals is not None:
        signals["loudspeaker_at_delay"] = delayed[warmup:]
    return target[warmup:], output[warmup:], echo_estimate[warmup:], talk_type
