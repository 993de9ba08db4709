"""The bulk delay between the loudspeaker reference and the microphone: estimate, track, compensate.

The system delay (output buffers, the converter, the air) puts the echo tens of ms
after the reference. MDF's filter would have to spend taps on that silence, which
slows its convergence a lot (20 dB after 2 s with no delay, 7 dB with 65 ms, on a
noise-like far end: docs/echo.md), so the reference is delayed by the measured
bulk delay and the filter covers only the room.

:class:`DelayTracker` keeps about a second of both signals decimated to 12 kHz
(a 4-sample mean per frame: cheap, and whatever aliases does so identically in
the reference and its echo, so the delay peak stays where it is) and
every half second of active far end runs GCC-PHAT over it. An estimate counts
only when its peak stands out (confidence = peak / median of the correlation):
a weak or silent far end gives confident-looking nonsense otherwise. The
tracked delay is the median of the last accepted estimates. GCC-PHAT finds the
strongest tap, which can sit a few ms after the first, so the caller keeps a
margin below it.

Both windows are tapered at their ends (10 ms raised cosine). GCC-PHAT whitens the
cross-spectrum, so every bin counts alike, and the steps where a rectangular window
cuts into a loud signal are broadband: they outweigh an echo whose far end has little
energy above 2 kHz. The two windows start on the same sample, so their cut-in steps
line up at lag 0, and the microphone's end lines up with the reference's at the last
lag. On the PipeWire lab (tests/test_echo_pipewire.py, a loaded machine) 18 of 107
confident estimates came out at 0 before the taper, 2 at the range's edge, and none
after. Two in a row moved the tracked delay to 0 and restarted the linear filter
(2 runs of 5: 25 dB of echo removed instead of 40-50); one alone bent the drift line
(a two-clock warning of +396 ppm on one graph clock, in the CI run that failed).

The estimate's work is spread over three frames (the microphone's spectrum, the
reference's, then the correlation), each about a third of the 1.5 ms (x86) that
one frame paid before: a frame that ran it all was the echo path's p99. The
ring holds two frames more than the window, so both windows stay intact until
the third frame. The FFTs run once at construction, so the first estimate does
not pay numpy's first-call set-up (34 ms measured: a missed deadline).
"""

import numpy as np

#: The estimator's rate: 48 kHz / 4. Room echo's direct path is broadband, and 6 kHz of bandwidth
#: localises it to a few samples at a quarter of the cost.
DECIMATION = 4
#: The raised-cosine ramp at each end of both windows (see above). 10 ms is short beside the 1 s window, so the
#: echo's peak keeps its height (median confidence 46 -> 48 on the lab's recordings), and long beside a step.
TAPER_MS = 10.0


def taper(samples, ramp_samples):
    """A window of ``samples`` ones whose first and last ``ramp_samples`` rise and fall as a raised cosine."""
    window = np.ones(samples)
    if ramp_samples > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_samples) + 0.5) / ramp_samples)
        window[:ramp_samples] = ramp
        window[-ramp_samples:] = ramp[::-1]
    return window


def gcc_phat(reference, mic, max_lag, fft_samples=None, taper_samples=0):
    """(lag, confidence): by how many samples ``mic`` lags ``reference`` (0..max_lag) and how clearly.

    Phase transform: the cross-spectrum is whitened so the correlation has one sharp peak per path
    instead of the far end's own (speech or music) autocorrelation. Only causal lags are searched:
    the echo cannot come before the sound that makes it. ``taper_samples``: the raised-cosine ramp
    at each end of both signals (:func:`taper`; 0: none).
    """
    n = fft_samples or 1 << int(np.ceil(np.log2(reference.size + mic.size)))
    if taper_samples:
        reference, mic = reference * taper(reference.size, taper_samples), mic * taper(mic.size, taper_samples)
    return _phat_peak(np.fft.rfft(mic, n), np.fft.rfft(reference, n), n, max_lag)


class DelayTracker:
    """Tracks the reference-to-microphone bulk delay from 10 ms frames (float, [-1, 1]).

    :attr:`delay_samples` is None until the first confident estimate, then the median of the last
    ``history`` accepted ones (at the full rate). :meth:`push` returns True when it ran an estimate.
    """

    def __init__(self, rate_hz, frame_samples, max_delay_ms, window_s=1.0, hop_s=0.5, min_confidence=10.0,
                 active_dbfs=-50.0, active_share=0.6, history=3, taper_ms=TAPER_MS):
        if frame_samples % DECIMATION:
            raise ValueError(f"frame of {frame_samples} samples is not a multiple of {DECIMATION}")
        self.rate_hz, self.frame_samples = rate_hz, frame_samples
        self.max_lag = int(round(max_delay_ms * rate_hz / 1000 / DECIMATION))
        self.min_confidence, self.active_share, self.history = min_confidence, active_share, history
        self.hop_s = hop_s
        self.active_power = 10 ** (active_dbfs / 10)
        self._step = frame_samples // DECIMATION
        self._frames_per_window = int(round(window_s * rate_hz / frame_samples))
        self._hop_frames = max(1, int(round(hop_s * rate_hz / frame_samples)))
        # the window plus the largest lag: the echo of the window's last reference sample must be inside
        self._window = self._frames_per_window * self._step
        size = -(-(self._window + self.max_lag) // self._step) * self._step      # whole frames: no split writes
        self._region = size                      # what one estimate reads: the last `size` samples
        size += 2 * self._step                   # + two frames: the region stays intact while the stages run
        self._ring_far = np.zeros(2 * size)      # doubled ring: every window is one contiguous slice
        self._ring_mic = np.zeros(2 * size)
        self._size, self._write = size, 0
        self._active = np.zeros(self._region // self._step, bool)  # far-end activity, oldest first
        self._fft = 1 << int(np.ceil(np.log2(2 * self._region)))
        self.taper_samples = int(round(taper_ms * rate_hz / 1000 / DECIMATION))
        self._taper_window = taper(self._window, self.taper_samples)
        self._taper_region = taper(self._region, self.taper_samples)
        self._tapered = np.zeros(self._region)   # the tapered window or region, FFT'd from here
        self._frames_seen = 0
        self._accepted = []
        self._stage, self._start, self._mic_spectrum, self._far_spectrum = 0, 0, None, None
        self.delay_samples = None
        self.last_estimate = None            # (delay_samples, confidence) of the last run, accepted or not
        self.last_accepted = False           # whether that run's estimate counted toward delay_samples
        self.best_confidence = 0.0           # the highest confidence of any run inside the range (a diagnostic)
        gcc_phat(np.zeros(self._window), np.zeros(self._region), self.max_lag, self._fft)   # numpy's FFT set-up

    def push(self, mic, far):
        position = self._write
        for ring, samples in ((self._ring_far, far), (self._ring_mic, mic)):
            first = ring[position:position + self._step]
            np.mean(samples.reshape(self._step, DECIMATION), axis=1, out=first)
            ring[position + self._size:position + self._size + self._step] = first
        self._write = (position + self._step) % self._size
        self._active[:-1] = self._active[1:].copy()
        self._active[-1] = float(np.dot(far, far)) / far.size > self.active_power
        self._frames_seen += 1
        if self._stage == 1:                                  # 2nd frame: the reference's spectrum
            reference = np.multiply(self._ring_far[self._start:self._start + self._window], self._taper_window,
                                    out=self._tapered[:self._window])
            self._far_spectrum = np.fft.rfft(reference, self._fft)
            self._stage = 2
            return False
        if self._stage == 2:                                  # 3rd frame: the correlation and the decision
            self._stage = 0
            self._decide(*_phat_peak(self._mic_spectrum, self._far_spectrum, self._fft, self.max_lag))
            return True
        full = self._frames_seen * self._step >= self._region
        if not full or self._frames_seen % self._hop_frames:
            return False
        # the reference window: the region's oldest `window` samples; the mic: the same start, the whole region
        reference_frames = self._active[:self._frames_per_window]
        if reference_frames.mean() < self.active_share:
            return False
        self._start = (self._write - self._region) % self._size       # the region's oldest sample
        mic = np.multiply(self._ring_mic[self._start:self._start + self._region], self._taper_region,
                          out=self._tapered)
        self._mic_spectrum = np.fft.rfft(mic, self._fft)
        self._stage = 1                                       # 1st frame: the microphone's spectrum
        return False

    def _decide(self, lag, confidence):
        self.last_estimate = (lag * DECIMATION, confidence)
        if lag < self.max_lag:               # a peak on the range's edge is not counted below either
            self.best_confidence = max(self.best_confidence, confidence)
        # a peak on the range's edge may be the slope of one beyond it (seen on PipeWire at start-up): not taken
        self.last_accepted = confidence >= self.min_confidence and lag < self.max_lag
        if self.last_accepted:
            self._accepted = (self._accepted + [lag * DECIMATION])[-self.history:]
            self.delay_samples = int(np.median(self._accepted))


def _phat_peak(mic_spectrum, reference_spectrum, fft_samples, max_lag):
    """GCC-PHAT's (lag, confidence) from the two spectra (see :func:`gcc_phat`)."""
    cross = mic_spectrum * np.conj(reference_spectrum)
    cross /= np.abs(cross) + 1e-12
    correlation = np.abs(np.fft.irfft(cross, fft_samples)[:max_lag + 1])
    lag = int(np.argmax(correlation))
    return lag, float(correlation[lag] / (np.median(correlation) + 1e-12))


class DelayLine:
    """Delays a stream of frames by a settable number of samples (0..max_delay_samples), no allocation."""

    def __init__(self, frame_samples, max_delay_samples):
        self.frame_samples = frame_samples
        frames = -(-(max_delay_samples + frame_samples) // frame_samples) + 1
        self._size = frames * frame_samples
        self._buffer = np.zeros(2 * self._size)
        self._write = 0
        self.max_delay_samples = self._size - frame_samples
        self.delay_samples = 0

    def set_delay(self, delay_samples):
        if not 0 <= delay_samples <= self.max_delay_samples:
            raise ValueError(f"delay {delay_samples} outside 0..{self.max_delay_samples} samples")
        self.delay_samples = int(delay_samples)

    def process(self, frame, out):
        """Write ``frame`` in, and ``out`` = the stream ``delay_samples`` earlier."""
        n = self.frame_samples
        self._buffer[self._write:self._write + n] = frame
        self._buffer[self._write + self._size:self._write + self._size + n] = frame
        self._write = (self._write + n) % self._size
        end = self._write + self._size - self.delay_samples          # one past the wanted frame's last sample
        out[:] = self._buffer[end - n:end]
        return out
