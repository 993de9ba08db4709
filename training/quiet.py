"""Quiet lead-ins: the microphone's floor alone before an example's sound starts.

Every cached example starts with its noise at the first frame, from a zero
network state; an always-on daemon instead meets noise that starts while the
microphone hears only its floor, and the models trained without this
attenuated such noise 3.5-9 dB instead of 35-41 dB (tests/test_noise_onset.py).
With a share of ``fit --quiet-lead-share``, a batch's example gets its first
0.2-2 s replaced by a floor's features (white or pink self-noise at -90..-60
dBFS, sometimes 16-bit, sometimes digital silence) with targets of a signal
without speech (gain 0, strength 0, no voice), so the noise and speech start
mid-example. The floors' features come from ``edge.dsp``, like the cache's.
"""

import numpy as np

from edge.dsp import HOP_SAMPLES, SAMPLE_RATE_HZ

from .synth import DEFAULT_AUGMENTATION, quantise, self_noise

LEAD_FRAMES_RANGE = (20, 200)             # 0.2-2 s
FLOOR_DBFS_RANGE = DEFAULT_AUGMENTATION.self_noise_dbfs      # the mixtures' microphone floor
DIGITAL_SILENCE_SHARE = 0.2
SIXTEEN_BIT_SHARE = 0.5
BANK_SIZE = 32


def floor_signal(rng, seconds):
    """A microphone's floor alone (``training.synth.self_noise``), sometimes 16-bit, or digital silence."""
    samples = int(seconds * SAMPLE_RATE_HZ)
    if rng.random() < DIGITAL_SILENCE_SHARE:
        return np.zeros(samples)
    floor = self_noise(samples, rng.uniform(*FLOOR_DBFS_RANGE), rng)
    return quantise(floor, 16) if rng.random() < SIXTEEN_BIT_SHARE else floor


def lead_bank(count=BANK_SIZE, frames=LEAD_FRAMES_RANGE[1], seed=0):
    """``(count, frames, 70)`` float32: the features of ``count`` floors, as the stream computes them."""
    from edge.dsp import analyse_signal
    rng = np.random.default_rng(seed)
    seconds = frames * HOP_SAMPLES / SAMPLE_RATE_HZ
    return np.stack([analyse_signal(floor_signal(rng, seconds)).features[:frames] for _ in range(count)]
                    ).astype(np.float32)


def add_quiet_leads(features, gain, strength, vad, bank, share, rng, delay):
    """Give a ``share`` of the batch's examples a floor-only start, in place; targets are already ``delay``-ed.

    Returns the lead length (frames) of each example, 0 where none was added.
    """
    count, frames = features.shape[:2]
    lengths = np.zeros(count, dtype=np.int64)
    for row in np.flatnonzero(rng.random(count) < share):
        length = int(min(rng.integers(LEAD_FRAMES_RANGE[0], LEAD_FRAMES_RANGE[1] + 1), bank.shape[1],
                         frames - delay))
        lead = bank[rng.integers(len(bank)), :length]
        features[row, :length, :lead.shape[-1]] = lead
        features[row, :length, lead.shape[-1]:] = 0.0          # a floor alone: no echo, far-end inputs 0
        gain[row, delay:delay + length] = 0.0
        strength[row, delay:delay + length] = 0.0
        vad[row, delay:delay + length] = 0.0
        lengths[row] = length
    return lengths
