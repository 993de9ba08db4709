"""The 34 noise-floor inputs of feature version 3: each band's level over its tracked noise floor.

A floor model (``lite_echo_floor``, 172 inputs) sees the 138 inputs of a joint
model (:mod:`edge.dsp.features`, :mod:`edge.dsp.echo_features`), then::

    [138:172]  band level over its noise floor, in the log-energy features' units (1 = 30 dB),
               clipped to [-0.5, 2]; 0 where the band is digitally silent or not yet heard

Why: the network leaves noise in bands where ideal gains would remove it, most on
real recordings (docs/results.md, *Does a setting close the BAK gap*). Every
classical suppressor decides a band's gain from its level over a slowly tracked
floor (the a-posteriori SNR). A GRU can learn such a tracker, but a minimum
that falls at once and rises slowly is hard for it to build from 4-second
training examples; here the DSP hands it over, and the network still decides.

The tracker, per band, on the normalised log energy ``l`` (features[0:34]):

1. ``s``: ``l`` smoothed, ``SMOOTHING_PER_FRAME`` per 10 ms frame (about 30 ms);
2. floor ``f = min(s, f + RISE)``: it falls to the smoothed level at once and
   rises by ``RISE_DB_PER_S`` only, so a talker lifts it little and one pause in
   the band finds the floor again;
3. a band starts (``s = f = l``) on its first frame above ``SILENT_LEVEL``;
   digitally silent frames (a muted microphone, a dropout) move nothing.

:class:`NoiseFloor` runs on one frame ``(34,)`` or on a batch ``(..., 34)``;
:func:`floor_features` runs it over sequences, and :func:`model_inputs` widens
stored features to a model's width. The device (the enhancer), the feature
cache's readers in training, the converter's calibration and its proof all call
these, so the values are the same everywhere.
"""

import numpy as np

from .constants import N_BANDS, N_FEATURES, N_FLOOR_FEATURES, N_FLOOR_JOINT_FEATURES, N_JOINT_FEATURES
from .features import LOG_ENERGY, LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE

__all__ = ["N_FLOOR_FEATURES", "N_FLOOR_JOINT_FEATURES", "FLOOR", "NoiseFloor", "floor_features", "model_inputs"]

#: Where a floor model's 34 floor inputs sit: after the joint model's 138.
FLOOR = slice(N_JOINT_FEATURES, N_FLOOR_JOINT_FEATURES)

_DB_PER_UNIT = 10.0 / LOG_ENERGY_SCALE                            # 30 dB per unit of the log-energy feature
#: Smoothing of the log level per 10 ms frame (the old value's share).
SMOOTHING_PER_FRAME = 0.7
#: How fast the floor may rise; it falls at once.
RISE_DB_PER_S = 5.0
_RISE_PER_FRAME = RISE_DB_PER_S / 100.0 / _DB_PER_UNIT
#: A band below this level (an energy under 1.2e-9: within 1 dB of the features' 1e-9 floor) is digitally silent.
SILENT_LEVEL = (np.log10(1.2e-9) + LOG_ENERGY_OFFSET) * LOG_ENERGY_SCALE
#: The inputs' range, in feature units: 15 dB under the floor (the level dips) to 60 dB over it.
CONTRAST_RANGE = (-0.5, 2.0)


class NoiseFloor:
    """Per-band noise-floor tracker for one stream, or a batch of streams (``shape`` (..., 34)).

    All state is allocated once; :meth:`step` allocates nothing.
    """

    def __init__(self, shape=(N_BANDS,)):
        self.smoothed = np.zeros(shape)
        self.floor = np.zeros(shape)
        self.heard = np.zeros(shape, dtype=bool)                  # the band has had a non-silent frame
        self._active = np.zeros(shape, dtype=bool)
        self._waking = np.zeros(shape, dtype=bool)
        self._scratch = np.zeros(shape)

    def reset(self):
        self.smoothed[...] = 0.0
        self.floor[...] = 0.0
        self.heard[...] = False

    def step(self, log_energy, out):
        """Update with one frame's normalised log energies (..., 34) and write its floor inputs into ``out``."""
        active, waking, scratch = self._active, self._waking, self._scratch
        np.greater(log_energy, SILENT_LEVEL, out=active)
        np.logical_not(self.heard, out=waking)
        waking &= active
        np.copyto(self.smoothed, log_energy, where=waking)
        np.copyto(self.floor, log_energy, where=waking)
        self.heard |= active
        # s += (1 - a) (l - s), f = min(s, f + rise): only where the band is heard now.
        np.subtract(log_energy, self.smoothed, out=scratch)
        scratch *= 1.0 - SMOOTHING_PER_FRAME
        scratch *= active
        self.smoothed += scratch
        np.add(self.floor, _RISE_PER_FRAME, out=scratch)
        np.minimum(scratch, self.smoothed, out=scratch)
        np.copyto(self.floor, scratch, where=active)
        np.subtract(log_energy, self.floor, out=out)
        np.clip(out, *CONTRAST_RANGE, out=out)
        out *= active
        return out


def floor_features(log_energy):
    """The floor inputs of whole sequences: ``log_energy`` (..., n_frames, 34) -> (..., n_frames, 34).

    Runs :class:`NoiseFloor` frame by frame from a fresh state, as a stream that starts there.
    """
    log_energy = np.asarray(log_energy, dtype=np.float64)
    out = np.zeros(log_energy.shape)
    tracker = NoiseFloor(log_energy.shape[:-2] + (N_BANDS,))
    for t in range(log_energy.shape[-2]):
        tracker.step(log_energy[..., t, :], out[..., t, :])
    return out


def model_inputs(features, n_features):
    """Stored features (..., n_frames, 70 or 138) widened or cut to a model's ``n_features`` (float32).

    Missing far-end inputs are 0 (no loudspeaker reference, as on a device
    without one); a floor model's inputs (172) are computed from the log
    energies; a narrower model reads the first ``n_features``.
    """
    features = np.asarray(features)
    out = np.zeros(features.shape[:-1] + (n_features,), np.float32)
    kept = min(n_features, features.shape[-1], N_JOINT_FEATURES)
    out[..., :kept] = features[..., :kept]
    if n_features == N_FLOOR_JOINT_FEATURES:
        out[..., FLOOR] = floor_features(features[..., LOG_ENERGY])
    elif n_features not in (N_FEATURES, N_JOINT_FEATURES):
        raise ValueError(f"a model takes {N_FEATURES}, {N_JOINT_FEATURES} or {N_FLOOR_JOINT_FEATURES} inputs, "
                         f"not {n_features}")
    return out
