"""Per-frame processing times: the daemon's last minute of them, and the one place their percentiles are taken.

:class:`FrameTimes` is written once per frame by the audio loop (one store
into a preallocated ring, nothing else) and read by the status line,
telemetry, ``profile`` and ``soak`` off the audio path. :func:`time_stats` is
the summary they, and the benchmarks, all print.
"""

import numpy as np

#: The percentiles quoted everywhere, by key.
PERCENTILES = {"p50": 50.0, "p99": 99.0, "p999": 99.9}


def time_stats(times):
    """``{"p50", "p99", "p999", "max"}`` of ``times`` (any unit; all 0.0 when there are none)."""
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return {key: 0.0 for key in (*PERCENTILES, "max")}
    stats = {key: float(value) for key, value in zip(PERCENTILES, np.percentile(times, list(PERCENTILES.values())))}
    stats["max"] = float(times.max())
    return stats


class FrameTimes:
    """The processing times (seconds) of the last ``capacity`` frames, in a ring; ``count`` says how many ever."""

    def __init__(self, capacity=6000):              # one minute of 10 ms frames
        self.capacity = capacity
        self.count = 0
        self._seconds = np.zeros(capacity)

    def record(self, seconds):
        """The audio loop's only call: one store, one increment."""
        self._seconds[self.count % self.capacity] = seconds
        self.count += 1

    def last_ms(self, frames=None):
        """The newest ``frames`` times (all that are kept when None), oldest first, in milliseconds."""
        kept = min(self.count, self.capacity)
        n = kept if frames is None else min(kept, max(0, frames))
        return self._seconds[np.arange(self.count - n, self.count) % self.capacity] * 1000.0

    def stats_ms(self, frames=None):
        """:func:`time_stats` of :meth:`last_ms`."""
        return time_stats(self.last_ms(frames))
