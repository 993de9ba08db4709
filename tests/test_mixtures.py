"""Mixture augmentation: what each stage promises, measured on its output."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("soundfile", reason="the training extra (soundfile) is not installed")

from training.corpus import scan  # noqa: E402
from training.synth import (DEFAULT_AUGMENTATION, RATE, AudioBank, band_limit, hard_clip,  # noqa: E402
                            make_example, quantise, self_noise)

#: Stages that add something after the channel, off, so the channel's promises can be read exactly.
PLAIN = dataclasses.replace(DEFAULT_AUGMENTATION, self_noise_probability=0.0, dc_probability=0.0,
                            clip_probability=0.0, bits_probabilities=(0.0, 0.0, 1.0))


def _energy_above(x, cutoff_hz):
    power = np.abs(np.fft.rfft(x)) ** 2
    return power[np.fft.rfftfreq(x.size, 1 / RATE) >= cutoff_hz].sum() / power.sum()


def _dbfs(x):
    return 10 * np.log10(np.mean(x ** 2))


@pytest.mark.parametrize("cutoff_hz", DEFAULT_AUGMENTATION.band_limits_hz)
def test_a_band_limit_removes_the_energy_above_its_cutoff_and_keeps_the_rest(cutoff_hz):
    white = np.random.default_rng(1).standard_normal(RATE)
    limited = band_limit(white, cutoff_hz)
    assert _energy_above(limited, cutoff_hz) < 1e-20
    below = np.fft.rfftfreq(white.size, 1 / RATE) < cutoff_hz
    np.testing.assert_allclose(np.fft.rfft(limited)[below], np.fft.rfft(white)[below], atol=1e-6)


def test_the_channel_band_limits_target_and_input_alike(mini_corpus):
    train, _ = scan(mini_corpus)
    augmentation = dataclasses.replace(PLAIN, band_limit_probability=1.0, band_limits_hz=(8_000.0,))
    rng, bank = np.random.default_rng(3), AudioBank(say=lambda *_: None)
    for _ in range(4):
        target, noisy = make_example(train, rng, 1.0, bank, augmentation=augmentation)
        assert _energy_above(target, 8_000.0) < 1e-15 and _energy_above(noisy, 8_000.0) < 1e-15


def test_speech_levels_stay_within_range_and_the_input_within_full_scale(mini_corpus):
    train, _ = scan(mini_corpus)
    low, high = PLAIN.level_dbfs
    rng, bank = np.random.default_rng(4), AudioBank(say=lambda *_: None)
    levels = []
    for _ in range(24):
        target, noisy = make_example(train, rng, 1.0, bank, augmentation=PLAIN)
        levels.append(_dbfs(target))
        assert np.abs(noisy).max() <= 0.99 + 1e-12
    assert low - 0.01 <= min(levels) and max(levels) <= high + 0.01
    assert max(levels) - min(levels) > 15                     # the range is used, not one level


def test_the_microphone_floor_sits_at_its_level_and_replaces_digital_silence(mini_corpus):
    train, _ = scan(mini_corpus)
    augmentation = dataclasses.replace(PLAIN, self_noise_probability=1.0, self_noise_dbfs=(-70.0, -70.0),
                                       reverb_probability=0.0)
    target, noisy = make_example(train, np.random.default_rng(5), 1.0, AudioBank(say=lambda *_: None),
                                 clean_probability=1.0, augmentation=augmentation)
    assert abs(_dbfs(noisy - target) - (-70.0)) < 0.5
    frames_db = 10 * np.log10(np.mean(noisy[:noisy.size // 480 * 480].reshape(-1, 480) ** 2, axis=1))
    assert frames_db.min() > -73.0                           # no quiet frame falls below the floor
    assert abs(_dbfs(self_noise(RATE, -85.0, np.random.default_rng(6))) + 85.0) < 1e-6


def test_the_converter_stages_quantise_and_clip_as_stated():
    x = np.random.default_rng(7).uniform(-0.5, 0.5, 10_000)
    sixteen = quantise(x, 16)
    np.testing.assert_array_equal(sixteen * 32768, np.round(sixteen * 32768))
    assert np.max(np.abs(sixteen - x)) <= 2.0 ** -16 + 1e-15
    assert quantise(x, None) is x
    clipped, threshold = hard_clip(x, np.random.default_rng(8))
    share = np.mean(np.abs(clipped) >= threshold)
    assert 0.0005 <= share <= 0.0101 and np.max(np.abs(clipped)) == threshold
