"""The real-time loop: deadline policy with a fake clock, xruns and device loss with a fake PCM."""

import logging
import re
import threading

import numpy as np
import pytest

from edge.daemon.config import parse
from edge.daemon.loop import AudioLoop
from edge.dsp import HOP_SAMPLES, N_BANDS
from edge.devices.alsa import AlsaDuplex, decode, encode
from edge.errors import DeviceError
from edge.daemon.policy import DeadlineGains
from edge.io.synthetic import speech_like


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeNetwork:
    """A network whose cost (in fake seconds) can be set per call."""

    def __init__(self, clock, cost_s=0.002):
        self.clock, self.cost_s, self.calls, self.slow = clock, cost_s, 0, {}
        self.gain, self.strength = np.full(N_BANDS, 0.5), np.zeros(N_BANDS)

    def __call__(self, features):
        self.clock.now += self.slow.get(self.calls, self.cost_s)
        self.calls += 1
        self.gain[:] = 0.5 + 0.001 * self.calls
        return self.gain, self.strength

    def reset(self):
        pass

    def describe(self):
        return "fake"


class FakeIO:
    """pyalsaaudio's contract in miniature: periods in, periods out, xruns and unplugging on cue."""

    def __init__(self, signal, xrun_at=(), lost_at=(), fail_opens=0):
        self.frames = signal.reshape(-1, HOP_SAMPLES)
        self.position, self.written, self.xruns, self.opens = 0, [], 0, 0
        self.xrun_at, self.lost_at, self.fail_opens = set(xrun_at), set(lost_at), fail_opens

    def open(self):
        self.opens += 1
        if self.opens <= self.fail_opens:
            raise DeviceError("no such device")

    def read(self):
        index = self.position
        self.position += 1
        if index in self.lost_at:
            self.lost_at.discard(index)
            raise DeviceError("unplugged")
        if index in self.xrun_at:
            self.xruns += 1
            return None
        return self.frames[index % len(self.frames)]

    def write(self, frame):
        self.written.append(frame.copy())

    def close(self):
        pass


def _loop(policy="hold", io=None, network_cost_s=0.002, **realtime):
    clock = FakeClock()
    network = FakeNetwork(clock, network_cost_s)
    settings = ", ".join(f"{k}: {v}" for k, v in {"overrun_policy": policy, **realtime}.items())
    config = parse(f"realtime: {{{settings}}}")
    io = io or FakeIO(speech_like(2.0, seed=1))
    loop = AudioLoop(config, io, runner_factory=lambda c: network, clock=clock, sleep=lambda s: None)
    return loop, io, network, clock


@pytest.mark.parametrize("policy", ["bypass", "hold", "drop-model"])
def test_a_slow_network_call_triggers_the_policy_and_the_stream_keeps_its_length(policy):
    loop, io, network, clock = _loop(policy, drop_model_frames=5)
    network.slow = {20: 0.012}                       # call 20 takes 12 ms: a missed deadline
    counters = loop.run(max_frames=60)
    assert counters.frames == 60 and len(io.written) == 60          # nothing lost or duplicated
    assert counters.deadline_misses == 1
    assert counters.policy_activations >= 1
    assert all(np.all(np.isfinite(frame)) for frame in io.written)
    # The network was skipped on at least the frame after the slow one, and retried later.
    assert network.calls < 60 and network.calls > 40


def test_policies_replace_the_network_as_documented():
    clock = FakeClock()
    network = FakeNetwork(clock)
    features = np.zeros(70)
    for policy in ("bypass", "hold", "drop-model"):
        gains = DeadlineGains(network, policy, 0.010, clock, drop_model_frames=3)
        gains.start_frame(clock.now)
        held = gains(features)[0].copy()                     # a normal call
        gains.start_frame(clock.now - 0.009)                 # 9 ms already spent on this frame
        gain, strength = gains(features)
        assert gains.activations == 1
        if policy == "bypass":
            assert np.all(gain == 1.0) and np.all(strength == 0.0)
        elif policy == "hold":
            np.testing.assert_array_equal(gain, held)
        else:
            calls = network.calls
            for _ in range(2):                               # the rest of the 3 DSP-only frames
                gains.start_frame(clock.now)
                gains(features)
            assert network.calls == calls and gains.activations == 1
            gains.start_frame(clock.now)
            gains(features)
            assert network.calls == calls + 1                # back to the network


def test_sigusr1_bypass_passes_audio_through_unchanged():
    loop, io, network, _ = _loop()
    loop.toggle_bypass()
    loop.run(max_frames=100)
    assert network.calls == 0
    played = np.concatenate(io.written)
    original = io.frames.reshape(-1)[:played.size]
    from edge.dsp.enhancer import HIGHPASS_A, HIGHPASS_B
    from scipy.signal import lfilter
    expected = lfilter(HIGHPASS_B, HIGHPASS_A, original)[:-1440]
    np.testing.assert_allclose(played[1440:], expected, atol=1e-9)   # gains 1: delayed input


def test_xruns_are_counted_and_the_stream_continues():
    io = FakeIO(speech_like(1.0, seed=2), xrun_at={10, 11, 30})
    loop, io, _, _ = _loop(io=io)
    counters = loop.run(max_frames=50)
    assert counters.xruns == 3 and counters.frames == 50 and len(io.written) == 50


def xrun_lines(caplog):
    return [(r.levelname, int(re.search(r"xrun: (\d+) period", r.getMessage()).group(1)),
             int(re.search(r"\((\d+) since start\)", r.getMessage()).group(1)))
            for r in caplog.records if r.getMessage().startswith("xrun:")]


def test_xruns_are_logged_when_they_happen_a_burst_as_one_line_a_second(caplog):
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    io = FakeIO(speech_like(1.0, seed=2), xrun_at={10, 11, 30})
    loop, io, _, _ = _loop(io=io)
    loop.run(max_frames=50)
    # The first at once; 11 and 30 fall within a second of it (2 ms of fake time a frame) and are said at the end.
    assert xrun_lines(caplog) == [("WARNING", 1, 1), ("WARNING", 2, 3)]
    caplog.clear()
    io = FakeIO(speech_like(1.0, seed=2), xrun_at=set(range(0, 3000, 3)))      # a storm: every third period
    loop, io, _, clock = _loop(io=io)
    start = clock.now
    counters = loop.run(max_frames=2000)
    lines = xrun_lines(caplog)
    seconds = clock.now - start
    assert counters.xruns == 1000 and sum(n for _, n, _ in lines) == 1000 and lines[-1][2] == 1000
    assert len(lines) <= seconds / loop.XRUN_LOG_EVERY_S + 2, (len(lines), seconds)


def counted_lines(caplog, prefix):
    return [(r.levelname, int(re.search(r": (\d+) ", r.getMessage()).group(1)),
             int(re.search(r"\((\d+) since start\)", r.getMessage()).group(1)))
            for r in caplog.records if r.getMessage().startswith(prefix)]


def test_deadline_misses_are_logged_when_they_happen_a_burst_as_one_line_a_second(caplog):
    """A late frame loses nothing in the daemon, but a sound server can lose a period around it without an xrun
    reaching the stream (tests/test_pipewire.py saw it once): the log must say when frames were late."""
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    loop, io, network, clock = _loop("'off'")
    network.slow = {20: 0.012, 21: 0.011, 400: 0.015}       # 2 ms a frame otherwise: 400 is 0.8 s after 20
    counters = loop.run(max_frames=1000)
    lines = counted_lines(caplog, "deadline:")
    assert counters.deadline_misses == 3 and counters.frames == 1000
    # The first at once; 21 and 400 fall within a second of it (2 ms of fake time a frame): said once it has passed.
    assert lines == [("WARNING", 1, 1), ("WARNING", 2, 3)]
    first = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("deadline:"))
    assert "realtime.deadline_ms, 10 ms (1 since start)" in first and "sched_fifo_priority" in first
    caplog.clear()
    loop, io, network, clock = _loop("'off'")
    network.slow = {20: 0.012, 21: 0.011, 400: 0.015}
    loop.run(max_frames=450)                                 # ends within that second: the rest said at the end
    assert counted_lines(caplog, "deadline:") == [("WARNING", 1, 1), ("WARNING", 2, 3)]
    caplog.clear()
    loop, io, network, clock = _loop("'off'")
    network.slow = {call: 0.011 for call in range(0, 3000, 2)}       # a storm: every other frame late
    start = clock.now
    counters = loop.run(max_frames=2000)
    lines = counted_lines(caplog, "deadline:")
    assert counters.deadline_misses == 1000 and sum(lost for _, lost, _ in lines) == 1000 and lines[-1][2] == 1000
    assert len(lines) <= (clock.now - start) / loop.XRUN_LOG_EVERY_S + 2, (len(lines), clock.now - start)


def test_unusable_microphone_frames_are_repaired_counted_and_logged(caplog):
    """A FLOAT_LE device can deliver NaN, infinity or garbage: the enhancer repaired such frames, but nothing said so
    (the count reached neither the log, nor telemetry, nor the summary)."""
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    signal = speech_like(4.0, seed=2).reshape(-1, HOP_SAMPLES).copy()
    signal[10, 3], signal[11, 7], signal[300, 0] = np.nan, 1e160, -np.inf
    loop, io, _, _ = _loop(io=FakeIO(signal.ravel()))
    counters = loop.run(max_frames=400)
    assert counters.nonfinite_frames == 3
    assert all(np.all(np.isfinite(frame)) for frame in io.written)
    # the first at once, the next within a second of it said with the later one or at the end
    lines = counted_lines(caplog, "input:")
    assert lines[0] == ("WARNING", 1, 1) and sum(n for _, n, _ in lines) == 3 and lines[-1][2] == 3
    assert "input frames repaired 3" in loop.summary()


def test_output_beyond_full_scale_is_counted_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    # the fake network halves everything: a float input at 3x full scale comes out above it
    square = 3.0 * np.sign(np.sin(2 * np.pi * 100 * np.arange(96_000) / 48_000))
    loop, io, _, _ = _loop(io=FakeIO(square))
    counters = loop.run(max_frames=150)
    clipped = sum(bool(np.max(np.abs(frame)) > 1.0) for frame in io.written)
    assert counters.clipped_frames == clipped > 0
    lines = counted_lines(caplog, "output:")
    assert lines and lines[0][0] == "WARNING" and lines[-1][2] == clipped
    assert f"output frames clipped {clipped}" in loop.summary()
    loop, _, _, _ = _loop(io=FakeIO(speech_like(2.0, seed=2) * 0.1))
    assert loop.run(max_frames=150).clipped_frames == 0 and "clipped" not in loop.summary()


class ReferenceLosingIO(FakeIO):
    """FakeIO whose echo reference (or its forwarding to the loudspeaker) loses the periods in ``lost``."""

    def __init__(self, signal, lost):
        super().__init__(signal)
        self.reference_xruns, self.reference_lost = 0, set(lost)

    def read(self):
        self.reference_xruns += self.position in self.reference_lost
        return super().read()


class EchoReferenceIO(ReferenceLosingIO):
    """ReferenceLosingIO with the reference itself: what the loudspeaker played, None for a lost period."""

    def __init__(self, far, lost):
        super().__init__(0.5 * far, lost)
        self.far = far.reshape(-1, HOP_SAMPLES)
        self.reference_frame = None

    def read(self):
        index = self.position
        self.reference_frame = None if index in self.reference_lost else self.far[index % len(self.far)]
        return super().read()


def test_a_lost_reference_period_is_one_warning_not_a_fallback_and_back(caplog):
    """The canceller bridges a lost reference period: the log has the xrun line and no mode changes, and no
    frame is counted as running without a reference."""
    from edge.echo import speex_mdf
    if not speex_mdf.available():
        pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1)")
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    clock = FakeClock()
    network = FakeNetwork(clock)
    io = EchoReferenceIO(speech_like(2.0, seed=3), lost={100, 140, 141})
    config = parse("echo: {enabled: true, reference_device: pe_reference}")
    loop = AudioLoop(config, io, runner_factory=lambda c: network, clock=clock, sleep=lambda s: None)
    counters = loop.run(max_frames=400)
    messages = [r.getMessage() for r in caplog.records]
    assert counters.echo_reference_xruns == 3 and counters.echo_no_reference_frames == 0
    assert not [m for m in messages if "no loudspeaker reference" in m]
    assert [m for m in messages if m.startswith("echo: far end playing")] == \
        ["echo: far end playing: cancelling its echo"]
    assert len([m for m in messages if "of the loudspeaker reference lost" in m]) == 2
    from edge.daemon.telemetry import Telemetry, TelemetryConfig
    record = Telemetry(TelemetryConfig(), loop, say=lambda *_: None).record()
    assert record["echo_reference_xruns_total"] == 3 and record["echo_no_reference_frames_total"] == 0
    assert record["echo_delay_found"] == 1 and record["echo_delay_ms"] == pytest.approx(0.0, abs=10.0)


class VanishingReferenceIO(EchoReferenceIO):
    """EchoReferenceIO whose reference device vanishes at period ``gone_at``; ``retry_reference`` fails
    ``failed_retries`` times, then the device is back from the next period on."""

    def __init__(self, far, gone_at, failed_retries, clock):
        super().__init__(far, lost=())
        self.gone_at, self.failed_retries, self.clock = gone_at, failed_retries, clock
        self.reference_device, self.reference_problem, self.retried_at, self.back = "pe_reference", None, [], False

    def read(self):
        frame = super().read()
        if self.position - 1 >= self.gone_at and not self.back:
            self.reference_frame = None
            self.reference_problem = ("echo reference 'pe_reference' failed: No such device; echo cancellation is off "
                                      "until the reference is back")
        elif self.back:
            self.reference_problem = None
        return frame

    def retry_reference(self):
        self.retried_at.append(self.clock())
        self.back = len(self.retried_at) > self.failed_retries
        return True


def _echo_loop(caplog, make_io, retry_max_s):
    """An echo-enabled loop on a fake clock (with the network's 5 ms, 200 periods a fake second) over
    ``make_io(clock)``, logging to ``caplog``; skipped without SpeexDSP."""
    from edge.echo import speex_mdf
    if not speex_mdf.available():
        pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1)")
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    clock = FakeClock()
    network = FakeNetwork(clock, cost_s=0.005)
    io = make_io(clock)
    config = parse("echo: {enabled: true, reference_device: pe_reference}\n"
                   f"realtime: {{device_retry_max_s: {retry_max_s}}}")
    return AudioLoop(config, io, runner_factory=lambda c: network, clock=clock, sleep=lambda s: None), io


def test_a_vanished_reference_is_tried_again_with_backoff_while_the_microphone_runs(caplog):
    """A loudspeaker unplugged and plugged back (or a PipeWire sink re-created) must not leave echo cancellation
    off until the microphone fails too: the loop retries the reference with doubling waits, says when it is back,
    and the canceller cancels again."""
    loop, io = _echo_loop(caplog, lambda clock: VanishingReferenceIO(
        speech_like(2.0, seed=3), gone_at=200, failed_retries=2, clock=clock), retry_max_s=3)
    counters = loop.run(max_frames=2000)
    gone_s = 200 * 0.005
    waits = np.diff([gone_s] + io.retried_at)
    assert len(io.retried_at) == 3 and counters.echo_reference_retries == 3
    np.testing.assert_allclose(waits, [1.0, 2.0, 3.0], atol=0.011)   # doubling from 1 s, at most device_retry_max_s
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("echo reference 'pe_reference' failed")]) == 1
    assert [m for m in messages if "is open again" in m] == \
        ["echo: the loudspeaker reference 'pe_reference' is open again (echo cancellation resumes when the far end plays)"]
    back_frame = 200 + int(round(sum(waits) / 0.005))
    assert counters.echo_no_reference_frames == pytest.approx(back_frame - 200 - 10, abs=3)   # 10: a bridged gap
    assert loop.pipeline.canceller.mode == "cancelling"


class FlappingReferenceIO(VanishingReferenceIO):
    """A reference that comes back at every retry and fails again 20 periods later (a loose cable)."""

    def read(self):
        self.clock.advance(0.045)                            # the loop waits on the device: 50 ms a period here
        frame = EchoReferenceIO.read(self)
        if self.back and self.position - self.back_at > 20:
            self.back = False
        if not self.back and self.position - 1 >= self.gone_at:
            self.reference_frame = None
            self.reference_problem = "echo reference 'pe_reference' failed: No such device"
        else:
            self.reference_problem = None
        return frame

    def retry_reference(self):
        self.retried_at.append(self.clock())
        self.back, self.back_at = True, self.position
        return True


class TwiceLostReferenceIO(VanishingReferenceIO):
    """Lost at ``gone_at`` and back at the first retry; lost again 20 periods later, where the retries find its
    PipeWire node missing (another reason) until the fake clock reaches ``missing_until_s``."""

    NO_NODE = "PipeWire has no node 'test.speaker' for the loudspeaker (unplugged?)"

    def __init__(self, far, gone_at, clock, missing_until_s):
        super().__init__(far, gone_at, failed_retries=0, clock=clock)
        self.missing_until_s, self.back_at, self.found_at = missing_until_s, None, None

    def read(self):
        frame = EchoReferenceIO.read(self)
        position, retries = self.position - 1, len(self.retried_at)
        lost = position >= self.gone_at if retries == 0 else (self.found_at is None and position > self.back_at + 20)
        self.reference_problem = None
        if lost:
            self.reference_frame = None
            self.reference_problem = (self.NO_NODE if retries >= 2
                                      else "echo reference 'pe_reference' failed: No such device")
        return frame

    def retry_reference(self):
        self.retried_at.append(self.clock())
        if len(self.retried_at) == 1:
            self.back_at = self.position
        elif self.clock() >= self.missing_until_s and self.found_at is None:
            self.found_at = self.clock()
        return True


@pytest.mark.parametrize("missing_until_s", [10.0, 80.0])
def test_an_outage_soon_after_another_is_announced_once_it_lasts(caplog, missing_until_s):
    """A second outage within a minute of the first line is counted, not logged (a flapping cable), even when its
    retries find another reason (its node missing); one that lasts past that minute is announced then, with that
    reason, and so is its return: a log never ends on "echo is off" while it is back, nor hides a long outage."""
    loop, io = _echo_loop(caplog, lambda clock: TwiceLostReferenceIO(speech_like(2.0, seed=3), gone_at=200, clock=clock,
                                                                  missing_until_s=missing_until_s), retry_max_s=2)
    loop.run(max_frames=int((missing_until_s + 5.0) / 0.005))
    assert io.found_at is not None
    messages = [r.getMessage() for r in caplog.records]
    first = [m for m in messages if m.startswith("echo reference 'pe_reference' failed")]
    no_node = [m for m in messages if m.startswith(TwiceLostReferenceIO.NO_NODE)]
    returns = [i for i, m in enumerate(messages) if "is open again" in m]
    assert len(first) == 1
    if missing_until_s < 60:                                 # within the minute: counted, told with the next line
        assert no_node == [] and len(returns) == 1
    else:
        assert len(no_node) == 1 and "1 more drop(s) since the last such line" not in no_node[0]
        assert len(returns) == 2 and messages.index(no_node[0]) < returns[1]


def test_a_flapping_reference_logs_a_line_a_minute_and_keeps_its_longer_wait(caplog):
    loop, io = _echo_loop(caplog, lambda clock: FlappingReferenceIO(
        speech_like(2.0, seed=3), gone_at=100, failed_retries=0, clock=clock), retry_max_s=4)
    loop.run(max_frames=3000)
    messages = [r.getMessage() for r in caplog.records]
    drops = [m for m in messages if m.startswith("echo reference 'pe_reference' failed")]
    assert len(io.retried_at) > 20                           # it flapped: about every 5 s
    assert len(drops) == 3 and "more drop(s) since the last such line" in drops[1]      # 0, 60 and 120 s
    assert len([m for m in messages if "is open again" in m]) == 3
    waits = np.diff(io.retried_at)
    assert np.all(waits[3:] >= 4.0)                          # not back to 1 s at every drop


def test_the_alsa_reference_reopens_in_the_background_and_the_next_read_takes_it(tmp_path):
    """AlsaDuplex.retry_reference through real ALSA PCMs (the `null` plugin): the open runs in a thread, read()
    adopts it, and the reference delivers again; a device still missing leaves its reason."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    config = parse("audio: {capture_device: 'null', playback_device: 'null', sample_format: S16_LE}").audio
    duplex = AlsaDuplex(config, reference_device="pe_no_such_reference")
    duplex.open()
    try:
        assert duplex.reference is None and "pe_no_such_reference" in duplex.reference_problem
        assert duplex.retry_reference()                     # still missing: the reason stays
        duplex._retry.join(timeout=10)
        assert duplex.read() is not None and duplex.reference is None
        assert "pe_no_such_reference" in duplex.reference_problem
        duplex.reference_device = "null"                    # the device appears
        opening, real_open = threading.Event(), duplex._open_reference_pcms
        duplex._open_reference_pcms = lambda start: (opening.wait(10), real_open(start=start))[1]
        assert duplex.retry_reference()
        assert not duplex.retry_reference()                 # one attempt at a time: the first is still opening
        opening.set()
        duplex._retry.join(timeout=10)
        assert duplex.reference is None                     # nothing changes outside read()
        assert duplex.read() is not None
        assert duplex.reference is not None and duplex.reference_problem is None
        assert duplex.reference_frame is not None and not duplex.retry_reference()     # nothing missing now
    finally:
        duplex.close()


def _held_reference_open(monkeypatch):
    """Real `null` PCMs, where the reference (named 'pe_reference', served by `null`) is taken for a PipeWire
    device whose background open stops inside its PIPEWIRE_ALSA until ``release`` is set; ``seen`` records the
    variable each open saw."""
    import os
    from edge.devices import alsa, pipewire
    real_open, seen = alsa.open_pcm, []
    inside, release = threading.Event(), threading.Event()

    def open_pcm(alsaaudio, kind, device, *rest):
        seen.append((device, os.environ.get(pipewire.ENV)))
        if device == "pe_reference":
            inside.set()
            release.wait(10)
            device = "null"
        return real_open(alsaaudio, kind, device, *rest)
    monkeypatch.setattr(alsa, "open_pcm", open_pcm)
    monkeypatch.setattr(pipewire, "uses_pipewire", lambda device: device == "pe_reference")
    monkeypatch.setattr(pipewire, "missing_target", lambda targets, run=None: None)
    monkeypatch.delenv(pipewire.ENV, raising=False)
    config = parse("audio: {capture_device: 'null', playback_device: 'null', sample_format: S16_LE}").audio
    duplex = AlsaDuplex(config)
    duplex.open()
    duplex.reference_device = "pe_reference"
    duplex.capture.close()
    duplex.capture = None
    assert duplex.retry_reference() and inside.wait(10)
    return duplex, seen, release


def test_the_microphone_never_opens_inside_the_background_reference_opens_environment(monkeypatch):
    """The reference's background reopen sets PIPEWIRE_ALSA for its own stream (a sink's monitor): a microphone
    opened meanwhile waits for it, and then opens with the environment as it was, not as a monitor capture."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.devices import alsa
    monkeypatch.setattr(alsa, "OPEN_WAIT_S", 60.0)         # a busy host may take its time below: wait, never fail
    duplex, seen, release = _held_reference_open(monkeypatch)
    try:
        assert seen[-1][0] == "pe_reference" and "capture.sink" in (seen[-1][1] or "")
        microphone = threading.Thread(target=duplex.open_one, args=("capture",))
        microphone.start()
        microphone.join(0.5)
        assert microphone.is_alive()                         # waiting for the reference's open to finish
        release.set()
        microphone.join(10)
        assert not microphone.is_alive() and duplex.capture is not None
        assert seen[-1] == ("null", None)                    # the reference's variable was gone by then
        duplex._retry.join(10)
        assert duplex.read() is not None and duplex.reference is not None
    finally:
        release.set()
        duplex.close()


def test_an_open_held_up_by_a_stalled_background_open_fails_with_what_to_expect(monkeypatch):
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.devices import alsa
    monkeypatch.setattr(alsa, "OPEN_WAIT_S", 0.2)
    monkeypatch.setattr(alsa, "RETRY_JOIN_TIMEOUT_S", 0.1)   # close() leaves the stalled thread to itself at once
    duplex, _, release = _held_reference_open(monkeypatch)
    stalled = duplex._retry
    try:
        with pytest.raises(DeviceError, match=r"capture device 'null': another sound device open has not returned "
                                              r"in 0.2 s"):
            duplex.open_one("capture")
        assert duplex.capture is None and duplex.playback is None      # both closed, as for any failed open
        release.set()
        stalled.join(10)                                     # it closes what it opened, and frees the way
        assert not stalled.is_alive()
        duplex.open_one("capture")                           # within OPEN_WAIT_S now
        assert duplex.capture is not None
    finally:
        release.set()
        duplex.close()


def test_lost_echo_reference_periods_are_logged_and_counted_apart_from_the_microphones(caplog):
    """A lost reference period moves the echo against its reference by a period: the log says when, as it
    does for the microphone's xruns, and the counters keep the two apart."""
    caplog.set_level(logging.INFO, logger="percepnet-edge")
    loop, io, _, _ = _loop(io=ReferenceLosingIO(speech_like(1.0, seed=2), lost={10, 11, 30}))
    counters = loop.run(max_frames=50)
    assert counters.echo_reference_xruns == 3 and counters.xruns == 0 and counters.frames == 50
    lines = [r.getMessage() for r in caplog.records if "of the loudspeaker reference lost" in r.getMessage()]
    assert [re.search(r"echo: (\d+) period.*\((\d+) since start\)", line).groups() for line in lines] == \
        [("1", "1"), ("2", "3")]
    assert xrun_lines(caplog) == []


def test_a_vanished_device_is_reopened_with_backoff():
    io = FakeIO(speech_like(1.0, seed=3), lost_at={15}, fail_opens=0)
    loop, io, _, _ = _loop(io=io)
    loop.QUICK_LOSS_FRAMES = 10              # it ran a while (15 periods here) before it was lost: no wait
    sleeps = []
    loop.sleep = sleeps.append
    original_open = io.open
    failures = iter([True, True, False])

    def flaky_open():
        if io.opens >= 1 and next(failures, False):
            io.opens += 1
            raise DeviceError("still unplugged")
        original_open()
    io.open = flaky_open
    counters = loop.run(max_frames=40)
    assert counters.device_reopens == 1 and counters.frames == 40
    assert sleeps == [0.1, 0.2]                               # backoff doubles


def test_a_device_that_opens_and_stops_at_once_is_reopened_with_backoff_not_in_a_tight_loop(caplog):
    """A stream that opens fine and is lost at once (a default PipeWire source that is not there, a device whose
    period does not fit): each loss soon after an open waits as a failed open would, doubling, and the log stops
    repeating after the first few lines."""
    caplog.set_level(logging.INFO, logger="percepnet-edge")

    class DeadOnArrival(FakeIO):
        def read(self):
            raise DeviceError("capture lost 50 periods in a row: the stream stopped")

    loop, io, _, clock = _loop(io=DeadOnArrival(speech_like(1.0, seed=3)))
    sleeps = []
    loop.sleep = lambda s: (sleeps.append(s), clock.advance(s))
    calls = iter(range(12))

    def open_twelve_times():                                    # opens fine, twelve times, then stops the loop
        if next(calls, None) is None:
            loop.stop()
    loop.io.open = open_twelve_times
    loop.run(max_frames=10)
    assert sleeps[:6] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0] and max(sleeps) == 5.0     # up to device_retry_max_s
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("audio device lost")]
    assert 6 <= len(lines) < 12 and "time(s) within 5 s of audio after opening" in lines[-1]


@pytest.mark.parametrize("sample_format", ["S16_LE", "S32_LE", "FLOAT_LE"])
def test_sample_formats_round_trip(sample_format):
    frame = 0.5 * np.sin(np.arange(HOP_SAMPLES) / 7.0)
    data = encode(frame, sample_format, np.zeros(HOP_SAMPLES))
    out = decode(data, sample_format, 1, "downmix", 0, np.zeros(HOP_SAMPLES))
    np.testing.assert_allclose(out, frame, atol=1e-4)


def test_channels_are_picked_or_downmixed():
    left, right = np.full(HOP_SAMPLES, 0.25), np.full(HOP_SAMPLES, -0.75)
    data = np.stack([left, right], axis=1).astype("<f4").tobytes()
    out = np.zeros(HOP_SAMPLES)
    np.testing.assert_allclose(decode(data, "FLOAT_LE", 2, "pick", 1, out), right)
    np.testing.assert_allclose(decode(data, "FLOAT_LE", 2, "downmix", 0, out), -0.25)


def test_full_scale_output_is_clipped_not_wrapped():
    data = encode(np.array([1.5, -1.5] * 240), "S16_LE", np.zeros(HOP_SAMPLES))
    assert np.frombuffer(data, "<i2")[:2].tolist() == [32767, -32768]


def test_pyalsaaudio_0_8_without_keyword_arguments_is_configured_by_setters():
    """Debian bookworm ships pyalsaaudio 0.8.4, whose PCM() takes no rate/format keywords."""
    import types
    from edge.devices.alsa import open_pcm
    calls = []

    class OldPCM:
        def __init__(self, kind, mode, device="default", cardindex=-1, **keywords):
            if keywords:
                raise TypeError("function takes at most 5 arguments (8 given)")
            calls.append(("open", kind, device))

        def setchannels(self, n):
            calls.append(("channels", n))

        def setrate(self, rate):
            calls.append(("rate", rate))

        def setformat(self, code):
            calls.append(("format", code))

        def setperiodsize(self, size):
            calls.append(("period", size))

    open_pcm(types.SimpleNamespace(PCM=OldPCM, PCM_NORMAL=0), 1, "hw:1", 2, 7, 4)
    assert calls == [("open", 1, "hw:1"), ("format", 7), ("channels", 2), ("rate", 48000), ("period", 480)]


def test_a_device_that_runs_at_another_rate_is_refused_with_advice():

    class PCM44k:
        def info(self):
            return {"rate": 44_100}

        def close(self):
            pass

    duplex = AlsaDuplex(parse("").audio)
    duplex.capture, duplex.playback = PCM44k(), PCM44k()
    with pytest.raises(DeviceError, match="capture device 'default' runs at 44100 Hz, not 48000: use a plughw: "):
        duplex._check_negotiated()
    assert duplex.capture is None                          # closed, nothing half-open left
    duplex = AlsaDuplex(parse("audio: {capture_device: 'hw:1,0'}").audio)      # a hw device: the name that fixes it
    duplex.capture, duplex.playback = PCM44k(), PCM44k()
    with pytest.raises(DeviceError, match="runs at 44100 Hz, not 48000: set audio.capture_device to 'plughw:1,0'"):
        duplex._check_negotiated()


def test_a_reference_counts_lost_periods_only_once_it_has_started_delivering():
    """A reference stream's first periods come late while it starts (about ten on PipeWire): that is not a loss,
    and every start-up would warn. After its first period, a short read is a lost period, counted."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    period = np.zeros(HOP_SAMPLES, np.int16).tobytes()

    class Reference:
        def __init__(self, reads):
            self.reads = list(reads)

        def read(self):
            data = self.reads.pop(0)
            return (len(data) // 2 if data else 0), data

    duplex = AlsaDuplex(parse("audio: {sample_format: S16_LE}").audio)
    duplex.reference = Reference([b"", b"", period, period, b"", period])
    frames = [duplex.read_reference() for _ in range(6)]
    assert [frame is None for frame in frames] == [True, True, False, False, True, False]
    assert duplex.reference_xruns == 1


class RecordingNotifier:
    """sd_notify messages with the (fake) time each was sent; WatchdogSec=5 pings every 2.5 s."""

    def __init__(self, clock, watchdog_interval_s=2.5):
        self.clock, self.watchdog_interval_s, self.sent = clock, watchdog_interval_s, []

    def send(self, message):
        self.sent.append((self.clock(), message))
        return True

    def ready(self):
        return self.send("READY=1")

    def watchdog(self):
        return self.send("WATCHDOG=1")

    def status(self, text):
        return self.send(f"STATUS={text}")

    def stopping(self):
        return self.send("STOPPING=1")

    def messages(self):
        return [message for _, message in self.sent]

    def longest_watchdog_gap_s(self):
        times = [0.0] + [when for when, message in self.sent if message == "WATCHDOG=1"] + [self.sent[-1][0]]
        return float(np.max(np.diff(times)))


def test_the_watchdog_keeps_being_fed_while_a_device_is_missing():
    """Item 1: a missing device at start-up and a long outage in mid-run both keep systemd informed.

    The fake clock advances by each wait, so the gaps between WATCHDOG=1 pings are what
    systemd would see: never longer than half of WatchdogSec=5.
    """
    clock = FakeClock()
    io = FakeIO(speech_like(1.0, seed=3), lost_at={150}, fail_opens=7)      # 7 failed opens at start-up
    network = FakeNetwork(clock)
    notifier = RecordingNotifier(clock)
    loop = AudioLoop(parse("realtime: {device_retry_max_s: 60}"), io, runner_factory=lambda c: network,
                     clock=clock, sleep=clock.advance, notifier=notifier)
    opens_before = io.open

    def open_with_outage():                              # after the loss, 9 more failures: 0.1 .. 25.6 s waits
        if io.opens >= 8 and io.position > 150 and io.opens < 17:
            io.opens += 1
            raise DeviceError("cannot open capture device 'hw:1,0': No such device")
        opens_before()
    io.open = open_with_outage
    counters = loop.run(max_frames=400)
    messages = notifier.messages()
    assert counters.frames == 400 and counters.device_reopens == 1
    first_frame = messages.index("READY=1")
    assert "STATUS=" in messages[first_frame - 1] and "waiting for the audio device" in messages[first_frame - 1]
    assert io.opens == 18 and clock.now > 60.0              # 16 failed opens, over a minute of (fake) waiting
    assert notifier.longest_watchdog_gap_s() <= 2.5 + 1e-9
    assert messages.count("READY=1") == 1                   # ready once: waiting is a state of a running service
    waiting = [m for m in messages if m.startswith("STATUS=waiting")]
    assert any("capture device 'hw:1,0'" in m and "retry in 25.6 s" in m for m in waiting)


@pytest.mark.parametrize("open_fails", [True, False])
def test_the_watchdog_is_fed_around_a_reopen_held_up_by_a_stalled_background_open(open_fails):
    """A device loss just after a ping while the echo reference's background open is stalled: close() waits
    RETRY_JOIN_TIMEOUT_S for it (2 s), then the reopen's four PCM opens wait up to OPEN_WAIT_S each for its lock and
    either give up (the first) or get it just in time (all four). Before the pings around close() and after a
    successful open, that was 2 s + 2 s + up to 2.5 s of frames without one, against WatchdogSec=5."""
    from edge.devices.alsa import OPEN_WAIT_S, RETRY_JOIN_TIMEOUT_S
    clock = FakeClock()
    io = FakeIO(speech_like(1.0, seed=3), lost_at={251})             # one period after a ping (every 250)
    network = FakeNetwork(clock, cost_s=0.009)                       # about real time: 250 periods, 2.25 s
    notifier = RecordingNotifier(clock)
    loop = AudioLoop(parse("realtime: {device_retry_max_s: 2}"), io, runner_factory=lambda c: network,
                     clock=clock, sleep=clock.advance, notifier=notifier)
    loop.QUICK_LOSS_FRAMES = 10
    close_before, open_before = io.close, io.open
    stalled = {"open": True}

    def close_waiting_for_the_thread():
        clock.advance(RETRY_JOIN_TIMEOUT_S)
        close_before()

    def open_waiting_for_the_lock():
        if io.opens >= 1 and stalled.pop("open", False):
            if open_fails:
                clock.advance(OPEN_WAIT_S)
                raise DeviceError("capture device 'hw:1,0': another sound device open has not returned in 0.5 s")
            clock.advance(4 * OPEN_WAIT_S * 0.99)
        open_before()
    io.close, io.open = close_waiting_for_the_thread, open_waiting_for_the_lock
    counters = loop.run(max_frames=700)
    assert counters.device_reopens == 1 and counters.device_open_failures == int(open_fails)
    assert notifier.longest_watchdog_gap_s() <= 2.5 + 1e-9


def test_an_open_pings_the_watchdog_between_its_pipewire_questions(monkeypatch):
    """open() asks PipeWire about the devices, then about the echo reference (pw-dump, up to PW_DUMP_TIMEOUT_S each,
    and up to OPEN_WAIT_S for each PCM's lock): the daemon's watchdog ping between the two keeps the longest stretch
    without one inside WatchdogSec=5, where a stalled server (pw-dump then waited 10 s) had systemd kill it."""
    from edge.devices import alsa, pipewire
    clock = FakeClock()
    notifier = RecordingNotifier(clock)
    duplex = AlsaDuplex(parse("").audio, reference_device="pipewire:NODE=speaker.monitor")
    AudioLoop(parse(""), duplex, runner_factory=lambda c: FakeNetwork(clock), clock=clock, notifier=notifier)
    stalled_s = pipewire.PW_DUMP_TIMEOUT_S + 2 * alsa.OPEN_WAIT_S       # every wait at its limit
    monkeypatch.setattr(pipewire, "check_targets", lambda config: clock.advance(pipewire.PW_DUMP_TIMEOUT_S))
    monkeypatch.setattr(AlsaDuplex, "open_one", lambda self, kind: clock.advance(alsa.OPEN_WAIT_S))
    monkeypatch.setattr(AlsaDuplex, "_prefill", lambda self: None)
    monkeypatch.setattr(AlsaDuplex, "open_reference", lambda self: clock.advance(stalled_s))
    notifier.watchdog()                                              # the ping before an open (_recover)
    duplex.open()
    notifier.watchdog()                                              # and after it (_open_with_backoff)
    assert notifier.messages() == ["WATCHDOG=1"] * 3
    assert notifier.longest_watchdog_gap_s() == pytest.approx(stalled_s) and stalled_s < 5 / 1.5


def test_retries_of_a_slow_open_keep_the_watchdog_fed_at_the_default_settings():
    """Each retry's open may take 3 s (pw-dump's 2 s, two lock waits) after a wait whose last ping was up to 2.5 s
    before it: without a ping just before the open, 5.5 s went by without one (WatchdogSec=5)."""
    from edge.devices import alsa, pipewire
    clock = FakeClock()
    io = FakeIO(speech_like(1.0, seed=3), fail_opens=6)
    open_before = io.open

    def slow_open():
        clock.advance(pipewire.PW_DUMP_TIMEOUT_S + 2 * alsa.OPEN_WAIT_S)
        open_before()
    io.open = slow_open
    notifier = RecordingNotifier(clock)
    loop = AudioLoop(parse(""), io, runner_factory=lambda c: FakeNetwork(clock), clock=clock, sleep=clock.advance,
                     notifier=notifier)
    assert loop.run(max_frames=50).frames == 50 and io.opens == 7
    assert notifier.longest_watchdog_gap_s() <= 3.0 + 1e-9


@pytest.mark.parametrize("quick", [False, True], ids=["failed reopens", "a quick loss"])
def test_a_status_line_queued_before_a_device_loss_does_not_overwrite_the_waiting_one(quick):
    """The status line is built on the log thread: one queued at frame 500 and drained while the loop waits for a
    lost device would have replaced "waiting for the audio device" (or a quick loss's "...; waiting 0.2 s") with
    "denoising" until the next retry."""
    clock = FakeClock()
    io = FakeIO(speech_like(8.0, seed=3), lost_at={505})
    open_before = io.open

    def open_failing_after_the_loss():
        if not quick and io.position > 505 and io.opens < 4:
            io.opens += 1
            raise DeviceError("cannot open capture device 'hw:1,0': No such device")
        open_before()
    io.open = open_failing_after_the_loss
    notifier = RecordingNotifier(clock)
    loop = AudioLoop(parse(""), io, runner_factory=lambda c: FakeNetwork(clock), clock=clock, notifier=notifier,
                     sleep=lambda seconds: (clock.advance(seconds), loop.events.drain()))    # the log thread drains
    if quick:
        loop.QUICK_LOSS_FRAMES = 1000                    # a loss at frame 505 counts as soon after the open
    loop.run(max_frames=700)
    statuses = [m for m in notifier.messages() if m.startswith("STATUS=")]
    waiting = "STATUS=audio device lost" if quick else "STATUS=waiting"
    first_wait = next(i for i, m in enumerate(statuses) if m.startswith(waiting))
    assert len(statuses) > first_wait + (0 if quick else 2)
    after = statuses[first_wait + 1:first_wait + 3]
    assert not any(m.startswith("STATUS=denoising") for m in after[:1 if quick else 2]), statuses


def test_a_stop_signal_interrupts_a_long_device_wait():
    """Item 2: SIGTERM during a 300 s backoff wait ends it at once (a guard signal fails the test after 30 s)."""
    import os
    import signal
    import threading
    from edge.daemon.control import SignalControl
    io = FakeIO(speech_like(1.0, seed=3), fail_opens=10 ** 9)
    clock = FakeClock()
    network = FakeNetwork(clock)
    control = SignalControl()
    loop = AudioLoop(parse("realtime: {device_retry_max_s: 600}"), io, runner_factory=lambda c: network,
                     clock=clock, stop=control.stop)       # the real, interruptible wait
    loop.RETRY_FIRST_S = 300.0
    returned = threading.Event()

    def hung(*_):
        raise TimeoutError("SIGTERM did not interrupt the device wait")

    def send_signals():
        while io.opens < 1:
            returned.wait(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        if not returned.wait(30):
            os.kill(os.getpid(), signal.SIGUSR2)
    previous_guard = signal.signal(signal.SIGUSR2, hung)
    control.install()
    sender = threading.Thread(target=send_signals)
    try:
        sender.start()
        counters = loop.run()
        returned.set()
    finally:
        returned.set()
        sender.join()
        control.restore()
        signal.signal(signal.SIGUSR2, previous_guard)
    assert counters.frames == 0 and io.opens == 1          # stopped inside the first wait, no second attempt


def test_device_locks_refuse_a_second_holder_and_free_on_release(tmp_path):
    """Item 10: one lock per PCM name; the refusal names the device and the holder's pid."""
    import os
    from edge.devices.alsa import DeviceLocks
    audio = parse("audio: {capture_device: 'hw:1,0', playback_device: dmix}").audio
    first = DeviceLocks(audio, tmp_path).acquire()
    with pytest.raises(DeviceError, match=rf"capture device 'hw:1,0' is already used by another percepnet-edge "
                                         rf"\(pid {os.getpid()}, lock {tmp_path}"):
        DeviceLocks(audio, tmp_path).acquire()
    other_capture = parse("audio: {capture_device: 'hw:2,0', playback_device: dmix}").audio
    with pytest.raises(DeviceError, match="playback device 'dmix' is already used"):
        DeviceLocks(other_capture, tmp_path).acquire()
    first.release()
    DeviceLocks(audio, tmp_path).acquire().release()        # free again once released


def test_a_planted_symlink_or_fifo_at_a_lock_path_refuses_the_start(tmp_path):
    """Issue 24 item 7: a member of group audio planted a symlink at a lock path and two daemons then shared
    the device with warnings only. A lock is never followed: the start is refused, naming what to remove."""
    import os
    from edge.devices.alsa import DeviceLocks, lock_file_name
    audio = parse("audio: {capture_device: 'hw:1,0', playback_device: dmix}").audio
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / lock_file_name("hw:1,0")
    link.symlink_to(victim)
    with pytest.raises(DeviceError, match=rf"capture device 'hw:1,0': its lock {link} is a symbolic link, owned by "
                                          rf"uid \d+; .*Remove it \(sudo rm {link}\)"):
        DeviceLocks(audio, tmp_path, say=lambda *_: None).acquire()
    assert victim.read_text() == "keep\n"
    link.unlink()
    os.mkfifo(tmp_path / lock_file_name("dmix"))
    with pytest.raises(DeviceError, match="playback device 'dmix': its lock .* is not a regular file"):
        DeviceLocks(audio, tmp_path, say=lambda *_: None).acquire()


def test_check_creates_no_lock_files_and_a_refusal_names_the_real_holder(tmp_path):
    """Issue 24 item 7: a root `check` left root-owned lock files, the service could not write its pid in them,
    and a refused second daemon named the dead check. `check` now creates nothing; the holder comes from the
    kernel's lock table, whatever pid the file holds."""
    import subprocess
    import sys
    from edge.devices.alsa import DeviceLocks, lock_file_name
    audio = parse("audio: {capture_device: 'hw:1,0', playback_device: dmix}").audio
    DeviceLocks(audio, tmp_path / "run", create=False).acquire().release()
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    DeviceLocks(audio, tmp_path / "run", create=False).acquire().release()
    assert list((tmp_path / "run").iterdir()) == []
    path = tmp_path / "run" / lock_file_name("hw:1,0")
    path.write_text("424242\n")                              # a stale note: the check that once made the file
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, os, sys; fd = os.open({str(path)!r}, os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for create in (True, False):
            with pytest.raises(DeviceError, match=rf"already used by another percepnet-edge \(pid {holder.pid}, "):
                DeviceLocks(audio, tmp_path / "run", create=create).acquire()
    finally:
        holder.communicate("", timeout=10)


def test_an_echo_path_that_nothing_serves_is_closed_for_the_retries_to_reopen():
    """A forwarded stream whose every write underruns (its PipeWire node gone: the stream is not moved, so it is
    never served again) closes the echo path after DEAD_AFTER_PERIODS in a row; a shorter burst does not."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    import alsaaudio
    from edge.devices.alsa import DEAD_AFTER_PERIODS
    period = np.zeros(HOP_SAMPLES, np.int16).tobytes()

    class Reference:
        def read(self):
            return HOP_SAMPLES, period

        def close(self):
            pass

    class Speaker(Reference):
        def __init__(self, failing):
            self.failing = failing

        def write(self, data):
            if self.failing:
                self.failing -= 1
                raise alsaaudio.ALSAAudioError("Broken pipe [-32]")
            return len(data) // 2

    for failing, closed in ((DEAD_AFTER_PERIODS - 1, False), (10 ** 6, True)):
        duplex = AlsaDuplex(parse("audio: {sample_format: S16_LE}").audio, reference_device="ref",
                            speaker_device="spk")
        duplex.reference, duplex.speaker = Reference(), Speaker(failing)
        frames = []
        while duplex.reference is not None and len(frames) < DEAD_AFTER_PERIODS + 5:     # as read() calls it
            frames.append(duplex.read_reference())
        assert (duplex.reference is None) == closed
        if closed:
            assert len(frames) == DEAD_AFTER_PERIODS and frames[-1] is None
            assert f"loudspeaker 'spk' lost {DEAD_AFTER_PERIODS} periods in a row" in duplex.reference_problem
        else:
            assert all(frame is not None for frame in frames) and duplex.reference_problem is None


def test_a_capture_stream_that_stopped_is_a_lost_device_not_a_busy_loop():
    """A short period (a stream stopping under us) and a run of empty reads (a stream nothing serves: returned at
    once, forever) raise DeviceError, which the daemon answers by reopening; a few empty reads are xruns."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.devices.alsa import DEAD_AFTER_PERIODS

    class Capture:
        def __init__(self, reads):
            self.reads = list(reads)

        def read(self):
            data = self.reads.pop(0)
            return len(data) // 2, data

    period = np.zeros(HOP_SAMPLES, np.int16).tobytes()
    duplex = AlsaDuplex(parse("audio: {sample_format: S16_LE}").audio)
    duplex.capture = Capture([period[:320], period])
    with pytest.raises(DeviceError, match="capture delivered 160 of 480 frames: the stream stopped"):
        duplex.read()
    duplex.capture = Capture([b""] * 3 + [period] + [b""] * DEAD_AFTER_PERIODS)
    assert [duplex.read() is None for _ in range(4)] == [True, True, True, False]    # xruns, then data
    for _ in range(DEAD_AFTER_PERIODS - 1):
        assert duplex.read() is None
    with pytest.raises(DeviceError, match=f"capture lost {DEAD_AFTER_PERIODS} periods in a row"):
        duplex.read()
    assert duplex.xruns == 3 + DEAD_AFTER_PERIODS


def test_a_device_that_chose_another_period_is_refused_at_open_and_a_dead_playback_is_a_lost_device():
    """pyalsaaudio reads back the period a device chose: one that is not 480 frames is refused at open with what
    to do (its reads would all be the wrong size). A playback stream that refuses even its refilled periods
    50 times in a row (a PipeWire node gone) is a lost device, as the capture's is."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.devices.alsa import DEAD_AFTER_PERIODS

    class PCM:
        def __init__(self, period_size=HOP_SAMPLES):
            self.period_size, self.writes = period_size, 0

        def info(self):
            return {"rate": 48_000, "period_size": self.period_size}

        def write(self, data):
            self.writes += 1
            return -32                                        # -EPIPE: an underrun, every time

        def close(self):
            pass

    duplex = AlsaDuplex(parse("audio: {capture_device: 'dsnoop:0'}").audio)
    duplex.capture, duplex.playback = PCM(1024), PCM()
    with pytest.raises(DeviceError, match="capture device 'dsnoop:0' runs with 1024-frame periods, not 480"):
        duplex._check_negotiated()
    duplex = AlsaDuplex(parse("audio: {sample_format: S16_LE}").audio)
    duplex.playback = PCM()
    for _ in range(DEAD_AFTER_PERIODS - 1):
        duplex.write(np.zeros(HOP_SAMPLES))
    with pytest.raises(DeviceError, match=f"playback lost {DEAD_AFTER_PERIODS} periods in a row"):
        duplex.write(np.zeros(HOP_SAMPLES))


def test_a_reference_that_never_starts_or_stops_delivering_is_closed_for_the_retries():
    """A reference stream that never delivers its first period (5 s: a PipeWire monitor takes about ten periods)
    and one that stops for DEAD_AFTER_PERIODS after it started are both closed, saying which, so that the daemon's
    retries reopen them; before, a stream that never started stayed open and silent without a word."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.devices.alsa import DEAD_AFTER_PERIODS, START_WITHIN_PERIODS
    period = np.zeros(HOP_SAMPLES, np.int16).tobytes()

    class Reference:
        def __init__(self, reads):
            self.reads = reads

        def read(self):
            data = next(self.reads)
            return (len(data) // 2 if data else 0), data

        def close(self):
            pass

    def run(reads):
        duplex = AlsaDuplex(parse("audio: {sample_format: S16_LE}").audio, reference_device="ref")
        duplex.reference = Reference(iter(reads))
        count = 0
        while duplex.reference is not None and count < 10_000:              # as read() calls it
            duplex.read_reference()
            count += 1
        return duplex, count

    duplex, count = run([b""] * 10_000)
    assert count == START_WITHIN_PERIODS and "delivered nothing in the 5 s after it opened" in duplex.reference_problem
    assert duplex.reference_xruns == 0                                        # starting, not losing periods
    duplex, count = run([b""] * 10 + [period] * 100 + [b""] * 10_000)
    assert count == 110 + DEAD_AFTER_PERIODS
    assert f"echo reference 'ref' lost {DEAD_AFTER_PERIODS} periods in a row" in duplex.reference_problem
