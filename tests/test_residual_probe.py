"""training.residual_probe: the in-band structure values, the shuffled control and the lookup-table correction.

The probe's use on a teacher cache needs DeepFilterNet3 and the corpus (docs/training.md gives the command);
these tests hold its parts to known behaviour on synthetic spectra and planted dependences.
"""

import numpy as np
import pytest

from edge.dsp.bands import band_centres_bins
from edge.dsp.constants import HOP_SAMPLES, N_BANDS
from edge.dsp.stft import analyse_frames, vorbis_window
from training.residual_probe import BAND_GROUPS, shuffled, table_correction
from training.residual_values import in_band_structure


def spectra_of(signal):
    n = signal.size // HOP_SAMPLES - 1
    frames = np.stack([signal[t * HOP_SAMPLES:t * HOP_SAMPLES + 2 * HOP_SAMPLES] for t in range(n)])
    return analyse_frames(frames, vorbis_window())


def test_noise_is_flat_and_changes_shape_while_a_steady_tone_is_peaked_and_keeps_it():
    rng = np.random.default_rng(0)
    seconds = 2.0
    t = np.arange(int(48_000 * seconds)) / 48_000
    band = 26                                   # bins 174-196: 22 bins of 50 Hz
    centre_hz = band_centres_bins()[band] * 50.0 + 25.0
    tone = np.sin(2 * np.pi * centre_hz * t)
    noise = rng.standard_normal(t.size)
    flat_noise, change_noise = in_band_structure(spectra_of(noise))
    flat_tone, change_tone = in_band_structure(spectra_of(tone + 1e-4 * noise))
    # Exponentially distributed bin powers: geometric over arithmetic mean is exp(-Euler's gamma) = 0.56.
    assert np.median(flat_noise[:, 20:]) == pytest.approx(0.56, abs=0.06)
    assert np.median(flat_tone[:, band]) < 0.05
    assert np.median(change_tone[1:, band]) < 0.01
    assert np.median(change_noise[1:, 20:]) > 0.1
    assert flat_noise.shape == change_noise.shape == (spectra_of(noise).shape[0], N_BANDS)


def test_the_shuffled_control_keeps_each_bands_values_and_breaks_their_order():
    rng = np.random.default_rng(1)
    band = np.tile(np.arange(N_BANDS), 200)
    values = rng.standard_normal(band.size) + band           # each band its own distribution
    control = shuffled(values, band, seed=2)
    for b in range(N_BANDS):
        assert np.array_equal(np.sort(control[band == b]), np.sort(values[band == b]))
    assert not np.array_equal(control, values)
    assert abs(np.corrcoef(control - band, values - band)[0, 1]) < 0.1


def synthetic_rows(n, rng, dependence):
    """Band-frame rows whose target gain sits under the prediction by ``dependence * value``."""
    band = rng.integers(0, N_BANDS, n)
    predicted = rng.uniform(0.05, 1.0, n)
    value = rng.uniform(0, 1, n)
    root = np.clip(np.sqrt(predicted) - dependence * value + rng.normal(0, 0.05, n), 0, 1)
    return {"predicted": predicted, "target": root ** 2, "band": band, "speech": rng.random(n) < 0.5,
            "value": value}


def frame_rows(frames, width, rng, noise, plant):
    """Rows of ``frames`` whole frames and a vector of ``width`` per frame; ``plant(root, vectors)`` moves the
    targets' square roots (frames, 34) by what the vectors say."""
    vectors = rng.standard_normal((frames, width)).astype(np.float32)
    base = synthetic_rows(frames * N_BANDS, rng, 0.0)
    base["band"] = np.tile(np.arange(N_BANDS), frames)
    root = np.sqrt(base["predicted"]).reshape(frames, N_BANDS) + rng.normal(0, noise, (frames, N_BANDS))
    plant(root, vectors)
    base["target"] = np.clip(root, 0, 1).reshape(-1) ** 2
    return base, vectors


def test_the_table_removes_error_that_a_value_explains_and_none_that_it_does_not():
    rng = np.random.default_rng(3)
    fit, score = synthetic_rows(200_000, rng, 0.3), synthetic_rows(100_000, rng, 0.3)
    rms = lambda r: float(np.sqrt(np.mean(r ** 2)))
    recalibrated = rms(table_correction(fit, score))
    informed = rms(table_correction(fit, score, fit["value"], score["value"]))
    control = rms(table_correction(fit, score, shuffled(fit["value"], fit["band"], 4),
                                   shuffled(score["value"], score["band"], 5)))
    assert informed < 0.6 * recalibrated                   # the planted dependence is found
    assert control == pytest.approx(recalibrated, rel=0.01)  # a shuffled value finds nothing
    unrelated_fit, unrelated_score = synthetic_rows(200_000, rng, 0.0), synthetic_rows(100_000, rng, 0.0)
    base = rms(table_correction(unrelated_fit, unrelated_score))
    assert rms(table_correction(unrelated_fit, unrelated_score, unrelated_fit["value"],
                                unrelated_score["value"])) == pytest.approx(base, rel=0.01)
    assert BAND_GROUPS.size == N_BANDS


def test_least_squares_finds_a_planted_vector_dependence_and_nothing_in_shuffled_vectors():
    from training.residual_probe import linear_correction
    rng = np.random.default_rng(6)
    weights = rng.standard_normal(16) * 0.05

    def rows(n):
        base = synthetic_rows(n, rng, 0.0)
        vectors = rng.standard_normal((n, 16)).astype(np.float32)
        root = np.clip(np.sqrt(base["predicted"]) + vectors @ weights + rng.normal(0, 0.05, n), 0, 1)
        return {**base, "target": root ** 2}, vectors

    (fit, fit_vectors), (score, score_vectors) = rows(200_000), rows(100_000)
    rms = lambda r: float(np.sqrt(np.mean(r ** 2)))
    recalibrated = rms(table_correction(fit, score))
    informed = rms(linear_correction(fit, score, fit_vectors, score_vectors))
    order_fit, order_score = shuffled(np.arange(fit["band"].size), fit["band"], 7), \
        shuffled(np.arange(score["band"].size), score["band"], 8)
    control = rms(linear_correction(fit, score, fit_vectors[order_fit], score_vectors[order_score]))
    assert informed < 0.7 * recalibrated
    assert control == pytest.approx(recalibrated, rel=0.02)


def test_the_vector_candidates_describe_a_bands_neighbours_and_its_own_shape():
    from training.residual_values import band_neighbourhood, in_band_shape
    levels = np.tile(np.arange(N_BANDS, dtype=float), (3, 1))             # each band one unit above the last
    around = band_neighbourhood(levels)
    assert around.shape == (3, N_BANDS, 16)
    assert np.allclose(around[1, 10, :8], [-4, -3, -2, -1, 1, 2, 3, 4])    # relative to the band itself
    assert np.allclose(around[1, 10, 8:], around[0, 10, :8])               # then the last frame's
    seconds = np.arange(48_000) / 48_000
    tone = spectra_of(np.sin(2 * np.pi * 9_000.0 * seconds))               # 9 kHz: bin 180, inside band 26's triangle
    shape = in_band_shape(tone)
    assert shape.shape == (tone.shape[0], N_BANDS, 16)
    assert np.allclose(shape[:, :, :8].mean(axis=2), 0.0, atol=1e-9)       # shape only: the level is taken out
    assert shape[5, 26, :8].max() - shape[5, 26, :8].min() > 3              # a tone stands out of its band by > 30 dB


def test_least_squares_per_band_finds_what_a_frames_vector_says_about_one_band():
    from training.residual_probe import frame_correction
    rng = np.random.default_rng(9)

    def band_7(root, vectors):
        root[:, 7] -= 0.1 * vectors[:, 3] - 0.05 * vectors[:, 30]           # band 7 depends on two values

    (fit, fit_frames), (score, score_frames) = (frame_rows(n, 40, rng, 0.05, band_7) for n in (20_000, 10_000))
    in_band_7 = score["band"] == 7
    plain = table_correction(fit, score)
    informed = frame_correction(fit, score, fit_frames, score_frames)
    control = frame_correction(fit, score, fit_frames[rng.permutation(20_000)], score_frames)
    rms = lambda r: float(np.sqrt(np.mean(r ** 2)))
    assert rms(informed[in_band_7]) < 0.6 * rms(plain[in_band_7])
    assert rms(informed[~in_band_7]) == pytest.approx(rms(plain[~in_band_7]), rel=0.03)   # elsewhere nothing to find
    assert rms(control[in_band_7]) == pytest.approx(rms(plain[in_band_7]), rel=0.03)


def test_the_small_network_finds_a_nonlinear_dependence_that_least_squares_misses():
    pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")
    from training.residual_probe import frame_correction, mlp_correction
    rng = np.random.default_rng(10)

    def band_20(root, vectors):
        root[:, 20] -= 0.15 * (np.abs(vectors[:, 5]) - 0.8)                 # even in the value: no linear trace

    (fit, fit_frames), (score, score_frames) = (frame_rows(n, 12, rng, 0.02, band_20) for n in (12_000, 4_000))
    band_20 = score["band"] == 20
    rms = lambda r: float(np.sqrt(np.mean(r[band_20] ** 2)))
    linear = rms(frame_correction(fit, score, fit_frames, score_frames))
    assert rms(mlp_correction(fit, score, fit_frames, score_frames)) < 0.8 * linear
