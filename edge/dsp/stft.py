"""Analysis and synthesis: 960-sample power-complementary window, 480 hop.

The Vorbis-style window satisfies ``w[n]**2 + w[n + 480]**2 == 1``, so using
it at both analysis and synthesis and overlap-adding reconstructs the input
exactly, one hop (10 ms) late.
"""

import numpy as np

from .constants import HOP_SAMPLES, N_BINS, WINDOW_SAMPLES


def vorbis_window() -> np.ndarray:
    """The power-complementary analysis/synthesis window, length 960."""
    n = np.arange(WINDOW_SAMPLES, dtype=np.float64)
    return np.sin(0.5 * np.pi * np.sin(np.pi * (n + 0.5) / WINDOW_SAMPLES) ** 2)


def analyse(samples, window, scratch, out_spectra):
    """Spectra of windowed frames: ``rfft(window * samples)`` along the last axis.

    ``samples`` is (..., 960); ``scratch`` of the same shape may be ``samples``
    itself; ``out_spectra`` is (..., 481) complex.
    """
    np.multiply(samples, window, out=scratch)
    return np.fft.rfft(scratch, axis=-1, out=out_spectra)


def analyse_frames(frames, window):
    """Spectra of stacked frames (n_frames, 960) -> (n_frames, 481); the batch twin of :func:`analyse`."""
    return np.fft.rfft(frames * window, axis=-1)


def synthesise(spectrum, window, overlap_480, scratch_960, out_480):
    """Inverse FFT, window, overlap-add: writes the next 480 output samples.

    ``overlap_480`` carries the second half of the previous frame and is
    updated in place.
    """
    frame = np.fft.irfft(spectrum, n=WINDOW_SAMPLES, out=scratch_960)
    first, second = frame[:HOP_SAMPLES], frame[HOP_SAMPLES:]
    np.multiply(first, window[:HOP_SAMPLES], out=first)
    np.add(overlap_480, first, out=out_480)
    np.multiply(second, window[HOP_SAMPLES:], out=overlap_480)
    return out_480


assert N_BINS == WINDOW_SAMPLES // 2 + 1
