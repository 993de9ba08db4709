"""The echo stage ahead of the noise network: delay compensation, MDF, residual echo suppression.

Per 10 ms frame, :meth:`EchoCanceller.process` takes the microphone and what the
loudspeaker played in the same 10 ms (float, [-1, 1]) and writes the microphone
without the echo. It

1. feeds both to the :class:`~edge.echo.delay.DelayTracker` and, when the tracked bulk delay moves
   (later by more than a frame, or earlier by a frame or more), delays the reference by it (less a
   margin, since GCC-PHAT finds the strongest tap, not the first) and resets MDF, whose filter is then
   wrong at every tap; it also turns the reference up when the microphone is louder than it (MDF
   stalls on an echo path with gain), and measures the clock drift between the two from the delay
   estimates and, once there is one, reads the reference at the microphone's rate
   (:mod:`edge.echo.drift`), so the echo path holds still for MDF;
2. runs SpeexDSP's MDF on the microphone and the delayed reference, then its preprocessor's residual
   echo suppression (noise is left to the network);
3. passes the microphone through unchanged (only delayed by the stage's :attr:`~EchoCanceller.latency_samples`,
   so that the two signals it switches between line up) while there is no reference (``None`` for more than
   :data:`REFERENCE_GAP_FRAMES` in a row; a shorter gap after the reference has delivered is bridged
   as silence) or the reference has been silent for longer than the delay range plus the tail (no
   echo can be left). MDF's input DC notch alters the near end below ~300 Hz even with a silent far
   end, so this bypass is what keeps near-end-only speech bit-exact. Mode changes cross-fade over one
   frame and are reported through ``on_event`` (the daemon logs them; ``denoise`` prints them).
"""

import enum
from dataclasses import dataclass

import numpy as np

from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.dsp.unusable import check, repair
from edge.echo.delay import DelayLine, DelayTracker
from edge.echo.drift import DRIFT_FOLLOW_PPM, DRIFT_MAX_PPM, DRIFT_WARN_PPM, DriftEstimator, DriftingDelayLine
from edge.echo.speex_mdf import SpeexMdf
from edge.errors import UsageError

INT16_SCALE = 32768.0
#: The most the reference is turned up for MDF (36 dB): beyond, the far end is too quiet to matter.
MAX_REFERENCE_GAIN = 64.0
#: The reference is turned up until the microphone's level is at most this fraction of it (-6 dB).
MIC_OVER_REFERENCE_MAX = 0.5
#: The reference's delay is re-set (and MDF restarted) when the tracked bulk delay moves later by more than
#: the first or earlier by at least the second. A period lost between the loudspeaker and the microphone makes the
#: echo a period later: it still lies inside the filter, and MDF re-adapts to it faster than a restart converges;
#: a period repeated makes it earlier, into the margin kept for what comes before the strongest tap, where MDF
#: re-adapting held 12-14 dB for 8 s (`python -m evaluation.echo_step`, docs/echo.md: ERLE over the last 10 s
#: after +10 ms 56.2 re-adapting against 46.3 re-set; after -10 ms 45.3 against 56.3).
DELAY_RESET_LATER_ABOVE_SAMPLES = HOP_SAMPLES
DELAY_RESET_EARLIER_AT_LEAST_SAMPLES = HOP_SAMPLES
#: Steps of the echo path are logged at most once in this many frames (10 s): a room whose strongest tap keeps
#: jumping between two equal reflections makes a few a minute.
STEP_REPORT_EVERY_FRAMES = 1000
#: A mode (far end playing, far end silent, no reference) is announced at most once in this many frames (60 s).
MODE_REPORT_EVERY_FRAMES = 6000
#: A reference that stops delivering for at most this many frames (100 ms) after it has delivered is a lost
#: period or a short burst of them, which the daemon logs as reference xruns: the stage goes on with those frames
#: silent (the room still rings with what was played before them, and the filter still removes that), instead of
#: falling back to the microphone for a frame or two and logging two mode changes for each lost period.
REFERENCE_GAP_FRAMES = 10
#: Delay estimates run without one confident (about 20 s of far end playing: one runs every 0.5 s of it) before
#: the stage warns that it hears no echo of its reference. The first confident estimate came with the first run
#: in 35 of the two echo sets' 36 far-end clips, with the fourth in one.
NO_ECHO_WARN_ESTIMATES = 40


class Mode(str, enum.Enum):
    CANCELLING = "cancelling"
    FAR_END_SILENT = "far end silent"          # passing the microphone through: nothing to cancel
    NO_REFERENCE = "no reference"              # passing the microphone through: noise suppression alone


@dataclass(frozen=True)
class EchoSettings:
    #: Room part of the echo path the filter covers (after the bulk delay is taken out). Longer tails
    #: converge more slowly and cost more (100 / 200 / 250 ms: 166 / 217 / 241 us per frame on x86).
    tail_ms: float = 150.0
    #: Largest bulk delay (reference -> microphone) searched and compensated.
    delay_search_ms: float = 250.0
    #: The reference is delayed by the estimate minus this, so the first taps are inside the filter.
    delay_margin_ms: float = 10.0
    #: A fixed bulk delay instead of tracking (null: track).
    fixed_delay_ms: float = None
    #: SpeexDSP's residual echo suppression after the linear filter.
    residual_suppression: bool = True
    #: Residual echo attenuation limits (dB, negative): far end alone / during double talk. SpeexDSP's
    #: defaults are -40 / -15; -60 / -30 was a little better on every echo-set figure (docs/echo.md).
    echo_suppress_db: int = -60
    echo_suppress_active_db: int = -30
    #: A reference frame quieter than this counts as silent (dB re full scale, rms).
    silent_dbfs: float = -60.0
    #: Follow a measured clock drift between the reference and the microphone (two sound cards) by reading
    #: the reference at the microphone's rate (SpeexDSP's resampler, 26 us a frame on x86); false: only report it.
    drift_compensation: bool = True
    #: MDF's block: the frame is cancelled in blocks of this many ms (10: one block a frame).
    mdf_block_ms: float = 10.0
    #: The delay tracker's reference window (GCC-PHAT over this much far end, every half second).
    delay_window_s: float = 1.0

    def validate(self):
        def need(ok, key, value, allowed):
            if not ok:
                raise UsageError(f"echo.{key}: {value!r} is not allowed; expected {allowed}")
        need(10 <= self.tail_ms <= 500, "tail_ms", self.tail_ms, "10..500 ms")
        need(0 <= self.delay_search_ms <= 1000, "delay_search_ms", self.delay_search_ms, "0..1000 ms")
        need(0 <= self.delay_margin_ms <= 50, "delay_margin_ms", self.delay_margin_ms, "0..50 ms")
        need(self.fixed_delay_ms is None or 0 <= self.fixed_delay_ms <= self.delay_search_ms, "fixed_delay_ms",
             self.fixed_delay_ms, "null (track the delay) or 0..delay_search_ms")
        need(-100 <= self.echo_suppress_db <= 0, "echo_suppress_db", self.echo_suppress_db, "-100..0 dB")
        need(-100 <= self.echo_suppress_active_db <= 0, "echo_suppress_active_db", self.echo_suppress_active_db,
             "-100..0 dB")
        need(-120 <= self.silent_dbfs <= -20, "silent_dbfs", self.silent_dbfs, "-120..-20 dBFS")
        need(self.mdf_block_ms in (2.5, 5.0, 10.0), "mdf_block_ms", self.mdf_block_ms, "2.5, 5 or 10 ms")
        need(0.25 <= self.delay_window_s <= 2.0, "delay_window_s", self.delay_window_s, "0.25..2 s")
        return self


def _ms_to_samples(ms):
    return int(round(ms * SAMPLE_RATE_HZ / 1000))


class EchoCanceller:
    """One microphone channel's echo stage; ``process(mic, far, out)`` once per 480-sample frame."""

    def __init__(self, settings=EchoSettings(), on_event=None, on_warning=None):
        self.settings = settings.validate()
        self.on_event = on_event or (lambda text: None)
        self.on_warning = on_warning             # events that mean echo goes through; None: ``on_event`` too
        n = HOP_SAMPLES
        tail = max(n, -(-_ms_to_samples(settings.tail_ms + settings.delay_margin_ms) // n) * n)
        self.mdf = SpeexMdf(n, tail, SAMPLE_RATE_HZ, settings.residual_suppression, settings.echo_suppress_db,
                            settings.echo_suppress_active_db, block_samples=_ms_to_samples(settings.mdf_block_ms))
        self.delay_line = DelayLine(n, _ms_to_samples(settings.delay_search_ms))
        self.tracker = None
        if settings.fixed_delay_ms is not None:
            self.delay_line.set_delay(_ms_to_samples(settings.fixed_delay_ms))
        elif settings.delay_search_ms > 0:
            self.tracker = DelayTracker(SAMPLE_RATE_HZ, n, settings.delay_search_ms, window_s=settings.delay_window_s)
        self._margin = _ms_to_samples(settings.delay_margin_ms)
        # silent this long = no echo can be left in the microphone: the delay range plus the filter's tail
        self._silent_frames_to_bypass = -(-(_ms_to_samples(settings.delay_search_ms) + tail) // n) + 1
        self._silent_power = 10 ** (settings.silent_dbfs / 10)
        self._silent_frames = self._silent_frames_to_bypass     # start in bypass until the far end plays
        self._missing_frames = REFERENCE_GAP_FRAMES            # None this many frames in a row: no reference
        self.mode = Mode.FAR_END_SILENT
        self._announced = None
        self._mode_said_at, self._mode_changes_unsaid = {}, 0
        self._mic16 = np.zeros(n, np.int16)
        self._far16 = np.zeros(n, np.int16)
        self._out16 = np.zeros(n, np.int16)
        self._scratch = np.zeros(n)
        self._far_delayed = np.zeros(n)
        # SpeexDSP's preprocessor (the residual suppression) gives each block back one block later (its WOLA
        # output is the previous block's), so the stage passes the microphone through that late as well: a switch
        # between cancelling and passing through then neither skips nor repeats the near end (it did, 10 ms each)
        self.latency_samples = self.mdf.latency_samples
        self._mic_line = None
        if self.latency_samples:
            self._mic_line = DelayLine(n, self.latency_samples)
            self._mic_line.set_delay(self.latency_samples)
        self._mic_delayed = np.zeros(n)
        self._zeros = np.zeros(n)
        self._fade_in = (np.arange(n) + 0.5) / n
        self._removed = np.zeros(n)
        self._last_frames = None                 # (mic, out) of the last frame that went through MDF
        self.delay_changes = 0
        # reference gain: MDF stalls when the echo is louder than its reference (measured: 0.3 dB ERLE with the
        # echo 19 dB above the reference, 25 dB with the reference 20 dB up); the level statistics run over
        # frames where the far end plays (about 1 s memory)
        self.reference_gain = 1.0
        self._far_power = self._mic_power = 0.0
        self._far_peak = 0.0
        self._active_frames = 0
        self._frames = 0
        self.drift = DriftEstimator(n, SAMPLE_RATE_HZ)
        self._drift_due = False
        self._drift_said = False
        self._step_said_frame, self._steps_unsaid = None, 0
        self._estimates_unfound = 0
        # frames with NaN, infinite or absurd samples, repaired before any statistic sees them
        self.nonfinite_frames = 0
        self._mic_repaired = np.zeros(n)
        self._far_repaired = np.zeros(n)

    @property
    def delay_found(self):
        """Whether the stage knows where the echo is: a fixed delay, or a confident estimate since the start."""
        return self.tracker is None or self.tracker.delay_samples is not None

    @property
    def drift_ppm(self):
        """The measured clock drift (ppm; positive: the echo comes later and later); None until 10 s of far end."""
        return self.drift.drift_ppm

    @property
    def drift_followed(self):
        """True while the reference is read at the microphone's rate (a drift was measured and is followed)."""
        return isinstance(self.delay_line, DriftingDelayLine)

    @property
    def delay_ms(self):
        """The bulk delay the reference is held back by now."""
        return 1000.0 * self.delay_line.delay_samples / SAMPLE_RATE_HZ

    def _to_int16(self, frame, out, gain=1.0):
        np.multiply(frame, INT16_SCALE * gain, out=self._scratch)
        np.rint(self._scratch, out=self._scratch)
        np.clip(self._scratch, -32768, 32767, out=self._scratch)
        out[:] = self._scratch
        return out

    def _wanted_gain(self):
        """The power of two that puts the reference at least 6 dB above the microphone (echo and near end
        together) without letting its peaks clip; 1 when it already is."""
        gain, ratio = 1.0, np.sqrt(self._mic_power / max(self._far_power, 1e-20))
        while gain < MAX_REFERENCE_GAIN and ratio > MIC_OVER_REFERENCE_MAX * gain and self._far_peak * gain * 2.0 <= 1.0:
            gain *= 2.0
        return gain

    def _adapt(self, mic, far, far_power):
        """Follow the bulk delay and the reference gain; either change restarts MDF (its filter is then wrong)."""
        if self._drift_due:                  # the frame after an estimate: the tracker's costly frame is over
            self._drift_due = False
            self._follow_drift()
        estimated = self.tracker is not None and self.tracker.push(mic, far)
        self._drift_due = estimated
        if estimated and self.tracker.delay_samples is None:
            self._no_echo_found()
        if far_power > self._silent_power:
            self._far_power += 0.01 * (far_power - self._far_power)
            self._mic_power += 0.01 * (float(np.dot(mic, mic)) / mic.size - self._mic_power)
            self._far_peak = max(self._far_peak * 0.999, float(np.max(np.abs(far))))
            self._active_frames += 1
        # decide every half second of far end: with the tracker's estimates, or on its own without a tracker
        periodic = (self.tracker is None and far_power > self._silent_power and self._active_frames >= 100
                    and self._active_frames % 50 == 0)
        if not (estimated or periodic):
            return
        target = self.delay_line.delay_samples
        if self.tracker is not None and self.tracker.delay_samples is not None:
            target = min(max(0, self.tracker.delay_samples - self._margin), self.delay_line.max_delay_samples)
        gain = self._wanted_gain() if self._active_frames >= 100 else self.reference_gain
        moved = (target - self.delay_line.delay_samples > DELAY_RESET_LATER_ABOVE_SAMPLES
                 or self.delay_line.delay_samples - target >= DELAY_RESET_EARLIER_AT_LEAST_SAMPLES)
        regained = not 0.25 <= gain / self.reference_gain <= 4.0          # 12 dB: worth a restart
        if not (moved or regained):
            return
        if moved:
            self.delay_line.set_delay(target)
            self.delay_changes += 1
            lag, confidence = self.tracker.last_estimate
            self.on_event(f"echo: reference delayed by {self.delay_ms:.1f} ms (bulk delay estimated at "
                          f"{1000.0 * self.tracker.delay_samples / SAMPLE_RATE_HZ:.1f} ms, GCC-PHAT confidence "
                          f"{confidence:.0f}); the linear filter restarts")
        if gain != self.reference_gain:
            self.on_event(f"echo: the microphone is {20 * np.log10(np.sqrt(self._mic_power / self._far_power)):.0f}"
                          f" dB above the reference: reference gain {20 * np.log10(gain):.0f} dB; the linear "
                          "filter restarts")
            self.reference_gain = gain
        self.mdf.reset()                      # every tap of the old filter is wrong now

    def _follow_drift(self):
        """Measure the drift from the raw delay estimates and, when it is real, read the reference at the
        microphone's rate; what the estimate says is reported once."""
        if not self.tracker.last_accepted:     # a weak peak, or one on the range's edge: not a lag to fit
            return
        lag, _ = self.tracker.last_estimate
        drift_ppm = self.drift.push(self._frames - 1, lag)
        if self.drift.step_samples is not None:
            self._report_step(self.drift.step_samples)
        if drift_ppm is None or not self.drift.confident:
            return
        follow = self.settings.drift_compensation and DRIFT_FOLLOW_PPM <= abs(drift_ppm) <= DRIFT_MAX_PPM
        if follow and not self.drift_followed:
            self.delay_line = DriftingDelayLine(HOP_SAMPLES, self.delay_line.max_delay_samples,
                                                self.delay_line.delay_samples, drift_ppm)
        elif self.drift_followed and abs(drift_ppm) <= DRIFT_MAX_PPM and drift_ppm != self.delay_line.drift_ppm:
            self.delay_line.set_drift(drift_ppm)          # once followed, every confident estimate, small ones too
        if self._drift_said or abs(drift_ppm) < DRIFT_WARN_PPM:
            return
        self._drift_said = True
        clocks = (f"echo: the loudspeaker reference and the microphone run on different clocks: the echo moves by "
                  f"{drift_ppm:+.0f} ppm ({drift_ppm * 0.06:+.1f} ms a minute)")
        if follow:
            self.on_event(f"{clocks}; the reference is now read at the microphone's rate (resampled). One sound "
                          "card for both (or one clock: snd-aloop's timer_source, docs/echo.md) avoids this")
        elif abs(drift_ppm) > DRIFT_MAX_PPM:
            (self.on_warning or self.on_event)(
                f"{clocks}: more than {DRIFT_MAX_PPM:.0f} ppm is not a clock difference but two sample rates; the "
                "drift is NOT followed and the linear filter restarts at every 10 ms of it: check that the "
                "loudspeaker and the microphone really run at 48 kHz")
        else:
            (self.on_warning or self.on_event)(
                f"{clocks}; echo.drift_compensation is off, so the linear filter restarts at every 10 ms of it: turn "
                "it on, or put the microphone and the loudspeaker on one sound card")

    def _no_echo_found(self):
        """Warn once when the far end has played for a while and its echo was never found in the microphone:
        the linear filter then works blind, and a wrong reference device looks exactly like this."""
        self._estimates_unfound += 1
        if self._estimates_unfound != NO_ECHO_WARN_ESTIMATES:
            return
        seconds = self._estimates_unfound * self.tracker.hop_s
        (self.on_warning or self.on_event)(
            f"echo: the far end has played for about {seconds:.0f} s and its echo was not found in the microphone "
            f"within echo.delay_search_ms = {self.settings.delay_search_ms:.0f} ms (best GCC-PHAT confidence "
            f"{self.tracker.best_confidence:.0f}, {self.tracker.min_confidence:.0f} needed), so it is NOT removed. "
            "Check that echo.reference_device is what this loudspeaker plays (its monitor, not another sink's) and "
            "that the microphone hears the loudspeaker; a longer path (Bluetooth speakers: 150-300 ms) needs a "
            "larger echo.delay_search_ms")

    def _report_step(self, step_samples):
        """Say that the echo path stepped: at most a line every STEP_REPORT_EVERY_FRAMES, with the count between."""
        self._steps_unsaid += 1
        if self._step_said_frame is not None and self._frames - self._step_said_frame < STEP_REPORT_EVERY_FRAMES:
            return
        more = f"; {self._steps_unsaid - 1} more since the last such line" if self._steps_unsaid > 1 else ""
        self.on_event(f"echo: the echo path stepped by {1000.0 * step_samples / SAMPLE_RATE_HZ:+.1f} ms (faster "
                      "than a clock drift moves it: a period lost or repeated between the loudspeaker and the "
                      f"microphone, or its strongest reflection changed); the drift is measured on each side{more}")
        self._step_said_frame, self._steps_unsaid = self._frames, 0

    def _set_mode(self, mode):
        """Switch modes; each mode is announced at most once in MODE_REPORT_EVERY_FRAMES (a conversation or a
        flapping reference switches every few seconds), with the count of the changes left unsaid."""
        if mode != self._announced:
            said_at = self._mode_said_at.get(mode)
            self._announced = mode
            if said_at is not None and self._frames - said_at < MODE_REPORT_EVERY_FRAMES:
                self._mode_changes_unsaid += 1
            else:
                report = (self.on_warning or self.on_event) if mode == Mode.NO_REFERENCE else self.on_event
                more = (f" ({self._mode_changes_unsaid} more change(s) of mode since the last such line)"
                        if self._mode_changes_unsaid else "")
                report({Mode.CANCELLING: "echo: far end playing: cancelling its echo",
                        Mode.FAR_END_SILENT: "echo: far end silent: passing the microphone through",
                        Mode.NO_REFERENCE: "echo: no loudspeaker reference: noise suppression alone, the "
                                           "echo is NOT removed"}[mode] + more)
                self._mode_said_at[mode], self._mode_changes_unsaid = self._frames, 0
        self.mode = mode

    def process(self, mic, far, out):
        """``out`` = ``mic`` without the echo of ``far`` (None: no reference; a gap of up to
        :data:`REFERENCE_GAP_FRAMES` after the reference delivered counts as silence). Float frames of 480 samples."""
        previous = self.mode
        self._frames += 1
        mic = self._usable(mic, self._mic_repaired)[0]
        self._missing_frames = self._missing_frames + 1 if far is None else 0
        if far is None and self._missing_frames <= REFERENCE_GAP_FRAMES:
            far = self._zeros                  # a lost period, or a short burst: bridged as a silent far end
        if far is None:
            self._set_mode(Mode.NO_REFERENCE)
            far = self._zeros
        else:
            far, far_energy = self._usable(far, self._far_repaired)
            far_power = far_energy / far.size
            self._adapt(mic, far, far_power)
            loud = far_power > self._silent_power
            self._silent_frames = 0 if loud else self._silent_frames + 1
            self._set_mode(Mode.CANCELLING if self._silent_frames < self._silent_frames_to_bypass
                           else Mode.FAR_END_SILENT)
        # MDF runs in every mode so its state (DC notch, filter) stays continuous across the switches
        self.delay_line.process(far, self._far_delayed)
        self.mdf.process(self._to_int16(mic, self._mic16),
                         self._to_int16(self._far_delayed, self._far16, self.reference_gain), self._out16)
        cancelled = self._scratch
        np.multiply(self._out16, 1.0 / INT16_SCALE, out=cancelled)
        if self._mic_line is not None:        # the microphone as late as the residual suppressor's output
            mic = self._mic_line.process(mic, self._mic_delayed)
        was_cancelling, is_cancelling = previous == Mode.CANCELLING, self.mode == Mode.CANCELLING
        if was_cancelling == is_cancelling:
            out[:] = cancelled if is_cancelling else mic
        else:                                 # one-frame cross-fade: no step between the two signals
            into, away = (cancelled, mic) if is_cancelling else (mic, cancelled)
            np.multiply(into, self._fade_in, out=out)
            out += away * (1.0 - self._fade_in)
        self._last_frames = (mic, out) if was_cancelling or is_cancelling else None
        return out

    def _usable(self, frame, repaired):
        """``(frame, energy)``, ``frame`` repaired into ``repaired`` when it holds NaN, infinite or absurd samples
        (edge.dsp.unusable): one such sample would poison the level statistics for good, and the int16 cast for
        SpeexDSP has no value for it. Counted in ``nonfinite_frames``."""
        energy, usable = check(frame)
        if usable:
            return frame, energy
        np.copyto(repaired, frame)
        self.nonfinite_frames += 1
        return repaired, repair(repaired)

    @property
    def echo_estimate(self):
        """What the last :meth:`process` took out of the microphone (microphone - output): a joint model's
        echo estimate (edge.dsp.echo_features); None when it passed the microphone through untouched.
        Computed on request, so a noise-only model's frames do not pay for it; read it before the next frame."""
        if self._last_frames is None:
            return None
        mic, out = self._last_frames
        return np.subtract(mic, out, out=self._removed)

    def close(self):
        self.mdf.close()
        if self.drift_followed:
            self.delay_line.close()


def for_model(settings, far_end_inputs):
    """The echo settings to run ahead of a model: a joint model (``far_end_inputs``) removes the residual
    echo itself from the canceller's echo estimate, so SpeexDSP's residual suppression is off for it."""
    from dataclasses import replace
    return replace(settings, residual_suppression=False) if far_end_inputs else settings
