"""What the daemon does when a frame would miss its deadline.

:class:`DeadlineGains` wraps the network. Before each call it predicts the
frame's finish time: time already spent on the frame plus the network's recent
cost. If that passes the deadline, the configured policy replaces the network
for this frame, and the activation is counted:

* ``bypass``: gains 1 and no pitch filtering: the audio passes through
  unchanged (level-matched), 30 ms late like the processed stream;
* ``hold``: the last gains and strengths again, the network skipped;
* ``drop-model``: a DSP-only noise suppressor for ``drop_model_frames`` frames;
* ``off``: never skip the network (misses are still counted by the loop), for
  bit-exact runs such as tests and file processing.

The cost estimate is the last call's cost when that was slower than the
recent average, else the average; while the network is skipped it decays, so
the network is retried instead of skipped forever.
"""

import numpy as np

from edge.dsp.constants import N_BANDS
from edge.dsp.features import LOG_ENERGY, LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE

COST_AVERAGING = 0.1         # weight of the newest network call in the cost estimate
COST_DECAY_WHEN_SKIPPED = 0.8


class DspOnlyGains:
    """A classical per-band suppressor from the features alone (the drop-model fallback).

    Tracks each band's noise floor (fast down, slow up) and applies a
    Wiener-like gain with a 15 dB floor.
    """

    RISE_PER_FRAME = 1.002
    FLOOR = 10 ** (-15 / 20)

    def __init__(self):
        self.noise = np.full(N_BANDS, np.inf)
        self._energy = np.zeros(N_BANDS)
        self.gain = np.ones(N_BANDS)
        self.strength = np.zeros(N_BANDS)

    def __call__(self, features):
        energy = self._energy
        np.multiply(features[LOG_ENERGY], 1.0 / LOG_ENERGY_SCALE, out=energy)
        energy -= LOG_ENERGY_OFFSET
        np.power(10.0, energy, out=energy)
        np.minimum(self.noise * self.RISE_PER_FRAME, energy, out=self.noise)
        np.divide(self.noise, energy + 1e-12, out=self.gain)
        np.subtract(1.0, self.gain, out=self.gain)
        np.maximum(self.gain, self.FLOOR ** 2, out=self.gain)
        np.sqrt(self.gain, out=self.gain)
        return self.gain, self.strength


class DeadlineGains:
    """Gain source applying the overrun policy around the network (see module doc).

    Args:
        network: the gain source to protect (a ModelRunner).
        policy: ``bypass``, ``hold`` or ``drop-model``.
        deadline_s: the frame budget (0.010).
        clock: monotonic seconds; injectable for tests.
        drop_model_frames: frames of DSP-only processing per ``drop-model`` activation.
    """

    def __init__(self, network, policy, deadline_s, clock, drop_model_frames=100):
        self.network, self.policy, self.deadline_s, self.clock = network, policy, deadline_s, clock
        self.drop_model_frames = drop_model_frames
        self.fallback = DspOnlyGains()
        self.frame_start = 0.0
        self.cost_estimate_s = 0.0
        self._average_cost_s = 0.0
        self.activations = 0
        self.bypass = False              # forced by SIGUSR1
        self._dsp_only_left = 0
        self._unity, self._zero = np.ones(N_BANDS), np.zeros(N_BANDS)
        self._last = (self._unity.copy(), self._zero.copy())

    def start_frame(self, now):
        """Mark the moment the frame's audio arrived."""
        self.frame_start = now

    def __call__(self, features):
        if self.policy == "drop-model":
            fallback_gain = self.fallback(features)            # keeps its noise floor current
        if self.bypass:
            return self._unity, self._zero
        if self._dsp_only_left > 0:
            self._dsp_only_left -= 1
            return fallback_gain
        now = self.clock()
        if self.policy != "off" and now - self.frame_start + self.cost_estimate_s > self.deadline_s:
            self.activations += 1
            self.cost_estimate_s *= COST_DECAY_WHEN_SKIPPED
            if self.policy == "bypass":
                return self._unity, self._zero
            if self.policy == "hold":
                return self._last
            self._dsp_only_left = self.drop_model_frames - 1
            return fallback_gain
        gain, strength = self.network(features)
        cost = self.clock() - now
        self._average_cost_s += COST_AVERAGING * (cost - self._average_cost_s)
        # A slow call is trusted at once (the next frame is likely slow too); a fast one only on average.
        self.cost_estimate_s = max(cost, self._average_cost_s)
        np.copyto(self._last[0], gain)
        np.copyto(self._last[1], strength)
        return gain, strength

    def reset(self):
        self._dsp_only_left = 0
        reset = getattr(self.network, "reset", None)
        if reset is not None:
            reset()
