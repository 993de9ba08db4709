"""The real-time loop: capture -> enhance -> playback, every 10 ms, for months.

:class:`AudioLoop` owns the stream. Per frame it reads a period, stamps its
arrival, runs the enhancer (whose network call goes through
:class:`~edge.policy.DeadlineGains`), writes the result and updates counters.
Nothing on this path logs or allocates beyond numpy's small temporaries;
events go to a queue that a logging thread drains, and to counters.

Control (installed by :func:`install_signal_handlers`): SIGTERM/SIGINT stop
after the current frame; SIGHUP reloads the config in a helper thread and swaps
it in at a frame boundary (a bad config is rejected, the old one kept);
SIGUSR1 toggles bypass.
"""

import gc
import logging
import logging.handlers
import os
import queue
import resource
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from . import config as config_module
from .dsp import Enhancer
from .dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from .pcm import DeviceLost
from .policy import DeadlineGains
from .sdnotify import Notifier

log = logging.getLogger("percepnet-edge")


@dataclass
class Counters:
    frames: int = 0
    deadline_misses: int = 0
    policy_activations: int = 0
    xruns: int = 0
    device_reopens: int = 0
    reloads: int = 0
    rejected_reloads: int = 0
    nonfinite_frames: int = 0
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
        self.enhancer = Enhancer(self.gains, config.enhancer_settings())
        self.network = network


def default_runner_factory(config):
    from .engine import ModelRunner
    return ModelRunner(config.model_path(), num_threads=config.model.threads, use_xnnpack=config.model.xnnpack)


class AudioLoop:
    """The daemon's audio loop (see module doc). ``io`` has ``open()``, ``read()``, ``write()``, ``close()``."""

    FRAME_TIMES_KEPT = 6000          # one minute of frame times for percentiles

    def __init__(self, config, io, runner_factory=default_runner_factory, clock=time.monotonic,
                 sleep=time.sleep, notifier=None):
        self.config, self.io, self.clock, self.sleep = config, io, clock, sleep
        self.runner_factory = runner_factory
        self.pipeline = Pipeline(config, clock, runner_factory)
        self.notifier = notifier or Notifier()
        self.counters = Counters()
        self._frame_times = np.zeros(self.FRAME_TIMES_KEPT)
        self._stop = threading.Event()
        self._pending = None                 # a reloaded Pipeline waiting to be swapped in
        self._events = queue.SimpleQueue()   # (level, message) for the logging thread
        self._output = np.zeros(HOP_SAMPLES)
        self._activations_before_reload = 0

    # Control, callable from signal handlers or other threads.
    def stop(self):
        self._stop.set()

    def toggle_bypass(self):
        gains = self.pipeline.gains
        gains.bypass = not gains.bypass
        self._events.put((logging.INFO, f"bypass {'on' if gains.bypass else 'off'} (SIGUSR1)"))

    def request_reload(self, path):
        """Load ``path`` in a helper thread; swap at the next frame boundary if it is valid."""
        def work():
            try:
                new_config = config_module.load(path)
                self._pending = Pipeline(new_config, self.clock, self.runner_factory)
                self._events.put((logging.INFO, f"reloaded {path}"))
                if new_config.audio != self.config.audio:
                    self._events.put((logging.WARNING, "the audio section changed: devices and formats "
                                                       "take effect at the next restart"))
            except Exception as exc:                    # any failure keeps the old config running
                self.counters.rejected_reloads += 1
                self._events.put((logging.ERROR, f"reload of {path} rejected, keeping the running config: {exc}"))
        thread = threading.Thread(target=work, name="reload", daemon=True)
        thread.start()
        return thread

    def drain_events(self):
        """Hand queued events to logging (called outside the audio path)."""
        while True:
            try:
                level, message = self._events.get_nowait()
            except queue.Empty:
                return
            log.log(level, message)

    def _log_pump(self):
        """Drain events to logging twice a second, off the audio path."""
        while not self._stop.wait(0.5):
            self.drain_events()

    def _open_with_backoff(self):
        delay = 0.1
        while not self._stop.is_set():
            try:
                self.io.open()
                return True
            except DeviceLost as exc:
                self._events.put((logging.WARNING, f"{exc}; retrying in {delay:.1f} s"))
                self.drain_events()
                self.sleep(delay)
                delay = min(delay * 2, self.config.realtime.device_retry_max_s)
        return False

    def run(self, max_frames=None, duration_s=None):
        """Process until stopped, or for ``max_frames`` / ``duration_s`` of audio. Returns the counters."""
        if duration_s is not None:
            max_frames = int(round(duration_s * SAMPLE_RATE_HZ / HOP_SAMPLES))
        if not self._open_with_backoff():
            return self.counters
        gc.collect()
        gc.freeze()                       # start-up objects never scanned again
        gc.disable()                      # no collector pauses on the audio path
        pump = threading.Thread(target=self._log_pump, name="log-pump", daemon=True)
        pump.start()
        watchdog_every = self._frames_between(self.notifier.watchdog_interval_s or 1.0)
        status_every = self._frames_between(5.0)
        try:
            while not self._stop.is_set() and (max_frames is None or self.counters.frames < max_frames):
                if self._pending is not None:
                    self._swap_pipeline()
                if not self._one_frame():
                    continue
                frames = self.counters.frames
                if frames == 1:
                    self.notifier.ready()
                if frames % watchdog_every == 0:
                    self.notifier.watchdog()
                if frames % status_every == 0:
                    self.notifier.status(self.summary())
        finally:
            self._stop.set()
            self.notifier.stopping()
            self.io.close()
            gc.enable()
            self.drain_events()
        return self.counters

    def _frames_between(self, seconds):
        return max(1, int(seconds * SAMPLE_RATE_HZ / HOP_SAMPLES))

    def _one_frame(self):
        """Read, enhance, write one frame. False when no frame was produced (xrun or device loss)."""
        try:
            frame = self.io.read()
        except DeviceLost as exc:
            return self._recover(exc)
        if frame is None:                                 # overrun: the period is lost, keep going
            self.counters.xruns = self.io.xruns
            return False
        start = self.clock()
        pipeline = self.pipeline
        pipeline.gains.start_frame(start)
        pipeline.enhancer.process(frame, out=self._output)
        try:
            self.io.write(self._output)
        except DeviceLost as exc:
            return self._recover(exc)
        elapsed = self.clock() - start
        counters = self.counters
        self._frame_times[counters.frames % self.FRAME_TIMES_KEPT] = elapsed
        counters.frames += 1
        if elapsed > pipeline.gains.deadline_s:
            counters.deadline_misses += 1
        counters.policy_activations = pipeline.gains.activations + self._activations_before_reload
        counters.xruns = self.io.xruns
        counters.nonfinite_frames = pipeline.enhancer.nonfinite_frames
        vad = getattr(pipeline.network, "vad", None)
        if vad is not None:
            counters.vad_sum += vad
            counters.vad_frames += 1
        return True

    def _swap_pipeline(self):
        bypass = self.pipeline.gains.bypass
        self._activations_before_reload += self.pipeline.gains.activations
        self.pipeline, self._pending = self._pending, None
        self.pipeline.gains.bypass = bypass
        self.config = self.pipeline.config
        self.counters.reloads += 1

    def _recover(self, exc):
        self._events.put((logging.WARNING, f"audio device lost ({exc}); reopening"))
        self.io.close()
        self.counters.device_reopens += 1
        self.pipeline.enhancer.reset()
        self.pipeline.gains.reset()
        self._open_with_backoff()
        return False

    def frame_times_ms(self, last=None):
        """Processing times of the most recent frames (``last`` of them, at most a minute's), oldest first."""
        frames = self.counters.frames
        count = min(frames, self.FRAME_TIMES_KEPT, frames if last is None else max(0, last))
        return self._frame_times[np.arange(frames - count, frames) % self.FRAME_TIMES_KEPT] * 1000.0

    def frame_time_percentiles_ms(self):
        times = self.frame_times_ms()
        if times.size == 0:
            return {"p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
        return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
                "p999": float(np.percentile(times, 99.9)), "max": float(times.max())}

    def summary(self):
        """One line for STATUS= and the end of a bounded run."""
        c, t = self.counters, self.frame_time_percentiles_ms()
        mode = "bypass" if self.pipeline.gains.bypass else "denoising"
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return (f"{mode}; {c.frames} frames; frame p50 {t['p50']:.2f} ms p99 {t['p99']:.2f} ms "
                f"p99.9 {t['p999']:.2f} ms max {t['max']:.2f} ms; deadline misses {c.deadline_misses}; "
                f"policy activations {c.policy_activations}; xruns {c.xruns}; device reopens {c.device_reopens}; "
                f"peak RSS {rss_mb:.0f} MB")


def install_signal_handlers(loop, config_path):
    """SIGTERM/SIGINT stop, SIGHUP reloads ``config_path``, SIGUSR1 toggles bypass."""
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    signal.signal(signal.SIGHUP, lambda *_: loop.request_reload(config_path))
    signal.signal(signal.SIGUSR1, lambda *_: loop.toggle_bypass())


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
            problems.append(f"realtime.sched_fifo_priority {realtime.sched_fifo_priority}: not permitted; "
                            "grant it with LimitRTPRIO= in the systemd unit or an rtprio limit for the user")
    for problem in problems:
        say(f"warning: {problem}")
    return problems
