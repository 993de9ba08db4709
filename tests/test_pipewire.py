"""The daemon on a real PipeWire server (issue 14 item 2), started by the test with Debian's pipewire, wireplumber
(on a private D-Bus session bus) and pipewire-alsa, and the shipped fragment (systemd/pipewire-percepnet-edge.conf).

The graph runs on PipeWire's dummy driver (there is no sound card). Two test microphones are loopbacks too:
pw-play plays a file into one, whose source the daemon captures; pw-record records "Denoised microphone".
Needs: apt-get install pipewire pipewire-bin wireplumber pipewire-alsa dbus (.ci/run installs them).
By hand, the same set-up and commands: docs/microphone.md, "Try it without a sound card".
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FRAGMENT = REPO / "systemd" / "pipewire-percepnet-edge.conf"
TOOLS = {"pipewire": "pipewire", "wireplumber": "wireplumber", "pw-play": "pipewire-bin", "pw-record": "pipewire-bin",
         "pw-dump": "pipewire-bin", "wpctl": "wireplumber", "dbus-daemon": "dbus"}
ALSA_PLUGIN = Path("/usr/share/alsa/alsa.conf.d/50-pipewire.conf")
missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None} |
                 ({"pipewire-alsa"} if not ALSA_PLUGIN.exists() else set()))
pytestmark = pytest.mark.skipif(bool(missing), reason=f"needs a PipeWire server: apt-get install {' '.join(missing)}")
pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")

TEST_MICROPHONES = """
context.modules = [
    { name = libpipewire-module-loopback
      args = { node.description = "Test microphone" audio.position = [ MONO ]
               capture.props = { node.name = "test.mic-input" media.class = "Audio/Sink/Internal" audio.position = [ MONO ] }
               playback.props = { node.name = "test.mic" node.description = "Test microphone"
                                  media.class = "Audio/Source" audio.position = [ MONO ] priority.session = 2000 } } }
    { name = libpipewire-module-loopback
      args = { node.description = "Second microphone" audio.position = [ MONO ]
               capture.props = { node.name = "test.mic2-input" media.class = "Audio/Sink/Internal" audio.position = [ MONO ] }
               playback.props = { node.name = "test.mic2" node.description = "Second microphone"
                                  media.class = "Audio/Source" audio.position = [ MONO ] priority.session = 1000 } } }
]
"""
QUANTUM = 1024
WAIT_S = 30          # a bound on waiting for PipeWire or WirePlumber to act, never a measured figure


def realtime(command):
    """``command`` at SCHED_FIFO 30 where permitted: pw-play and pw-record are not real-time clients by default,
    and a starved client drops or repeats a quantum, in the test's own player and recorder (seen on a VM with both
    cores busy). The daemon gets it from its config (realtime.sched_fifo_priority)."""
    permitted = subprocess.run(["chrt", "-f", "30", "true"], capture_output=True).returncode == 0
    return ["chrt", "-f", "30", *command] if permitted else command


class PipeWire:
    """A PipeWire server, WirePlumber and a D-Bus session bus in a private runtime folder."""

    def __init__(self, folder):
        self.folder = folder
        runtime = folder / "runtime"
        runtime.mkdir(mode=0o700)
        config = folder / "config" / "pipewire" / "pipewire.conf.d"
        config.mkdir(parents=True)
        shutil.copy2(FRAGMENT, config / "percepnet-edge.conf")
        (config / "test-microphones.conf").write_text(TEST_MICROPHONES)
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(folder / "config"),
                    "XDG_STATE_HOME": str(folder / "state"), "DBUS_SESSION_BUS_ADDRESS": f"unix:path={runtime}/bus",
                    "PYTHONUNBUFFERED": "1", "RUNTIME_DIRECTORY": str(folder / "locks")}
        self.env.pop("PIPEWIRE_ALSA", None)
        self.processes = []
        for command in (["dbus-daemon", "--session", "--nofork", f"--address={self.env['DBUS_SESSION_BUS_ADDRESS']}"],
                        ["pipewire"], ["wireplumber"]):
            log = open(folder / f"{command[0]}.log", "w")
            self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))
            if command[0] == "dbus-daemon":
                self.wait_for(lambda: (runtime / "bus").exists(), "the D-Bus session bus")
            if command[0] == "pipewire":
                self.wait_for(lambda: {"percepnet-edge.input", "percepnet-edge.denoised", "test.mic"}
                              <= set(self.nodes().values()), "the fragment's nodes")
        self.wait_for(lambda: self.default_source() == "test.mic", "WirePlumber's default source")
        # A desktop's graph often runs at 1024 frames (other apps, Bluetooth) while the daemon asks for 480: the
        # shipped config's buffer and prefill are sized for that, and here it is.
        assert self.run("pw-metadata", "-n", "settings", "0", "clock.force-quantum", str(QUANTUM)).returncode == 0

    def run(self, *command, **kwargs):
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=60, **kwargs)

    def dump(self):
        """pw-dump's objects; [] while it cannot say (its output can be cut by a change in the graph: asked again)."""
        result = self.run("pw-dump")
        try:
            return json.loads(result.stdout) if result.returncode == 0 else []
        except ValueError:
            return []

    def nodes(self, objects=None):
        return {o["id"]: (o.get("info") or {}).get("props", {}).get("node.name") for o in objects or self.dump()
                if o.get("type") == "PipeWire:Interface:Node"}

    def links(self):
        """(source node.name, sink node.name, sink media.class) of every link."""
        objects = self.dump()
        names = self.nodes(objects)
        classes = {o["id"]: (o.get("info") or {}).get("props", {}).get("media.class") for o in objects}
        return {(names.get(o["info"]["output-node-id"]), names.get(o["info"]["input-node-id"]),
                 classes.get(o["info"]["input-node-id"]))
                for o in objects if o.get("type") == "PipeWire:Interface:Link" and o.get("info")}

    def default_source(self):
        for o in self.dump():
            if o.get("type") == "PipeWire:Interface:Metadata" and (o.get("props") or {}).get("metadata.name") == "default":
                for entry in o.get("metadata") or []:
                    if entry.get("key") == "default.audio.source":
                        return (entry.get("value") or {}).get("name")
        return None

    def set_default_source(self, name):
        node = next(i for i, n in self.nodes().items() if n == name)
        assert self.run("wpctl", "set-default", str(node)).returncode == 0
        self.wait_for(lambda: self.default_source() == name, f"{name} as the default source")

    def server_log(self, chars=2000):
        """The end of the PipeWire server's own log (its warnings: a graph xrun it saw, a node it dropped)."""
        return (self.folder / "pipewire.log").read_text()[-chars:]

    def wait_for(self, condition, what, timeout_s=WAIT_S):
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                logs = {p.name: p.read_text()[-4000:] for p in self.folder.glob("*.log")}
                raise AssertionError(f"waited {timeout_s} s for {what}; links {sorted(map(str, self.links()))}; "
                                     f"logs {logs}")
            time.sleep(0.1)

    def capture_source(self, stream):
        """The node feeding the daemon's capture stream (node.name ``stream``), or None."""
        return next((src for src, sink, cls in self.links() if sink == stream and cls == "Stream/Input/Audio"), None)

    def stop(self):
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def pipewire(tmp_path_factory):
    server = PipeWire(tmp_path_factory.mktemp("pipewire"))
    yield server
    server.stop()


def write_config(path, capture="pipewire", playback="pipewire:NODE=percepnet-edge.input"):
    """configs/pipewire.yaml with these devices, the checkout's model, and the network never skipped (policy
    off) at real-time priority (the test machine's cores may be busy with other work)."""
    text = (REPO / "configs" / "pipewire.yaml").read_text().replace("../models/", f"{REPO}/models/")
    text = re.sub(r"(?m)^  capture_device: .*$", f'  capture_device: "{capture}"', text)
    text = re.sub(r"(?m)^  playback_device: .*$", f'  playback_device: "{playback}"', text)
    path.write_text(text + 'realtime:\n  overrun_policy: "off"\n  sched_fifo_priority: 20\n')
    return path


_DAEMON_STARTS = itertools.count(1)


def start_daemon(pipewire, config, instance):
    """The daemon as `edge run --instance INSTANCE`, logging to a file of its own (kept in the lab's folder: a
    failing test's log is not overwritten by the next test's)."""
    log = open(pipewire.folder / f"daemon-{instance}-{next(_DAEMON_STARTS)}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config), "--instance", instance],
                            cwd=REPO, env=pipewire.env, stdout=log, stderr=subprocess.STDOUT), log.name


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


ATTEMPTS = 3         # a run whose daemon logs an xrun while the file plays is played again, at most this often


def play_through_the_daemon(pipewire, tmp_path, played_wav, rate, name):
    """pw-play ``played_wav`` into Test microphone while a fresh daemon instance ``name`` denoises it and pw-record
    records Denoised microphone. Returns the recording's path, the daemon's log and the playback's start and end
    (time.time())."""
    daemon, log = start_daemon(pipewire, write_config(tmp_path / f"{name}.yaml"), name)
    stream, recorder = f"percepnet-edge.{name}", None
    try:
        pipewire.wait_for(lambda: pipewire.capture_source(stream) == "test.mic" and
                          (stream, "percepnet-edge.input", "Audio/Sink/Internal") in pipewire.links(),
                          f"the daemon's streams linked: test.mic -> daemon ({name}) -> percepnet-edge.input")
        recording = tmp_path / f"{name}-recorded.wav"
        recorder = subprocess.Popen(realtime(["pw-record", "--target", "percepnet-edge.denoised", "--rate",
                                              str(rate), "--channels", "1", "--format", "f32", str(recording)]),
                                    env=pipewire.env)
        pipewire.wait_for(lambda: any(src == "percepnet-edge.denoised" for src, _, _ in pipewire.links()),
                          "pw-record linked to Denoised microphone")
        played_from = time.time()
        player = pipewire.run(*realtime(["pw-play", "--target", "test.mic-input", str(played_wav)]))
        played_to = time.time()
        assert player.returncode == 0, player.stderr
        size = recording.stat().st_size
        pipewire.wait_for(lambda: recording.stat().st_size >= size + rate // 2 * 4, "half a second more recorded")
    finally:
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=30)
        stop(daemon)
    pipewire.wait_for(lambda: not any(stream in link[:2] for link in pipewire.links()), f"{stream} gone from the graph")
    return recording, Path(log).read_text(), (played_from, played_to)


def xruns_logged_between(log_text, start, end):
    """The periods the daemon's log says it lost or played late (its "xrun:" lines) and the frames it finished late
    (its "deadline:" lines) from ``start`` to ``end``: (xruns, late frames)."""
    xruns = late = 0
    for stamp, lost, slow in re.findall(r"(?m)^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) percepnet-edge WARNING "
                                        r"(?:xrun: (\d+) period|deadline: (\d+) frame)", log_text):
        if start <= datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() <= end:
            xruns, late = xruns + int(lost or 0), late + int(slow or 0)
    return xruns, late


def test_a_file_played_into_a_microphone_is_recorded_denoised_and_aligned_from_denoised_microphone(pipewire, tmp_path):
    """pw-play -> Test microphone -> the daemon -> Denoised microphone -> pw-record, against `denoise` of the file.

    The file has half a second of silence at each end: PipeWire reconfigures its graph when pw-play joins and
    leaves (the ALSA plugin may report an underrun then, which the daemon recovers from), and that falls in
    silence. The daemon's frames start wherever its stream started, not at the file's first sample, so the
    comparison with `denoise` (frames from the first sample) is close, not bit-exact.

    A starved host can make the daemon miss its stream's deadline while the file plays: the xrun loses or
    replays a period, and no test can then find the speech aligned. The daemon logs each xrun with its time,
    and each late frame ("deadline:"): once, under CI's load, a quantum was lost beside one 12.9 ms frame and
    no xrun reached the ALSA stream (a starved host delays both). A misaligned run whose daemon logged an xrun
    while the file played is played again (a warning says so), up to ATTEMPTS times; one with late frames only
    is played again once. A misaligned run with neither fails at once: a silent loss. (One at pw-play's joining
    or leaving also counts: the log cannot tell which period it hit. A burst's later lines come up to a second
    after its frames: the window reaches that far past the playback.)"""
    from scipy.io import wavfile
    from scipy.signal import correlate
    from edge.dsp import enhance_signal
    from edge.model.engine import ModelRunner
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    from edge.io.synthetic import mix_at_snr, noise, speech_like
    rate, half = 48_000, 24_000
    clean = np.concatenate([np.zeros(rate), speech_like(2.0, seed=11)])          # 1 s of noise alone first
    noisy = mix_at_snr(clean, noise("pink", 3.0, seed=12), 5.0)
    played = np.concatenate([np.zeros(half), noisy, np.zeros(half)]).astype(np.float32)
    wavfile.write(tmp_path / "played.wav", rate, played)
    reference = np.clip(enhance_signal(played.astype(np.float64), ModelRunner(DEFAULT_MODEL_PATH)), -1, 1)
    expected = reference[half:half + noisy.size]                 # `denoise` of the noisy part

    reports, excused_by_late_frames_only = [], 0
    for attempt in range(ATTEMPTS):
        recording, log_text, (played_from, played_to) = play_through_the_daemon(
            pipewire, tmp_path, tmp_path / "played.wav", rate, f"e2e{attempt}")
        summary = log_text.strip().splitlines()[-1]
        recorded = wavfile.read(recording)[1].astype(np.float64)
        lag = int(np.argmax(correlate(recorded, expected, "valid", method="fft")))
        aligned = recorded[lag:lag + expected.size]
        assert aligned.size == expected.size, summary
        # Aligned: each quarter second that carries speech is found at the same lag (no sample lost or repeated;
        # PipeWire loses or repeats whole quanta, hundreds of samples). Denoised speech is near silent elsewhere.
        quarter, shifts = rate // 4, {}
        for start in range(rate, noisy.size - quarter + 1, quarter):
            window = recorded[lag + start - 960:lag + start + quarter + 960]
            shifts[start / rate] = int(np.argmax(np.correlate(window, expected[start:start + quarter], "valid"))) - 960
        xruns, late = xruns_logged_between(log_text, played_from, played_to + 1.5)
        reports.append(f"attempt {attempt + 1}: lag {lag} samples, speech shifts {shifts}, {xruns} period(s) lost "
                       f"or late and {late} late frame(s) logged while the file played; daemon: {summary}")
        if set(shifts.values()) == {0}:
            break
        assert xruns > 0 or late > 0, (f"samples lost or repeated and no xrun or late frame logged while the file "
                                       f"played: {reports[-1]}; PipeWire's log: {pipewire.server_log()!r}")
        excused_by_late_frames_only += xruns == 0
        assert excused_by_late_frames_only <= 1, (f"samples lost or repeated twice with only late frames logged: "
                                                  f"{reports}; PipeWire's log: {pipewire.server_log()!r}")
        warnings.warn(f"played again: the daemon logged {xruns} xrun(s) and {late} late frame(s) while the file "
                      f"played ({reports[-1]})")
    else:
        pytest.fail(f"every attempt lost or repeated samples (each logged its xruns or late frames): {reports}")

    # Denoised: far closer to `denoise` than the noisy input is, and the noise alone attenuated as by `denoise`.
    def error_db(signal):
        return 10 * np.log10(np.sum((signal - expected) ** 2) / np.sum(expected ** 2))

    noise_only = slice(rate // 4, rate)
    attenuation = {name: 10 * np.log10(np.mean(x[noise_only] ** 2) / np.mean(noisy[noise_only] ** 2))
                   for name, x in (("recorded", aligned), ("denoise", expected))}
    report = (f"{reports}, error against denoise {error_db(aligned):.1f} dB "
              f"(noisy input {error_db(noisy):.1f} dB), noise attenuation {attenuation}")
    print(report)
    assert error_db(aligned) < error_db(noisy) - 6, report                 # 4 times closer in energy
    # How much the model removes of noise that starts after silence is the model's business (tests/test_noise_onset.py);
    # here the PipeWire path must remove about what `denoise` removes. Not exactly: the daemon's stream heard
    # silence for as long as it ran before pw-play, `denoise` for half a second, and in the first second after
    # quiet the shipped model's attenuation depends on how long the quiet lasted (23-30 dB, docs/training.md).
    assert attenuation["denoise"] < -15 and attenuation["recorded"] < -15, report
    assert abs(attenuation["recorded"] - attenuation["denoise"]) < 6, report


def test_the_daemon_follows_the_default_microphone_but_never_itself(pipewire, tmp_path):
    daemon, log = start_daemon(pipewire, write_config(tmp_path / "pw.yaml"), "follow")
    stream = "percepnet-edge.follow"
    try:
        pipewire.wait_for(lambda: pipewire.capture_source(stream) == "test.mic", "the capture from test.mic")
        pipewire.set_default_source("test.mic2")
        pipewire.wait_for(lambda: pipewire.capture_source(stream) == "test.mic2", "the capture moved to test.mic2")
        pipewire.set_default_source("percepnet-edge.denoised")       # an app user picked the denoised one
        pipewire.wait_for(lambda: pipewire.capture_source(stream) not in (None, "test.mic2"),
                          "the capture moved off test.mic2")
        assert pipewire.capture_source(stream) != "percepnet-edge.denoised"   # a real microphone, not a loop
    finally:
        pipewire.set_default_source("test.mic")
        stop(daemon)


def test_a_configured_microphone_is_taken_and_check_sees_the_pipewire_nodes(pipewire, tmp_path):
    config = write_config(tmp_path / "pw.yaml", capture="pipewire:NODE=test.mic2")
    daemon, log = start_daemon(pipewire, config, "fixed")
    try:
        pipewire.wait_for(lambda: pipewire.capture_source("percepnet-edge.fixed") == "test.mic2",
                          "the capture from the configured test.mic2 (the default is test.mic)")
    finally:
        stop(daemon)
    shipped = (REPO / "configs" / "pipewire.yaml").read_text().replace("../models/", f"{REPO}/models/")
    (tmp_path / "shipped.yaml").write_text(shipped)
    check = pipewire.run(sys.executable, "-m", "edge", "check", "--config", str(tmp_path / "shipped.yaml"),
                         cwd=REPO)
    assert "[ok] devices: capture 'pipewire' and playback 'pipewire:NODE=percepnet-edge.input' open" in check.stdout
    write_config(tmp_path / "gone.yaml", playback="pipewire:NODE=percepnet-edge.other.input")
    check = pipewire.run(sys.executable, "-m", "edge", "check", "--config", str(tmp_path / "gone.yaml"), cwd=REPO)
    assert check.returncode == 2
    assert ("[FAIL] devices: PipeWire has no node 'percepnet-edge.other.input' for the playback device: the fragment "
            "/etc/pipewire/pipewire.conf.d/percepnet-edge.conf is not loaded") in check.stdout
