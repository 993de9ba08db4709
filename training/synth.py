"""Noisy-speech mixtures with augmentation, from a corpus :class:`~training.corpus.Split`.

One example: speech from one speaker (clips concatenated to the segment
length), augmented (speed/pitch, spectral tilt, band-limiting, level
-40..-15 dBFS), optionally reverberated, plus noise at -5..+40 dB SNR, or, in
a share of the examples (10% by default), no noise at all: without clean and
nearly clean examples the network learns to shave every band a little, which
costs clean speech about 0.5 PESQ.

**Target choice: early-reflection speech.** With reverberation the target is
the speech convolved with the first 50 ms of the room response (direct path
and early reflections). The network learns to remove late reverberation, which
hurts intelligibility, but not the room's colouring, which it cannot undo
without artefacts.

Noise comes from a recorded file, or from a synthetic family (coloured noise
with a random tilt, hum with harmonics, fan-like noise, modulated noise,
keyboard-like clicks, babble from other training speakers), sometimes both.
"""

import numpy as np
from scipy import signal as sps

from edge.audio import resample
from edge.synthetic import set_level

from .corpus import load_audio

RATE = 48_000
EARLY_REFLECTIONS_MS = 50.0
SNR_RANGE_DB = (-5.0, 40.0)
CLEAN_PROBABILITY = 0.1
LEVEL_RANGE_DBFS = (-40.0, -15.0)
REVERB_PROBABILITY = 0.5
SYNTHETIC_NOISE_PROBABILITY = 0.4
NOISE_FAMILIES = ("coloured", "hum", "fan", "modulated", "clicks", "babble")


class AudioBank:
    """Decoded audio kept in memory (the corpus is small); files that fail are reported once."""

    def __init__(self, say=print):
        self._cache, self.failed, self._say = {}, set(), say

    def get(self, path):
        if path not in self._cache:
            try:
                self._cache[path] = load_audio(path, RATE)
            except Exception as exc:                       # reported and skipped, never silent
                self.failed.add(path)
                self._say(f"skipping {exc}")
                self._cache[path] = None
        return self._cache[path]


def simulated_rooms(count, seed):
    """Room responses from pyroomacoustics shoeboxes (random size and RT60 0.2..0.9 s)."""
    import pyroomacoustics as pra
    rng = np.random.default_rng(seed)
    rooms = []
    for _ in range(count):
        size = rng.uniform([3, 3, 2.4], [10, 8, 4])
        rt60 = rng.uniform(0.2, 0.9)
        absorption, max_order = pra.inverse_sabine(rt60, size)
        room = pra.ShoeBox(size, fs=RATE, materials=pra.Material(absorption), max_order=min(max_order, 20))
        room.add_source(rng.uniform(0.5, size - 0.5))
        room.add_microphone(rng.uniform(0.5, size - 0.5))
        room.compute_rir()
        rooms.append(np.asarray(room.rir[0][0], dtype=np.float64))
    return rooms


def _tilt(x, rng, max_db_per_octave=3.0):
    """Random spectral tilt, applied in the frequency domain."""
    spectrum = np.fft.rfft(x)
    freqs = np.maximum(np.fft.rfftfreq(x.size, 1 / RATE), 100.0)
    slope = rng.uniform(-max_db_per_octave, max_db_per_octave)
    spectrum *= 10 ** (slope * np.log2(freqs / 1000.0) / 20)
    return np.fft.irfft(spectrum, x.size)


def _speech(split, rng, n_samples, bank):
    speakers = list(split.speech)
    paths = split.speech[speakers[rng.integers(len(speakers))]]
    pieces, total = [], 0
    for _ in range(64):
        if total >= n_samples:
            break
        audio = bank.get(paths[rng.integers(len(paths))])
        if audio is None:
            continue
        gap = np.zeros(int(rng.uniform(0.0, 0.4) * RATE))
        pieces += [gap, audio]
        total += gap.size + audio.size
    if total == 0:
        raise RuntimeError("no readable speech for this speaker")
    speech = np.concatenate(pieces)
    if rng.random() < 0.7:                                 # speed and pitch together
        speech = resample(speech, int(RATE * rng.uniform(0.9, 1.1)), RATE)
    speech = np.resize(speech, n_samples) if speech.size < n_samples else speech[:n_samples]
    speech = _tilt(speech, rng)
    if rng.random() < 0.2:                                 # band-limited source
        speech = sps.sosfilt(sps.butter(6, rng.uniform(3500, 16000), fs=RATE, output="sos"), speech)
    return speech


def synthetic_noise(family, n_samples, rng, split=None, bank=None):
    """One of the synthetic noise families (see module doc)."""
    white = rng.standard_normal(n_samples)
    if family == "coloured":
        return _tilt(white, rng, max_db_per_octave=6.0)
    if family == "hum":
        t = np.arange(n_samples) / RATE
        base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        hum = sum(rng.uniform(0.1, 1) * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
                  for k in range(1, int(rng.integers(3, 20))))
        return hum + 0.05 * np.std(hum) * white
    if family == "fan":
        low = sps.sosfilt(sps.butter(2, rng.uniform(300, 2000), fs=RATE, output="sos"), white)
        t = np.arange(n_samples) / RATE
        blade = np.sin(2 * np.pi * rng.uniform(80, 400) * t)
        return low / np.std(low) + 0.2 * blade
    if family == "modulated":
        t = np.arange(n_samples) / RATE
        envelope = 1 + 0.9 * np.sin(2 * np.pi * rng.uniform(0.2, 6) * t)
        return _tilt(white, rng) * envelope
    if family == "clicks":
        clicks = np.zeros(n_samples)
        hits = rng.integers(0, n_samples, size=int(rng.uniform(2, 12) * n_samples / RATE))
        clicks[hits] = rng.uniform(0.3, 1.0, size=hits.size) * rng.choice([-1, 1], size=hits.size)
        ring = sps.sosfilt(sps.butter(2, [1500, 8000], "bandpass", fs=RATE, output="sos"),
                           np.exp(-np.arange(400) / 60.0) * rng.standard_normal(400))
        return np.convolve(clicks, ring)[:n_samples] + 0.01 * white
    if family == "babble":
        voices = [_speech(split, rng, n_samples, bank) for _ in range(int(rng.integers(3, 7)))]
        return np.sum([set_level(v, -30) for v in voices], axis=0)
    raise ValueError(f"unknown noise family {family!r}; choose from {', '.join(NOISE_FAMILIES)}")


def _recorded_noise(split, rng, n_samples, bank):
    for _ in range(8):
        audio = bank.get(split.noise[rng.integers(len(split.noise))])
        if audio is not None and np.any(audio):
            if audio.size < n_samples:
                audio = np.resize(audio, n_samples)
            start = rng.integers(0, audio.size - n_samples + 1)
            return audio[start:start + n_samples]
    return synthetic_noise("coloured", n_samples, rng)


def _room(split, rng, rooms, bank):
    if rooms and (not split.rir or rng.random() < 0.6):
        return rooms[rng.integers(len(rooms))]
    response = bank.get(split.rir[rng.integers(len(split.rir))]) if split.rir else None
    return response if response is not None else (rooms[0] if rooms else None)


def make_example(split, rng, seconds, bank, rooms=(), snr_range_db=SNR_RANGE_DB,
                 clean_probability=CLEAN_PROBABILITY):
    """One ``(target, noisy)`` pair, float64 at 48 kHz.

    ``snr_range_db``: the noise's SNR is drawn uniformly from it;
    ``clean_probability``: share of examples with no noise added (the input
    is then the, possibly reverberant, speech alone).
    """
    n_samples = int(seconds * RATE)
    speech = _speech(split, rng, n_samples, bank)
    target = reverberant = speech
    if rng.random() < REVERB_PROBABILITY:
        response = _room(split, rng, rooms, bank)
        if response is not None:
            direct = int(np.argmax(np.abs(response)))
            response = response[direct:] / np.abs(response[direct])
            early = response[:int(EARLY_REFLECTIONS_MS * RATE / 1000)]
            reverberant = sps.fftconvolve(speech, response)[:n_samples]
            target = sps.fftconvolve(speech, early)[:n_samples]
    level = 10 ** (rng.uniform(*LEVEL_RANGE_DBFS) / 20) / max(np.sqrt(np.mean(target ** 2)), 1e-9)
    target, reverberant = target * level, reverberant * level
    if rng.random() < SYNTHETIC_NOISE_PROBABILITY:
        noise = synthetic_noise(NOISE_FAMILIES[rng.integers(len(NOISE_FAMILIES))], n_samples, rng, split, bank)
    else:
        noise = _recorded_noise(split, rng, n_samples, bank)
    if rng.random() < 0.2:
        noise = noise / max(np.std(noise), 1e-9) + 0.5 * synthetic_noise("coloured", n_samples, rng)
    snr_db = rng.uniform(*snr_range_db)
    noise_gain = np.sqrt(np.sum(target ** 2) / max(np.sum(noise ** 2), 1e-20) / 10 ** (snr_db / 10))
    if clean_probability > 0 and rng.random() < clean_probability:    # 0 keeps older caches' streams
        noise_gain = 0.0
    noisy = reverberant + noise_gain * noise
    peak = np.abs(noisy).max()
    if peak > 0.99:                                           # no clipping in the data
        target, noisy = target * 0.99 / peak, noisy * 0.99 / peak
    return target, noisy
