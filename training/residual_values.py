"""The values :mod:`training.residual_probe` tests against a student's errors, per band-frame.

Scalars (each (n_frames, 34)) go to its lookup tables, vectors (each (n_frames, 34, 16)) to its least
squares; :data:`CANDIDATES` and :data:`VECTOR_CANDIDATES` say whether the network already sees each one.
Everything is computed from one example's analysis (:func:`edge.dsp.oracle_gains`): the features the
network sees, the noisy spectra, and for the positive control the target's band energies.
"""

import numpy as np

from edge.dsp.bands import band_centres_bins, band_matrix, power_spectrum
from edge.dsp.constants import LOOKAHEAD_FRAMES, N_BANDS
from edge.dsp.features import COHERENCE, LOG_ENERGY
from edge.dsp.noise_floor import floor_features

_EPS = 1e-12
#: Standard deviation of the noise on the positive control's a-priori SNR (the target's own information, blurred).
CONTROL_BLUR_DB = 10.0
#: name -> whether the network sees it ("derived": computed from what it sees)
CANDIDATES = {"log energy": "yes", "pitch coherence": "yes", "energy change": "derived",
              "noise floor (v3)": "derived", "in-band flatness": "no", "in-band shape change": "no",
              "energy change 20 ms past the look-ahead": "no",
              "a-priori SNR, blurred (positive control)": "no"}
#: Vector candidates, each 16 values per band-frame (8 for this frame, 8 for the last), fitted by least squares:
#: the levels of the 8 bands around a band (the band itself excluded, relative to it: the network sees these) and
#: the shape of the band's own spectrum at 8 points across its support (what the band energy averages away).
VECTOR_CANDIDATES = {"levels of the 8 bands around it, this frame and the last": "yes",
                     "in-band spectral shape at 8 points, this frame and the last": "no"}
VECTOR_POINTS = 8
#: Frame candidates: one vector per frame for all bands, fitted by least squares per band: everything across
#: the spectrum in the frames the network's output about a frame has seen (2 before it to 2 after, the look-ahead).
FRAME_CANDIDATES = {"all 34 band levels, the 5 frames it has seen (170 values)": "yes",
                    "the log spectrum at 96 points, the 5 frames it has seen (480 values)": "no"}
SPECTRUM_POINTS = 96
CONTEXT_FRAMES = (-2, -1, 0, 1, 2)
#: Frames past the look-ahead for the candidate of what more latency would show the network.
EXTRA_LOOKAHEAD_FRAMES = 2


def in_band_structure(spectra):
    """``(flatness, shape change)`` per frame and band, each (n_frames, 34), of complex spectra (n_frames, 481)."""
    weights = band_matrix()
    width = weights.sum(axis=1)
    power = power_spectrum(spectra) + _EPS
    arithmetic = power @ weights.T / width
    geometric = np.exp(np.log(power) @ weights.T / width)
    flatness = geometric / arithmetic
    magnitude = np.sqrt(power)
    previous = np.vstack([magnitude[:1], magnitude[:-1]])
    cross = (magnitude * previous) @ weights.T
    norm = np.sqrt((power @ weights.T) * (previous ** 2 @ weights.T))
    return flatness, 1.0 - cross / norm


def future_change(log_energy, frames):
    """Each band's log energy ``frames`` past the network's look-ahead, minus the last frame it sees (the
    network at frame t sees up to t + 2 for the output about t; 0 where the example ends)."""
    seen_until = np.vstack([log_energy[LOOKAHEAD_FRAMES:], np.repeat(log_energy[-1:], LOOKAHEAD_FRAMES, axis=0)])
    beyond = np.vstack([log_energy[LOOKAHEAD_FRAMES + frames:],
                        np.repeat(log_energy[-1:], LOOKAHEAD_FRAMES + frames, axis=0)])
    return beyond - seen_until


def with_last_frame(values):
    """(n, 34, k) -> (n, 34, 2k): each frame's values, then the last frame's (the first frame repeats itself)."""
    return np.concatenate([values, np.concatenate([values[:1], values[:-1]])], axis=2)


def band_neighbourhood(log_energy):
    """The log energies of bands b-3 .. b+4 but b, relative to band b's, this frame and the last: (n, 34, 16)."""
    around = np.clip(np.arange(N_BANDS)[:, None] + np.array([-4, -3, -2, -1, 1, 2, 3, 4])[None, :], 0, N_BANDS - 1)
    return with_last_frame(log_energy[:, around] - log_energy[:, :, None])


def in_band_shape(spectra, points=VECTOR_POINTS):
    """Each band's log bin power at ``points`` places across its triangle (centre of band b-1 to that of b+1),
    less their mean (the band energy says the level; this is the shape), this frame and the last: (n, 34, 2 points)."""
    centres = band_centres_bins().astype(np.float64)
    low = np.concatenate([[0.0], centres[:-1]])
    high = np.concatenate([centres[1:], [centres[-1] + 80.0]])              # the last band runs to 24 kHz
    where = low[:, None] + (high - low)[:, None] * np.linspace(0, 1, points)[None, :]       # (34, points) bins
    log_power = np.log10(power_spectrum(spectra) + 1e-9)                      # (n, 481)
    left = np.floor(where).astype(int)
    right = np.minimum(left + 1, log_power.shape[1] - 1)
    share = where - left
    shape = log_power[:, left] * (1 - share) + log_power[:, right] * share   # (n, 34, points)
    return with_last_frame(shape - shape.mean(axis=2, keepdims=True))


def in_context(values, offsets=CONTEXT_FRAMES):
    """(n, k) -> (n, k * len(offsets)): each frame's values at those frame offsets (the ends repeat)."""
    n = values.shape[0]
    return np.hstack([values[np.clip(np.arange(n) + offset, 0, n - 1)] for offset in offsets])


def spectrum_points(spectra, points=SPECTRUM_POINTS):
    """The log bin power at ``points`` places spaced evenly on the ERB scale from 0 to 20 kHz: (n, points)."""
    from edge.dsp.bands import erb_from_hz, hz_from_erb
    from edge.dsp.constants import BANDS_TOP_HZ, BIN_HZ
    where = hz_from_erb(np.linspace(0.0, float(erb_from_hz(BANDS_TOP_HZ)), points)) / BIN_HZ
    log_power = np.log10(power_spectrum(spectra) + 1e-9)
    left = np.minimum(np.floor(where).astype(int), log_power.shape[1] - 2)
    share = where - left
    return log_power[:, left] * (1 - share) + log_power[:, left + 1] * share


def frame_values(features, spectra):
    """Every candidate of :data:`FRAME_CANDIDATES` for one example's frames, each (n_frames, k)."""
    names = list(FRAME_CANDIDATES)
    return {names[0]: in_context(features[:, LOG_ENERGY]), names[1]: in_context(spectrum_points(spectra))}


def candidate_values(features, spectra, clean_energy, noisy_energy, rng):
    """Every candidate of :data:`CANDIDATES` for one example's frames, each (n_frames, 34)."""
    log_energy = features[:, LOG_ENERGY]
    flatness, shape_change = in_band_structure(spectra)
    snr_db = 10 * np.log10((clean_energy + 1e-9) / (noisy_energy + 1e-9))
    return {"a-priori SNR, blurred (positive control)": snr_db + rng.normal(0, CONTROL_BLUR_DB, snr_db.shape),
            "log energy": log_energy, "pitch coherence": features[:, COHERENCE],
            "energy change": np.diff(log_energy, axis=0, prepend=log_energy[:1]),
            "noise floor (v3)": floor_features(log_energy[None])[0],
            "energy change 20 ms past the look-ahead": future_change(log_energy, EXTRA_LOOKAHEAD_FRAMES),
            "levels of the 8 bands around it, this frame and the last": band_neighbourhood(log_energy),
            "in-band spectral shape at 8 points, this frame and the last": in_band_shape(spectra),
            "in-band flatness": flatness, "in-band shape change": shape_change}
