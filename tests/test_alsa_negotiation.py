"""A device that takes other settings than asked is refused with the fix, through real ALSA PCMs.

ALSA's `multi` plugin with two bindings opens only in stereo, and its `mulaw` plugin over a linear slave only as
MU_LAW: pyalsaaudio opens both for a mono S16_LE request without an error, as a stereo-only USB microphone or an
S32_LE-only MEMS microphone would.
"""

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed (needs libasound2-dev to build)")

from edge.commands.run import SYSTEM_ALSA_CONF  # noqa: E402
from edge.daemon.config import parse  # noqa: E402
from edge.devices import alsa, negotiation  # noqa: E402
from edge.devices.alsa import AlsaDuplex, open_pcm  # noqa: E402
from edge.errors import DeviceError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if not Path(SYSTEM_ALSA_CONF).exists():
    pytest.skip(f"{SYSTEM_ALSA_CONF} not found (libasound2's configuration)", allow_module_level=True)

ASOUNDRC = """
pcm.stereo_only {
    type multi
    slaves.a { pcm "null" channels 2 }
    bindings.0 { slave a channel 0 }
    bindings.1 { slave a channel 1 }
}
pcm.mu_law_only {
    type mulaw
    slave { pcm "null" format S16_LE }
}
"""

#: Opens one duplex from the YAML in argv[1] and prints what happened: ALSA reads its configuration once a process.
OPEN = """
import sys
import alsaaudio
if sys.argv[1] == "old":                   # pyalsaaudio before 0.10: no keywords, no info(); setters answer instead
    sys.argv.pop(1)
    new_pcm = alsaaudio.PCM

    def old_pcm(kind, mode, device="default", **keywords):
        if keywords:
            raise TypeError("PCM() takes at most 3 arguments")
        pcm = new_pcm(kind, mode, device=device)
        return type("Old", (), {name: getattr(pcm, name) for name in ("setformat", "setchannels", "setrate",
                                                                      "setperiodsize", "read", "write", "close")})()
    alsaaudio.PCM = old_pcm
from edge.daemon.config import parse
from edge.devices.alsa import AlsaDuplex
from edge.errors import DeviceError
duplex = AlsaDuplex(parse(sys.argv[1]).audio, **dict(zip(("reference_device", "speaker_device"), sys.argv[2:])))
try:
    duplex.open()
except DeviceError as exc:
    print("refused:", exc)
else:
    print("opened:", duplex.capture.info()["channels"], duplex.capture.info()["format_name"],
          "| reference:", duplex.reference_problem or "open")
    duplex.close()
"""


def _open(tmp_path, yaml, *echo_devices, old=False):
    (tmp_path / "asoundrc").write_text(ASOUNDRC)
    env = {"ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{tmp_path / 'asoundrc'}", "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", OPEN, *(["old"] if old else []), yaml, *echo_devices]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("old", [False, True], ids=["info", "setter answers"])
def test_a_stereo_only_microphone_asked_for_mono_is_refused_with_the_setting_that_fixes_it(tmp_path, old):
    said = _open(tmp_path, "audio: {capture_device: stereo_only, playback_device: 'null'}", old=old)
    assert said.startswith("refused: capture device 'stereo_only' opened with 2 channel(s), not the 1 asked for: "
                           "set audio.capture_channels to 2"), said
    # and the setting it names opens the same device
    opens = "audio: {capture_device: stereo_only, capture_channels: 2, playback_device: 'null'}"
    assert _open(tmp_path, opens, old=old) == "opened: 2 S16_LE | reference: open"


@pytest.mark.parametrize("old", [False, True], ids=["info", "setter answers"])
def test_a_stereo_only_output_and_a_mu_law_only_microphone_are_refused(tmp_path, old):
    said = _open(tmp_path, "audio: {capture_device: 'null', playback_device: stereo_only}", old=old)
    assert said.startswith("refused: playback device 'stereo_only' opened with 2 channel(s), not the 1 asked for: "
                           "use a plughw: device"), said
    said = _open(tmp_path, "audio: {capture_device: mu_law_only, playback_device: 'null'}", old=old)
    assert said.startswith("refused: capture device 'mu_law_only' opened with MU_LAW samples, not the S16_LE "
                           "asked for: use a plughw: device"), said
    assert "(the daemon reads S16_LE, S32_LE, FLOAT_LE)" in said


def test_an_echo_reference_or_loudspeaker_that_takes_other_settings_is_recorded_as_the_reference_problem(tmp_path):
    nulls = "audio: {capture_device: 'null', playback_device: 'null'}"
    assert _open(tmp_path, nulls, "null", "null") == "opened: 1 S16_LE | reference: open"
    said = _open(tmp_path, nulls, "stereo_only", "null")
    assert said == ("opened: 1 S16_LE | reference: echo reference 'stereo_only' opened with 2 channel(s), not the 1 "
                    "asked for: use a plughw: device or an ALSA 'plug' PCM, which converts; echo cancellation is off "
                    "until the reference is back"), said
    said = _open(tmp_path, nulls, "null", "mu_law_only")
    assert said.startswith("opened: 1 S16_LE | reference: loudspeaker 'mu_law_only' opened with MU_LAW samples"), said


class _Info:
    def __init__(self, **info):
        self._info, self.closed = info, False

    def info(self):
        return self._info

    def close(self):
        self.closed = True


def test_a_format_the_daemon_reads_is_named_as_the_fix_and_both_pcms_are_closed():
    duplex = AlsaDuplex(parse("audio: {capture_device: 'hw:2,0'}").audio)
    capture, playback = _Info(format_name="S32_LE", channels=1), _Info()
    duplex.capture, duplex.playback = capture, playback
    with pytest.raises(DeviceError, match=r"capture device 'hw:2,0' opened with S32_LE samples, not the S16_LE "
                                          r"asked for: set audio.sample_format to S32_LE .*or set "
                                          r"audio.capture_device to 'plughw:2,0', which converts"):
        duplex._check_negotiated()
    assert capture.closed and playback.closed and duplex.capture is None


def test_a_shorter_buffer_than_asked_is_logged_once_not_refused(caplog, monkeypatch):
    monkeypatch.setattr(negotiation, "_SAID_SHORT_BUFFER", set())
    with caplog.at_level(logging.WARNING, logger="percepnet-edge"):
        for periods in (2, 8, 2):                                    # the third: a reopen of the same device
            negotiation.refuse_disagreement(_Info(periods=periods), "capture device", "dsnoop:0",
                                            "audio.capture_device", 1, "S16_LE", 4, ("S16_LE",))
    said = [r.getMessage() for r in caplog.records]
    assert said == ["capture device 'dsnoop:0' took a buffer of 2 periods, fewer than the 4 of audio.buffer_periods: "
                    "20 ms of slack against scheduling delays (the device's limit; a dsnoop or dmix PCM's "
                    "buffer_size sets it)"]


def test_pyalsaaudio_0_8s_setter_answers_are_checked_and_its_missing_buffer_size_said_once(monkeypatch, caplog):
    """0.8 has no info(): each setter answers with what ALSA took, and those answers are compared."""

    class OldPCM:
        def __init__(self, kind, mode, device="default"):
            self.device = device

        def setchannels(self, n):
            return 2                                       # a stereo-only device

        def setrate(self, rate):
            return rate

        def setformat(self, code):
            return code

        def setperiodsize(self, size):
            return size

        def close(self):
            pass

    old = types.SimpleNamespace(PCM=OldPCM, PCM_NORMAL=0, PCM_FORMAT_S16_LE=2, PCM_FORMAT_S32_LE=10)
    monkeypatch.setattr(alsa, "_SAID_FOUR_PERIODS", False)
    with caplog.at_level(logging.WARNING, logger="percepnet-edge"):
        open_pcm(old, 1, "hw:1", 1, 2, 4)                  # the 4 periods it asks for anyway: nothing to say
        assert caplog.records == []
        pcms = [open_pcm(old, 1, "hw:1", 1, 2, 12) for _ in range(2)]
    assert pcms[0].info() == {"channels": 2, "rate": 48_000, "format_name": "S16_LE", "period_size": 480}
    assert pcms[0].device == "hw:1"                        # everything else is the PCM's own
    assert [r.getMessage() for r in caplog.records] == [
        "pyalsaaudio older than 0.10 asks ALSA for 4 periods of buffer and cannot be told otherwise: "
        "audio.buffer_periods (12) is not applied; pip install 'pyalsaaudio>=0.10' applies it"]
    with pytest.raises(DeviceError, match="capture device 'hw:1' opened with 2 channel"):
        negotiation.refuse_disagreement(pcms[0], "capture device", "hw:1", "audio.capture_device", 1, "S16_LE", 12,
                                        ("S16_LE",))
    assert negotiation.format_name(old, 10) == "S32_LE" and negotiation.format_name(old, 99) == "format code 99"


@pytest.mark.parametrize("mismatched", ["echo reference", "loudspeaker"])
def test_an_echo_device_refused_for_its_settings_is_closed_with_its_partner(monkeypatch, mismatched):
    """A refusal leaves nothing open: the reference alone, or the reference and the loudspeaker."""
    opened = {}

    def fake_open(alsaaudio, kind, device, *rest):
        opened[device] = _Info(channels=2) if device == {"echo reference": "ref", "loudspeaker": "spk"}[mismatched] \
            else _Info(channels=1)
        return opened[device]
    monkeypatch.setattr(alsa, "open_pcm", fake_open)
    duplex = AlsaDuplex(parse("").audio, reference_device="ref", speaker_device="spk")
    duplex.open_reference()
    assert duplex.reference is None and duplex.reference_problem.startswith(f"{mismatched} ")
    assert "opened with 2 channel(s), not the 1 asked for" in duplex.reference_problem
    assert opened and all(pcm.closed for pcm in opened.values()), opened


def test_an_echo_device_in_another_format_is_told_to_use_a_plug_device_first():
    with pytest.raises(DeviceError, match=r"echo reference 'hw:3,1' opened with S32_LE samples, not the S16_LE asked "
                                          r"for: set echo.reference_device to 'plughw:3,1', which converts, or set "
                                          r"audio.sample_format to S32_LE if the microphone and the output take it"):
        negotiation.refuse_disagreement(_Info(format_name="S32_LE"), "echo reference", "hw:3,1",
                                        "echo.reference_device", 1, "S16_LE", 4, ("S16_LE", "S32_LE"))
