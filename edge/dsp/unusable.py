"""Input frames the chain cannot process, and their repair.

A sample that is NaN or infinite, or finite but so large that its square overflows
(above about 1.3e154, which a 64-bit float WAV can hold), poisons every running
statistic it reaches: energies become inf, then inf - inf = NaN, and a NaN in a
recursive state (the pitch tracker's path scores, the noise floor, the echo stage's
levels) never leaves it. So a frame is checked before any state sees it and, when
unusable, repaired: its non-finite samples become 0 and the rest are clipped to full
scale (such a frame is broken; what it held is not audio to keep).

``MAX_SAMPLE`` is 120 dB above full scale: no scaling of real audio reaches it
(unscaled 16-bit samples are 3.3e4), and under it every sum of squares the chain
forms stays far inside float64's range.
"""

import math

import numpy as np

#: The largest sample magnitude a frame may carry (full scale is 1.0).
MAX_SAMPLE = 1e6


def check(frame, max_sample=MAX_SAMPLE):
    """``(energy, usable)``: the frame's sum of squares, and whether every sample is finite and within
    ``max_sample``. One dot product proves an ordinary frame usable; only a loud or suspect one is scanned."""
    with np.errstate(over="ignore", invalid="ignore"):     # an overflow is the case looked for, not a warning
        energy = float(np.dot(frame, frame))
    if energy <= max_sample * max_sample:                 # so is every sample's square (NaN fails the test)
        return energy, True
    return energy, math.isfinite(energy) and float(np.max(np.abs(frame))) <= max_sample


def repair(frame):
    """In place (float64): non-finite samples to 0, the rest clipped to full scale (+-1); returns the energy."""
    np.nan_to_num(frame, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(frame, -1.0, 1.0, out=frame)
    return float(np.dot(frame, frame))
