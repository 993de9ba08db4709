"""The echo path on a real PipeWire server (issue 21), in the style of tests/test_pipewire.py.

The graph: pw-play -> "Echo-cancelled speaker" (the shipped virtual sink) -> the daemon records its monitor as
the reference and forwards it to "Test loudspeaker" (a null sink) -> a filter-chain convolver (the "room": 20 ms
of delay and a decaying tail) -> "Test microphone" -> the daemon -> "Denoised microphone" -> pw-record.
The far end plays first, then a near talker speaks into the microphone alone: the far end's echo must be gone
from "Denoised microphone", the near talker kept.
"""
import re
import signal
import subprocess

import numpy as np
import pytest

from edge.echo import speex_mdf

if not speex_mdf.available():
    pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1; .ci/run installs it)",
                allow_module_level=True)

from tests import test_pipewire as pw                                  # noqa: E402  (skips without PipeWire)
from tests.test_pipewire import REPO, WAIT_S, realtime, start_daemon, stop  # noqa: E402

pytestmark = pw.pytestmark
RATE = 48_000
SPEAKER_FRAGMENT = REPO / "systemd" / "pipewire-percepnet-edge-speaker.conf"


def lab_fragment(room_ir):
    shipped = SPEAKER_FRAGMENT.read_text()
    speaker_object = shipped[shipped.index("context.objects = [") + len("context.objects = ["):shipped.rindex("]")]
    modules = pw.TEST_MICROPHONES.rstrip()
    assert modules.endswith("]")
    room = f"""
    {{ name = libpipewire-module-filter-chain
      args = {{ node.description = "Test room" media.name = "Test room"
               filter.graph = {{ nodes = [ {{ type = builtin name = room label = convolver
                                              config = {{ filename = "{room_ir}" gain = 1.0 }} }} ] }}
               audio.channels = 1 audio.position = [ MONO ]
               capture.props = {{ node.name = "test.room.in" stream.capture.sink = true
                                  target.object = "test.speaker" node.passive = true }}
               playback.props = {{ node.name = "test.room.out" target.object = "test.mic-input"
                                   node.passive = true }} }} }}
]
"""
    return modules[:-1] + room + """
context.objects = [""" + speaker_object + """
    { factory = adapter
      args = { factory.name = support.null-audio-sink node.name = "test.speaker" node.description = "Test loudspeaker"
               media.class = "Audio/Sink" audio.position = [ MONO ] audio.rate = 48000 priority.session = 500
               object.linger = true monitor.channel-volumes = true } }
]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from scipy.io import wavfile
    folder = tmp_path_factory.mktemp("pipewire-echo")
    rng = np.random.default_rng(5)
    tail = rng.standard_normal(int(0.06 * RATE)) * 10 ** (-3 * np.arange(int(0.06 * RATE)) / (0.06 * RATE))
    tail[0] = 3.0
    room_ir = np.concatenate([np.zeros(int(0.02 * RATE)), tail * 0.5 / np.sqrt(np.sum(tail ** 2))])
    wavfile.write(folder / "room_ir.wav", RATE, room_ir.astype(np.float32))
    original = pw.TEST_MICROPHONES
    pw.TEST_MICROPHONES = lab_fragment(folder / "room_ir.wav")
    try:
        server = pw.PipeWire(folder)
    finally:
        pw.TEST_MICROPHONES = original
    server.wait_for(lambda: {"percepnet-edge.speaker", "test.speaker", "test.room.out"}
                    <= set(server.nodes().values()), "the lab's nodes")
    yield server
    server.stop()


def config_for(path):
    text = (REPO / "configs" / "pipewire.yaml").read_text().replace("../models/", f"{REPO}/models/")
    text = re.sub(r"(?m)^  capture_device: .*$", '  capture_device: "pipewire:NODE=test.mic"', text)
    path.write_text(text + 'realtime:\n  overrun_policy: "off"\n  sched_fifo_priority: 20\n'
                    'echo:\n  enabled: true\n  reference_device: "pipewire:NODE=percepnet-edge.speaker"\n'
                    '  speaker_device: "pipewire:NODE=test.speaker"\n')
    return path


def envelope_db(x, hop=RATE // 20):
    frames = x[:x.size // hop * hop].reshape(-1, hop)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def play_far_then_near(lab, folder):
    """The far end plays through the shipped speaker sink, then the near talker speaks into the microphone;
    returns the daemon's log and the recordings of Denoised microphone and Test microphone."""
    from scipy.io import wavfile
    from edge.io.synthetic import speech_like
    folder.mkdir()
    pad = np.zeros(RATE // 2)
    # 12 s of far end: the filter needs 2-3 s after the tracker's first estimate before the last 3 s are measured
    far = np.concatenate([pad, speech_like(12.0, seed=31) * 2.0, pad]).astype(np.float32)
    near = np.concatenate([pad, speech_like(3.0, seed=32) * 2.0, pad]).astype(np.float32)
    wavfile.write(folder / "far.wav", RATE, far)
    wavfile.write(folder / "near.wav", RATE, near)
    daemon, log = start_daemon(lab, config_for(folder / "echo.yaml"), "echo")
    try:
        lab.wait_for(lambda: ("percepnet-edge.speaker", "percepnet-edge.echo.reference", "Stream/Input/Audio")
                     in lab.links() and ("percepnet-edge.echo.forward", "test.speaker", "Audio/Sink") in lab.links()
                     and lab.capture_source("percepnet-edge.echo") == "test.mic",
                     "the daemon's reference, forward and microphone streams linked")
        recordings = {}
        recorders = []
        for name, target in (("out", "percepnet-edge.denoised"), ("mic", "test.mic")):
            recordings[name] = folder / f"{name}.wav"
            recorders.append(subprocess.Popen(realtime(["pw-record", "--target", target, "--rate", str(RATE),
                                                        "--channels", "1", "--format", "f32",
                                                        str(recordings[name])]), env=lab.env))
        lab.wait_for(lambda: sum(src in ("percepnet-edge.denoised", "test.mic") and cls == "Stream/Input/Audio"
                                 for src, _, cls in lab.links()) >= 3, "both recorders linked")
        for name, target in (("far", "percepnet-edge.speaker"), ("near", "test.mic-input")):
            played = lab.run(*realtime(["pw-play", "--target", target, str(folder / f"{name}.wav")]))
            assert played.returncode == 0, played.stderr
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=30)
    finally:
        stop(daemon)
    return (open(log).read(), wavfile.read(recordings["out"])[1].astype(np.float64),
            wavfile.read(recordings["mic"])[1].astype(np.float64))


def echo_and_near_change_db(out, mic):
    """(echo removed over the echo's last 3 s, the near talker's level change, the output's lag), in dB."""
    from scipy.signal import correlate
    # the microphone's two phases: the echo of the far end, then (after a silent gap) the near talker
    level = envelope_db(mic)
    active = np.flatnonzero(level > level.max() - 35)
    gaps = np.diff(active)
    split = int(np.argmax(gaps))
    hop = RATE // 20
    echo_phase = slice((active[split] + 1) * hop - 3 * RATE, (active[split] + 1) * hop)     # its last 3 s
    near_phase = slice(active[split + 1] * hop, (active[-1] + 1) * hop)
    # the output against the microphone: the near talker is in both
    reference = mic[near_phase]
    search = out[max(0, near_phase.start - RATE):near_phase.stop + RATE]
    lag = int(np.argmax(correlate(search, reference, "valid", method="fft"))) + max(0, near_phase.start - RATE) \
        - near_phase.start
    shifted = lambda part: out[part.start + lag:part.stop + lag]                # noqa: E731
    energy_db = lambda x: 10 * np.log10(np.sum(x ** 2) + 1e-12)               # noqa: E731
    return (energy_db(mic[echo_phase]) - energy_db(shifted(echo_phase)),
            energy_db(shifted(near_phase)) - energy_db(mic[near_phase]), lag)


def test_the_far_ends_echo_is_gone_from_denoised_microphone_and_the_near_talker_kept(lab, tmp_path):
    """The echo must be 20 dB down over its last 3 s. On a loaded machine the lab's own clients (the room's
    filter chain, the null sinks, pw-play) can lose a period, which moves the echo path by 10 ms while the far
    end plays: the daemon follows (it says so: "echo path stepped", or a bulk delay estimated 5 ms or more from its
    first) and its filter re-converges, but too late for the last 3 s when the move comes late. Such a run is
    played again (at most pw.ATTEMPTS in all); a run whose path held still is judged as it is, and an estimate at
    0 ms fails any run."""
    reports = []
    for attempt in range(pw.ATTEMPTS):
        daemon_log, out, mic = play_far_then_near(lab, tmp_path / f"attempt{attempt}")
        echo_removed, near_change, lag = echo_and_near_change_db(out, mic)
        reports.append(f"attempt {attempt + 1}: echo removed {echo_removed:.1f} dB, near talker {near_change:+.1f} "
                       f"dB, lag {lag}; daemon: {daemon_log[-1500:]}")
        print(reports[-1])
        estimates_ms = [float(ms) for ms in re.findall(r"bulk delay estimated at ([0-9.]+) ms", daemon_log)]
        # the window-edge artefact (delay.py) put estimates at 0: a regression, never a reason to play again
        assert estimates_ms and min(estimates_ms) > 1.0, reports[-1]
        path_moved = ("echo path stepped" in daemon_log
                      or max(abs(ms - estimates_ms[0]) for ms in estimates_ms) >= 5.0)
        if echo_removed > 20 or not path_moved:
            break
    report = "\n".join(reports)
    assert "reference delayed by" in daemon_log, report
    assert echo_removed > 20, report
    assert abs(near_change) < 4, report


def recreate_node(lab, name, description, media_class):
    """Put back one of the lab's mono 48 kHz null nodes after a test destroyed it (a device plugged back in)."""
    created = lab.run("pw-cli", "create-node", "adapter",
                      f'{{ factory.name = support.null-audio-sink node.name = "{name}" node.description = '
                      f'"{description}" media.class = "{media_class}" audio.position = [ MONO ] audio.rate = 48000 '
                      'object.linger = true }')
    assert created.returncode == 0, created.stderr


def test_a_loudspeaker_that_vanishes_is_not_replaced_by_another_and_is_taken_back(lab, tmp_path):
    """The loudspeaker's node goes (a USB speaker unplugged) and comes back. WirePlumber moves a stream whose target
    is gone to the default sink, which for the forwarded copy is the "Echo-cancelled speaker" the reference records:
    a feedback loop (seen here before the side streams carried node.dont-reconnect). Now the forward stream is
    linked nowhere else, the daemon closes the echo path after 50 lost periods, retries while the node is missing, and takes
    the loudspeaker back when it returns. Runs last: it re-creates the lab's loudspeaker."""
    import time
    daemon, log = start_daemon(lab, config_for(tmp_path / "echo.yaml"), "echo")
    forward = ("percepnet-edge.echo.forward", "test.speaker", "Audio/Sink")
    try:
        lab.wait_for(lambda: forward in lab.links(), "the forward stream linked to the loudspeaker")
        speaker_id = next(i for i, n in lab.nodes().items() if n == "test.speaker")
        returns_before = open(log).read().count("is open again")
        assert lab.run("pw-cli", "destroy", str(speaker_id)).returncode == 0
        # closed, and retried while the node is missing. Not waited for by its own line: the path may have been
        # closed once already (a loaded host's monitor slow to start), and an outage within a minute of the last
        # line is announced only once that minute has passed (loop._note_reference), with the retry's reason
        lab.wait_for(lambda: "PipeWire has no node 'test.speaker'" in open(log).read(), "a retry that names the node",
                     timeout_s=WAIT_S + 60)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:                    # never linked elsewhere (the speaker sink above all)
            assert not [link for link in lab.links() if link[0] == "percepnet-edge.echo.forward"], lab.links()
            time.sleep(0.2)
        recreate_node(lab, "test.speaker", "Test loudspeaker", "Audio/Sink")
        lab.wait_for(lambda: forward in lab.links() and open(log).read().count("is open again") > returns_before,
                     "the loudspeaker taken back")
    finally:
        stop(daemon)
    text = open(log).read()
    assert text.count("lost 50 periods in a row") <= 1, text[-3000:]      # closed once, not again while missing


def test_a_microphone_node_that_vanishes_is_reopened_not_replaced(lab, tmp_path):
    """The microphone's node goes and comes back. WirePlumber moved a stream whose node was gone to another node
    (here the daemon's microphone landed on the "Echo-cancelled speaker": the loudspeaker's feed taken for the
    microphone, nothing logged). A stream that names its node is now pinned to it (node.dont-reconnect): its reads
    return nothing, which after 50 periods in a row is a lost device (not a busy loop of xruns: 190,000 a second
    were counted before), and the daemon waits for the node, saying so, and takes it back. Runs last."""
    import time
    daemon, log = start_daemon(lab, config_for(tmp_path / "echo.yaml"), "echo")
    try:
        lab.wait_for(lambda: lab.capture_source("percepnet-edge.echo") == "test.mic", "the microphone linked")
        mic_id = next(i for i, n in lab.nodes().items() if n == "test.mic")
        assert lab.run("pw-cli", "destroy", str(mic_id)).returncode == 0
        lab.wait_for(lambda: "waiting for the audio device: PipeWire has no node 'test.mic'" in open(log).read(),
                     "the daemon waiting for its microphone")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:                    # not moved to another source meanwhile
            assert lab.capture_source("percepnet-edge.echo") is None, lab.links()
            time.sleep(0.2)
        recreate_node(lab, "test.mic", "Test microphone", "Audio/Source/Virtual")
        lab.wait_for(lambda: lab.capture_source("percepnet-edge.echo") == "test.mic"
                     and "audio devices open; processing" in open(log).read(), "the microphone taken back")
    finally:
        stop(daemon)
    text = open(log).read()
    # the stream stops with a short read or with empty ones, as it happens
    assert re.search(r"audio device lost \(capture (lost 50 periods in a row|delivered \d+ of 480 frames)", text), \
        text[-3000:]
    xruns = int(re.search(r"; xruns (\d+);", text).group(1))
    assert xruns < 1000, text[-3000:]
