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


def analyse(samples_960, window, scratch_960, out_spectrum):
    """Spectrum of one windowed frame: ``rfft(window * samples)`` into ``out_spectrum`` (481 complex)."""
    np.multiply(samples_960, window, out=scratch_960)
    return np.fft.rfft(scratch_960, out=out_spectrum)


def analyse_frames(frames, window):
    """Spectra of stacked frames (n_frames, 960) -> (n_frames, 481); the batch twin of :func:`analyse`."""
    return np.fft.rfft(frames * window, axis=-1)


def synthesise(spectrum, window, overlap_480, scratch_960, out_480):
    """Inverse FFT, window, overlap-add: writes the next 480 output samples.

    ``overlap_480`` carries the second half of the previous frame and is
    updated in place.
    """
    np.fft.irfft(spectrum, n=WINDOW_SAMPLES, out=scratch_960)
    np.multiply(scratch_960, window, out=scratch_960)
    np.add(overlap_480, scratch_960[:HOP_SAMPLES], out=out_480)
    overlap_480[:] = scratch_960[HOP_SAMPLES:]
    return out_480


def frame_signal(signal, n_frames, history_samples):
    """Rows of ``signal`` as the streaming history would hold them.

    Row ``t`` is the ``WINDOW_SAMPLES`` ending at the end of input frame ``t``
    (zeros before the start), i.e. what :func:`analyse` sees for frame ``t``.
    ``history_samples`` extra zeros are kept in front so delayed windows can be
    gathered from the same padded array; returns ``(padded, starts)`` with the
    start index of each frame's window in ``padded``.
    """
    padded = np.concatenate([np.zeros(history_samples), signal[: n_frames * HOP_SAMPLES]])
    ends = history_samples + HOP_SAMPLES * (np.arange(n_frames) + 1)
    return padded, ends - WINDOW_SAMPLES


assert N_BINS == WINDOW_SAMPLES // 2 + 1
