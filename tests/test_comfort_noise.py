"""Comfort noise (edge.dsp.comfort): where the gains suppress, a steady background at the level asked for.

Properties: on stationary noise that the gains remove, the output settles within 2 dB of
``comfort_noise_db`` below the input in every octave; bands the gains keep get no fill
(the output is exactly the output without comfort noise); digital silence stays digital
silence; the noise is reproducible; bad levels are refused with the range.
"""

import numpy as np
import pytest

from edge.dsp import Enhancer, EnhancerSettings
from edge.dsp.comfort import START_FRAMES
from edge.dsp.constants import HOP_SAMPLES, N_BANDS, SAMPLE_RATE_HZ

OCTAVES_HZ = ((125, 500), (500, 2000), (2000, 8000), (8000, 20000))


def _zero_gains(features):
    return np.zeros(N_BANDS), np.zeros(N_BANDS)


def _unity_gains(features):
    return np.ones(N_BANDS), np.zeros(N_BANDS)


def _run(signal, gain_source, **settings):
    enhancer = Enhancer(gain_source, EnhancerSettings(**settings))
    return np.concatenate([enhancer.process(frame).copy() for frame in signal.reshape(-1, HOP_SAMPLES)])


def _noise(colour, seconds, dbfs, seed):
    x = np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE_HZ))
    if colour == "pink":
        spectrum = np.fft.rfft(x)
        spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
        x = np.fft.irfft(spectrum, x.size)
    return x * (10 ** (dbfs / 20) / np.sqrt(np.mean(x ** 2)))


def _octave_levels_db(x):
    from scipy.signal import welch
    freqs, power = welch(x, SAMPLE_RATE_HZ, nperseg=4096)
    return np.array([10 * np.log10(power[(freqs >= low) & (freqs < high)].mean()) for low, high in OCTAVES_HZ])


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("level_db", [-20.0, -1.0])
def test_removed_noise_is_replaced_by_noise_of_its_shape_at_the_level_asked(colour, level_db):
    noise = _noise(colour, 4.0, -40.0, seed=3)
    out = _run(noise, _zero_gains, comfort_noise_db=level_db)
    settled = slice(2 * SAMPLE_RATE_HZ, None)                     # after the tracker learnt the background
    found = _octave_levels_db(out[settled]) - _octave_levels_db(noise[settled])
    assert np.all(np.abs(found - level_db) < 2.0), found
    without = _run(noise, _zero_gains)                            # the floor alone: 80 dB down
    assert np.all(_octave_levels_db(without[settled]) - _octave_levels_db(noise[settled]) < -60)


def test_the_fill_waits_for_the_background_window():
    noise = _noise("white", 2.2, -40.0, seed=4)
    out = _run(noise, _zero_gains, comfort_noise_db=-10.0)
    first = slice(None, (START_FRAMES - 3) * HOP_SAMPLES)
    assert np.array_equal(out[first], _run(noise, _zero_gains)[first])
    assert np.sqrt(np.mean(out[-SAMPLE_RATE_HZ // 4:] ** 2)) > 10 ** (-55 / 20)      # and then it comes


def test_bands_the_gains_keep_get_no_fill():
    speech_like = _noise("pink", 2.5, -30.0, seed=5)
    # Without the envelope post-filter, which nudges unity gains by a hair (and so lets a -170 dB fill in).
    with_fill = _run(speech_like, _unity_gains, comfort_noise_db=-10.0, postfilter_beta=0.0)
    assert np.array_equal(with_fill, _run(speech_like, _unity_gains, postfilter_beta=0.0))
    # With it (the default), what gets in stays 60 dB under the signal.
    difference = _run(speech_like, _unity_gains, comfort_noise_db=-10.0) - _run(speech_like, _unity_gains)
    assert np.sum(difference ** 2) < 1e-6 * np.sum(speech_like ** 2)


def test_digital_silence_stays_digital_silence():
    silence = np.zeros(3 * SAMPLE_RATE_HZ)
    assert not _run(silence, _zero_gains, comfort_noise_db=0.0).any()


def test_the_noise_is_reproducible_and_reset_starts_it_again():
    noise = _noise("white", 2.5, -40.0, seed=6)
    first = _run(noise, _zero_gains, comfort_noise_db=-10.0)
    assert np.array_equal(first, _run(noise, _zero_gains, comfort_noise_db=-10.0))
    enhancer = Enhancer(_zero_gains, EnhancerSettings(comfort_noise_db=-10.0))
    frames = noise.reshape(-1, HOP_SAMPLES)
    for frame in frames:
        enhancer.process(frame)
    enhancer.reset()
    again = np.concatenate([enhancer.process(frame).copy() for frame in frames])
    assert np.array_equal(again, first)


@pytest.mark.parametrize("level_db", [1.0, -61.0, float("nan")])
def test_a_level_out_of_range_is_refused_with_the_range(level_db):
    with pytest.raises(ValueError, match=r"comfort_noise_db must be in -60\.\.0 dB"):
        EnhancerSettings(comfort_noise_db=level_db)


def test_each_channel_gets_its_own_noise():
    """`denoise` gives channel c the seed c: two channels of the same input do not carry the same comfort noise."""
    noise = _noise("white", 2.5, -40.0, seed=7)
    outs = []
    for seed in (0, 1):
        enhancer = Enhancer(_zero_gains, EnhancerSettings(comfort_noise_db=-10.0), noise_seed=seed)
        outs.append(np.concatenate([enhancer.process(frame).copy() for frame in noise.reshape(-1, HOP_SAMPLES)]))
    settled = slice(2 * SAMPLE_RATE_HZ, None)
    assert abs(np.corrcoef(outs[0][settled], outs[1][settled])[0, 1]) < 0.1
    assert np.mean(outs[0][settled] ** 2) == pytest.approx(np.mean(outs[1][settled] ** 2), rel=0.3)


def test_far_end_comfort_noise_fills_only_while_a_far_end_plays():
    """`far_end_comfort_noise_db` (config `echo.comfort_noise_db`): frames given an echo estimate get the fill;
    the others are exactly what they are without comfort noise, and the background is tracked throughout."""
    noise = _noise("white", 4.0, -40.0, seed=8)
    frames = noise.reshape(-1, HOP_SAMPLES)
    plays_from = 300                                        # the far end starts at 3 s
    estimate = np.zeros(HOP_SAMPLES)
    enhancer = Enhancer(_zero_gains, EnhancerSettings(far_end_comfort_noise_db=-10.0))
    out = np.concatenate([enhancer.process(frame, echo_estimate=estimate if t >= plays_from else None).copy()
                          for t, frame in enumerate(frames)])
    plain = _run(noise, _zero_gains)
    before = slice(None, plays_from * HOP_SAMPLES)
    assert np.array_equal(out[before], plain[before])
    after = slice((plays_from + 5) * HOP_SAMPLES, None)   # the fill lands on the frame 2 back: 20 ms later
    found = _octave_levels_db(out[after]) - _octave_levels_db(noise[after])
    assert np.all(np.abs(found + 10.0) < 2.0), found


@pytest.mark.parametrize("levels, seed", [
    ({"comfort_noise_db": -30.0, "far_end_comfort_noise_db": -10.0}, 9),   # the far-end level replaces the other
    ({"comfort_noise_db": -10.0}, 10),                                      # without one, the general level holds
])
def test_while_a_far_end_plays_the_far_end_level_applies_else_the_general_one(levels, seed):
    noise = _noise("white", 3.0, -40.0, seed=seed)
    estimate = np.zeros(HOP_SAMPLES)
    enhancer = Enhancer(_zero_gains, EnhancerSettings(**levels))
    out = np.concatenate([enhancer.process(frame, echo_estimate=estimate).copy()
                          for frame in noise.reshape(-1, HOP_SAMPLES)])
    settled = slice(2 * SAMPLE_RATE_HZ, None)
    found = _octave_levels_db(out[settled]) - _octave_levels_db(noise[settled])
    assert np.all(np.abs(found + 10.0) < 2.0), found


# The tracker itself, on constant band energies (edge.dsp.comfort.ComfortNoise.track).

def _tracker():
    from edge.dsp.bands import band_matrix
    from edge.dsp.comfort import ComfortNoise
    return ComfortNoise(band_matrix())


def _feed(tracker, energy_db, frames, hold=False):
    energy = np.full(N_BANDS, 10 ** (energy_db / 10))
    for _ in range(frames):
        background = tracker.track(energy, hold)
    return 10 * np.log10(np.maximum(background, 1e-300))


def test_the_tracker_learns_the_minimum_of_its_first_frames_then_fills():
    from edge.dsp.comfort import LEARN_FRAMES
    tracker = _tracker()
    energies = np.concatenate([np.full(50, 1.0), np.full(50, 0.25), np.full(200, 1.0)])
    first = None
    for frame, energy in enumerate(energies):
        background = tracker.track(np.full(N_BANDS, energy))
        if first is None and background.any():
            first = frame
    assert LEARN_FRAMES - 2 <= first <= LEARN_FRAMES + 2
    # the learnt minimum (0.25, once smoothed down to it), then a slow rise: well under the 1.0 it has since heard
    assert np.all(10 * np.log10(tracker.background) < -4.0)


def test_the_tracker_falls_at_once_and_rises_by_its_rate():
    from edge.dsp.comfort import RISE_DB_PER_S
    tracker = _tracker()
    _feed(tracker, 0.0, 400)
    down = _feed(tracker, -10.0, 60)                         # the smoothing (0.9 per frame) is what takes time
    assert np.all(np.abs(down + 10.0) < 0.5)
    up = _feed(tracker, 0.0, 1000)                           # 10 s of a louder background
    assert np.all(np.abs((up - down) - 10 * RISE_DB_PER_S) < 0.1 * 10 * RISE_DB_PER_S)


def test_a_held_frame_neither_moves_the_estimate_nor_fills_and_a_long_hold_learns_again():
    from edge.dsp.comfort import LEARN_FRAMES
    tracker = _tracker()
    before = _feed(tracker, 0.0, 400)
    assert not tracker.track(np.zeros(N_BANDS), hold=True).any()        # a mute: no fill
    _feed(tracker, -60.0, 50, hold=True)
    assert np.allclose(_feed(tracker, 0.0, 1), before, atol=0.1)          # and the estimate is where it was
    _feed(tracker, 0.0, 1, hold=True)
    _feed(tracker, 0.0, LEARN_FRAMES, hold=True)                          # a long silence: learn again
    assert not tracker.track(np.ones(N_BANDS)).any()                     # learning: no fill yet


def test_a_short_mute_does_not_take_the_comfort_noise_down():
    """A muted microphone for 0.3 s or 1 s: the comfort noise after it is at its level before it."""
    for mute_s in (0.3, 1.0):
        noise = _noise("white", 8.0, -40.0, seed=11)
        noise[int(4 * SAMPLE_RATE_HZ):int((4 + mute_s) * SAMPLE_RATE_HZ)] = 0.0
        out = _run(noise, _zero_gains, comfort_noise_db=-10.0)
        before = out[int(2.5 * SAMPLE_RATE_HZ):int(3.9 * SAMPLE_RATE_HZ)]
        after = out[int((4.5 + mute_s) * SAMPLE_RATE_HZ):int((6 + mute_s) * SAMPLE_RATE_HZ)]
        assert abs(10 * np.log10(np.mean(after ** 2) / np.mean(before ** 2))) < 1.0, mute_s
        muted = out[int((4 + 0.1) * SAMPLE_RATE_HZ):int((4 + mute_s - 0.05) * SAMPLE_RATE_HZ)]
        assert np.sqrt(np.mean(muted ** 2)) < 10 ** (-90 / 20)             # and the mute itself stays quiet
