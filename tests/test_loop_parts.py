"""The audio loop's helpers: frame times and their percentiles, the event log, and the config reloader."""

import logging
import time

import numpy as np
import pytest

from edge.daemon.config import parse
from edge.daemon.control import StopLatch
from edge.daemon.loop import AudioLoop, Counters, Pipeline
from edge.daemon.event_log import EventLog
from edge.daemon.frame_times import FrameTimes, time_stats
from edge.daemon.reloader import Reloader
from edge.io.synthetic import speech_like
from tests.test_daemon import FakeClock, FakeIO, FakeNetwork


def test_time_stats_of_a_known_set():
    stats = time_stats(np.arange(1.0, 101.0))                      # 1..100
    assert stats == pytest.approx({"p50": 50.5, "p99": 99.01, "p999": 99.901, "max": 100.0})
    assert time_stats([]) == {"p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}


def test_an_intervals_maximum_covers_frames_the_ring_has_let_go():
    """Telemetry's interval may be an hour while the ring keeps a minute: a spike before the last minute still
    sets the interval's max, and one before the interval does not (to the second: its slot may reach back)."""
    rng = np.random.default_rng(5)
    times = FrameTimes(capacity=60, frames_per_slot=10, max_slots=50)
    seconds = rng.uniform(0.001, 0.002, 2000)
    seconds[rng.choice(2000, 40, replace=False)] = rng.uniform(0.005, 0.05, 40)       # spikes
    for count, value in enumerate(seconds, start=1):
        times.record(value)
        for frames in {30, 60, 61, 200, 490, min(count, 490)}:          # up to the 50 slots' reach
            if frames > count:
                continue
            beyond_the_ring = count > 60 and frames > 60
            window = seconds[(count - frames) // 10 * 10 if beyond_the_ring else count - frames:count]
            assert times.stats_ms(frames)["max"] == pytest.approx(window.max() * 1000.0), (count, frames)
    assert times.stats_ms()["max"] == pytest.approx(seconds[-60:].max() * 1000.0)      # no frames: the ring's


def test_a_frame_time_log_gathers_every_frame_and_counts_what_the_ring_let_go():
    from edge.daemon.frame_times import FrameTimeLog
    times = FrameTimes(capacity=20)
    log = FrameTimeLog(times)
    seconds = np.arange(1, 101) / 1000.0
    for index, value in enumerate(seconds):
        times.record(value)
        if index % 15 == 14:                                     # read more often than the ring wraps
            log.collect()
    log.collect()
    assert np.array_equal(log.all_ms(), seconds * 1000.0) and log.lost == 0
    for value in seconds[:50]:                                   # 50 frames between reads: 30 let go
        times.record(value)
    log.collect()
    assert log.lost == 30 and np.array_equal(log.all_ms()[-20:], seconds[30:50] * 1000.0)


def test_frame_times_keep_the_newest_in_order_across_the_wrap():
    times = FrameTimes(capacity=5)
    for ms in range(1, 8):                                          # 7 frames into a ring of 5
        times.record(ms / 1000.0)
    assert times.count == 7
    np.testing.assert_allclose(times.last_ms(), [3, 4, 5, 6, 7])
    np.testing.assert_allclose(times.last_ms(2), [6, 7])
    assert times.last_ms(0).size == 0
    assert times.stats_ms(2)["max"] == pytest.approx(7.0) and times.stats_ms()["p50"] == pytest.approx(5.0)


def test_the_loop_records_each_frames_time_from_its_clock():
    clock = FakeClock()
    network = FakeNetwork(clock, cost_s=0.003)
    network.slow = {10: 0.012}                                      # frame 10 runs long
    loop = AudioLoop(parse("realtime: {overrun_policy: 'off'}"), FakeIO(speech_like(1.0, seed=1)),
                     runner_factory=lambda c: network, clock=clock, sleep=lambda s: None)
    loop.run(max_frames=20)
    times = loop.frame_times.last_ms()
    assert times.size == 20 and times[10] == pytest.approx(12.0) and np.delete(times, 10) == pytest.approx(3.0)
    assert loop.counters.deadline_misses == 1 and "max 12.00 ms" in loop.summary()


def test_events_are_logged_by_the_pump_not_by_the_caller(caplog):
    stop = StopLatch()
    events = EventLog(stop)
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.put(logging.WARNING, "device lost")
        assert caplog.records == []                                 # put() only queues
        events.start()
        stop.set()
        events.close()                                              # the pump ends; what is left is logged
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "device lost")]


def test_work_queued_with_the_lines_runs_on_the_pump_in_order_and_a_failure_is_logged(caplog):
    events = EventLog(StopLatch())
    done = []
    events.put(logging.WARNING, "first")
    events.call(lambda: done.append("work"))
    events.call(lambda: 1 / 0)
    events.put(logging.WARNING, "last")
    assert done == []                                                # queued, not run by the caller
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.drain()
    assert done == ["work"]
    assert [r.getMessage() for r in caplog.records] == [
        "first", "status update failed: ZeroDivisionError: division by zero", "last"]


def test_the_status_line_is_built_off_the_audio_path():
    """Building it takes a percentile over a minute of frame times and a read of /proc (0.5 ms here): never
    inside a frame, only on the log thread, or once the last frame is done."""
    import threading
    from edge.daemon.loop import AudioLoop
    from edge.io.synthetic import speech_like
    from tests.test_daemon import FakeClock, FakeIO, FakeNetwork
    clock = FakeClock()
    loop = AudioLoop(parse(""), FakeIO(speech_like(12.0, seed=3)), runner_factory=lambda c: FakeNetwork(clock),
                     clock=clock, sleep=clock.advance)
    built, summary = [], loop.summary

    def recording_summary():
        built.append(threading.current_thread().name == "log-pump" or loop.counters.frames == 1100)
        return summary()
    loop.summary = recording_summary
    loop.run(max_frames=1100)                                        # a status every 500 frames
    assert len(built) == 2 and all(built), built


def test_each_event_carries_the_time_it_happened_not_the_time_it_was_logged(caplog):
    """Issue 26 item 9: three retries queued 50 ms apart and drained together keep their own timestamps."""
    events = EventLog(StopLatch())
    stamps = []
    for delay_s in (0.1, 0.2, 0.4):
        stamps.append(time.time())
        events.put(logging.WARNING, f"waiting for the audio device: gone; retry in {delay_s:.1f} s")
        time.sleep(0.05)
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.drain()
    created = [record.created for record in caplog.records]
    assert len(created) == 3 and created == pytest.approx(stamps, abs=0.005)
    assert created[2] - created[0] >= 0.09
    assert "(events)" not in caplog.text and caplog.records[0].msecs == pytest.approx((stamps[0] % 1) * 1000, abs=5)


def _reloader(built):
    stop = StopLatch()
    counters = Counters()
    events = EventLog(stop)
    return Reloader(lambda config: built.append(config) or ("pipeline", config), events, counters), counters, events


def test_a_good_config_is_loaded_in_a_thread_and_handed_over_once(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("dsp: {postfilter_beta: 0.3}\n")
    built = []
    reloader, counters, events = _reloader(built)
    reloader.request(str(path))
    assert reloader.requested == str(path) and built == []           # the request itself does no work
    reloader.start(parse("")).join()
    assert reloader.requested is None and reloader.take()[1].dsp.postfilter_beta == 0.3
    assert reloader.take() is None and counters.rejected_reloads == 0
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.drain()
    assert f"reloaded {path}" in caplog.text


@pytest.mark.parametrize("yaml, changed", [
    ("echo: {enabled: true, reference_device: 'hw:2,0'}\n",
     "echo.enabled, echo.reference_device or echo.speaker_device changed: the echo devices need a restart"),
    ("echo: {speaker_device: 'hw:3,0'}\n",
     "echo.enabled, echo.reference_device or echo.speaker_device changed: the echo devices need a restart"),
    ("realtime: {sched_fifo_priority: 50}\n",
     "realtime.sched_fifo_priority or realtime.cpu_affinity changed: the priority and CPU pinning need a restart"),
    ("realtime: {cpu_affinity: [1]}\n",
     "realtime.sched_fifo_priority or realtime.cpu_affinity changed: the priority and CPU pinning need a restart"),
    ("audio: {buffer_periods: 8}\n", "the audio section changed: devices and formats need a restart"),
])
def test_a_reload_names_every_setting_that_needs_a_restart(tmp_path, caplog, yaml, changed):
    """The devices are open and the scheduling applied at start: a reload that changes them says so, every time."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml)
    reloader, _, events = _reloader([])
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        for _ in range(2):
            reloader.request(str(path))
            reloader.start(parse("")).join()
            reloader.take()                                          # swapped in, as the loop does
            events.drain()
    said = [record.getMessage() for record in caplog.records]
    assert said[0] == f"reloaded {path}: model, dsp, echo-canceller and realtime frame settings applied"
    assert [line for line in said if "need a restart" in line] == [
        f"{changed} (systemctl restart); until then the running ones stay"] * 2


def test_a_reload_of_frame_and_canceller_settings_needs_no_restart(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("realtime: {deadline_ms: 8, overrun_policy: bypass}\necho: {tail_ms: 200}\n")
    reloader, _, events = _reloader([])
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        reloader.request(str(path))
        reloader.start(parse("")).join()
        events.drain()
    assert "reloaded" in caplog.text and "need a restart" not in caplog.text


def test_reloads_run_one_at_a_time_so_the_newest_file_wins(tmp_path, caplog):
    """Two SIGHUPs in quick succession: the second load waits for the first, whose build is slow, so an older
    file finishing last cannot replace a newer one."""
    import threading
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("dsp: {postfilter_beta: 0.1}\n")
    second.write_text("dsp: {postfilter_beta: 0.2}\n")
    release = threading.Event()

    def build(config):
        if config.dsp.postfilter_beta == 0.1:
            release.wait(10)                                         # the first build is slow
        return config
    events = EventLog(StopLatch())
    reloader = Reloader(build, events, Counters())
    reloader.request(str(first))
    loading = reloader.start(parse(""))
    reloader.request(str(second))
    for _ in range(3):
        assert reloader.start(parse("")) is None and reloader.requested == str(second)   # waits its turn
    release.set()
    loading.join()
    assert reloader.start(parse("")) is None                          # the first's result not yet swapped in
    assert reloader.take().dsp.postfilter_beta == 0.1
    reloader.start(parse("")).join()
    assert reloader.take().dsp.postfilter_beta == 0.2 and reloader.requested is None
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.drain()
    waits = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
    assert waits == [f"reload of {second} waits for the previous reload, still loading or building its model"]


def test_a_bad_config_is_rejected_and_counted(tmp_path, caplog):
    path = tmp_path / "config.yaml"
    path.write_text("dsp: {postfilter_beta: -1}\n")
    reloader, counters, events = _reloader([])
    reloader.request(str(path))
    reloader.start(parse("")).join()
    assert reloader.pending is None and counters.rejected_reloads == 1
    reloader.request(None)                                          # running on the built-in defaults
    assert reloader.start(parse("")) is None
    with caplog.at_level(logging.INFO, logger="percepnet-edge"):
        events.drain()
    assert "rejected, keeping the running config" in caplog.text and "dsp.postfilter_beta" in caplog.text
    assert "reload ignored: running on the built-in defaults" in caplog.text


def test_the_loop_swaps_a_pending_pipeline_in_at_a_frame_boundary_and_keeps_bypass():
    clock = FakeClock()
    network = FakeNetwork(clock)
    loop = AudioLoop(parse(""), FakeIO(speech_like(1.0, seed=1)), runner_factory=lambda c: network, clock=clock,
                     sleep=lambda s: None)
    loop.toggle_bypass()
    new_config = parse("dsp: {postfilter_beta: 0.3}")
    loop.reloader.pending = Pipeline(new_config, clock, lambda c: network)
    loop.run(max_frames=3)
    assert loop.counters.reloads == 1 and loop.config is new_config and loop.pipeline.config is new_config
    assert loop.pipeline.gains.bypass and loop.reloader.pending is None
