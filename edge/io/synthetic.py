"""Generated test audio: speech-like signals and noises, no recordings needed.

The built-in demo, the tests and the benchmarks use these so that a fresh
clone needs no data files. The "speech" is a source-filter model: a glottal
pulse train with a moving pitch and a spectral tilt, shaped by moving vowel
formants and a syllable envelope, with fricative noise bursts between
syllables. It is periodic where speech is, with the spectral shape and level
dynamics of speech, which is what the DSP (pitch, bands, comb filter) cares
about.
"""

import numpy as np

from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.dsp.iir import butter2_highpass, lfilter

#: First three formants (Hz) of a few vowels.
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                    [530, 1840, 2480], [570, 840, 2410], [440, 1020, 2240]], dtype=float)


def _resonator(freq_hz, bandwidth_hz, rate):
    radius = np.exp(-np.pi * bandwidth_hz / rate)
    theta = 2 * np.pi * freq_hz / rate
    a = [1.0, -2 * radius * np.cos(theta), radius ** 2]
    return [1.0 - radius], a


def speech_like(seconds, seed=0, rate=SAMPLE_RATE_HZ, f0_range_hz=(90.0, 240.0), level_dbfs=-26.0):
    """A speech-like signal: voiced syllables with moving pitch and formants, fricatives, pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    position = int(0.1 * rate)
    while position < n:
        length = int(rng.uniform(0.12, 0.35) * rate)
        stop = min(n, position + length)
        t = np.arange(stop - position) / rate
        f0 = rng.uniform(*f0_range_hz) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = np.cumsum(f0) / rate
        pulses = np.diff(np.floor(phase), prepend=np.floor(phase[0])).astype(float)
        source = lfilter([1.0], [1.0, -0.97], pulses)            # glottal tilt
        vowel = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15)
        voiced = source
        for formant in vowel:
            b, a = _resonator(formant, 80 + 0.05 * formant, rate)
            voiced = lfilter(b, a, voiced)
        envelope = np.sin(np.pi * np.arange(stop - position) / (stop - position)) ** 0.6
        out[position:stop] += voiced * envelope
        position = stop
        if rng.random() < 0.35:                                       # fricative
            length = int(rng.uniform(0.05, 0.12) * rate)
            stop = min(n, position + length)
            hiss = lfilter(*butter2_highpass(3500.0, rate), rng.standard_normal(stop - position))
            out[position:stop] += 0.1 * hiss * np.hanning(stop - position)
            position = stop
        position += int(rng.uniform(0.03, 0.25) * rate)               # pause
    out *= level_gain(out, level_dbfs)
    return out


def noise(kind, seconds, seed=0, rate=SAMPLE_RATE_HZ):
    """Generated noise: 'white', 'pink', 'hum' (50 Hz and harmonics + pink floor), or 'babble-like'."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
        return np.fft.irfft(spectrum / np.sqrt(freqs), n)
    if kind == "hum":
        t = np.arange(n) / rate
        hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
        floor = noise("pink", seconds, seed + 1, rate)
        return hum / np.std(hum) + 0.3 * floor / np.std(floor)
    if kind == "babble-like":
        babble = speech_like(seconds, seed + 100, rate)
        for talker in range(1, 6):                    # summed one by one: six at once would be the demo's peak memory
            babble += speech_like(seconds, seed + 100 + talker, rate)
        return babble
    raise ValueError(f"unknown noise kind {kind!r}; choose white, pink, hum or babble-like")


def level_gain(samples, level_dbfs):
    """The factor that brings ``samples`` to an RMS level in dBFS over their non-silent part (1 if silent)."""
    blocks = [samples[start:start + _BLOCK] for start in range(0, samples.size, _BLOCK)]
    peak = max((float(np.max(np.abs(block))) for block in blocks), default=0.0)
    if peak == 0.0:
        return 1.0
    energy, count = 0.0, 0
    for block in blocks:                                  # 1 s at a time: no signal-sized temporaries
        active = block[np.abs(block) > 1e-4 * peak]
        energy += float(np.dot(active, active))
        count += active.size
    return 10 ** (level_dbfs / 20) / np.sqrt(energy / count)


#: Samples per block of :func:`level_gain` (bounded temporaries: the demo's peak memory counts).
_BLOCK = 48_000


def set_level(samples, level_dbfs):
    """Scale to an RMS level in dBFS (over the non-silent part)."""
    return samples * level_gain(samples, level_dbfs)


def mix_at_snr(clean, noise_samples, snr_db):
    """``clean + noise`` with the noise scaled to the given SNR (over whole signals)."""
    noise_samples = noise_samples[:clean.size]
    gain = np.sqrt(np.dot(clean, clean) / (np.dot(noise_samples, noise_samples) * 10 ** (snr_db / 10)))
    mixture = noise_samples * gain
    mixture += clean
    return mixture


def harmonic_tone(f0_hz, seconds, rate=SAMPLE_RATE_HZ, n_harmonics=None, seed=0):
    """A stationary harmonic signal with 1/k amplitudes and random phases (for pitch tests)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    n_harmonics = n_harmonics or int(min(40, 8000 // f0_hz))
    return sum(np.sin(2 * np.pi * f0_hz * k * t + rng.uniform(0, 2 * np.pi)) / k
               for k in range(1, n_harmonics + 1))


#: The built-in demo input of both demos (`oracle --demo` and `run --demo`, which scripts/demo runs).
DEMO_SECONDS = 10.0
DEMO_NOISE = "babble-like"
DEMO_SNR_DB = 5.0


def demo_mixture(seconds=DEMO_SECONDS):
    """``(clean, noisy)``: generated speech in babble at :data:`DEMO_SNR_DB`, the same in every demo."""
    clean = speech_like(seconds, seed=1)
    return clean, mix_at_snr(clean, noise(DEMO_NOISE, seconds, seed=2), DEMO_SNR_DB)


def describe_demo(seconds=DEMO_SECONDS):
    return f"{seconds:g} s of generated speech in {DEMO_NOISE} noise at {DEMO_SNR_DB:g} dB SNR"


#: The echo demo (`run --demo --with-far-end`): the loudspeaker 6 dB louder at the microphone than the talker,
#: 30 ms of system delay, a 60 ms decaying room tail: a smart speaker on a table.
DEMO_ECHO_OVER_TALKER_DB = 6.0
DEMO_ECHO_DELAY_MS = 30.0
DEMO_ECHO_TAIL_MS = 60.0


def demo_far_end(seconds=DEMO_SECONDS, rate=SAMPLE_RATE_HZ):
    """``(far, echo)``: what the demo's loudspeaker plays (another generated talker) and its echo at the
    microphone, the same in every demo; ``echo`` is :data:`DEMO_ECHO_OVER_TALKER_DB` above the demo's talker."""
    far = speech_like(seconds, seed=11, f0_range_hz=(160.0, 260.0), level_dbfs=-20.0, rate=rate)
    tail = int(DEMO_ECHO_TAIL_MS / 1000 * rate)
    path = np.random.default_rng(12).standard_normal(tail) * 10 ** (-3 * np.arange(tail) / tail)  # -60 dB at the end
    path[0] = 4.0                                                       # the direct path dominates
    path = np.concatenate([np.zeros(int(DEMO_ECHO_DELAY_MS / 1000 * rate)), path])
    echo = np.convolve(far, path)[:far.size]
    talker = speech_like(seconds, seed=1, rate=rate)
    gain = np.sqrt(np.mean(talker ** 2) / max(np.mean(echo ** 2), 1e-20)) * 10 ** (DEMO_ECHO_OVER_TALKER_DB / 20)
    return far, echo * gain


def describe_far_end_demo():
    return (f"a second generated talker on the loudspeaker, its echo {DEMO_ECHO_OVER_TALKER_DB:g} dB above the "
            f"talker after {DEMO_ECHO_DELAY_MS:g} ms")
