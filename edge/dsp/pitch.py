"""Pitch tracking: correlation search plus a Viterbi track over candidates.

Per frame:

1. *Coarse search.* The input is low-passed (24-tap FIR) and decimated by 4
   (12 kHz); the normalised correlation of the newest 20 ms against itself
   delayed by every lag of 15..192 (60..768 samples at 48 kHz) comes from one
   direct correlation and a running energy sum.
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
   When the smoothed decision for t - LOOKAHEAD_FRAMES is the lag that frame
   decided online (about 9 frames in 10), its refinement then, on the same
   samples, is reused.
"""

import numpy as np

from .constants import (HOP_SAMPLES, LOOKAHEAD_FRAMES, PITCH_DECIMATION, PITCH_MAX_SAMPLES,
                        PITCH_MIN_SAMPLES, SAMPLE_RATE_HZ, WINDOW_SAMPLES)
from .iir import firwin_lowpass

N_CANDIDATES = 6
OCTAVE_BIAS = 0.04          # observation penalty per octave of lag
JUMP_COST_PER_OCTAVE = 0.6  # transition penalty per octave of change
REFINE_RADIUS = 3           # full-rate samples either side of 4 x coarse lag
DECIMATOR_TAPS = 24
DECIMATOR_CUTOFF_HZ = 2_500.0

_LAG_MIN = PITCH_MIN_SAMPLES // PITCH_DECIMATION           # 15
_LAG_MAX = PITCH_MAX_SAMPLES // PITCH_DECIMATION           # 192
_N_LAGS = _LAG_MAX - _LAG_MIN + 1
_SEG = WINDOW_SAMPLES // PITCH_DECIMATION                  # 240 decimated samples correlated
_DEC_HISTORY = _SEG + _LAG_MAX                             # 432
_DEC_HOP = HOP_SAMPLES // PITCH_DECIMATION                 # 120
_EPS = 1e-12
_ONES_WINDOW = np.ones(WINDOW_SAMPLES)

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
    # Entry i: the window against itself delayed by lag_hi - i.
    dots = np.correlate(block, current, "valid")
    delayed_energy = np.correlate(np.square(block), _ONES_WINDOW, "valid")
    delayed_energy *= float(np.dot(current, current))
    delayed_energy += _EPS
    np.sqrt(delayed_energy, out=delayed_energy)
    dots /= delayed_energy
    best = int(dots.argmax())
    return lag_hi - best, min(max(float(dots[best]), 0.0), 1.0)


class PitchTracker:
    """Streaming pitch tracker; all its state lives in this object (see module doc).

    The Viterbi over ``N_CANDIDATES`` (6) candidates runs on Python floats:
    a 6 x 6 step costs less in plain arithmetic than in a dozen numpy calls
    on arrays that small, and the operations are the same IEEE ones in the
    same order, so the track is identical.
    """

    def __init__(self):
        # Linear-phase FIR low-pass evaluated only at the kept (every 4th) samples.
        self._decimator = firwin_lowpass(DECIMATOR_TAPS, DECIMATOR_CUTOFF_HZ, SAMPLE_RATE_HZ)[::-1].copy()
        self._decimated = np.zeros(_DEC_HISTORY)
        self._lag_octaves = np.log2(np.arange(_LAG_MIN, _LAG_MAX + 1) / _LAG_MIN)
        self._octave_bias = OCTAVE_BIAS * self._lag_octaves
        self._lag_octaves_list = self._lag_octaves.tolist()
        self._norm_by_lag = np.empty(_N_LAGS)
        self._scores = np.empty(_N_LAGS)
        self._not_peak = np.ones(_N_LAGS, dtype=bool)          # the end points never peak
        self._squares = np.zeros(_DEC_HISTORY)
        self._energy = np.zeros(_DEC_HISTORY + 1)
        self._delayed_energy = np.zeros(_N_LAGS)
        self._view_source = self._view_end = self._view = None
        self.reset()

    def reset(self):
        """Forget all history (stream restart)."""
        self._decimated[:] = 0.0
        depth = LOOKAHEAD_FRAMES + 1
        # Per frame slot (a ring of depth frames): candidate lags (- _LAG_MIN), their octaves, back-pointers.
        self._candidates = [[0] * N_CANDIDATES for _ in range(depth)]
        self._octaves = [[0.0] * N_CANDIDATES for _ in range(depth)]
        self._backpointers = [[0] * N_CANDIDATES for _ in range(depth)]
        # The online decision's coarse lag and refined period per slot; -1: none yet.
        self._refined = [(-1, 0) for _ in range(depth)]
        self._path_score = [0.0] * N_CANDIDATES
        self._frame = 0

    def _coarse_correlation(self, history, window_end):
        """Normalised correlation for coarse lags 15..192 into ``self._norm_by_lag``."""
        dec = self._decimated
        dec[:-_DEC_HOP] = dec[_DEC_HOP:]
        np.matmul(self._decimator_inputs(history, window_end), self._decimator, out=dec[-_DEC_HOP:])
        current = dec[-_SEG:]
        # Index m <-> lag 192 - m; lags below 15 are not computed.
        xcorr = np.correlate(dec[:_SEG + _N_LAGS - 1], current, "valid")
        energy = self._energy
        np.square(dec, out=self._squares).cumsum(out=energy[1:])
        delayed_energy = np.subtract(energy[_SEG:_SEG + _N_LAGS], energy[:_N_LAGS], out=self._delayed_energy)
        np.maximum(delayed_energy, 0.0, out=delayed_energy)         # cumsum rounding
        delayed_energy *= float(np.dot(current, current))
        delayed_energy += _EPS
        np.sqrt(delayed_energy, out=delayed_energy)
        np.divide(xcorr[::-1], delayed_energy[::-1], out=self._norm_by_lag)

    def _decimator_inputs(self, history, window_end):
        """The 120 x 24 input samples of the decimator's kept outputs: a strided view into ``history``.

        Built once per history buffer and end (the stream passes the same ones every frame): the
        view follows the buffer's contents, and making it costs more than using it.
        """
        if history is not self._view_source or window_end != self._view_end:
            newest = history[window_end - HOP_SAMPLES - DECIMATOR_TAPS + PITCH_DECIMATION:window_end]
            self._view = np.ndarray((_DEC_HOP, DECIMATOR_TAPS), dtype=newest.dtype, buffer=newest,
                                    strides=(PITCH_DECIMATION * newest.strides[0], newest.strides[0]))
            self._view_source, self._view_end = history, window_end
        return self._view

    def _candidate_lags(self):
        """The ``N_CANDIDATES`` best coarse lags (index lag - 15) and their scores, as Python lists."""
        norm, scores, not_peak = self._norm_by_lag, self._scores, self._not_peak
        np.subtract(norm, self._octave_bias, out=scores)
        np.less_equal(norm[1:-1], norm[:-2], out=not_peak[1:-1])
        not_peak[1:-1] |= norm[1:-1] < norm[2:]
        np.subtract(scores, 2.0, out=scores, where=not_peak)     # non-peaks only as fillers
        picks = scores.argpartition(-N_CANDIDATES)[-N_CANDIDATES:]
        return picks.tolist(), scores[picks].tolist()

    def _viterbi(self, picks, scores, slot, previous):
        """One Viterbi step into ``slot``; returns the index of the best path end.

        Path score of candidate i: its score plus the best over predecessors j
        of (path score of j - JUMP_COST_PER_OCTAVE * |octave i - octave j|);
        scores are kept relative to the best (which is 0).
        """
        lag_octaves = self._lag_octaves_list
        octaves = [lag_octaves[pick] for pick in picks]
        previous_octaves = self._octaves[previous]
        previous_scores = self._path_score
        backpointers, path = self._backpointers[slot], [0.0] * N_CANDIDATES
        for i, octave in enumerate(octaves):
            best_j, best = 0, abs(octave - previous_octaves[0]) * -JUMP_COST_PER_OCTAVE + previous_scores[0]
            for j in range(1, N_CANDIDATES):
                arriving = abs(octave - previous_octaves[j]) * -JUMP_COST_PER_OCTAVE + previous_scores[j]
                if arriving > best:                         # the first of equals, as argmax
                    best_j, best = j, arriving
            backpointers[i] = best_j
            path[i] = scores[i] + best
        top = max(path)
        self._path_score = [score - top for score in path]
        self._candidates[slot] = picks
        self._octaves[slot] = octaves
        return path.index(top)

    def step(self, history, window_end):
        """Advance one frame.

        ``history`` holds the high-passed input, at least
        :data:`HISTORY_NEEDED` samples ending at ``window_end`` (exclusive),
        the newest frame last, and moves on by one hop per call. Returns
        ``(period_now, correlation_now, period_delayed)``: the online period
        and its correlation for the newest frame, and the smoothed period for
        the frame ``LOOKAHEAD_FRAMES`` earlier.
        """
        self._coarse_correlation(history, window_end)
        picks, scores = self._candidate_lags()
        depth = LOOKAHEAD_FRAMES + 1
        slot = self._frame % depth
        best = self._viterbi(picks, scores, slot, (self._frame - 1) % depth)
        self._frame += 1

        lag_now = picks[best] + _LAG_MIN
        period_now, correlation_now = refine_period(history, window_end, lag_now)
        self._refined[slot] = (lag_now, period_now)
        for back in range(LOOKAHEAD_FRAMES):
            best = self._backpointers[(slot - back) % depth][best]
        delayed_slot = (slot - LOOKAHEAD_FRAMES) % depth
        delayed_lag = self._candidates[delayed_slot][best] + _LAG_MIN
        refined_lag, refined_period = self._refined[delayed_slot]
        if delayed_lag == refined_lag:
            # The track kept that frame's online decision: refined then, on the same samples.
            period_delayed = refined_period
        else:
            period_delayed, _ = refine_period(history, window_end - LOOKAHEAD_FRAMES * HOP_SAMPLES, delayed_lag)
        return period_now, correlation_now, period_delayed
