"""The numpy-only resampler equals scipy.signal.resample_poly, which a device no longer installs."""

import numpy as np
import pytest
from scipy import signal as sps

from edge.dsp import polyphase

#: (up, down) to and from 48 kHz of 8, 11.025, 16, 22.05, 24, 32, 44.1, 88.2, 96, 176.4, 192, 352.8 and 384 kHz.
RATIOS = [(6, 1), (1, 6), (640, 147), (147, 640), (3, 1), (1, 3), (320, 147), (147, 320), (2, 1), (1, 2),
          (3, 2), (2, 3), (160, 147), (147, 160), (80, 147), (147, 80), (1, 4), (4, 1), (40, 147), (147, 40),
          (20, 147), (147, 20), (1, 8), (8, 1)]
#: A rate with few factors in common with 48 kHz: 44,101 Hz, one branch per output or fewer (the gathering path).
ODD_RATIOS = [(48000, 44101), (44101, 48000)]


@pytest.mark.parametrize("up, down", RATIOS + ODD_RATIOS)
def test_it_equals_scipys_resample_poly_at_every_length(up, down):
    rng = np.random.default_rng(up * 1000 + down)
    for n in (1, 2, 7, 31, 300, 4801):                      # shorter and longer than the filter
        x = rng.standard_normal(n)
        expected = sps.resample_poly(x, up, down)
        got = polyphase.resample_poly(x, up, down)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("up, down", [(160, 147), (1, 3), (3, 1)])
def test_its_default_filter_is_scipys(up, down):
    max_rate = max(up, down)
    expected = sps.firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    np.testing.assert_allclose(polyphase.Polyphase(up, down).taps(), expected, rtol=0, atol=1e-15)


def test_a_given_filter_is_used_as_scipy_uses_it():
    rng = np.random.default_rng(3)
    taps = sps.firwin(61, 0.3, window="hann")
    x = rng.standard_normal(2000)
    np.testing.assert_allclose(polyphase.resample_poly(x, 3, 5, taps), sps.resample_poly(x, 3, 5, window=taps),
                               rtol=0, atol=1e-13)


def test_a_common_factor_and_equal_rates():
    x = np.random.default_rng(4).standard_normal(1000)
    assert np.array_equal(polyphase.resample_poly(x, 320, 294), polyphase.resample_poly(x, 160, 147))
    same = polyphase.resample_poly(x, 7, 7)
    assert np.array_equal(same, x) and same is not x
    assert polyphase.resample_poly(np.zeros(0), 160, 147).shape == (0,)


@pytest.mark.parametrize("rate_hz", [8_000, 16_000, 44_100])
def test_a_tone_inside_the_band_keeps_its_level_and_frequency(rate_hz):
    """A property beyond agreeing with scipy: 1 kHz at rate_hz comes out as 1 kHz at 48 kHz, level within 0.05 dB."""
    t = np.arange(rate_hz) / rate_hz
    x = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    y = polyphase.resample_poly(x, 48_000, rate_hz)
    assert y.size == 48_000
    middle = y[4800:-4800]                                   # away from the zero-padded ends
    expected = 0.5 * np.sin(2 * np.pi * 1000.0 * (np.arange(48_000) / 48_000))[4800:-4800]
    # Kaiser beta 5 ripples by about -55 dB in the passband: what scipy's default filter gives too.
    assert np.max(np.abs(middle - expected)) < 0.5 * 10 ** (-45 / 20)
    level_db = 20 * np.log10(np.sqrt(np.mean(middle ** 2)) / np.sqrt(np.mean(expected ** 2)))
    assert abs(level_db) < 0.05


def test_a_tone_above_the_new_nyquist_is_removed():
    rate_hz = 48_000
    t = np.arange(rate_hz) / rate_hz
    x = np.sin(2 * np.pi * 12_000.0 * t)                    # above 8 kHz, the Nyquist of 16 kHz
    y = polyphase.resample_poly(x, 1, 3)
    assert np.sqrt(np.mean(y[1600:-1600] ** 2)) < 10 ** (-40 / 20)


@pytest.mark.parametrize("up, down", [(3, 1), (1, 3), (160, 147), (640, 147)])
def test_segment_boundaries_change_nothing(up, down, monkeypatch):
    """Outputs are computed in segments of up * ROWS_PER_PRODUCT; with 3 rows a segment, every length around
    the boundaries (and the switch to gathering below 16 outputs a branch) still equals scipy."""
    monkeypatch.setattr(polyphase, "ROWS_PER_PRODUCT", 3)
    rng = np.random.default_rng(up + down)
    segment_in = 3 * down                                      # input samples per segment of 3 * up outputs
    for n in sorted({16 * down - 1, 16 * down, 16 * down + 1, 5 * segment_in - 1, 5 * segment_in,
                     5 * segment_in + 1, 40 * segment_in + 7}):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(polyphase.Polyphase(up, down)(x), sps.resample_poly(x, up, down),
                                   rtol=0, atol=1e-13)


def test_one_resampler_called_again_gives_what_a_new_one_gives():
    """StreamResampler builds its Polyphase once and calls it on every push: nothing may carry over."""
    rng = np.random.default_rng(5)
    resampler = polyphase.Polyphase(160, 147)
    first, second = rng.standard_normal(3000), rng.standard_normal(2000)
    resampler(first)
    assert np.array_equal(resampler(second), polyphase.Polyphase(160, 147)(second))


def test_float32_and_integer_input_is_resampled_as_float64():
    x = np.random.default_rng(6).standard_normal(500)
    for converted in (x.astype(np.float32), np.round(x * 1000).astype(np.int16)):
        np.testing.assert_allclose(polyphase.resample_poly(converted, 3, 1),
                                   sps.resample_poly(converted.astype(np.float64), 3, 1), rtol=0, atol=1e-12)


def test_a_signal_that_is_not_one_dimensional_is_refused():
    with pytest.raises(ValueError, match="1-D signal"):
        polyphase.resample_poly(np.zeros((100, 2)), 3, 1)


def test_the_resampler_benchmark_checks_agreement_and_prints_a_row_per_ratio(monkeypatch, capsys):
    from evaluation import bench_resample
    monkeypatch.setattr(bench_resample, "LENGTHS", [("tiny", 3000)])
    bench_resample.main(["--rounds", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "tiny" in line]
    assert len(rows) == len(bench_resample.RATIOS)
    assert all(float(row.split("|")[-2]) > 0 for row in rows)
