"""A device that does not open is explained with the fix; playback is prefilled and refilled after an underrun."""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edge.devices import sound_devices
from edge.daemon.config import parse
from edge.errors import ConfigError, DeviceError

REPO = Path(__file__).resolve().parents[1]
CARDS = """ 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [Headset        ]: USB-Audio - Plantronics Headset
                      Plantronics Plantronics Headset at usb-0000:01:00.0-1.3, full speed
"""


def fake_proc(root, cards=CARDS, processes=()):
    """A /proc with asound/cards and processes (pid, comm, [fd link targets])."""
    (root / "asound").mkdir(parents=True)
    (root / "asound" / "cards").write_text(cards)
    for pid, comm, links in processes:
        fds = root / str(pid) / "fd"
        fds.mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        for number, target in enumerate(links):
            os.symlink(target, fds / str(number))
    return root


def test_cards_and_names_are_read_from_proc(tmp_path):
    proc = fake_proc(tmp_path)
    assert sound_devices.sound_cards(proc) == {0: "Headphones", 1: "Headset"}
    assert sound_devices.sound_cards(tmp_path / "none") == {}
    assert [sound_devices.card_of(d) for d in ("hw:1,0", "plughw:CARD=Headset,DEV=0", "hw:Loopback,0,1",
                                               "default", "pipewire:NODE=x")] == ["1", "Headset", "Loopback", None,
                                                                                   None]
    assert sound_devices.device_numbers("plughw:CARD=Headset,DEV=0", {1: "Headset"}) == (1, 0)
    assert sound_devices.device_numbers("hw:1,2", {1: "Headset"}) == (1, 2)


def test_a_loopback_device_without_snd_aloop_names_the_module_and_the_fix(tmp_path):
    text = sound_devices.explain("playback", "hw:Loopback,0,0", "No such device [hw:Loopback,0,0]", fake_proc(tmp_path))
    assert "snd-aloop module is not loaded" in text and "`sudo modprobe snd-aloop`" in text
    assert "cards: 0 [Headphones], 1 [Headset]" in text and "/etc/modules-load.d/percepnet-edge.conf" in text


def test_a_missing_card_lists_the_cards_there_are(tmp_path):
    text = sound_devices.explain("capture", "plughw:CARD=Mic", "No such device [plughw:CARD=Mic]", fake_proc(tmp_path))
    assert "there is no sound card 'Mic' (cards: 0 [Headphones], 1 [Headset])" in text and "`arecord -l`" in text
    unknown = sound_devices.explain("capture", "percepnet", "No such file or directory [percepnet]", tmp_path)
    assert "/etc/alsa/conf.d/60-percepnet-edge.conf" in unknown


def test_a_busy_device_names_who_holds_it(tmp_path):
    proc = fake_proc(tmp_path, processes=[(812, "pipewire", ["/dev/snd/pcmC1D0c", "/dev/null"]),
                                          (900, "arecord", ["/dev/snd/pcmC0D0p"])])
    text = sound_devices.explain("capture", "hw:CARD=Headset,DEV=0", "Device or resource busy [hw:CARD=Headset]",
                                 proc)
    assert "held by pipewire (pid 812)" in text and "arecord" not in text          # only the capture node's holder
    assert "docs/microphone.md#pipewire" in text and "systemctl --user stop pipewire.socket" in text
    other = fake_proc(tmp_path / "other", processes=[(900, "baresip", ["/dev/snd/pcmC1D0c"])])
    assert "held by baresip (pid 900): stop that program" in sound_devices.explain(
        "capture", "hw:1,0", "Device or resource busy [hw:1,0]", other)
    nobody = sound_devices.explain("capture", "hw:1,0", "Device or resource busy [hw:1,0]", fake_proc(tmp_path / "n"))
    assert "sudo fuser -v /dev/snd/*" in nobody


def test_check_names_snd_aloop_for_a_loopback_playback_device(tmp_path):
    """The real check, on this machine, which has no Loopback card (the fix is the module and its command)."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    if "Loopback" in sound_devices.sound_cards().values():
        pytest.skip("this machine has snd-aloop loaded")
    config = tmp_path / "config.yaml"
    config.write_text("audio:\n  capture_device: 'plughw:CARD=Headset'\n  playback_device: 'hw:Loopback,0,0'\n")
    env = {**os.environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    result = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(config)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    capture, playback = [line for line in result.stdout.splitlines() if line.startswith("[FAIL] devices")]
    assert "cannot open capture device 'plughw:CARD=Headset'" in capture and "no sound card 'Headset'" in capture
    assert "cannot open playback device 'hw:Loopback,0,0'" in playback and "`sudo modprobe snd-aloop`" in playback
    # issue 26: ALSA's own lines are folded into the report, not printed raw, and the summary names "devices" once
    assert "ALSA lib" not in result.stdout + result.stderr
    assert "(ALSA: Cannot get card index for Headset)" in capture
    assert result.stdout.splitlines()[-1] == "check FAILED: devices"


def test_library_messages_catches_what_c_code_writes_on_stderr():
    """The capture works at the file-descriptor level, where libasound writes, and gives stderr back."""
    with sound_devices.library_messages() as lines:
        os.write(2, b"ALSA lib confmisc.c:165:(snd_config_get_card) Cannot get card index for 5\n")
        os.write(2, b"ALSA lib confmisc.c:165:(snd_config_get_card) Cannot get card index for 5\n")
        os.write(2, b"ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM nope\n")
    assert len(lines) == 3
    assert sound_devices.said_by_alsa(lines) == ["Cannot get card index for 5", "Unknown PCM nope"]
    with sound_devices.library_messages() as after:
        pass
    assert after == []


class FakeAlsa:
    """pyalsaaudio's surface as AlsaDuplex uses it; playback writes are recorded, underruns injected."""

    class ALSAAudioError(Exception):
        pass

    PCM_CAPTURE, PCM_PLAYBACK, PCM_NORMAL, PCM_FORMAT_S16_LE = 0, 1, 0, 2

    def __init__(self):
        self.writes, self.underruns = [], []
        alsa = self

        class PCM:
            def __init__(self, kind, mode, **keywords):
                self.kind = kind

            def info(self):
                return {"rate": 48_000}

            def write(self, data):
                alsa.writes.append(bytes(data))
                return -32 if alsa.underruns and alsa.underruns.pop(0) else len(data) // 2

            def close(self):
                pass

        self.PCM = PCM


def test_playback_starts_with_the_prefill_and_refills_it_after_an_underrun(monkeypatch):
    import numpy as np
    from edge.devices.alsa import AlsaDuplex
    fake = FakeAlsa()
    monkeypatch.setitem(sys.modules, "alsaaudio", fake)
    duplex = AlsaDuplex(parse("audio: {capture_device: 'hw:1,0', playback_device: 'hw:2,0'}").audio)
    duplex.open()
    silence = bytes(960)
    assert fake.writes == [silence, silence]                       # two periods queued before any output
    frame = np.full(480, 0.5)
    fake.underruns = [True]                                        # the next write finds the device run dry
    duplex.write(frame)
    data = fake.writes[-1]
    assert fake.writes[2:] == [data, silence, silence, data]       # lost write, prefill again, the same period
    assert duplex.xruns == 1 and data != silence
    duplex.write(frame)
    assert len(fake.writes) == 7 and duplex.xruns == 1


def test_prefill_is_validated_against_the_buffer():
    assert parse("").audio.playback_prefill_periods == 2
    with pytest.raises(ConfigError, match="audio.playback_prefill_periods: 4 is not allowed; expected 0..3"):
        parse("audio: {buffer_periods: 4, playback_prefill_periods: 4}")


def test_a_pipewire_node_that_is_missing_is_refused_not_replaced(monkeypatch):
    """WirePlumber would link a stream whose target is missing to the default node: the daemon waits instead."""
    import json
    from edge.devices import pipewire
    monkeypatch.setattr(pipewire.shutil, "which", lambda name: "/usr/bin/" + name)
    nodes = [{"id": 30, "info": {"props": {"node.name": "alsa_input.usb-Headset"}}}, {"id": 1, "info": None}]
    run = lambda *a, **k: types.SimpleNamespace(returncode=0, stdout=json.dumps(nodes), stderr="")  # noqa: E731
    audio = parse("audio: {capture_device: 'pipewire:NODE=alsa_input.usb-Headset', "
                  "playback_device: 'pipewire:NODE=percepnet-edge.input'}").audio
    with pytest.raises(DeviceError, match="no node 'percepnet-edge.input' for the playback device: the fragment "
                                          "/etc/pipewire/pipewire.conf.d/percepnet-edge.conf is not loaded"):
        pipewire.check_targets(audio, run)
    nodes.append({"id": 31, "info": {"props": {"node.name": "percepnet-edge.input"}}})
    pipewire.check_targets(audio, run)
    gone = parse("audio: {capture_device: 'pipewire:NODE=usb-mic', playback_device: 'pipewire'}").audio
    with pytest.raises(DeviceError, match="no node 'usb-mic' for the capture device \\(unplugged\\?\\)"):
        pipewire.check_targets(gone, run)
    down = lambda *a, **k: types.SimpleNamespace(returncode=1, stdout="", stderr="can't connect")  # noqa: E731
    with pytest.raises(DeviceError, match="PipeWire is not reachable .*systemctl --user enable --now"):
        pipewire.check_targets(audio, down)
    pipewire.check_targets(parse("").audio, down)                 # no PipeWire device: nothing asked


def test_a_pw_dump_cut_by_a_change_in_the_graph_is_asked_again(monkeypatch):
    """pw-dump's output can be cut by a stream opening or closing while it dumps (seen on the PipeWire lab under
    load: the echo reference's open then failed for a retry's wait); it is asked again, and only output that stays
    unreadable is an error, which quotes it."""
    import json
    from edge.devices import pipewire
    monkeypatch.setattr(pipewire.shutil, "which", lambda name: "/usr/bin/" + name)
    whole = json.dumps([{"id": 30, "info": {"props": {"node.name": "test.speaker"}}}])
    outputs = iter([whole[:25], whole])
    run = lambda *a, **k: types.SimpleNamespace(returncode=0, stdout=next(outputs), stderr="")  # noqa: E731
    assert pipewire.node_names(run) == {"test.speaker"}
    asked, now_s = [], [0.0]
    monkeypatch.setattr(pipewire, "time", types.SimpleNamespace(monotonic=lambda: now_s[0]))

    def cut(*args, **kwargs):                                # each answer takes 0.6 s
        asked.append(kwargs["timeout"])
        now_s[0] += 0.6
        return types.SimpleNamespace(returncode=0, stdout=whole[:25], stderr="")
    with pytest.raises(DeviceError, match=r"not JSON 3 times in a row \(it starts '\[\{\"id\": 30"):
        pipewire.node_names(cut)
    assert asked == pytest.approx([2.0, 1.4, 0.8])           # one time limit for the three, not 2 s each


def test_the_daemons_pipewire_streams_are_one_named_filter():
    from edge.devices import pipewire
    props = pipewire.environment("Headset")
    assert 'node.link-group = "percepnet-edge.Headset"' in props and 'node.latency = "480/48000"' in props
    assert pipewire.environment(None, "{ media.role = Communication }").endswith("media.role = Communication }")
    assert pipewire.target_node("pipewire:NODE=alsa_input.x") == "alsa_input.x"
    assert pipewire.target_node("pipewire") is None and pipewire.target_node("hw:1,0") is None
