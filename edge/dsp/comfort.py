"""Comfort noise: where the gains suppress, the output keeps a steady background instead of digital silence.

Why: a suppressor that takes a band to its floor leaves digital silence between what it lets
through (residual echo bursts, the talker). Listeners hear that as pumping, and AECMOS,
trained on listeners' ratings, rates such an output as echo left; the more background is kept,
the higher it rates the far-end single talk of the joint model, and the more the near talker
pays (docs/echo.md, *Comfort noise*). Telephone echo control fills the suppressed
part with noise shaped like the background for the same reason (ITU-T G.168's comfort noise;
WebRTC's AEC3 does it inside its suppressor, which no library exposes on its own, so it is
done here, in our band-gain chain).

Per frame, on the frame the gains are applied to:

1. background per band, tracked as WebRTC's AEC3 tracks its comfort noise's: the band
   energy smoothed over about 100 ms; below the estimate, the estimate falls to it at once,
   above it, the estimate rises by ``RISE_DB_PER_S`` only (0.5 dB/s), so a talker who goes
   on for seconds is not taken for the background, and one pause in a band is enough to
   find it. A band's first estimate is the minimum of its first ``LEARN_FRAMES`` (1.8 s,
   no fill meanwhile). Frames that hold digitally silent input (a muted microphone, a
   dropout; the caller says which) neither move the estimate nor get a fill, so a short mute
   does not drag it down; after ``LEARN_FRAMES`` of them the bands learn again. Raised by ``MINIMUM_BIAS_DB``:
   on stationary white and pink noise the comfort noise lands within 2 dB of ``level_db``
   in every octave (tested);
2. fill per band: ``(1 - g_b^2) * background_b * 10^(level_db / 10)``, the part of the
   background the gain took out, ``level_db`` relative to the background;
3. noise: a complex Gaussian per bin with that power (bands interpolated to bins as the
   gains are), added to the output spectrum.

Speech and the talker's bands (gain near 1) get nearly no fill; a digitally silent input
has no background and gets none. The noise comes from a seeded generator, so a run is
reproducible sample for sample.
"""

import numpy as np

from .bands import bins_from_bands
from .constants import N_BANDS, N_BINS

#: First-order smoothing of the band energies, per 10 ms frame (about 100 ms).
SMOOTHING_PER_FRAME = 0.9
#: How fast the background estimate may rise (AEC3: about 0.2 dB/s); it falls at once.
RISE_DB_PER_S = 0.5
_RISE_PER_FRAME = 10.0 ** (RISE_DB_PER_S / 10.0 / 100.0)
_FALL_KEEPS = 0.1                      # of the old estimate, when the energy is below it (AEC3's 0.1)
#: Frames a band learns its first estimate over (its minimum), from its first sound; no fill meanwhile.
LEARN_FRAMES = 180
_WARMUP_FRAMES = 5                     # the minimum ignores a band's waking frame and the 5 after it
#: Frames of a stream before the first fill: the learning, after the enhancer's empty look-ahead frames.
START_FRAMES = LEARN_FRAMES + 2
#: How far the estimate sits under a stationary background's mean (it rides the dips); one constant for
#: every band keeps each octave within 2 dB.
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
        raise ValueError(f"comfort_noise_db must be in {low:g}..{high:g} dB (relative to the input's background) "
                         f"or None (off), got {level_db!r}")
    return level_db


def fill_power_ratio(level_db):
    """The fill's power relative to the tracked background for ``level_db`` (validated), bias included."""
    return float(10.0 ** ((check_level_db(level_db) + MINIMUM_BIAS_DB) / 10.0))


class ComfortNoise:
    """Background tracker and noise filler, state and scratch preallocated.

    Args:
        weights: the triangular band matrix (N_BANDS, N_BINS) the gains use.
        seed: the noise generator's seed.

    The level comes with each frame (:meth:`add`'s ``power_ratio``), so one tracker serves both a general
    and a far-end level.
    """

    def __init__(self, weights, seed=0):
        self.weights = weights
        # The power one bin carries when its band holds energy E: E / (the band's weight in bins).
        self._per_bin = 1.0 / weights.sum(axis=1)
        self._seed = seed
        self.smoothed = np.zeros(N_BANDS)
        self.estimate = np.full(N_BANDS, np.inf)
        self.learning_left = np.full(N_BANDS, LEARN_FRAMES)
        self.background = np.zeros(N_BANDS)
        self._no_fill = np.zeros(N_BANDS)
        self._settled = np.zeros(N_BANDS)
        self._fill = np.zeros(N_BANDS)
        self._bin_power = np.zeros(N_BINS)
        self._gaussian = np.zeros((2, N_BINS))
        self.reset()

    def reset(self):
        """Forget the background (stream restart); the noise sequence starts again."""
        self.rng = np.random.default_rng(self._seed)
        self.smoothed[:] = 0.0
        self.estimate[:] = np.inf
        self.learning_left[:] = LEARN_FRAMES
        self.background[:] = 0.0
        self.held_frames = 0

    def track(self, band_energy, hold=False):
        """Update the background with one frame's input band energies; returns the background per band.

        ``hold``: the frame holds digitally silent input; the estimate stays, and the returned background
        is 0 (no fill for silence).
        """
        if hold:
            self.held_frames += 1
            if self.held_frames == LEARN_FRAMES:              # a long silence: the room may have changed
                self.smoothed[:] = 0.0
                self.estimate[:] = np.inf
                self.learning_left[:] = LEARN_FRAMES
            return self._no_fill
        self.held_frames = 0
        smoothed, estimate = self.smoothed, self.estimate
        # A band coming out of silence starts at its energy, not at a ramp up from 0 that the minimum would keep.
        waking = smoothed == 0.0
        smoothed *= SMOOTHING_PER_FRAME
        smoothed += (1.0 - SMOOTHING_PER_FRAME) * band_energy
        np.copyto(smoothed, band_energy, where=waking)
        smoothed[smoothed < _DENORMAL_GUARD] = 0.0
        smoothed[~np.isfinite(smoothed)] = 0.0                  # an overflow does not stick
        # Settled bands: fall at once to a lower energy, rise slowly towards a higher one.
        settled = self._settled
        np.multiply(estimate, _RISE_PER_FRAME, out=settled)
        falling = smoothed < estimate
        np.copyto(settled, (1.0 - _FALL_KEEPS) * smoothed + _FALL_KEEPS * estimate, where=falling)
        learning = self.learning_left > 0
        # Learning bands: their minimum so far, once the first frames (half-empty windows at a stream's start,
        # the high-pass filter's transient) are behind.
        np.copyto(estimate, np.minimum(estimate, smoothed), where=self.learning_left <= LEARN_FRAMES - _WARMUP_FRAMES)
        np.copyto(estimate, settled, where=~learning)
        self.learning_left[learning & ~waking] -= 1
        silent = smoothed == 0.0                                 # digital silence: learn again when it ends
        estimate[silent] = np.inf
        self.learning_left[silent] = LEARN_FRAMES
        np.copyto(self.background, estimate)
        self.background[self.learning_left > 0] = 0.0
        return self.background

    def add(self, spectrum, band_energy, gain, power_ratio, hold=False):
        """Track ``band_energy`` (the input frame's) and add the fill for ``gain`` (final band gains) to ``spectrum``.

        ``power_ratio``: :func:`fill_power_ratio` of this frame's level; 0 tracks the background without
        filling. ``hold``: as for :meth:`track`.
        """
        background = self.track(band_energy, hold)
        if power_ratio == 0.0:
            return spectrum
        fill = self._fill
        np.square(gain, out=fill)
        np.subtract(1.0, fill, out=fill)
        np.maximum(fill, 0.0, out=fill)
        fill *= background
        fill *= self._per_bin
        # Each of the real and imaginary parts carries the full per-bin power, not half: the input's frames
        # overlap-add in phase, independent noise frames only in power, which would leave the noise 3 dB short.
        fill *= power_ratio
        power = bins_from_bands(fill, self.weights, out=self._bin_power)
        np.sqrt(power, out=power)
        gaussian = self.rng.standard_normal(out=self._gaussian)
        gaussian *= power
        spectrum.real += gaussian[0]
        spectrum.imag += gaussian[1]
        return spectrum
