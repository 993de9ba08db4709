"""Stop requests and signal handling that work from the first moment of start-up.

Only the standard library is imported here, so that ``percepnet-edge run``
installs its handlers before numpy and the model are loaded (most of
the start-up time): a signal then never kills a starting daemon or gives a
traceback.

Handlers only set flags. :class:`StopLatch` is a flag plus a self-pipe, so a
stop wakes every wait at once and no handler ever takes a lock:
``threading.Event.set()`` takes one, and a handler that interrupts the main
thread while that thread holds the same lock (inside ``Event.wait``) would
deadlock the process.
"""

import os
import select
import signal


class StopLatch:
    """A stop request that signal handlers and other threads may set; waits end as soon as it is set."""

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set = False

    def set(self):
        self._set = True
        try:
            os.write(self._write_fd, b"!")      # wakes select() in every waiting thread
        except OSError:                         # pipe full (already readable) or closed: nothing to wake
            pass

    def is_set(self):
        return self._set

    def wait(self, timeout_s):
        """Wait up to ``timeout_s``; returns True as soon as the latch is set (from a handler too).

        A signal interrupts select(); its handler writes to the pipe, and the
        retried select() returns at once.
        """
        if not self._set and self._read_fd >= 0:
            select.select([self._read_fd], [], [], max(0.0, timeout_s))
        return self._set

    def close(self):
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1

    def __del__(self):
        self.close()


class SignalControl:
    """SIGTERM/SIGINT stop, SIGHUP reloads the config, SIGUSR1 toggles bypass, at any time.

    Until :meth:`attach` hands over the audio loop (start-up: imports, config,
    model), requests are kept: a stop ends start-up early, and a bypass toggle
    or a reload is applied once the loop exists (the config file may have
    changed after it was read).
    """

    def __init__(self, stop=None):
        self.stop = stop or StopLatch()
        self.loop = None
        self.config_path = None
        self.bypass_toggles_before_start = 0
        self.reloads_before_start = 0
        self._previous = {}

    def install(self):
        """Install the handlers (main thread only); returns self."""
        handlers = {signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop,
                    signal.SIGHUP: self._on_reload, signal.SIGUSR1: self._on_bypass}
        for signum, handler in handlers.items():
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def restore(self):
        """Put back the handlers that were there before :meth:`install` (for in-process callers)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def attach(self, loop, config_path):
        """From now on signals act on ``loop``; requests made during start-up are applied now."""
        self.config_path = config_path
        self.loop = loop
        if self.bypass_toggles_before_start % 2:
            loop.toggle_bypass()
        if self.reloads_before_start:
            loop.request_reload(config_path)
        return self

    def _on_stop(self, *_):
        self.stop.set()

    def _on_reload(self, *_):
        loop = self.loop
        if loop is None:
            self.reloads_before_start += 1
        else:
            loop.request_reload(self.config_path)

    def _on_bypass(self, *_):
        loop = self.loop
        if loop is None:
            self.bypass_toggles_before_start += 1
        else:
            loop.toggle_bypass()
