"""Objective measures that need only numpy: SNR, SI-SDR, and output alignment."""

import numpy as np


def snr_db(reference, estimate):
    """Signal-to-noise ratio of ``estimate`` against ``reference``, in dB."""
    reference, estimate = np.asarray(reference, float), np.asarray(estimate, float)
    error = np.sum((reference - estimate) ** 2)
    return float(10.0 * np.log10(np.sum(reference ** 2) / max(error, 1e-30)))


def si_sdr_db(reference, estimate):
    """Scale-invariant signal-to-distortion ratio, in dB (Le Roux et al. 2019)."""
    reference = np.asarray(reference, float) - np.mean(reference)
    estimate = np.asarray(estimate, float) - np.mean(estimate)
    scale = np.dot(estimate, reference) / max(np.dot(reference, reference), 1e-30)
    target = scale * reference
    return float(10.0 * np.log10(np.sum(target ** 2) / max(np.sum((estimate - target) ** 2), 1e-30)))


def find_lag(reference, estimate, max_lag):
    """Samples by which ``estimate`` lags ``reference`` (in -max_lag..max_lag), by FFT cross-correlation."""
    reference, estimate = np.asarray(reference, float), np.asarray(estimate, float)
    n = reference.size + estimate.size
    size = 1 << (n - 1).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(estimate, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(xcorr[lags])])


def align(reference, estimate, max_lag, lag=None):
    """Shift ``estimate`` so it lines up with ``reference``; returns it padded/cut to the same length, and the lag
    (``lag``: this one, known beforehand, instead of the one the cross-correlation finds)."""
    lag = find_lag(reference, estimate, max_lag) if lag is None else int(lag)
    shifted = np.zeros_like(np.asarray(reference, float))
    if lag >= 0:
        part = estimate[lag:lag + reference.size]
        shifted[:part.size] = part
    else:
        part = estimate[:reference.size + lag]
        shifted[-lag:-lag + part.size] = part
    return shifted, lag
