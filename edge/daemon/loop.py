"""The real-time loop: capture -> enhance -> playback, every 10 ms, for months.

:class:`AudioLoop` owns the stream. Per frame it reads a period, stamps its
arrival, runs the enhancer (whose network call goes through
:class:`~edge.daemon.policy.DeadlineGains`), writes the result and updates counters.
Nothing on this path logs or allocates beyond numpy's small temporaries;
events go to an :class:`~edge.daemon.event_log.EventLog`, and to counters.

Control (:class:`~edge.daemon.control.SignalControl`, installed before start-up):
SIGTERM/SIGINT stop after the current frame, or at once while waiting for a
device; SIGHUP reloads the config in a helper thread and swaps it in at a frame
boundary (a bad config is rejected, the old one kept); SIGUSR1 toggles bypass.

A missing device is a state of a running service, not a failed start: while
it waits, the loop keeps systemd informed (READY=1 once, WATCHDOG=1 at the
watchdog's pace, STATUS= with the device and the next retry), and every wait
ends as soon as a stop is requested.
"""

import gc
import logging
import os
import resource
import time
from dataclasses import dataclass

import numpy as np

from edge.daemon.control import StopLatch
from edge.dsp import Enhancer
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.errors import DeviceError
from edge.daemon.event_log import EventLog
from edge.daemon.frame_times import FrameTimes
from edge.daemon.memory import peak_rss_mb
from edge.daemon.policy import DeadlineGains
from edge.daemon.reloader import Reloader
from edge.daemon.sdnotify import Notifier


#: What :meth:`AudioLoop._note_xruns` watches, the periods lost or late and the frames repaired, clipped or late:
#: kind -> (counter, the device's attribute, the log line); an attribute of None: the loop counts it itself.
_LOST_PERIODS = {
    "stream": ("xruns", "xruns",
               "xrun: {lost} period(s) lost or played late ({total} since start); the stream was re-prepared and "
               "goes on. Many of them mean a busy CPU or a small buffer: set realtime.sched_fifo_priority, raise "
               "audio.buffer_periods"),
    # a lost reference period can move the echo against its reference: the canceller's tracker finds it again
    "reference": ("echo_reference_xruns", "reference_xruns",
                  "echo: {lost} period(s) of the loudspeaker reference lost or forwarded late ({total} since start): "
                  "the echo can move against its reference, and the canceller finds it again (a 'reference delayed "
                  "by' or 'echo path stepped' line follows when it moved). Many of them mean a busy CPU or a small "
                  "buffer: set realtime.sched_fifo_priority, raise audio.buffer_periods"),
    # an input the chain cannot process (edge.dsp.unusable): repaired, so the stream goes on, but never silently
    "input": ("nonfinite_frames", None,
              "input: {lost} frame(s) of the microphone or the loudspeaker reference with NaN, infinite or absurd "
              "samples repaired ({total} since start): the device or its driver delivers invalid floats; check "
              "audio.sample_format against what the capture device really gives, or use S16_LE"),
    # A late frame loses nothing in the daemon (its buffer absorbs it), but what delayed it (a starved host) can make
    # a sound server lose or repeat a period that no xrun reports to the ALSA stream: the line's time is the trace.
    "deadline": ("deadline_misses", None,
                 "deadline: {lost} frame(s) took longer than realtime.deadline_ms, {deadline_ms:g} ms ({total} since "
                 "start): the CPU was busy or the process preempted, and a sound server starved at the same time can "
                 "lose or repeat a period without reporting an xrun. Many of them mean a busy CPU: set "
                 "realtime.sched_fifo_priority or realtime.cpu_affinity, and keep realtime.overrun_policy other than "
                 "off"),
    "clipping": ("clipped_frames", None,
                 "output: {lost} frame(s) clipped at full scale ({total} since start): the enhanced signal went above "
                 "it, mostly because the microphone's own signal is at or near full scale; lower the capture gain"),
}


@dataclass
class Counters:
    frames: int = 0
    deadline_misses: int = 0
    policy_activations: int = 0
    xruns: int = 0
    device_reopens: int = 0
    device_open_failures: int = 0    # failed opens while waiting for a device (start-up or after a loss)
    reloads: int = 0
    rejected_reloads: int = 0
    nonfinite_frames: int = 0        # input frames repaired: NaN, infinite or absurd samples (edge.dsp.unusable)
    clipped_frames: int = 0          # output frames that went beyond full scale and were clipped on the way out
    echo_cancelling_frames: int = 0  # frames the echo canceller's output went on (far end playing)
    echo_no_reference_frames: int = 0   # frames with echo enabled but no reference: noise suppression alone
    echo_reference_xruns: int = 0    # periods lost or late on the loudspeaker reference or its forwarding
    echo_reference_retries: int = 0  # background attempts to open a missing reference again
    vad_sum: float = 0.0             # voice-activity probabilities summed (models with the head)
    vad_frames: int = 0


class Pipeline:
    """Everything a config decides: the enhancer, the network and the overrun policy."""

    def __init__(self, config, clock, runner_factory):
        self.config = config
        network = runner_factory(config)
        rt = config.realtime
        self.gains = DeadlineGains(network, rt.overrun_policy, rt.deadline_ms / 1000.0, clock,
                                   rt.drop_model_frames)
        joint = bool(getattr(network, "far_end_inputs", False))     # a joint echo-and-noise model
        self.enhancer = Enhancer(self.gains, config.enhancer_settings(), far_end_inputs=joint,
                                 floor_inputs=bool(getattr(network, "floor_inputs", False)))
        self.network = network
        self.canceller = None
        if config.echo.enabled:                  # ahead of the network, which enhances what is left
            from edge.echo import EchoCanceller, for_model
            self.canceller = EchoCanceller(for_model(config.echo_settings(), joint))
        self.joint = joint

    def unusable_frames(self):
        """Input frames repaired so far (edge.dsp.unusable): the echo stage repairs a microphone frame before the
        enhancer sees it, so both count."""
        return self.enhancer.nonfinite_frames + (self.canceller.nonfinite_frames if self.canceller is not None else 0)

    def describe_echo(self):
        """One line for the log: what removes the loudspeaker's echo (None with the echo section off)."""
        if self.canceller is None:
            return None
        if self.joint:
            return ("echo: linear canceller, then the joint model; the joint model removes the residual echo "
                    "from the canceller's echo estimate (SpeexDSP's residual suppression off)")
        return ("echo: linear canceller with SpeexDSP's residual echo suppression, then the noise model "
                "(a noise-only model: it keeps residual echo that SpeexDSP leaves)")


def default_runner_factory(config):
    from edge.model.engine import ModelRunner
    return ModelRunner(config.model_path(), num_threads=config.model.threads, use_xnnpack=config.model.xnnpack)


class AudioLoop:
    """The daemon's audio loop (see module doc). ``io`` has ``open()``, ``read()``, ``write()``, ``close()``.

    It owns the stream and the counters; :class:`~edge.daemon.frame_times.FrameTimes`
    keeps the frame times, :class:`~edge.daemon.event_log.EventLog` writes its log
    lines and :class:`~edge.daemon.reloader.Reloader` loads new configs, all off the
    audio path.
    """

    RETRY_FIRST_S = 0.1              # first wait after a failed open; doubles up to device_retry_max_s
    REFERENCE_RETRY_FIRST_S = 1.0    # the same for a missing echo reference, while the microphone runs
    QUICK_LOSS_FRAMES = 500          # a device lost within 5 s of audio of its open: the reopen waits, as a failed open
    REFERENCE_LOG_EVERY_S = 60.0     # a reference that keeps dropping: one line (and its return) a minute
    WAIT_LOG_EVERY_S = 60.0          # a long wait is logged at most this often (STATUS= says it every retry)
    XRUN_LOG_EVERY_S = 1.0           # a burst of xruns is a line a second with its count, not a line a period

    def __init__(self, config, io, runner_factory=default_runner_factory, clock=time.monotonic,
                 sleep=None, notifier=None, stop=None):
        """``sleep`` replaces the interruptible wait (tests with a fake clock); ``stop`` is a shared StopLatch."""
        self.config, self.io, self.clock, self.sleep = config, io, clock, sleep
        self.started_config = config          # what a reload cannot change (devices, telemetry) came from this
        self.pipeline = Pipeline(config, clock, runner_factory)
        self.notifier = notifier or Notifier()
        if hasattr(io, "keepalive"):          # an open asks PipeWire twice (devices, then the echo reference)
            io.keepalive = self.notifier.watchdog
        self.counters = Counters()
        self.frame_times = FrameTimes()
        self.waiting_for_device = False
        self._stop = stop or StopLatch()
        self.events = EventLog(self._stop)
        self.reloader = Reloader(lambda new: Pipeline(new, clock, runner_factory), self.events, self.counters)
        self._ready_sent = False
        self._output = np.zeros(HOP_SAMPLES)
        self._echo_free = np.zeros(HOP_SAMPLES)
        self._reference_problem_said = None
        self._opened_at = self._last_loss_log = None
        self._quick_losses = 0
        self._reference_retry_at, self._reference_retry_s = None, self.REFERENCE_RETRY_FIRST_S
        self._reference_up_since = self._reference_logged_at = None
        self._reference_drop_said, self._reference_drops_unsaid = False, 0
        self._connect_echo_events(self.pipeline)
        self._activations_before_reload = 0
        self._last_wait_log = None
        self._logged = {kind: (0, None) for kind in _LOST_PERIODS}     # kind -> (count logged, when)

    def _connect_echo_events(self, pipeline):
        if pipeline.canceller is not None:
            pipeline.canceller.on_event = lambda text: self.events.put(logging.INFO, text)
            pipeline.canceller.on_warning = lambda text: self.events.put(logging.WARNING, text)

    # Control, callable from signal handlers or other threads.
    def stop(self):
        self._stop.set()

    def toggle_bypass(self):
        gains = self.pipeline.gains
        gains.bypass = not gains.bypass
        self.events.put(logging.INFO, f"bypass {'on' if gains.bypass else 'off'} (SIGUSR1)")

    def request_reload(self, path):
        """Ask for ``path`` to be reloaded. Safe in a signal handler: the loop starts the work."""
        self.reloader.request(path)

    def _open_with_backoff(self):
        """Open the devices, retrying with doubling waits; False if a stop came first.

        While waiting the service is up and in a known state, so READY=1 is
        sent (once), WATCHDOG=1 keeps coming from this loop and STATUS= says
        what is awaited: systemd neither times the start out nor kills a
        daemon that waits for a USB microphone.
        """
        delay_s = self.RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                if self._ready_sent:                 # a wait's last ping may be half an interval ago, and an open
                    self.notifier.watchdog()         # may wait up to 3 s (edge.devices.alsa.OPEN_WAIT_S)
                self.io.open()
                if self._ready_sent:                 # a reopen: the frames' own pings may be an interval away
                    self.notifier.watchdog()
                self._opened_at = self.counters.frames
                self.waiting_for_device = False
                if self._last_wait_log is not None:
                    self.events.put(logging.INFO, "audio devices open; processing")
                    self._last_wait_log = None
                return True
            except DeviceError as exc:
                self.waiting_for_device = True
                self.counters.device_open_failures += 1
                message = f"waiting for the audio device: {exc}; retry in {delay_s:.1f} s"
                self.notifier.status(message)
                self._log_wait(message)
                self._announce_ready()
                self._wait_alive(delay_s)
                delay_s = min(delay_s * 2, self.config.realtime.device_retry_max_s)
        return False

    def _log_wait(self, message):
        """Log a retry when the wait is young, then at most once a minute (STATUS= has every retry)."""
        now = self.clock()
        if self._last_wait_log is None or self.counters.device_open_failures <= 6 or \
                now - self._last_wait_log >= self.WAIT_LOG_EVERY_S:
            self.events.put(logging.WARNING, message)
            self._last_wait_log = now

    def _announce_ready(self):
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready()

    def _wait_alive(self, seconds):
        """Wait ``seconds`` (less if stopped), pinging the watchdog at least once per watchdog interval.

        Reloads requested meanwhile are started and swapped in here, so the
        next attempt uses the newest config. Returns True if stopped.
        """
        step_s = self.notifier.watchdog_interval_s or seconds
        remaining_s = seconds
        reloader = self.reloader
        while remaining_s > 0:
            self.notifier.watchdog()
            if reloader.requested is not None:
                reloader.start(self.started_config)
            if reloader.pending is not None:
                self._swap_pipeline()
            if self._wait(min(step_s, remaining_s)):
                return True
            remaining_s -= step_s
        return self._stop.is_set()

    def _wait(self, seconds):
        """Sleep, ending early on a stop request (True), unless a test injected ``sleep``."""
        if self.sleep is None:
            return self._stop.wait(seconds)
        self.sleep(seconds)
        return self._stop.is_set()

    def run(self, max_frames=None, duration_s=None):
        """Process until stopped, or for ``max_frames`` / ``duration_s`` of audio. Returns the counters."""
        if duration_s is not None:
            max_frames = int(round(duration_s * SAMPLE_RATE_HZ / HOP_SAMPLES))
        self.events.start()
        try:
            if not self._open_with_backoff():
                return self.counters
            gc.collect()
            gc.freeze()                       # start-up objects never scanned again
            gc.disable()                      # no collector pauses on the audio path
            self._process(max_frames)
        finally:
            self._stop.set()
            self._note_xruns(flush=True)
            self.events.close()               # the last lines, and a status line still queued, before STOPPING=1
            if self._ready_sent:
                self.notifier.stopping()
            self.io.close()
            gc.enable()
        return self.counters

    def _process(self, max_frames):
        watchdog_every = self._frames_between(self.notifier.watchdog_interval_s or 1.0)
        status_every = self._frames_between(5.0)
        reloader = self.reloader
        while not self._stop.is_set() and (max_frames is None or self.counters.frames < max_frames):
            if reloader.requested is not None:
                reloader.start(self.started_config)
            if reloader.pending is not None:
                self._swap_pipeline()
            if not self._one_frame():
                continue
            frames = self.counters.frames
            if frames == 1:
                self._announce_ready()
            if frames % watchdog_every == 0:
                self.notifier.watchdog()
            if frames % status_every == 0:             # built and sent off the audio path
                self.events.call(self._send_status)

    def _frames_between(self, seconds):
        return max(1, int(seconds * SAMPLE_RATE_HZ / HOP_SAMPLES))

    def _one_frame(self):
        """Read, enhance, write one frame. False when no frame was produced (xrun or device loss)."""
        try:
            frame = self.io.read()
        except DeviceError as exc:
            return self._recover(exc)
        if frame is None:                                 # overrun: the period is lost, keep going
            self._note_xruns()
            return False
        start = self.clock()
        pipeline = self.pipeline
        pipeline.gains.start_frame(start)
        echo = None
        unusable_before = pipeline.unusable_frames()
        if pipeline.canceller is not None:
            frame = self._cancel_echo(pipeline.canceller, frame)
            echo = pipeline.canceller.echo_estimate
        output = self._output
        pipeline.enhancer.process(frame, out=output, echo_estimate=echo)
        self.counters.nonfinite_frames += pipeline.unusable_frames() - unusable_before
        # two reductions (about 2 us): np.abs(output).max() would allocate
        self.counters.clipped_frames += bool(np.maximum.reduce(output) > 1.0 or np.minimum.reduce(output) < -1.0)
        try:
            self.io.write(self._output)
        except DeviceError as exc:
            return self._recover(exc)
        elapsed = self.clock() - start
        counters = self.counters
        self.frame_times.record(elapsed)
        counters.frames += 1
        if elapsed > pipeline.gains.deadline_s:
            counters.deadline_misses += 1
        counters.policy_activations = pipeline.gains.activations + self._activations_before_reload
        self._note_xruns()
        vad = getattr(pipeline.network, "vad", None)
        if vad is not None:
            counters.vad_sum += vad
            counters.vad_frames += 1
        return True

    def _note_xruns(self, flush=False):
        """Count the device's xruns (the microphone and output streams, and the echo reference's) and log them,
        and the frames the loop repaired, clipped or finished late, as they happen: the first of a burst at once,
        the rest of the burst at most once a second (``flush``: now), so that a log says when audio was lost or
        late, not only how often."""
        now = None
        for kind, (counter, attribute, message) in _LOST_PERIODS.items():
            if attribute is None:
                total = getattr(self.counters, counter)
            else:
                total = getattr(self.io, attribute, 0) if kind == "reference" else getattr(self.io, attribute)
                setattr(self.counters, counter, total)
            logged, logged_at = self._logged[kind]
            if total == logged:
                continue
            now = self.clock() if now is None else now
            if not flush and logged_at is not None and now - logged_at < self.XRUN_LOG_EVERY_S:
                continue
            self.events.put(logging.WARNING, message.format(lost=total - logged, total=total,
                                                            deadline_ms=self.pipeline.gains.deadline_s * 1000))
            self._logged[kind] = (total, now)

    def _cancel_echo(self, canceller, frame):
        problem = getattr(self.io, "reference_problem", None)
        if problem != self._reference_problem_said or (
                problem is not None and not self._reference_drop_said
                and self.clock() - self._reference_logged_at >= self.REFERENCE_LOG_EVERY_S):
            self._note_reference(problem)                      # a change, or an outage to announce now
        self._reference_problem_said = problem
        if problem is not None:
            self._retry_reference()
        canceller.process(frame, getattr(self.io, "reference_frame", None), self._echo_free)
        if canceller.mode == "cancelling":
            self.counters.echo_cancelling_frames += 1
        elif canceller.mode == "no reference":
            self.counters.echo_no_reference_frames += 1
        return self._echo_free

    def _note_reference(self, problem):
        """Log the reference going (why) and coming back. An outage is announced (its reason, then its return)
        unless a line about the reference was logged less than REFERENCE_LOG_EVERY_S ago; one still going then is
        announced once that time has passed (:meth:`_cancel_echo`). So a reference that keeps failing soon after it
        is back (a flapping cable) logs a pair at most every REFERENCE_LOG_EVERY_S, with the count of the drops
        between, and keeps its longer retry wait; one that stayed up that long starts again from the first wait.
        A new reason for an announced outage (its PipeWire node gone) is logged at once."""
        now = self.clock()
        retrying = getattr(self.io, "retry_reference", None) is not None
        if problem is None:                                    # back
            self._reference_up_since, self._reference_retry_at = now, None
            if self._reference_drop_said:
                self.events.put(logging.INFO, f"echo: the loudspeaker reference {self.io.reference_device!r} is "
                                              "open again (echo cancellation resumes when the far end plays)")
            return
        if self._reference_problem_said is None:               # a drop
            up_s = None if self._reference_up_since is None else now - self._reference_up_since
            if up_s is None or up_s >= self.REFERENCE_LOG_EVERY_S:
                self._reference_retry_s = self.REFERENCE_RETRY_FIRST_S
            self._reference_drop_said = False
            self._reference_drops_unsaid += 1
        elif self._reference_drop_said:                        # an announced outage, another reason: say it
            self.events.put(logging.WARNING, problem)
            return
        logged = self._reference_logged_at
        if logged is not None and now - logged < self.REFERENCE_LOG_EVERY_S:
            return                                             # counted; announced later if it lasts
        self._reference_drops_unsaid -= 1                      # this one is said now
        more = (f"; {self._reference_drops_unsaid} more drop(s) since the last such line"
                if self._reference_drops_unsaid else "")
        how = (f" (tried again in the background, after {self._reference_retry_s:g} s, then up to every "
               f"{self.config.realtime.device_retry_max_s:g} s: realtime.device_retry_max_s)" if retrying else "")
        self.events.put(logging.WARNING, problem + how + more)
        self._reference_drop_said = True
        self._reference_logged_at, self._reference_drops_unsaid = now, 0

    def _retry_reference(self):
        """Ask the device to open a missing reference again, first after REFERENCE_RETRY_FIRST_S, then with doubling
        waits up to realtime.device_retry_max_s; the open runs off the audio thread (``io.retry_reference``)."""
        retry = getattr(self.io, "retry_reference", None)
        if retry is None:
            return
        now = self.clock()
        if self._reference_retry_at is None:
            self._reference_retry_at = now + self._reference_retry_s
        elif now >= self._reference_retry_at:
            if retry():
                self.counters.echo_reference_retries += 1
            self._reference_retry_s = min(2 * self._reference_retry_s, self.config.realtime.device_retry_max_s)
            self._reference_retry_at = now + self._reference_retry_s

    def _swap_pipeline(self):
        bypass = self.pipeline.gains.bypass
        self._activations_before_reload += self.pipeline.gains.activations
        self.pipeline = self.reloader.take()
        self._connect_echo_events(self.pipeline)
        self.pipeline.gains.bypass = bypass
        self.config = self.pipeline.config
        self.counters.reloads += 1

    def _recover(self, exc):
        """Reopen after a device loss. A loss soon after an open (a stream that opens and stops at once, e.g. a
        default PipeWire source that is not there) counts as a failed open: doubling waits, and its line at most
        once a minute after the first few, as the open's own retries do."""
        now = self.clock()
        self.waiting_for_device = True
        # counted in frames, not seconds: a soak or a file-plugin run goes faster than real time
        quick = self._opened_at is not None and self.counters.frames - self._opened_at < self.QUICK_LOSS_FRAMES
        self._quick_losses = self._quick_losses + 1 if quick else 0
        message = f"audio device lost ({exc}); reopening"
        if quick:
            message += (f" ({self._quick_losses} time(s) within {self.QUICK_LOSS_FRAMES * HOP_SAMPLES / SAMPLE_RATE_HZ:g}"
                        " s of audio after opening)")
        if self._quick_losses <= 6 or self._last_loss_log is None or now - self._last_loss_log >= self.WAIT_LOG_EVERY_S:
            self.events.put(logging.WARNING, message)
            self._last_loss_log = now
        # close() may wait RETRY_JOIN_TIMEOUT_S for a background open of the echo reference, and open() up to
        # OPEN_WAIT_S per PCM for the lock it holds (edge.devices.alsa): a ping before each of the two, and one
        # when the open succeeds (_open_with_backoff) or fails (_wait_alive)
        self.notifier.watchdog()
        self.io.close()
        self.notifier.watchdog()
        if quick:
            wait_s = min(self.RETRY_FIRST_S * 2 ** self._quick_losses, self.config.realtime.device_retry_max_s)
            self.notifier.status(f"{message}; waiting {wait_s:.1f} s")
            self._wait_alive(wait_s)
        self.counters.device_reopens += 1
        self.pipeline.enhancer.reset()
        self.pipeline.gains.reset()
        self._open_with_backoff()
        return False

    def _send_status(self):
        if not self.waiting_for_device:              # queued before a device loss: the waiting line stands
            self.notifier.status(self.summary())

    def summary(self):
        """One line for STATUS= and the end of a bounded run."""
        c, t = self.counters, self.frame_times.stats_ms()
        mode = "bypass" if self.pipeline.gains.bypass else "denoising"
        rss_mb = peak_rss_mb()
        return (f"{mode}; {c.frames} frames; frame p50 {t['p50']:.2f} ms p99 {t['p99']:.2f} ms "
                f"p99.9 {t['p999']:.2f} ms max {t['max']:.2f} ms; deadline misses {c.deadline_misses}; "
                f"policy activations {c.policy_activations}; xruns {c.xruns}; "
                + (f"echo reference xruns {c.echo_reference_xruns}; " if self.pipeline.canceller is not None else "")
                + f"device reopens {c.device_reopens}; "
                + (f"input frames repaired {c.nonfinite_frames}; " if c.nonfinite_frames else "")
                + (f"output frames clipped {c.clipped_frames}; " if c.clipped_frames else "")
                + f"peak RSS {rss_mb:.0f} MB")


def apply_realtime(realtime, say):
    """SCHED_FIFO and CPU affinity from the config; says clearly when not permitted. Returns problems."""
    problems = []
    if realtime.cpu_affinity:
        try:
            os.sched_setaffinity(0, set(realtime.cpu_affinity))
            say(f"pinned to CPUs {sorted(realtime.cpu_affinity)}")
        except (OSError, ValueError) as exc:
            problems.append(f"realtime.cpu_affinity {list(realtime.cpu_affinity)}: not applied ({exc})")
    if realtime.sched_fifo_priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime.sched_fifo_priority))
            say(f"SCHED_FIFO priority {realtime.sched_fifo_priority}")
        except PermissionError:
            allowed = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
            problems.append(f"realtime.sched_fifo_priority {realtime.sched_fifo_priority}: not permitted, this "
                            f"process's rtprio limit is {allowed}; use 1..{allowed}, or raise LimitRTPRIO= in the "
                            "systemd unit (70 as shipped) or the user's rtprio limit"
                            if 0 < allowed < realtime.sched_fifo_priority else
                            f"realtime.sched_fifo_priority {realtime.sched_fifo_priority}: not permitted; grant "
                            "it with LimitRTPRIO= in the systemd unit or an rtprio limit for the user")
    for problem in problems:
        say(f"warning: {problem}")
    return problems
