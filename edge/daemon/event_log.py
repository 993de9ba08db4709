"""Log lines from the audio path, written by a thread of their own (and the status line, built there).

The audio loop never logs: a handler can block on a full pipe to journald or
a slow disk. It puts ``(level, message, time)`` on a queue (``SimpleQueue.put``
neither blocks nor allocates beyond the tuple) and a thread hands the queue
to :mod:`logging` twice a second, each record stamped with the time its event
happened, not the time it was drained ("retry in 0.1 / 0.2 / 0.4 s" once all
carried one timestamp).
"""

import logging
import queue
import threading
import time

log = logging.getLogger("percepnet-edge")


class EventLog:
    """A queue of log events and the thread that drains it until ``stop`` (a StopLatch) is set."""

    DRAIN_EVERY_S = 0.5

    def __init__(self, stop):
        self._stop = stop
        self._events = queue.SimpleQueue()
        self._thread = None

    def put(self, level, message):
        """Queue one event (from any thread, the audio thread included)."""
        self._events.put((level, message, time.time()))

    def call(self, work):
        """Queue ``work()`` to run on the log thread, in order with the lines (the status line: building it takes a
        percentile over a minute of frame times and a read of /proc, 0.5 ms here, more on a Pi)."""
        self._events.put((None, work, time.time()))

    def start(self):
        self._thread = threading.Thread(target=self._pump, name="log-pump", daemon=True)
        self._thread.start()
        return self

    def close(self):
        """After ``stop`` was set: wait for the thread, then log what is left."""
        if self._thread is not None:
            self._thread.join()
        self.drain()

    def drain(self):
        """Hand every queued event to logging, now."""
        while True:
            try:
                level, message, stamp = self._events.get_nowait()
            except queue.Empty:
                return
            if level is None:
                try:
                    message()
                except Exception as exc:                   # the log thread outlives any one piece of work
                    log.error(f"status update failed: {type(exc).__name__}: {exc}")
                continue
            if log.isEnabledFor(level):
                record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
                # Moved back to when the event happened; relativeCreated by the same shift, as it is
                # measured from logging's own start.
                record.relativeCreated -= (record.created - stamp) * 1000.0
                record.created, record.msecs = stamp, (stamp - int(stamp)) * 1000.0
                log.handle(record)

    def _pump(self):
        while not self._stop.wait(self.DRAIN_EVERY_S):
            self.drain()
