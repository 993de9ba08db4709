"""Synthetic noise classes for what no reachable recording holds; deterministic by seed.

Real rooms hold mains hum, fans and air conditioning, fridges, keyboards,
babble and a TV in the next room; the public sources have little or none of
them (``../shared/DATA-NOISE.md``). Each generator makes one clip of a class
from ``(seed, class, index)`` alone, so a rebuild gives the same audio. The
corpus labels these clips source ``synthetic`` with the project's licence.

Babble and TV/radio need speech: they draw speakers of the speech corpus's
*training* split only (``percepnet-train corpus`` manifest), so no validation
talker is ever heard in a noise clip.
"""

import zlib

import numpy as np
from scipy import signal as sps

from edge.dsp.constants import SAMPLE_RATE_HZ

RATE = SAMPLE_RATE_HZ
PROJECT_LICENCE = "BSD-3-Clause (percepnet-edge, generated)"
SYNTHETIC_CLASSES = ("mains-hum", "hvac", "fridge", "typing", "clicks", "babble", "tv-radio")
NEEDS_SPEECH = frozenset({"babble", "tv-radio"})


def clip_rng(seed, label, index):
    """The generator of one clip: a function of (seed, class, index) only."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), index])


def _pink(n_samples, rng):
    white = rng.standard_normal(n_samples)
    return sps.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                       [1, -2.494956002, 2.017265875, -0.522189400], white)       # Kellet's pink filter


def _unit(x):
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def mains_hum(n_samples, rng):
    """50 or 60 Hz and its harmonics (odd ones stronger: a saturated transformer), with a little hiss."""
    t = np.arange(n_samples) / RATE
    base_hz = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    hum = np.zeros(n_samples)
    for k in range(1, int(rng.integers(4, 25))):
        weight = rng.uniform(0.3, 1.0) / k ** (0.7 if k % 2 else 1.3)
        hum += weight * np.sin(2 * np.pi * base_hz * k * t + rng.uniform(0, 2 * np.pi))
    return _unit(hum) + 10 ** (rng.uniform(-50, -30) / 20) * rng.standard_normal(n_samples)


def hvac(n_samples, rng):
    """Fan / air conditioning: low-passed pink noise, blade-pass tone and harmonics, slow swell."""
    t = np.arange(n_samples) / RATE
    body = sps.sosfilt(sps.butter(2, rng.uniform(400, 3000), fs=RATE, output="sos"), _pink(n_samples, rng))
    blade_hz = rng.uniform(40, 300)             # blades x revolutions per second
    drift = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.02, 0.1) * t)
    phase = 2 * np.pi * blade_hz * np.cumsum(drift) / RATE
    tones = sum(rng.uniform(0.05, 0.3) / k * np.sin(k * phase) for k in range(1, 4))
    swell = 1 + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6.3))
    return (_unit(body) + tones) * swell


def fridge(n_samples, rng):
    """Compressor hum (about 100-120 Hz, rich in harmonics), a rattle, and a faint broadband bed."""
    t = np.arange(n_samples) / RATE
    base_hz = rng.uniform(95, 125)
    hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base_hz * k * t + rng.uniform(0, 6.3))
              for k in range(1, 12))
    rattle_hz = rng.uniform(20, 40)
    rattle = (np.sin(2 * np.pi * rattle_hz * t) > 0.95) * rng.standard_normal(n_samples)
    rattle = sps.sosfilt(sps.butter(2, [800, 4000], "bandpass", fs=RATE, output="sos"), rattle)
    bed = sps.sosfilt(sps.butter(2, 2000, fs=RATE, output="sos"), rng.standard_normal(n_samples))
    return _unit(hum) + rng.uniform(0.0, 0.3) * _unit(rattle) + 0.1 * _unit(bed)


def _struck(n_samples, rng, times_s, band_hz, decay_ms, bed_db=-45):
    """Impulses at ``times_s`` through short resonances (a key, a click), on a faint noise bed."""
    out = 10 ** (bed_db / 20) * rng.standard_normal(n_samples)
    length = int(0.05 * RATE)
    for start_s in times_s:
        start = int(start_s * RATE)
        if start >= n_samples:
            break
        centre = rng.uniform(*band_hz)
        sos = sps.butter(2, [centre / 1.5, min(centre * 1.5, RATE / 2 - 100)], "bandpass", fs=RATE, output="sos")
        burst = sps.sosfilt(sos, rng.standard_normal(length)) * np.exp(-np.arange(length) / (decay_ms * RATE / 1000))
        end = min(n_samples, start + length)
        out[start:end] += rng.uniform(0.3, 1.0) * burst[:end - start] / max(np.abs(burst).max(), 1e-12)
    return out


def typing(n_samples, rng):
    """Keyboard: keys at 3-8 per second in bursts (words) and pauses, some louder (space, enter)."""
    times, now = [], rng.uniform(0, 0.5)
    while now < n_samples / RATE:
        for _ in range(int(rng.integers(3, 9))):            # a word
            times.append(now)
            now += rng.uniform(0.08, 0.25)
        now += rng.uniform(0.2, 1.5)
    return _struck(n_samples, rng, times, (1500, 6000), rng.uniform(2, 6))


def clicks(n_samples, rng):
    """Mouse and switch clicks, pen taps: sparse, sharp, irregular."""
    times = np.cumsum(rng.exponential(rng.uniform(0.3, 1.5), size=200))
    return _struck(n_samples, rng, times, (2000, 9000), rng.uniform(0.5, 2))


def _speaker_speech(speech_by_speaker, rng, n_samples, load):
    """One training speaker's clips joined with short pauses, looped to ``n_samples``."""
    speakers = sorted(speech_by_speaker)
    paths = speech_by_speaker[speakers[rng.integers(len(speakers))]]
    pieces, total = [], 0
    for _ in range(64):
        if total >= n_samples:
            break
        audio = load(paths[rng.integers(len(paths))])
        gap = np.zeros(int(rng.uniform(0.05, 0.5) * RATE))
        pieces += [audio, gap]
        total += audio.size + gap.size
    return np.resize(np.concatenate(pieces), n_samples)


def babble(n_samples, rng, speech_by_speaker, load, music_paths=()):
    """Six to twelve training-split talkers at random levels within 6 dB: a busy room, no one intelligible."""
    voices = [_unit(_speaker_speech(speech_by_speaker, rng, n_samples, load)) * 10 ** (rng.uniform(-6, 0) / 20)
              for _ in range(int(rng.integers(6, 13)))]
    return np.sum(voices, axis=0)


def _room_response(rng):
    """A simple diffuse room tail: exponentially decaying noise, RT60 0.3-0.8 s."""
    rt60_s = rng.uniform(0.3, 0.8)
    n = int(rt60_s * RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
    tail[0] = 3.0                                       # some direct sound through the door
    return tail / np.sqrt(np.sum(tail ** 2))


def tv_radio(n_samples, rng, speech_by_speaker, load, music_paths=()):
    """A TV or radio in another room: a talker (and music, when given) through a wall and a room.

    The wall is a low-pass at 0.8-2.5 kHz; the loudspeaker a 150 Hz - 6 kHz band.
    """
    content = _unit(_speaker_speech(speech_by_speaker, rng, n_samples, load))
    if music_paths and rng.random() < 0.7:
        music = load(music_paths[rng.integers(len(music_paths))])
        if music.size:
            start = int(rng.integers(0, max(1, music.size - n_samples)))
            content = content + 10 ** (rng.uniform(-12, 3) / 20) * _unit(np.resize(music[start:], n_samples))
    speaker_band = sps.butter(2, [150, 6000], "bandpass", fs=RATE, output="sos")
    wall = sps.butter(2, rng.uniform(800, 2500), fs=RATE, output="sos")
    heard = sps.sosfilt(wall, sps.sosfilt(speaker_band, content))
    return sps.fftconvolve(heard, _room_response(rng))[:n_samples]


GENERATORS = {"mains-hum": mains_hum, "hvac": hvac, "fridge": fridge, "typing": typing, "clicks": clicks,
              "babble": babble, "tv-radio": tv_radio}


def synthesise(label, seed, index, seconds, speech_by_speaker=None, load=None, music_paths=()):
    """Clip ``index`` of synthetic class ``label``: float64 mono at 48 kHz, unit RMS."""
    rng = clip_rng(seed, label, index)
    n_samples = int(round(seconds * RATE))
    if label in NEEDS_SPEECH:
        if not speech_by_speaker:
            raise ValueError(f"synthetic {label} needs the speech corpus's training speakers (--speech-corpus)")
        return _unit(GENERATORS[label](n_samples, rng, speech_by_speaker, load, music_paths))
    return _unit(GENERATORS[label](n_samples, rng))
