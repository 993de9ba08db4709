"""Noisy-speech mixtures that look like what real microphones deliver, from a corpus :class:`~training.corpus.Split`.

One example, stage by stage (:func:`make_example`):

1. **Speech**: a speaker drawn balanced by source, then by speaker
   (:func:`training.corpus.pick_speaker`); clips concatenated with pauses to
   the segment length; speed/pitch and spectral tilt.
2. **Room**: in half the examples, a recorded or simulated room response.
   The target is the speech through its first 50 ms only (direct path and
   early reflections): the network learns to remove late reverberation, which
   hurts intelligibility, not the room's colouring, which it cannot undo
   without artefacts.
3. **Noise** at -5..+40 dB SNR (none in a share of examples: without clean
   and nearly clean examples the network learns to shave every band): a
   recorded file, a synthetic family (coloured, hum, fan, modulated, clicks,
   traffic, tonal, impacts), a competing talker, or babble from 3-8 other
   speakers of any language; sometimes two at once, each with its own EQ.
4. **Channel**, applied to target and input alike (the microphone colours
   the talker too): random parametric EQ and low cut, and a band limit of
   4, 8, 11.025, 16 or 20 kHz in half the examples (phone codecs, cheap
   microphones, resampled streams).
5. **Level**: the target speech at -45..-6 dBFS RMS (then lowered if the
   input's peak would pass full scale; a clipped example is clipped first).
6. **Microphone self-noise**: white or pink noise at -90..-60 dBFS on the
   input in almost every example. Real microphones never deliver digital
   silence; the corpus's noise-gated pauses would otherwise teach the network
   states it never meets on a device, and make its output depend on inputs
   nobody can hear.
7. **Converter**: DC offset, mild clipping, and 16- or 24-bit quantisation
   of the input only.
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.io.synthetic import set_level
from edge.io.wav import resample

from .corpus import CorpusError, load_audio, pick_speaker

RATE = SAMPLE_RATE_HZ                  # mixtures are made at the DSP's rate
EARLY_REFLECTIONS_MS = 50.0
SNR_RANGE_DB = (-5.0, 40.0)
CLEAN_PROBABILITY = 0.1
NOISE_FAMILIES = ("coloured", "hum", "fan", "modulated", "clicks", "traffic", "tonal", "impacts",
                  "talker", "babble")


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of the stages above; the defaults are what the shipped model saw."""

    level_dbfs: tuple = (-45.0, -6.0)
    reverb_probability: float = 0.5
    synthetic_noise_probability: float = 0.45
    second_noise_probability: float = 0.25
    noise_eq_probability: float = 0.5
    self_noise_probability: float = 0.9
    self_noise_dbfs: tuple = (-90.0, -60.0)
    eq_probability: float = 0.6
    tilt_probability: float = 0.5
    low_cut_probability: float = 0.3
    band_limit_probability: float = 0.5
    band_limits_hz: tuple = (4_000.0, 8_000.0, 11_025.0, 16_000.0, 20_000.0)
    dc_probability: float = 0.15
    clip_probability: float = 0.08
    bits_choices: tuple = (16, 24, None)          # None: float input
    bits_probabilities: tuple = (0.5, 0.2, 0.3)


DEFAULT_AUGMENTATION = Augmentation()


class AudioBank:
    """Decoded audio (float32, 48 kHz); files that fail are reported once.

    Speech is kept in a bounded least-recently-used pool: a 14 h corpus
    decoded at 48 kHz would not fit in memory once per worker, and decoding
    a short FLAC again costs a few milliseconds. Noise and room responses
    (``pin=True``) stay: they are few, long, and slow to resample (a 5-minute
    44.1 kHz track takes about a second), and they were half of the
    synthesis time when evicted.
    """

    def __init__(self, say=print, max_bytes=512 << 20):
        self._cache, self._bytes, self.max_bytes = OrderedDict(), 0, max_bytes
        self._pinned = {}
        self.failed, self._say = set(), say

    def __len__(self):
        """Decoded files held (pinned and pooled)."""
        return len(self._pinned) + len(self._cache)

    def get(self, path, pin=False):
        if path in self._pinned:
            return self._pinned[path]
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if path in self.failed:
            return None
        try:
            audio = load_audio(path, RATE).astype(np.float32)
        except Exception as exc:                       # reported and skipped, never silent
            self.failed.add(path)
            self._say(f"skipping {exc}")
            return None
        if pin:
            self._pinned[path] = audio
            return audio
        self._cache[path] = audio
        self._bytes += audio.nbytes
        while self._bytes > self.max_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= dropped.nbytes
        return audio


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


# --- channel and converter: pure functions of a signal -----------------------------------------

def tilt(x, rng, max_db_per_octave=3.0):
    """Random spectral tilt around 1 kHz, applied in the frequency domain."""
    spectrum = np.fft.rfft(x)
    freqs = np.maximum(np.fft.rfftfreq(x.size, 1 / RATE), 100.0)
    spectrum *= 10 ** (rng.uniform(-max_db_per_octave, max_db_per_octave) * np.log2(freqs / 1000.0) / 20)
    return np.fft.irfft(spectrum, x.size)


def band_limit(x, cutoff_hz):
    """Remove everything at and above ``cutoff_hz`` (a brick wall in the frequency domain, zero phase)."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / RATE) >= cutoff_hz] = 0.0
    return np.fft.irfft(spectrum, x.size)


def peaking_eq_sos(rng, n_filters):
    """Second-order sections of ``n_filters`` random peaking filters (100 Hz..10 kHz, +-8 dB, Q 0.5..2)."""
    sections = []
    for _ in range(n_filters):
        freq = np.exp(rng.uniform(np.log(100.0), np.log(10_000.0)))
        gain = 10 ** (rng.uniform(-8.0, 8.0) / 40)            # amplitude A of the RBJ cookbook
        w0 = 2 * np.pi * freq / RATE
        alpha = np.sin(w0) / (2 * rng.uniform(0.5, 2.0))
        b = [1 + alpha * gain, -2 * np.cos(w0), 1 - alpha * gain]
        a = [1 + alpha / gain, -2 * np.cos(w0), 1 - alpha / gain]
        sections.append(np.concatenate([np.divide(b, a[0]), np.divide(a, a[0])]))
    return np.array(sections)


@dataclass(frozen=True)
class Channel:
    """One microphone/codec path, applied alike to the target and the input."""

    eq_sos: np.ndarray = None       # peaking filters and/or low cut, or None
    tilt_db_per_octave: float = 0.0
    cutoff_hz: float = None         # band limit, or None

    def apply(self, x):
        if self.eq_sos is not None:
            x = sps.sosfilt(self.eq_sos, x)
        if self.tilt_db_per_octave:
            spectrum = np.fft.rfft(x)
            freqs = np.maximum(np.fft.rfftfreq(x.size, 1 / RATE), 100.0)
            spectrum *= 10 ** (self.tilt_db_per_octave * np.log2(freqs / 1000.0) / 20)
            x = np.fft.irfft(spectrum, x.size)
        if self.cutoff_hz is not None:
            x = band_limit(x, self.cutoff_hz)
        return x


def random_channel(rng, augmentation=DEFAULT_AUGMENTATION):
    sections = []
    if rng.random() < augmentation.eq_probability:
        sections.append(peaking_eq_sos(rng, int(rng.integers(1, 4))))
    if rng.random() < augmentation.low_cut_probability:
        sections.append(sps.butter(2, rng.uniform(50.0, 300.0), "highpass", fs=RATE, output="sos"))
    cutoff = None
    if rng.random() < augmentation.band_limit_probability:
        cutoff = float(rng.choice(augmentation.band_limits_hz))
    return Channel(np.concatenate(sections) if sections else None,
                   rng.uniform(-2.0, 2.0) if rng.random() < augmentation.tilt_probability else 0.0, cutoff)


def self_noise(n_samples, level_dbfs, rng):
    """Microphone/preamp noise floor: white or pink, at ``level_dbfs`` RMS."""
    white = rng.standard_normal(n_samples)
    if rng.random() < 0.5:
        white = sps.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                            [1, -2.494956002, 2.017265875, -0.522189400], white)     # pink (Kellet)
    return white * (10 ** (level_dbfs / 20) / max(np.sqrt(np.mean(white ** 2)), 1e-12))


def quantise(x, bits):
    """Round to a ``bits``-bit integer grid in [-1, 1) (None leaves the float untouched)."""
    if bits is None:
        return x
    step = 2.0 ** (1 - bits)
    return np.clip(np.round(x / step) * step, -1.0, 1.0 - step)


def hard_clip(x, rng):
    """Mild clipping: the loudest 0.05-1 % of samples flattened."""
    threshold = np.quantile(np.abs(x), 1.0 - rng.uniform(0.0005, 0.01))
    return np.clip(x, -threshold, threshold), threshold


# --- speech and noise ------------------------------------------------------------------------

def speech_signal(split, rng, n_samples, bank, speaker=None):
    """Speech of one speaker (balanced pick unless given), clips joined by pauses, speed and tilt varied."""
    speaker = speaker or pick_speaker(split, rng)
    paths = split.speech[speaker]
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
        raise CorpusError(f"no readable speech for speaker {speaker}: every file tried was unreadable; "
                          "check the corpus")
    speech = np.concatenate(pieces).astype(np.float64)
    if rng.random() < 0.7:              # speed and pitch together, by m/40 (small ratios resample fast)
        speech = resample(speech, RATE // 40 * int(rng.integers(36, 45)), RATE)
    speech = np.resize(speech, n_samples) if speech.size < n_samples else speech[:n_samples]
    return tilt(speech, rng)


def synthetic_noise(family, n_samples, rng, split=None, bank=None):
    """One of the synthetic noise families of :data:`NOISE_FAMILIES`."""
    white = rng.standard_normal(n_samples)
    t = np.arange(n_samples) / RATE
    if family == "coloured":
        return tilt(white, rng, max_db_per_octave=6.0)
    if family == "hum":
        base = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        hum = sum(rng.uniform(0.1, 1) * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
                  for k in range(1, int(rng.integers(3, 20))))
        return hum + 0.05 * np.std(hum) * white
    if family == "fan":
        low = sps.sosfilt(sps.butter(2, rng.uniform(300, 2000), fs=RATE, output="sos"), white)
        blade = np.sin(2 * np.pi * rng.uniform(80, 400) * t)
        return low / np.std(low) + 0.2 * blade
    if family == "modulated":
        envelope = 1 + 0.9 * np.sin(2 * np.pi * rng.uniform(0.2, 6) * t)
        return tilt(white, rng) * envelope
    if family == "clicks":
        clicks = np.zeros(n_samples)
        hits = rng.integers(0, n_samples, size=int(rng.uniform(2, 12) * n_samples / RATE))
        clicks[hits] = rng.uniform(0.3, 1.0, size=hits.size) * rng.choice([-1, 1], size=hits.size)
        ring = sps.sosfilt(sps.butter(2, [1500, 8000], "bandpass", fs=RATE, output="sos"),
                           np.exp(-np.arange(400) / 60.0) * rng.standard_normal(400))
        return np.convolve(clicks, ring)[:n_samples] + 0.01 * white
    if family == "traffic":                                # low rumble that swells as vehicles pass
        rumble = sps.sosfilt(sps.butter(2, rng.uniform(150, 700), fs=RATE, output="sos"), np.cumsum(white))
        rumble -= sps.sosfilt(sps.butter(1, 20, fs=RATE, output="sos"), rumble)
        swell = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 6.3))
        return rumble / max(np.std(rumble), 1e-12) * swell + 0.05 * tilt(white, rng, 6.0)
    if family == "tonal":                                  # beeps, alarms, ringing
        tone = np.zeros(n_samples)
        period = int(rng.uniform(0.2, 1.2) * RATE)
        on = int(period * rng.uniform(0.2, 0.8))
        freq = rng.uniform(400, 4000)
        gate = (np.arange(n_samples) % period) < on
        for k in (1, 2, 3):
            tone += rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * freq * k * t)
        return tone * gate + 0.02 * white
    if family == "impacts":                                # doors, steps, dishes: decaying broadband hits
        out = 0.01 * white
        for start in rng.integers(0, n_samples, size=int(rng.uniform(1, 6) * n_samples / RATE)):
            length = min(n_samples - start, int(rng.uniform(0.05, 0.4) * RATE))
            decay = np.exp(-np.arange(length) / (rng.uniform(0.01, 0.08) * RATE))
            burst = sps.sosfilt(sps.butter(2, rng.uniform(300, 6000), fs=RATE, output="sos"),
                                rng.standard_normal(length))
            out[start:start + length] += rng.uniform(0.3, 1.0) * burst * decay
        return out
    if family == "talker":
        return speech_signal(split, rng, n_samples, bank)
    if family == "babble":
        voices = [speech_signal(split, rng, n_samples, bank) for _ in range(int(rng.integers(3, 9)))]
        return np.sum([set_level(v, -30) for v in voices], axis=0)
    raise ValueError(f"unknown noise family {family!r}; choose from {', '.join(NOISE_FAMILIES)}")


def recorded_noise(split, rng, n_samples, bank):
    """A random stretch of a recorded noise file of the split (looped if short)."""
    classes = sorted(split.noise_classes)
    for _ in range(8):
        if classes:         # a noise corpus: a class evenly, then one of its files (rain must not drown typing)
            files = split.noise_classes[classes[rng.integers(len(classes))]]
            path = files[rng.integers(len(files))]
        else:
            path = split.noise[rng.integers(len(split.noise))]
        # Pinned: a few long, slow-to-resample files. A noise corpus holds thousands of 10 s, 48 kHz
        # segments (gigabytes decoded): those share the bounded pool with speech.
        audio = bank.get(path, pin=not classes)
        if audio is not None and np.any(audio):
            if audio.size < n_samples:
                audio = np.resize(audio, n_samples)
            start = rng.integers(0, audio.size - n_samples + 1)
            return audio[start:start + n_samples].astype(np.float64)
    return synthetic_noise("coloured", n_samples, rng)


def _one_noise(split, rng, n_samples, bank, augmentation):
    if rng.random() < augmentation.synthetic_noise_probability:
        noise = synthetic_noise(NOISE_FAMILIES[rng.integers(len(NOISE_FAMILIES))], n_samples, rng, split, bank)
    else:
        noise = recorded_noise(split, rng, n_samples, bank)
    if rng.random() < augmentation.noise_eq_probability:
        noise = sps.sosfilt(peaking_eq_sos(rng, 2), tilt(noise, rng, 4.0))
    return noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)


def noise_signal(split, rng, n_samples, bank, augmentation=DEFAULT_AUGMENTATION):
    """Unit-RMS noise: one source, or in a share of examples two at a random balance."""
    noise = _one_noise(split, rng, n_samples, bank, augmentation)
    if rng.random() < augmentation.second_noise_probability:
        noise = noise + 10 ** (rng.uniform(-15, 0) / 20) * _one_noise(split, rng, n_samples, bank, augmentation)
    return noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)


def _room(split, rng, rooms, bank):
    if rooms and (not split.rir or rng.random() < 0.6):
        return rooms[rng.integers(len(rooms))]
    response = bank.get(split.rir[rng.integers(len(split.rir))], pin=True) if split.rir else None
    return np.asarray(response, np.float64) if response is not None else (rooms[0] if rooms else None)


def reverberate(speech, response):
    """``(early-reflection target, fully reverberant speech)`` through one room response."""
    direct = int(np.argmax(np.abs(response)))
    response = response[direct:] / np.abs(response[direct])
    early = response[:int(EARLY_REFLECTIONS_MS * RATE / 1000)]
    return sps.fftconvolve(speech, early)[:speech.size], sps.fftconvolve(speech, response)[:speech.size]


def make_example(split, rng, seconds, bank, rooms=(), snr_range_db=SNR_RANGE_DB,
                 clean_probability=CLEAN_PROBABILITY, augmentation=DEFAULT_AUGMENTATION):
    """One ``(target, noisy)`` pair, float64 at 48 kHz (see the module doc for the stages).

    ``snr_range_db``: the noise's SNR is drawn uniformly from it;
    ``clean_probability``: share of examples with no noise added (the input is
    then the, possibly reverberant, speech with only the microphone's floor).
    """
    n_samples = int(seconds * RATE)
    speech = speech_signal(split, rng, n_samples, bank)
    target = reverberant = speech
    if rng.random() < augmentation.reverb_probability:
        response = _room(split, rng, rooms, bank)
        if response is not None:
            target, reverberant = reverberate(speech, response)
    noisy = reverberant
    if not rng.random() < clean_probability:
        snr_db = rng.uniform(*snr_range_db)
        noise = noise_signal(split, rng, n_samples, bank, augmentation)
        noisy = noisy + noise * np.sqrt(np.mean(target ** 2) / 10 ** (snr_db / 10))
    channel = random_channel(rng, augmentation)
    target, noisy = channel.apply(target), channel.apply(noisy)
    level = 10 ** (rng.uniform(*augmentation.level_dbfs) / 20) / max(np.sqrt(np.mean(target ** 2)), 1e-12)
    target, noisy = target * level, noisy * level
    if rng.random() < augmentation.clip_probability:
        noisy, _ = hard_clip(noisy, rng)
    peak = np.abs(noisy).max()
    if peak > 0.99:                                        # a converter does not wrap: keep the peak in range
        target, noisy = target * 0.99 / peak, noisy * 0.99 / peak
    if rng.random() < augmentation.self_noise_probability:
        noisy = noisy + self_noise(n_samples, rng.uniform(*augmentation.self_noise_dbfs), rng)
    if rng.random() < augmentation.dc_probability:
        noisy = noisy + rng.uniform(-0.01, 0.01)
    bits = augmentation.bits_choices[rng.choice(len(augmentation.bits_choices),
                                                p=augmentation.bits_probabilities)]
    return target, quantise(np.clip(noisy, -1.0, 1.0), bits)
