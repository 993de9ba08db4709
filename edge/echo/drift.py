"""Clock drift between the loudspeaker reference and the microphone: measure it, then follow it.

When the microphone and the loudspeaker run on different sound cards, their sample
clocks differ by 10-100 ppm (typically), so the echo slides against its reference:
100 ppm is 6 ms a minute. Without compensation MDF chases a filter whose taps move
by a sample every few seconds (high frequencies first), and the bulk delay is
re-set, restarting the filter, at every 10 ms of slide.

:class:`DriftEstimator` fits a line to the raw GCC-PHAT lags over the last minute:
its slope is the rate difference. :class:`DriftingDelayLine` is a
:class:`~edge.echo.delay.DelayLine` whose read side runs at the microphone's rate:
SpeexDSP's resampler reads ``1 / (1 + drift)`` reference samples per output sample,
so the delay it applies grows (or shrinks) with the echo's and MDF sees a still echo
path. Why SpeexDSP's resampler: it is in the library the canceller already loads
(no new dependency), it takes a fractional ratio that can be changed while it runs
without a restart (``set_rate_frac``), and it is the resampler PulseAudio uses by
default (``speex-float-N``), which its own echo canceller's drift compensation
adjusts. On PipeWire the graph resamples followers to the driver's clock already,
so the drift this measures there is near 0; it matters on ALSA-only set-ups with two
cards.
"""

import ctypes
import math

import numpy as np

from edge.echo.speex_mdf import library

#: Drift worth following (smaller ones move the echo by less than a sample in 20 s).
DRIFT_FOLLOW_PPM = 5.0
#: Drift worth a warning: 50 ppm moves the echo by 3 ms a minute.
DRIFT_WARN_PPM = 50.0
#: Beyond this the two streams do not run at one nominal rate (44.1 against 48 kHz is 88,000 ppm): not followed.
DRIFT_MAX_PPM = 1000.0
#: The estimate needs this long a span of confident lags.
DRIFT_MIN_SPAN_S = 10.0
#: Consecutive lags further apart than a drift up to DRIFT_MAX_PPM moves the echo between them plus this much
#: belong to different segments of the lag line (a period lost or repeated between the loudspeaker and the
#: microphone steps the echo by 10 ms; the strongest tap can jump between two reflections), and the drift is fitted
#: within segments only: a line through lags on both sides of a 10 ms step read 282 ppm on a synthetic clip
#: (+167..+477 on the PipeWire lab). 2 ms: above the strongest tap's jitter on the lab's room (4928..5004
#: samples, 1.6 ms), below a period's 10 ms.
SEGMENT_TOLERANCE_MS = 2.0
#: A new segment is reported as a step of the echo path once it holds this many lags after one that did.
STEP_RUN_LAGS = 3
#: SpeexDSP quality 0..10: 4 keeps the passband to ~20 kHz at 48 kHz (the reference's echo above is weak).
RESAMPLER_QUALITY = 4
_DEN = 65_521                     # a prime below 2^16: the resampler's ratio (_DEN - steps) / _DEN, never reduced


#: z of a two-sided 95 % interval (the normal distribution's 97.5th percentile).
_Z95 = 1.959963984540054


def theil_sen(x, y, groups=None):
    """``(slope, low, high)``: the Theil-Sen slope of ``y`` against ``x`` and its 95 % interval (Sen 1968,
    eq. 2.6, with ties), as SciPy's ``stats.theilslopes`` computes them, in numpy alone: the daemon never
    imports SciPy (78 MB resident, and an import of about a second inside the audio thread).

    ``groups``: pairs are taken within a group only, one common slope with an intercept per group (the seasonal
    Kendall slope of Hirsch, Slack and Smith 1982: the interval's variance is the groups' summed). All NaN when
    no group holds two points apart in ``x``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = np.zeros(x.size, int) if groups is None else np.asarray(groups)
    dx, dy = x[:, None] - x[None, :], y[:, None] - y[None, :]
    pairs = (dx > 0) & (groups[:, None] == groups[None, :])
    slopes = np.sort(dy[pairs] / dx[pairs])
    if slopes.size == 0:
        return float("nan"), float("nan"), float("nan")

    def ties(values):
        counts = np.unique(values, return_counts=True)[1]
        counts = counts[counts > 1].astype(float)
        return float(np.sum(counts * (counts - 1) * (2 * counts + 5)))
    variance = 0.0
    for group in np.unique(groups):
        member = groups == group
        n = int(np.sum(member))
        variance += (n * (n - 1) * (2 * n + 5) - ties(x[member]) - ties(y[member])) / 18.0
    sigma = np.sqrt(variance)
    upper = min(int(np.round((slopes.size + _Z95 * sigma) / 2.0)), slopes.size - 1)
    lower = max(int(np.round((slopes.size - _Z95 * sigma) / 2.0)) - 1, 0)
    return float(np.median(slopes)), float(slopes[lower]), float(slopes[upper])


class DriftEstimator:
    """The reference-to-microphone clock drift (ppm, positive: the echo arrives later and later) from lags.

    A Theil-Sen line (the median of pairwise slopes, :func:`theil_sen`) through the last minute of
    raw GCC-PHAT lags: the strongest tap of a room can jump between two reflections, and a least-squares
    line through such outliers read -69..+8 ppm on a clip with no drift at all (measured). The lags are cut
    into segments where they move faster than a drift can (a step of the echo path, or a jump to another
    reflection), and the slope is fitted within segments only, so a step bends nothing. :attr:`confident`
    says whether the slope's 95 % interval excludes 0.
    """

    def __init__(self, frame_samples, rate_hz, memory=120):
        self.frame_samples, self.memory = frame_samples, memory
        self._min_span_frames = DRIFT_MIN_SPAN_S * rate_hz / frame_samples
        self._tolerance_samples = SEGMENT_TOLERANCE_MS * rate_hz / 1000.0
        self._frames, self._lags, self._segments = [], [], []
        self.drift_ppm = None
        self.confident = False
        self.step_samples = None             # the step of the echo path the last push completed (None: none)

    def _segment_of(self, frame_index, lag_samples):
        """The new lag's segment: the last one's, unless it moved further than a drift can (see SEGMENT_...)."""
        if not self._lags:
            return 0
        frames_apart = frame_index - self._frames[-1]
        drift_bound_samples = DRIFT_MAX_PPM * 1e-6 * frames_apart * self.frame_samples
        moved = abs(lag_samples - self._lags[-1]) > drift_bound_samples + self._tolerance_samples
        return self._segments[-1] + int(moved)

    def _completed_step(self):
        """The step from the previous segment to this one, once both hold STEP_RUN_LAGS lags (else None)."""
        run, segments = STEP_RUN_LAGS, self._segments
        if len(segments) < 2 * run or len(set(segments[-run:])) != 1 or segments[-run - 1] == segments[-1]:
            return None
        if len(set(segments[-2 * run:-run])) != 1:
            return None
        return float(np.median(self._lags[-run:]) - np.median(self._lags[-2 * run:-run]))

    def push(self, frame_index, lag_samples):
        """One confident raw lag at ``frame_index``; returns the new estimate (None until 10 s are spanned)."""
        segment = self._segment_of(frame_index, lag_samples)
        self._frames = (self._frames + [frame_index])[-self.memory:]
        self._lags = (self._lags + [lag_samples])[-self.memory:]
        self._segments = (self._segments + [segment])[-self.memory:]
        self.step_samples = self._completed_step()
        if len(self._frames) < 10 or self._frames[-1] - self._frames[0] < self._min_span_frames:
            return self.drift_ppm
        slope, low, high = theil_sen(self._frames, self._lags, self._segments)
        if np.isnan(slope):                  # no segment holds two lags: nothing to fit yet
            return self.drift_ppm
        per_sample = 1e6 / self.frame_samples                    # samples per frame -> ppm
        self.drift_ppm = float(slope * per_sample)
        self.confident = bool(low * high > 0)
        return self.drift_ppm


class DriftingDelayLine:
    """A :class:`~edge.echo.delay.DelayLine` read ``drift_ppm`` slower than it is written (same interface).

    ``delay_samples`` is the delay now (it moves by ``drift_ppm`` samples per million); ``set_delay``
    re-anchors it. A delay below the resampler's look-ahead (:attr:`min_delay_samples`, 32 samples at quality 4) is
    raised to it; running out of the buffer either way re-anchors at the nearest end and counts a slip.
    """

    def __init__(self, frame_samples, max_delay_samples, delay_samples=0, drift_ppm=0.0, quality=RESAMPLER_QUALITY):
        self._lib = lib = library()
        error = ctypes.c_int(0)
        self._state = lib.speex_resampler_init_frac(1, _DEN, _DEN, _DEN, _DEN, quality, ctypes.byref(error))
        if not self._state:
            raise MemoryError(f"speex_resampler_init_frac failed (error {error.value})")
        self.frame_samples = n = frame_samples
        self._lookahead = int(lib.speex_resampler_get_input_latency(self._state))
        self.min_delay_samples = self._lookahead
        self.max_delay_samples = int(max_delay_samples)
        # room for the delay, a frame of slide each way and the look-ahead, in whole frames: writes never wrap
        self._size = -(-(self.max_delay_samples + 4 * n + 2 * self._lookahead) // n) * n
        self._ring = np.zeros(2 * self._size, np.float32)                     # doubled: reads are one slice
        self._written = self._fed = self._unread_lookahead = 0                # absolute sample counts
        self._out = np.zeros(n, np.float32)
        self._in_len, self._out_len = ctypes.c_uint32(), ctypes.c_uint32()
        self.slips = 0
        self._steps, self._step_error = 0, 0.0          # the ratio's numerator offset now, and the error fed back
        self.set_drift(drift_ppm)
        self.set_delay(delay_samples)

    @property
    def delay_samples(self):
        # the resampler has read `lookahead` samples past the output's position (none yet right after set_delay)
        return self._written - self._fed + self._lookahead - self._unread_lookahead

    def set_delay(self, delay_samples):
        if not 0 <= delay_samples <= self.max_delay_samples:
            raise ValueError(f"delay {delay_samples} outside 0..{self.max_delay_samples} samples")
        delay_samples = max(int(delay_samples), self._lookahead)
        self._lib.speex_resampler_reset_mem(self._state)
        self._lib.speex_resampler_skip_zeros(self._state)    # the first output is the first sample fed, not zeros
        self._fed = self._written - delay_samples
        self._unread_lookahead = self._lookahead               # skipped zeros: read on the next frame

    def set_drift(self, drift_ppm):
        """Read ``1 - drift_ppm / 1e6`` input samples per output sample from now on (no restart).

        SpeexDSP's ratio is an integer fraction, and ``set_rate_frac`` on a running state fails (returns an
        overflow and changes nothing) once the denominator squared passes 2^32 (measured: a change of drift
        on a running line had no effect with a 1e6 denominator). So the denominator is the prime _DEN (65,521:
        15 ppm steps) and the numerator moves by two steps at most from frame to frame, error-fed, so that its
        average is the drift; the read position then strays from the exact one by under 0.02 sample.
        (1 - d) for 1 / (1 + d): the difference, d squared, is below 1e-6 ppm.)
        """
        self.drift_ppm = float(drift_ppm)
        self._numerator_offset = self.drift_ppm * 1e-6 * _DEN

    def _set_steps(self, steps):
        if steps != self._steps:
            in_rate = _DEN - steps
            error = self._lib.speex_resampler_set_rate_frac(self._state, in_rate, _DEN, in_rate, _DEN)
            if error:
                raise RuntimeError(f"speex_resampler_set_rate_frac({in_rate}, {_DEN}) failed (error {error})")
            self._steps = steps

    def process(self, frame, out):
        """Write ``frame`` in, and ``out`` = the next frame of the stream read at the drifting rate."""
        n, size = self.frame_samples, self._size
        if self._written + n - self._fed > size:                 # the reader fell a buffer behind: slip forward
            self.slips += 1
            self.set_delay(self.max_delay_samples)
        # this frame's numerator offset: an odd whole number (an even one can be 0, which SpeexDSP reduces to
        # 1/1, rounding the read position's fraction away), error-fed so that its average is the drift
        wanted = self._numerator_offset + self._step_error
        steps = 2 * math.floor((wanted - 1) / 2 + 0.5) + 1          # a Python float: no numpy per frame
        self._step_error = wanted - steps
        self._set_steps(steps)
        start = self._written % size
        self._ring[start:start + n] = frame
        self._ring[start + size:start + size + n] = frame
        self._written += n
        produced = 0
        while produced < n:
            available = self._written - self._fed
            if available <= 0:
                break
            offset = self._fed % size
            self._in_len.value, self._out_len.value = available, n - produced
            self._lib.speex_resampler_process_float(
                self._state, 0, self._ring[offset:].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                ctypes.byref(self._in_len), self._out[produced:].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                ctypes.byref(self._out_len))
            if self._in_len.value == 0 and self._out_len.value == 0:
                break
            self._fed += self._in_len.value
            produced += self._out_len.value
        self._unread_lookahead = 0
        if produced < n:                                         # the reader caught up with the writer: slip back
            self._out[produced:] = 0.0
            self.slips += 1
            self.set_delay(min(self.max_delay_samples, n + self._lookahead))
        out[:] = self._out
        return out

    def close(self):
        if self._state:
            self._lib.speex_resampler_destroy(self._state)
            self._state = None

    def __del__(self):
        if getattr(self, "_lib", None) is not None:
            self.close()
