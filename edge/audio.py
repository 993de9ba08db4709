"""WAV files in and out, and conversion to the 48 kHz mono the DSP runs at.

Only numpy and scipy are used, so this works on the device as well.
"""

import io
import os
from math import gcd

import numpy as np
from scipy import signal as sps
from scipy.io import wavfile

from .atomic import atomic_write
from .dsp.constants import SAMPLE_RATE_HZ


class AudioFileError(Exception):
    """A WAV file could not be read or written; the message says what to do."""


def read_wav(path):
    """Read a WAV file as float64 in [-1, 1], shape (n_samples, n_channels), and its rate."""
    try:
        rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise AudioFileError(f"{path}: not a readable WAV file ({exc}); "
                             "convert it first, e.g. `sox in.xxx -b 16 out.wav`") from None
    if data.dtype == np.uint8:
        samples = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    else:
        samples = data.astype(np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no samples")
    return samples, int(rate)


def to_dsp_format(samples, rate):
    """Mix to mono and resample to 48 kHz. Returns ``(mono, notes)``.

    ``notes`` lists, in words, every conversion made, so the caller can tell
    the user (an empty list means the input was already 48 kHz mono).
    """
    notes = []
    if samples.shape[1] > 1:
        notes.append(f"mixed {samples.shape[1]} channels down to mono (mean)")
        mono = samples.mean(axis=1)
    else:
        mono = samples[:, 0]
    if rate != SAMPLE_RATE_HZ:
        notes.append(f"resampled {rate} Hz -> {SAMPLE_RATE_HZ} Hz")
        mono = resample(mono, rate, SAMPLE_RATE_HZ)
    return mono, notes


def resample(samples, rate_from, rate_to):
    """Polyphase resampling; the result has round(n * rate_to / rate_from) samples."""
    if rate_from == rate_to:
        return samples
    common = gcd(int(rate_from), int(rate_to))
    out = sps.resample_poly(samples, rate_to // common, rate_from // common)
    return out[:int(round(samples.shape[0] * rate_to / rate_from))]


def write_wav(path, samples, rate):
    """Write mono float samples as 16-bit PCM, atomically. Returns the number of clipped samples.

    The file appears complete or not at all: it is written to a temporary
    file beside the target, then renamed.
    """
    samples = np.asarray(samples, dtype=np.float64)
    clipped = int(np.count_nonzero(np.abs(samples) > 1.0))
    pcm = np.round(np.clip(samples, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AudioFileError(f"{path}: the folder {directory} does not exist")
    buffer = io.BytesIO()
    wavfile.write(buffer, int(rate), pcm)
    atomic_write(path, buffer.getvalue())
    return clipped
