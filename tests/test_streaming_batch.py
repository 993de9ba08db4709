"""The batch forms (training) give the same numbers as the streaming enhancer (device)."""

import numpy as np

from edge.dsp import (HOP_SAMPLES, LATENCY_SAMPLES, N_BANDS, ORACLE_SETTINGS, Enhancer, FrameGains,
                      analyse_signal, enhance_signal, oracle_enhance, oracle_gains)
from edge.io.synthetic import mix_at_snr, noise, speech_like


def _noisy(seconds=3.0):
    clean = speech_like(seconds, seed=21)
    return clean, mix_at_snr(clean, noise("babble-like", seconds, seed=22), 5.0)


def test_batch_features_equal_streaming_features():
    _, noisy = _noisy()
    seen = []

    def recording_source(features):
        seen.append(features.copy())
        return np.ones(N_BANDS), np.zeros(N_BANDS)

    enhancer = Enhancer(recording_source)
    for frame in noisy[: len(noisy) // HOP_SAMPLES * HOP_SAMPLES].reshape(-1, HOP_SAMPLES):
        enhancer.process(frame)
    batch = analyse_signal(noisy).features
    assert batch.shape == (len(seen), 70)
    np.testing.assert_allclose(batch, np.array(seen), atol=1e-6, rtol=0)


def test_enhance_signal_is_the_stream_with_its_latency_removed():
    clean, noisy = _noisy(2.0)
    gains, strengths, _, _ = oracle_gains(clean, noisy)
    enhancer = Enhancer(FrameGains(gains, strengths), ORACLE_SETTINGS)
    padded = np.concatenate([noisy, np.zeros(LATENCY_SAMPLES + HOP_SAMPLES)])
    frames = padded[: len(padded) // HOP_SAMPLES * HOP_SAMPLES].reshape(-1, HOP_SAMPLES)
    streamed = np.concatenate([enhancer.process(frame).copy() for frame in frames])
    batch = enhance_signal(noisy, FrameGains(gains, strengths), ORACLE_SETTINGS)
    np.testing.assert_allclose(batch, streamed[LATENCY_SAMPLES:LATENCY_SAMPLES + noisy.size], atol=1e-6)
    assert batch.shape == noisy.shape


def test_oracle_enhance_output_is_aligned_with_its_input():
    clean, noisy = _noisy(2.0)
    enhanced = oracle_enhance(clean, noisy)
    assert enhanced.shape == noisy.shape
    lags = range(-480, 481, 48)
    correlation = [np.dot(np.roll(enhanced, lag), clean) for lag in lags]
    assert list(lags)[int(np.argmax(correlation))] == 0
