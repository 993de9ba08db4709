"""Per-frame processing times: the daemon's last minute of them, each second's longest over an hour, and the one
place their percentiles are taken.

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
    """The processing times (seconds) of the last ``capacity`` frames, in a ring; ``count`` says how many ever.

    Beside them, the longest time of each ``frames_per_slot`` frames (one second) over the last ``max_slots``
    slots (an hour, telemetry's longest interval), so that an interval's maximum is its own, not that of the last
    minute that the ring holds.
    """

    def __init__(self, capacity=6000, frames_per_slot=100, max_slots=3600):    # a minute, a second, an hour
        self.capacity, self.frames_per_slot, self.max_slots = capacity, frames_per_slot, max_slots
        self.count = 0
        self._seconds = np.zeros(capacity)
        self._slot_max = [0.0] * max_slots          # a list: a numpy scalar read and store cost 3x as much

    def record(self, seconds):
        """The audio loop's only call: a store, a compare for the second's longest, an increment."""
        count = self.count
        self._seconds[count % self.capacity] = seconds
        slot = (count // self.frames_per_slot) % self.max_slots
        if count % self.frames_per_slot == 0 or seconds > self._slot_max[slot]:
            self._slot_max[slot] = seconds
        self.count = count + 1

    def last_ms(self, frames=None):
        """The newest ``frames`` times (all that are kept when None), oldest first, in milliseconds."""
        kept = min(self.count, self.capacity)
        n = kept if frames is None else min(kept, max(0, frames))
        return self._seconds[np.arange(self.count - n, self.count) % self.capacity] * 1000.0

    def window_ms(self, start, stop):
        """The times of frames ``start`` .. ``stop - 1`` (counted since the first) that the ring still holds, in ms;
        ``stop`` at most :attr:`count`. A reader's snapshot of :attr:`count` makes its window exact while the audio
        thread records on."""
        start = max(start, stop - self.capacity, 0)
        return self._seconds[np.arange(start, stop) % self.capacity] * 1000.0

    def stats_ms(self, frames=None):
        """:func:`time_stats` of :meth:`last_ms`: the percentiles of at most the last ``capacity`` frames; with
        ``frames``, ``max`` covers all of them (to the slot: up to ``frames_per_slot - 1`` earlier frames may count)
        however many the ring has let go."""
        stats = time_stats(self.last_ms(frames))
        if frames is not None and self.count > self.capacity and frames > self.capacity:
            first = (self.count - min(frames, self.count)) // self.frames_per_slot
            slots = np.arange(max(first, (self.count - 1) // self.frames_per_slot - self.max_slots + 1),
                              (self.count - 1) // self.frames_per_slot + 1) % self.max_slots
            stats["max"] = max(stats["max"], float(np.asarray(self._slot_max)[slots].max()) * 1000.0)
        return stats


class FrameTimeLog:
    """Every frame's time of a whole run, for reports (``profile``, ``soak``): :meth:`collect` takes the frames
    recorded since its last call from a :class:`FrameTimes` ring, so it must run more often than the ring wraps
    (once a second against a minute). Off the audio path."""

    def __init__(self, frame_times):
        self.frame_times, self.seen, self._chunks = frame_times, 0, []
        self.lost = 0                               # frames the ring let go before they were collected

    def collect(self):
        count = self.frame_times.count              # one snapshot: frames recorded meanwhile wait for the next call
        self.lost += max(0, count - self.seen - self.frame_times.capacity)
        self._chunks.append(self.frame_times.window_ms(self.seen, count))
        self.seen = count

    def all_ms(self):
        """Every collected frame's time, oldest first, in milliseconds."""
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0)
