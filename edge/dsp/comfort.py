"""Comfort noise: where the gains suppress, the output keeps a steady background instead of digital silence.

Why: a suppressor that takes a band to its floor leaves digital silence between what it lets
through (residual echo bursts, the talker). Listeners hear that as pumping, and AECMOS,
trained on listeners' ratings, rates such an output as echo left: on the team's echo set a
joint model's far-end single talk rose from AECMOS echo 2.88 to 3.11 with this comfort noise
20 dB below the background, and to 3.92 at the background's level, while the near talker
alone lost PESQ-WB (docs/echo.md, *Comfort noise*). Telephone echo control fills the suppressed
part with noise shaped like the background for the same reason (ITU-T G.168's comfort noise;
WebRTC's AEC3 does it inside its suppressor, which no library exposes on its own, so it is
done here, in our band-gain chain).

Per frame, on the frame the gains are applied to:

1. background per band, by minimum statistics (Martin 2001): the band energy smoothed
   over about 50 ms, its minimum over the last ``WINDOW_FRAMES`` frames (1.6 s, as
   ``SUBWINDOWS`` sub-window minima), raised by ``MINIMUM_BIAS_DB`` (one constant instead of
   Martin's adaptive correction: on stationary white and pink noise the comfort noise lands
   within 2 dB of ``level_db`` in every octave, tested);
2. fill per band: ``(1 - g_b^2) * background_b * 10^(level_db / 10)``, the part of the
   background the gain took out, ``level_db`` below the background;
3. noise: a complex Gaussian per bin with that power (bands interpolated to bins as the
   gains are), added to the output spectrum.

Speech and the talker's bands (gain near 1) get nearly no fill; a digitally silent input
has no background and gets none, and neither do the first ``START_FRAMES`` of a stream (1.8 s:
the tracker starts from 0, and its first sub-window holds the enhancer's two empty look-ahead
frames, rather than guess the background from what may be speech). The noise comes from a seeded generator, so a run is
reproducible sample for sample.
"""

import numpy as np

from .bands import bins_from_bands
from .constants import N_BANDS, N_BINS

#: First-order smoothing of the band energies before the minimum, per 10 ms frame (about 50 ms).
SMOOTHING_PER_FRAME = 0.8
#: The minimum is taken over SUBWINDOWS sub-windows of SUBWINDOW_FRAMES frames each (1.6 s).
SUBWINDOWS, SUBWINDOW_FRAMES = 8, 20
WINDOW_FRAMES = SUBWINDOWS * SUBWINDOW_FRAMES
#: Frames of a stream before the first fill (the window, plus the sub-window that held the start).
START_FRAMES = WINDOW_FRAMES + SUBWINDOW_FRAMES
#: How far that minimum sits under a stationary background's mean: 0.4 dB in the top bands, 3.8 dB in the
#: lowest (fewer bins, so more variance); one constant between them keeps every octave within 2 dB.
MINIMUM_BIAS_DB = 1.5
#: Smoothed energies below this are flushed to 0: hours of digital silence would otherwise decay into
#: denormals, which cost several times a normal multiply on many CPUs.
_DENORMAL_GUARD = 1e-30
#: Allowed ``level_db``: at or below the background, and not so far below that it is inaudible.
LEVEL_DB_RANGE = (-60.0, 0.0)


def check_level_db(level_db):
    """Validate a comfort-noise level (None: off); raises ValueError saying what is allowed."""
    low, high = LEVEL_DB_RANGE
    if level_db is not None and not (np.isfinite(level_db) and low <= level_db <= high):
        raise ValueError(f"comfort_noise_db must be in {low:g}..{high:g} dB (below the input's background) "
                         f"or None (off), got {level_db!r}")
    return level_db


def fill_power_ratio(level_db):
    """The fill's power relative to the tracked minimum for ``level_db`` (validated), bias included."""
    return float(10.0 ** ((check_level_db(level_db) + MINIMUM_BIAS_DB) / 10.0))


class ComfortNoise:
    """Background tracker and noise filler, state and scratch preallocated.

    Args:
        weights: the triangular band matrix (N_BANDS, N_BINS) the gains use.
        level_db: the comfort noise's level relative to the input's background, in dB (-60..0).
        seed: the noise generator's seed.
    """

    def __init__(self, weights, level_db, seed=0):
        self.weights = weights
        self.fill_power_ratio = fill_power_ratio(level_db)
        # The power one bin carries when its band holds energy E: E / (the band's weight in bins).
        self._per_bin = 1.0 / weights.sum(axis=1)
        self._seed = seed
        self.smoothed = np.zeros(N_BANDS)
        self.subwindow_min = np.full(N_BANDS, np.inf)
        self.minima = np.zeros((SUBWINDOWS, N_BANDS))
        self.background = np.zeros(N_BANDS)
        self._fill = np.zeros(N_BANDS)
        self._bin_power = np.zeros(N_BINS)
        self._gaussian = np.zeros((2, N_BINS))
        self.reset()

    def reset(self):
        """Forget the background (stream restart); the noise sequence starts again."""
        self.rng = np.random.default_rng(self._seed)
        self.smoothed[:] = 0.0
        self.subwindow_min[:] = np.inf
        self.minima[:] = 0.0
        self.background[:] = 0.0
        self.frames = 0

    def track(self, band_energy):
        """Update the background with one frame's input band energies; returns the background per band."""
        self.smoothed *= SMOOTHING_PER_FRAME
        self.smoothed += (1.0 - SMOOTHING_PER_FRAME) * band_energy
        self.smoothed[self.smoothed < _DENORMAL_GUARD] = 0.0
        np.minimum(self.subwindow_min, self.smoothed, out=self.subwindow_min)
        self.frames += 1
        if self.frames % SUBWINDOW_FRAMES == 0:
            self.minima[(self.frames // SUBWINDOW_FRAMES) % SUBWINDOWS] = self.subwindow_min
            self.subwindow_min[:] = np.inf
        # The current sub-window counts too, so a background that falls is followed within one sub-window.
        np.min(self.minima, axis=0, out=self.background)
        return np.minimum(self.background, self.subwindow_min, out=self.background)

    def add(self, spectrum, band_energy, gain, power_ratio=None):
        """Track ``band_energy`` (the input frame's) and add the fill for ``gain`` (final band gains) to ``spectrum``.

        ``power_ratio`` (:func:`fill_power_ratio`) replaces the level given at construction for this frame;
        0 tracks the background without filling.
        """
        background = self.track(band_energy)
        ratio = self.fill_power_ratio if power_ratio is None else power_ratio
        if ratio == 0.0:
            return spectrum
        fill = self._fill
        np.square(gain, out=fill)
        np.subtract(1.0, fill, out=fill)
        np.maximum(fill, 0.0, out=fill)
        fill *= background
        fill *= self._per_bin
        # Each of the real and imaginary parts carries the full per-bin power, not half: the input's frames
        # overlap-add in phase, independent noise frames only in power, which would leave the noise 3 dB short.
        fill *= ratio
        power = bins_from_bands(fill, self.weights, out=self._bin_power)
        np.sqrt(power, out=power)
        gaussian = self.rng.standard_normal(out=self._gaussian)
        gaussian *= power
        spectrum.real += gaussian[0]
        spectrum.imag += gaussian[1]
        return spectrum
