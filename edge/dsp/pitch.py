"""Pitch tracking: correlation search plus a Viterbi track over candidates.

Per frame:

1. *Coarse search.* The input is low-passed and decimated by 4 (12 kHz); the
   normalised correlation of the newest 20 ms against itself delayed by every
   lag of 15..192 (60..768 samples at 48 kHz) comes from one FFT
   cross-correlation and a running energy sum.
2. *Candidates.* The ``N_CANDIDATES`` highest local maxima of that curve,
   minus a small bias per octave of lag (so a period beats its multiples).
3. *Viterbi.* Each candidate's path score is its observation plus the best
   predecessor score minus a cost proportional to the jump in octaves. The
   track is causal: the *online* decision for frame t is the best path end at
   t (used by the features), and the *smoothed* decision for frame
   t - LOOKAHEAD_FRAMES is traced back from it (used by the comb filter, which
   runs that late anyway). Only ``LOOKAHEAD_FRAMES + 1`` frames of back-pointers
   are kept: the track adds no latency beyond the look-ahead the enhancer
   already has, and its memory is bounded.
4. *Refinement.* Each decision is refined at the full rate over +-3 samples.
"""

import numpy as np
from scipy import signal as sps

from .constants import (HOP_SAMPLES, LOOKAHEAD_FRAMES, PITCH_DECIMATION, PITCH_MAX_SAMPLES,
                        PITCH_MIN_SAMPLES, SAMPLE_RATE_HZ, WINDOW_SAMPLES)

N_CANDIDATES = 6
OCTAVE_BIAS = 0.04          # observation penalty per octave of lag
JUMP_COST_PER_OCTAVE = 0.6  # transition penalty per octave of change
REFINE_RADIUS = 3           # full-rate samples either side of 4 x coarse lag
DECIMATOR_CUTOFF_HZ = 2_000.0

_LAG_MIN = PITCH_MIN_SAMPLES // PITCH_DECIMATION           # 15
_LAG_MAX = PITCH_MAX_SAMPLES // PITCH_DECIMATION           # 192
_N_LAGS = _LAG_MAX - _LAG_MIN + 1
_SEG = WINDOW_SAMPLES // PITCH_DECIMATION                  # 240 decimated samples correlated
_DEC_HISTORY = _SEG + _LAG_MAX                             # 432
_FFT = 512
_DEC_HOP = HOP_SAMPLES // PITCH_DECIMATION
_EPS = 1e-12

#: Full-rate samples the tracker needs behind the newest sample, for the
#: refinement of the delayed (smoothed) decision.
HISTORY_NEEDED = WINDOW_SAMPLES + LOOKAHEAD_FRAMES * HOP_SAMPLES + PITCH_MAX_SAMPLES + REFINE_RADIUS


def refine_period(history, window_end, coarse_lag):
    """Best full-rate period within +-REFINE_RADIUS of ``4 * coarse_lag``.

    ``history`` is a 1-D array and ``window_end`` the index one past the last
    sample of the 960-sample window. Returns ``(period, correlation)``, the
    correlation being the normalised correlation clipped to [0, 1].
    """
    centre = PITCH_DECIMATION * int(coarse_lag)
    lag_lo = max(PITCH_MIN_SAMPLES, centre - REFINE_RADIUS)
    lag_hi = min(PITCH_MAX_SAMPLES, centre + REFINE_RADIUS)
    current = history[window_end - WINDOW_SAMPLES:window_end]
    block = history[window_end - WINDOW_SAMPLES - lag_hi:window_end - lag_lo]
    # Row i of `delayed` is the window delayed by lag_hi - i samples (a view, no copy).
    delayed = np.lib.stride_tricks.as_strided(
        block, shape=(lag_hi - lag_lo + 1, WINDOW_SAMPLES), strides=(block.strides[0],) * 2,
        writeable=False)
    dots = delayed @ current
    energy = np.cumsum(np.square(block))
    delayed_energy = energy[WINDOW_SAMPLES - 1:] - np.concatenate(([0.0], energy[:-WINDOW_SAMPLES]))
    norm = dots / np.sqrt(float(current @ current) * delayed_energy + _EPS)
    best = int(np.argmax(norm))
    return lag_hi - best, min(max(float(norm[best]), 0.0), 1.0)


class PitchTracker:
    """Streaming pitch tracker; all state lives in this object (see module doc)."""

    def __init__(self):
        self._decimator_sos = sps.butter(4, DECIMATOR_CUTOFF_HZ, fs=SAMPLE_RATE_HZ, output="sos")
        self._decimator_state = np.zeros((self._decimator_sos.shape[0], 2))
        self._decimated = np.zeros(_DEC_HISTORY)
        self._octave_bias = OCTAVE_BIAS * np.log2(np.arange(_LAG_MIN, _LAG_MAX + 1) / _LAG_MIN)
        self._norm_by_lag = np.empty(_N_LAGS)
        self._scores = np.empty(_N_LAGS)
        depth = LOOKAHEAD_FRAMES + 1
        self._candidates = np.full((depth, N_CANDIDATES), 100, dtype=np.int64)
        self._backpointers = np.zeros((depth, N_CANDIDATES), dtype=np.int64)
        self._path_score = np.zeros(N_CANDIDATES)
        self._frame = 0
        self.reset()

    def reset(self):
        """Forget all history (stream restart)."""
        self._decimator_state[:] = 0.0
        self._decimated[:] = 0.0
        self._candidates[:] = 100
        self._backpointers[:] = 0
        self._path_score[:] = 0.0
        self._frame = 0

    def _coarse_correlation(self, new_samples):
        """Normalised correlation for coarse lags 15..192 into ``self._norm_by_lag``."""
        filtered, self._decimator_state = sps.sosfilt(
            self._decimator_sos, new_samples, zi=self._decimator_state)
        # Keep the IIR state out of the denormal range during long silences.
        if np.abs(self._decimator_state).max() < 1e-30:
            self._decimator_state[:] = 0.0
        dec = self._decimated
        dec[:-_DEC_HOP] = dec[_DEC_HOP:]
        dec[-_DEC_HOP:] = filtered[PITCH_DECIMATION - 1::PITCH_DECIMATION]
        current = dec[-_SEG:]
        spectrum = np.fft.rfft(dec, _FFT)
        spectrum *= np.conj(np.fft.rfft(current, _FFT))
        xcorr = np.fft.irfft(spectrum, _FFT)[:_N_LAGS]      # index m <-> lag 192 - m
        energy = np.concatenate(([0.0], np.cumsum(np.square(dec))))
        delayed_energy = energy[_SEG:_SEG + _N_LAGS] - energy[:_N_LAGS]
        norm = xcorr / np.sqrt(float(current @ current) * delayed_energy + _EPS)
        self._norm_by_lag[:] = norm[::-1]

    def step(self, new_samples, history, window_end):
        """Advance one frame.

        ``new_samples`` are the 480 newest (high-passed) samples; ``history``
        holds at least :data:`HISTORY_NEEDED` samples ending at ``window_end``.
        Returns ``(period_now, correlation_now, period_delayed)``: the online
        period and its correlation for the newest frame, and the smoothed
        period for the frame ``LOOKAHEAD_FRAMES`` earlier.
        """
        self._coarse_correlation(new_samples)
        norm, scores = self._norm_by_lag, self._scores
        np.subtract(norm, self._octave_bias, out=scores)
        is_peak = np.zeros(_N_LAGS, dtype=bool)
        is_peak[1:-1] = (norm[1:-1] > norm[:-2]) & (norm[1:-1] >= norm[2:])
        scores[~is_peak] -= 2.0                                 # keep non-peaks only as fillers
        picks = np.argpartition(scores, -N_CANDIDATES)[-N_CANDIDATES:]
        lags = picks + _LAG_MIN
        observation = scores[picks]

        slot = self._frame % (LOOKAHEAD_FRAMES + 1)
        previous_lags = self._candidates[(self._frame - 1) % (LOOKAHEAD_FRAMES + 1)]
        jump = np.abs(np.log2(lags[:, None] / previous_lags[None, :]))
        transition = self._path_score[None, :] - JUMP_COST_PER_OCTAVE * jump
        best_previous = np.argmax(transition, axis=1)
        path = observation + transition[np.arange(N_CANDIDATES), best_previous]
        self._path_score[:] = path - path.max()
        self._candidates[slot] = lags
        self._backpointers[slot] = best_previous
        self._frame += 1

        best = int(np.argmax(path))
        period_now, correlation_now = refine_period(history, window_end, lags[best])
        for back in range(LOOKAHEAD_FRAMES):
            best = self._backpointers[(slot - back) % (LOOKAHEAD_FRAMES + 1)][best]
        delayed_lag = self._candidates[(slot - LOOKAHEAD_FRAMES) % (LOOKAHEAD_FRAMES + 1)][best]
        period_delayed, _ = refine_period(
            history, window_end - LOOKAHEAD_FRAMES * HOP_SAMPLES, delayed_lag)
        return period_now, correlation_now, period_delayed
