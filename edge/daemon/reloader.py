"""SIGHUP's config reload, kept off the audio path.

:meth:`Reloader.request` only records the path, so it is safe in a signal
handler. At the next frame boundary the loop sees ``requested`` and calls
:meth:`Reloader.start`, which loads the file and builds the new pipeline
(model included) in a helper thread; once built it waits in ``pending`` and
the loop swaps it in between two frames. A config that fails to load or
build is rejected: counted, logged, and the running one kept.
"""

import logging
import threading

from edge.daemon import config as config_module


#: What a reload cannot change, with what to call it in the log: the devices are open, the telemetry sinks running,
#: and the scheduling was applied to the process at start. A difference from the config the daemon started with is
#: logged at every reload until a restart.
NEEDS_RESTART = (
    ("the audio section", "devices and formats", lambda config: config.audio),
    ("the telemetry section", "telemetry sinks and interval", lambda config: config.telemetry),
    ("echo.enabled, echo.reference_device or echo.speaker_device", "the echo devices",
     lambda config: (config.echo.enabled, config.echo.reference_device, config.echo.speaker_device)),
    ("realtime.sched_fifo_priority or realtime.cpu_affinity", "the priority and CPU pinning",
     lambda config: (config.realtime.sched_fifo_priority, config.realtime.cpu_affinity)),
)


class Reloader:
    """Loads a requested config in a helper thread; ``build(config)`` makes the pipeline to swap in."""

    def __init__(self, build, events, counters):
        self.build, self.events, self.counters = build, events, counters
        self.requested = None              # a path ("" with no --config) waiting for the loop to start it
        self.pending = None                # a built pipeline waiting to be swapped in
        self._loading = None               # the helper thread of the load in progress
        self._said_waiting = None          # the request whose wait for it has been logged

    def request(self, path):
        """Ask for ``path`` to be reloaded (None: running on the built-in defaults)."""
        self.requested = path if path is not None else ""

    def start(self, started_config):
        """Start loading the requested config; returns the helper thread (None when there is nothing to load, or
        while an earlier load is still running: the request then stays for a later call).

        ``started_config`` is the config the daemon started with: its audio and telemetry sections are the ones
        in effect whatever was reloaded since, so a change to them is reported against it, at every reload.
        """
        if self.pending is not None or (self._loading is not None and self._loading.is_alive()):
            # One load at a time, its result swapped in before the next starts: two threads racing would let the
            # older file win whenever it finished last. The request waits for a later frame boundary.
            if self._said_waiting != self.requested and self.pending is None:
                self._said_waiting = self.requested
                self.events.put(logging.WARNING, f"reload of {self.requested or '(no --config)'} waits for the "
                                                 "previous reload, still loading or building its model")
            return None
        self._said_waiting = None
        path, self.requested = self.requested, None
        if not path:
            self.events.put(logging.WARNING, "reload ignored: running on the built-in defaults (no --config)")
            return None
        self._loading = threading.Thread(target=self._load, args=(path, started_config), name="reload", daemon=True)
        self._loading.start()
        return self._loading

    def take(self):
        """The built pipeline, handed over once."""
        pipeline, self.pending = self.pending, None
        return pipeline

    def _load(self, path, started_config):
        try:
            new_config = config_module.load(path)
            pipeline = self.build(new_config)
            self.events.put(logging.INFO, f"reloaded {path}: model, dsp, echo-canceller and realtime frame "
                                          "settings applied")
            for changed, what, part in NEEDS_RESTART:
                if part(new_config) != part(started_config):
                    self.events.put(logging.WARNING, f"{changed} changed: {what} need a restart "
                                                     "(systemctl restart); until then the running ones stay")
            self.pending = pipeline                # last: once it is taken, this thread has nothing left to do
        except Exception as exc:                   # any failure, ours or a bug's, keeps the old config running
            self.counters.rejected_reloads += 1
            self.events.put(logging.ERROR, f"reload of {path} rejected, keeping the running config: {exc}")
