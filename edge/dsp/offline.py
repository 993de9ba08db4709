"""Batch (offline) forms over whole signals, for training and evaluation.

Training must see exactly the features the device computes, so nothing here
is a second implementation: the sequential stages (high-pass, pitch track)
run the streaming objects frame by frame, and the per-frame stages
(analysis, band energies, coherences, feature assembly) are the same pure
functions applied to all frames at once. ``tests/test_streaming_batch.py``
holds the two forms to 1e-6.
"""

from dataclasses import dataclass

import numpy as np

from .bands import band_energy, band_matrix, power_spectrum
from .comb import kappa_for_period
from .constants import HOP_SAMPLES, LATENCY_SAMPLES, LOOKAHEAD_FRAMES, N_BANDS, N_FEATURES, WINDOW_SAMPLES
from .enhancer import (HISTORY_SAMPLES, ORACLE_SETTINGS, Enhancer, EnhancerSettings, GainSource,
                       HighPass)
from .features import assemble, band_coherence
from .gains import oracle_targets
from .pitch import PitchTracker
from .stft import analyse_frames, vorbis_window


@dataclass
class SignalAnalysis:
    """Per-frame analysis of a whole signal (frame t ends at sample 480 (t + 1))."""

    features: np.ndarray          # (n_frames, 70), what the network sees
    spectra: np.ndarray           # (n_frames, 481) complex
    energy: np.ndarray            # (n_frames, 34)
    period_now: np.ndarray        # (n_frames,) online period, used by the features
    period_smoothed: np.ndarray   # (n_frames,) smoothed period, used by the comb filter
    padded: np.ndarray            # high-passed signal with HISTORY_SAMPLES zeros in front
    window_starts: np.ndarray     # (n_frames,) start of each frame's window in ``padded``


def n_frames_for(n_samples):
    """Frames needed to cover ``n_samples`` (the last one zero-padded)."""
    return -(-int(n_samples) // HOP_SAMPLES)


def frames_to_flush(n_samples):
    """Frames a stream of ``n_samples`` needs until its last sample has come out of the enhancer (30 ms later)."""
    return n_frames_for(n_samples + LATENCY_SAMPLES)


def with_flush_padding(signal, dtype=np.float64):
    """``signal`` followed by silence to the end of :func:`frames_to_flush` frames: what a stream must be fed."""
    padded = np.zeros(frames_to_flush(len(signal)) * HOP_SAMPLES, dtype)
    padded[:len(signal)] = signal
    return padded


def _as_mono_float(signal):
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono signal (1-D array), got shape {signal.shape}")
    return signal


def _delayed_windows(padded, window_starts, periods):
    """Gather each frame's window delayed by its own period: (n_frames, 960)."""
    index = (window_starts - periods)[:, None] + np.arange(WINDOW_SAMPLES)[None, :]
    return padded[index]


def coherence_at(spectra, energy, padded, window_starts, periods, weights, window):
    """Band pitch coherences of all frames at the given per-frame periods."""
    delayed = analyse_frames(_delayed_windows(padded, window_starts, periods), window)
    delayed_energy = band_energy(power_spectrum(delayed), weights)
    return band_coherence(spectra, energy, delayed, delayed_energy, weights,
                          np.empty(spectra.shape), np.empty_like(energy))


def analyse_signal(signal, highpass=True):
    """Features and analysis of a whole mono 48 kHz signal, as the stream computes them."""
    signal = _as_mono_float(signal)
    n_frames = n_frames_for(signal.size)
    frames_run = n_frames + LOOKAHEAD_FRAMES          # the smoothed period of frame t comes at t + 2
    source = np.zeros(frames_run * HOP_SAMPLES)
    source[:signal.size] = signal
    source[~np.isfinite(source)] = 0.0

    high_pass, tracker = HighPass(), PitchTracker()
    history = np.zeros(HISTORY_SAMPLES)
    filtered = np.empty_like(source)
    period_now = np.zeros(frames_run, dtype=np.int64)
    correlation = np.zeros(frames_run)
    period_smoothed = np.zeros(frames_run, dtype=np.int64)
    for t in range(frames_run):
        chunk = source[t * HOP_SAMPLES:(t + 1) * HOP_SAMPLES]
        new = high_pass.process(chunk) if highpass else chunk
        filtered[t * HOP_SAMPLES:(t + 1) * HOP_SAMPLES] = new
        history[:-HOP_SAMPLES] = history[HOP_SAMPLES:]
        history[-HOP_SAMPLES:] = new
        period_now[t], correlation[t], delayed_period = tracker.step(history, history.shape[0])
        if t >= LOOKAHEAD_FRAMES:
            period_smoothed[t - LOOKAHEAD_FRAMES] = delayed_period

    padded = np.concatenate([np.zeros(HISTORY_SAMPLES), filtered])
    window_starts = HISTORY_SAMPLES + HOP_SAMPLES * (np.arange(n_frames) + 1) - WINDOW_SAMPLES
    window, weights = vorbis_window(), band_matrix()
    frames = padded[window_starts[:, None] + np.arange(WINDOW_SAMPLES)[None, :]]
    spectra = analyse_frames(frames, window)
    energy = band_energy(power_spectrum(spectra), weights)
    coherence = coherence_at(spectra, energy, padded, window_starts, period_now[:n_frames],
                             weights, window)
    features = assemble(energy, coherence, period_now[:n_frames], correlation[:n_frames],
                        np.empty((n_frames, N_FEATURES)))
    return SignalAnalysis(features, spectra, energy, period_now[:n_frames],
                          period_smoothed[:n_frames], padded, window_starts)


def highpass_signal(signal):
    """The input high-pass the enhancer applies, over a whole signal (the reference for scoring)."""
    signal = _as_mono_float(signal)
    filtered = np.empty_like(signal)
    high_pass = HighPass()
    for start in range(0, signal.size, HOP_SAMPLES):
        filtered[start:start + HOP_SAMPLES] = high_pass.process(signal[start:start + HOP_SAMPLES])
    return filtered


def oracle_gains(clean, noisy, highpass=True):
    """Training targets ``(gains, strengths)``, each (n_frames, 34), for a clean/noisy pair.

    The coherences use the smoothed period, the one the comb filter will use
    on that frame, so the strength describes the filtering actually applied.
    Returns ``(gains, strengths, noisy_analysis, clean_analysis)``, the last
    two being :class:`SignalAnalysis` objects.
    """
    clean, noisy = _as_mono_float(clean), _as_mono_float(noisy)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy differ in length: {clean.size} vs {noisy.size} samples")
    noisy_analysis = analyse_signal(noisy, highpass)
    clean_analysis = analyse_signal(clean, highpass)
    window, weights = vorbis_window(), band_matrix()
    periods = noisy_analysis.period_smoothed
    noisy_q = coherence_at(noisy_analysis.spectra, noisy_analysis.energy, noisy_analysis.padded,
                           noisy_analysis.window_starts, periods, weights, window)
    clean_q = coherence_at(clean_analysis.spectra, clean_analysis.energy, clean_analysis.padded,
                           clean_analysis.window_starts, periods, weights, window)
    kappa = np.array([kappa_for_period(p) for p in periods])[:, None]
    gains, strengths = oracle_targets(clean_analysis.energy, noisy_analysis.energy,
                                      clean_q, noisy_q, kappa)
    return gains, strengths, noisy_analysis, clean_analysis


class FrameGains:
    """Gain source replaying precomputed per-frame gains and strengths.

    Row t is applied to frame t, i.e. returned on the call for frame
    t + LOOKAHEAD_FRAMES; outside the table it returns unity.
    """

    def __init__(self, gains, strengths):
        if gains.shape != strengths.shape or gains.ndim != 2 or gains.shape[1] != N_BANDS:
            raise ValueError(f"gains and strengths must both be (n_frames, {N_BANDS}), "
                             f"got {gains.shape} and {strengths.shape}")
        self.gains, self.strengths = gains, strengths
        self._calls = 0
        self._unity, self._zero = np.ones(N_BANDS), np.zeros(N_BANDS)

    def __call__(self, features):
        frame = self._calls - LOOKAHEAD_FRAMES
        self._calls += 1
        if 0 <= frame < self.gains.shape[0]:
            return self.gains[frame], self.strengths[frame]
        return self._unity, self._zero


def enhance_signal(signal, gain_source: GainSource = None, settings: EnhancerSettings = EnhancerSettings(),
                   echo_estimate=None):
    """Run the streaming enhancer over a whole signal; output aligned and the same length.

    The enhancer's 30 ms latency is removed: sample i of the result is the
    enhanced sample i of the input. A gain source with ``far_end_inputs``
    (a joint model's runner) gets them from ``echo_estimate`` (microphone -
    ``signal``, the linear canceller's output), or 0 without one.
    """
    signal = _as_mono_float(signal)
    source = with_flush_padding(signal)
    n_frames = source.size // HOP_SAMPLES
    enhancer = Enhancer(gain_source, settings)
    echo = None
    if enhancer.echo_analysis is not None and echo_estimate is not None:
        echo = np.zeros(source.size)
        echo[:min(source.size, len(echo_estimate))] = np.asarray(echo_estimate, np.float64)[:source.size]
    output = np.empty_like(source)
    for t in range(n_frames):
        frame = slice(t * HOP_SAMPLES, (t + 1) * HOP_SAMPLES)
        enhancer.process(source[frame], out=output[frame], echo_estimate=None if echo is None else echo[frame])
    return output[LATENCY_SAMPLES:LATENCY_SAMPLES + signal.size]


def oracle_enhance(clean, noisy, highpass=True, settings: EnhancerSettings = ORACLE_SETTINGS):
    """Enhance ``noisy`` with its oracle gains: the upper bound the network chases."""
    clean, noisy = _as_mono_float(clean), _as_mono_float(noisy)
    pad = frames_to_flush(noisy.size) * HOP_SAMPLES - noisy.size
    gains, strengths, _, _ = oracle_gains(np.pad(clean, (0, pad)), np.pad(noisy, (0, pad)), highpass)
    return enhance_signal(noisy, FrameGains(gains, strengths), settings)
