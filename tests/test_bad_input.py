"""Bad input: a clear error, or defined and finite output, never a crash or NaN."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

import edge
from edge.dsp import HOP_SAMPLES, Enhancer, EnhancerSettings
from edge.dsp.enhancer import HIGHPASS_A, HIGHPASS_B, HighPass
from edge.io.synthetic import speech_like


@pytest.mark.parametrize("shape", [(479,), (481,), (480, 2), (2, 480), ()])
def test_wrong_frame_shape_is_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"expects one frame of 480 mono samples .* got an array of shape"):
        Enhancer().process(np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_give_finite_output_and_are_counted(bad):
    enhancer = Enhancer()
    signal = speech_like(1.0, seed=2)
    frames = signal.reshape(-1, HOP_SAMPLES).copy()
    frames[30, ::7] = bad
    out = np.concatenate([enhancer.process(frame).copy() for frame in frames])
    assert np.all(np.isfinite(out))
    assert enhancer.nonfinite_frames == 1
    assert np.abs(out).max() < 2.0


@pytest.mark.parametrize("huge", [1e160, -3e200, 2e6])
def test_a_sample_too_large_to_square_is_repaired_like_a_non_finite_one(huge):
    """A finite sample whose square overflows (a 64-bit float WAV holds one) once left NaN in the pitch tracker's
    path scores and the noise floor for good. Now its frame is repaired (clipped to full scale) and counted, and
    what follows is bit for bit what follows the repaired frame itself."""
    speech = speech_like(1.0, seed=3).reshape(-1, HOP_SAMPLES)
    broken, repaired = np.zeros(HOP_SAMPLES), np.zeros(HOP_SAMPLES)
    broken[5], repaired[5] = huge, np.sign(huge)
    outputs = []
    for first in (broken, repaired):
        enhancer = Enhancer(floor_inputs=True, far_end_inputs=True)
        frames = [first] + [np.zeros(HOP_SAMPLES)] * 20 + list(speech)
        outputs.append(np.concatenate([enhancer.process(frame).copy() for frame in frames]))
        assert np.all(np.isfinite(enhancer.features))
        assert enhancer.nonfinite_frames == (1 if first is broken else 0)
    assert np.all(np.isfinite(outputs[0]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_a_loud_but_usable_frame_is_not_repaired():
    """Samples up to 1e6 (120 dB over full scale: unscaled 16-bit audio is 3.3e4) pass untouched and uncounted."""
    enhancer = Enhancer()
    frame = speech_like(0.01, seed=5)[:HOP_SAMPLES] * 3e4
    frame[7] = 1e6
    assert np.all(np.isfinite(enhancer.process(frame)))
    assert enhancer.nonfinite_frames == 0


def test_minutes_of_digital_silence_after_speech_stay_clean_and_flush_denormals():
    """Five minutes of zeros after speech: output settles to exactly 0, no subnormal state remains."""
    enhancer = Enhancer()
    for frame in speech_like(1.0, seed=4).reshape(-1, HOP_SAMPLES):
        enhancer.process(frame)
    silence = np.zeros(HOP_SAMPLES)
    for _ in range(5 * 60 * 100):
        out = enhancer.process(silence)
    assert np.all(out == 0.0)
    tiny = np.finfo(np.float64).tiny
    for name, array in [("high-pass state", enhancer.highpass.state), ("history", enhancer.history),
                        ("spectra", enhancer.spectrum_ring), ("gains", enhancer.gain)]:
        values = np.abs(np.asarray(array)).ravel()
        assert not np.any((values > 0) & (values < tiny)), f"subnormal values in {name}"


def test_full_scale_clipped_input_gives_bounded_output():
    square = np.sign(np.sin(2 * np.pi * 150 * np.arange(48_000) / 48_000))
    enhancer = Enhancer()
    out = np.concatenate([enhancer.process(frame).copy() for frame in square.reshape(-1, HOP_SAMPLES)])
    assert np.all(np.isfinite(out)) and np.abs(out).max() < 4.0


def test_invalid_settings_name_the_problem():
    with pytest.raises(ValueError, match="max_attenuation_db"):
        EnhancerSettings(max_attenuation_db=-3)
    with pytest.raises(ValueError, match="postfilter_beta"):
        EnhancerSettings(postfilter_beta=float("nan"))
    with pytest.raises(ValueError, match="gain_release_per_frame"):
        EnhancerSettings(gain_release_per_frame=1.5)
    with pytest.raises(ValueError, match="gain_exponent"):
        EnhancerSettings(gain_exponent=float("inf"))


def test_attenuation_floor_bounds_the_suppression():
    zero = np.zeros(34)
    enhancer = Enhancer(lambda features: (zero, zero), EnhancerSettings(max_attenuation_db=20.0))
    signal = 0.1 * np.random.default_rng(0).standard_normal(48_000)
    out = np.concatenate([enhancer.process(frame).copy() for frame in signal.reshape(-1, HOP_SAMPLES)])
    ratio_db = 10 * np.log10(np.mean(out[9600:] ** 2) / np.mean(signal[9600:] ** 2))
    assert ratio_db == pytest.approx(-20.0, abs=1.0)


def test_streaming_high_pass_equals_scipy_lfilter():
    """The numpy-only high-pass gives scipy.signal.lfilter's result."""
    signal = np.random.default_rng(3).standard_normal(10 * HOP_SAMPLES)
    high_pass = HighPass()
    streamed = np.concatenate([high_pass.process(frame) for frame in signal.reshape(-1, HOP_SAMPLES)])
    np.testing.assert_allclose(streamed, sps.lfilter(HIGHPASS_B, HIGHPASS_A, signal), atol=1e-12)


def test_process_does_not_grow_memory():
    """Buffers are preallocated: 2000 frames leave no memory behind."""
    enhancer = Enhancer()
    frames = speech_like(2.0, seed=6).reshape(-1, HOP_SAMPLES)
    for frame in frames:
        enhancer.process(frame)
    # Only what edge/ allocates counts (numpy's buffers are traced to the edge/ line that asked for them): a thread
    # that another test left running allocated 8 kB in this window once, under load, and failed the test.
    own_code = [tracemalloc.Filter(True, str(Path(edge.__file__).parent / "*"))]
    tracemalloc.start()
    before = tracemalloc.take_snapshot().filter_traces(own_code)
    for _ in range(10):
        for frame in frames:
            enhancer.process(frame)
    after = tracemalloc.take_snapshot().filter_traces(own_code)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 4096, f"memory grew by {grown} bytes over 2000 frames"
    assert peak < 256 * 1024, f"a frame's temporaries peaked at {peak} bytes"
