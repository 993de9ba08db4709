"""The numpy-only IIR filters and designs equal scipy.signal's (which the daemon no longer loads)."""

import numpy as np
import pytest
from scipy import signal as sps

from edge.dsp import iir
from edge.dsp.enhancer import HIGHPASS_A, HIGHPASS_B, HighPass


def random_stable_filter(rng, order):
    """A real filter with distinct poles of radius 0.3..0.999 and random zeros."""
    poles = []
    while len(poles) < order:
        radius = rng.uniform(0.3, 0.999)
        if order - len(poles) >= 2 and rng.random() < 0.6:
            angle = rng.uniform(0.01, np.pi - 0.01)
            poles += [radius * np.exp(1j * angle), radius * np.exp(-1j * angle)]
        else:
            poles.append(radius * rng.choice([-1.0, 1.0]))
    a = np.real(np.poly(poles))
    b = rng.standard_normal(rng.integers(1, order + 2))
    return b, a


@pytest.mark.parametrize("seed", range(12))
def test_random_stable_filters_match_lfilter(seed):
    rng = np.random.default_rng(seed)
    b, a = random_stable_filter(rng, order=int(rng.integers(1, 5)))
    x = rng.standard_normal(5000)
    expected = sps.lfilter(b, a, x)
    got = iir.lfilter(b, a, x)
    assert np.max(np.abs(got - expected)) <= 1e-9 * max(1.0, np.max(np.abs(expected)))


@pytest.mark.parametrize("seed", range(6))
def test_a_stream_in_blocks_of_any_size_equals_one_call(seed):
    rng = np.random.default_rng(100 + seed)
    b, a = random_stable_filter(rng, order=2)
    x = rng.standard_normal(6000)
    cuts = np.sort(rng.choice(np.arange(1, x.size), size=20, replace=False))
    stream = iir.StreamIIR(b, a, flush_below=0.0)
    got = np.concatenate([stream.process(part) for part in np.split(x, cuts)])
    expected = sps.lfilter(b, a, x)
    assert np.max(np.abs(got - expected)) <= 1e-9 * np.max(np.abs(expected))


def test_the_highpass_equals_scipy_over_a_long_stream_of_frames():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(480 * 500) * 0.3 + 0.2          # with DC, which the filter removes
    highpass = HighPass()
    got = np.concatenate([highpass.process(frame).copy() for frame in x.reshape(-1, 480)])
    expected = sps.lfilter(HIGHPASS_B, HIGHPASS_A, x)
    assert np.max(np.abs(got - expected)) < 1e-10
    assert abs(np.mean(got[-48000:])) < 1e-3


def test_the_highpass_state_goes_to_exact_zero_in_silence():
    highpass = HighPass()
    highpass.process(np.ones(480))
    for _ in range(3000):                                     # 30 s of silence
        out = highpass.process(np.zeros(480))
    assert np.all(out == 0.0)


def test_designs_equal_scipys():
    for cutoff_hz in (100.0, 3500.0, 12000.0):
        for ours, theirs in zip(iir.butter2_highpass(cutoff_hz, 48000), sps.butter(2, cutoff_hz, "highpass", fs=48000)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    for taps, cutoff_hz in ((24, 2500.0), (101, 1000.0), (7, 10000.0)):
        np.testing.assert_allclose(iir.firwin_lowpass(taps, cutoff_hz, 48000), sps.firwin(taps, cutoff_hz, fs=48000),
                                   rtol=1e-12, atol=1e-15)


def test_filters_it_cannot_run_are_refused():
    with pytest.raises(ValueError, match="repeated poles"):
        iir.StreamIIR([1.0], np.poly([0.5, 0.5]))
    with pytest.raises(ValueError, match="unstable"):
        iir.StreamIIR([1.0], [1.0, -1.01])
    with pytest.raises(ValueError, match="more zeros than poles"):
        iir.StreamIIR([1.0, 2.0, 3.0], [1.0, -0.5])
