"""The daemon with an echo reference through ALSA's file plugin (issue 21).

``pe_capture`` reads a microphone recording (the far end's echo, then a near talker), ``pe_reference``
reads what the loudspeaker played, ``pe_playback`` writes the output; all on the unpaced "null" slave, so the
daemon reads them in lock-step and the alignment is exact (snd-aloop, the real-time loopback, cannot be
loaded on the test machines: /proc/asound/Loopback is absent).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import fftconvolve

pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed (needs libasound2-dev to build)")

from edge.commands.run import SYSTEM_ALSA_CONF, file_plugin_asoundrc   # noqa: E402
from edge.dsp import HOP_SAMPLES, Enhancer, EnhancerSettings, with_flush_padding  # noqa: E402
from edge.echo import EchoCanceller, EchoSettings, for_model, speex_mdf                       # noqa: E402
from edge.io.synthetic import noise, speech_like                            # noqa: E402
from edge.model.engine import ModelRunner                             # noqa: E402
from edge.model.model_meta import DEFAULT_MODEL_PATH                  # noqa: E402
from edge.daemon.config import load                                   # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if not Path(SYSTEM_ALSA_CONF).exists():
    pytest.skip(f"{SYSTEM_ALSA_CONF} not found (libasound2's configuration)", allow_module_level=True)
if not speex_mdf.available():
    pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1; .ci/run installs it)",
                allow_module_level=True)

FS = 48_000


@pytest.fixture
def rig(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    far = speech_like(6.0, seed=21) * 2.0
    rng = np.random.default_rng(4)
    h = rng.standard_normal(int(0.05 * FS)) * 10 ** (-3 * np.arange(int(0.05 * FS)) / (0.05 * FS))
    h[0] = 3.0
    h = np.concatenate([np.zeros(int(0.04 * FS)), h * 0.5 / np.sqrt(np.sum(h ** 2))])     # 40 ms bulk delay
    mic = fftconvolve(far, h)[:far.size]
    capture = with_flush_padding(mic, np.float32)
    reference = with_flush_padding(far, np.float32)
    capture.tofile(tmp_path / "capture.raw")
    reference.tofile(tmp_path / "reference.raw")
    asoundrc = file_plugin_asoundrc(tmp_path, tmp_path / "capture.raw", tmp_path / "playback.raw",
                                    reference_raw=tmp_path / "reference.raw")      # + pe_reference, pe_speaker
    config = tmp_path / "config.yaml"
    config.write_text(f"""audio:
  capture_device: pe_capture
  playback_device: pe_playback
  sample_format: FLOAT_LE
model:
  path: {DEFAULT_MODEL_PATH}
realtime:
  overrun_policy: "off"
echo:
  enabled: true
  reference_device: pe_reference
  speaker_device: pe_speaker
""")
    (tmp_path / "run").mkdir()
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{asoundrc}", "PYTHONUNBUFFERED": "1",
           "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    return {"dir": tmp_path, "config": config, "env": env, "capture": capture, "reference": reference,
            "frames": capture.size // HOP_SAMPLES, "mic": mic, "echo_path": h}


def _replace_streams(rig, mic, far):
    """New capture and reference files for the rig's PCMs (the same length: the daemon reads both per period)."""
    rig["capture"], rig["reference"] = with_flush_padding(mic, np.float32), with_flush_padding(far, np.float32)
    rig["capture"].tofile(rig["dir"] / "capture.raw")
    rig["reference"].tofile(rig["dir"] / "reference.raw")
    rig["frames"] = rig["capture"].size // HOP_SAMPLES


def _edge(rig, *args):
    return subprocess.run([sys.executable, "-m", "edge", *args, "--config", str(rig["config"])], cwd=REPO,
                          env=rig["env"], capture_output=True, text=True, timeout=180)


def _offline(capture, reference, canceller=True, model=DEFAULT_MODEL_PATH, settings=EnhancerSettings()):
    """What the daemon must compute: per frame, the canceller then the enhancer (with the canceller's echo
    estimate and without SpeexDSP's residual suppression for a joint model, as the daemon does)."""
    runner = ModelRunner(model)
    enhancer = Enhancer(runner, settings)
    echo = EchoCanceller(for_model(EchoSettings(), runner.far_end_inputs)) if canceller else None
    out, echo_free = np.zeros(capture.size), np.zeros(HOP_SAMPLES)
    for start in range(0, capture.size, HOP_SAMPLES):
        frame = slice(start, start + HOP_SAMPLES)
        mic = capture[frame].astype(np.float64)
        estimate = None
        if echo is not None:
            mic = echo.process(mic, reference[frame].astype(np.float64), echo_free)
            estimate = echo.echo_estimate
        enhancer.process(mic, out=out[frame], echo_estimate=estimate)
    return out


def _played(rig):
    played = np.fromfile(rig["dir"] / "playback.raw", np.float32).astype(np.float64)
    prefill = load(rig["config"]).audio.playback_prefill_periods * HOP_SAMPLES
    assert played.size == prefill + rig["frames"] * HOP_SAMPLES
    return played[prefill:]


def test_the_daemon_cancels_the_echo_of_its_reference(rig):
    result = _edge(rig, "run", "--frames", str(rig["frames"]))
    assert result.returncode == 0, result.stderr
    assert "echo: far end playing: cancelling its echo" in result.stderr
    assert "reference delayed by" in result.stderr
    assert "echo: linear canceller with SpeexDSP's residual echo suppression, then the noise model" in result.stdout
    daemon = _played(rig)
    # the daemon forwarded the reference to the loudspeaker, sample for sample, after the prefill
    forwarded = np.fromfile(rig["dir"] / "speaker.raw", np.float32)
    prefill = load(rig["config"]).audio.playback_prefill_periods * HOP_SAMPLES
    assert forwarded.size == prefill + rig["reference"].size and not forwarded[:prefill].any()
    np.testing.assert_array_equal(forwarded[prefill:], rig["reference"])
    np.testing.assert_allclose(daemon, np.clip(_offline(rig["capture"], rig["reference"]), -1, 1), atol=1e-5)
    last = slice(int(4.5 * FS), 6 * FS)        # MDF converges in ~4 s on this harmonic far end (docs/echo.md)
    plain = _offline(rig["capture"], rig["reference"], canceller=False)
    mic_db = 10 * np.log10(np.sum(rig["capture"][last].astype(np.float64) ** 2))
    assert mic_db - 10 * np.log10(np.sum(plain[last] ** 2)) < 6            # noise suppression alone keeps it
    assert mic_db - 10 * np.log10(np.sum(daemon[last] ** 2)) > 15


def test_the_daemon_keeps_the_rooms_noise_under_the_echo_when_asked(rig):
    """`echo.comfort_noise_db` reaches the enhancer: the daemon computes what the offline chain with
    `far_end_comfort_noise_db` computes, and the room's noise is kept where the echo is removed."""
    room_noise = 10 ** (-50 / 20) * np.random.default_rng(5).standard_normal(rig["mic"].size)
    _replace_streams(rig, rig["mic"] + room_noise, rig["reference"][:rig["mic"].size])
    rig["config"].write_text(rig["config"].read_text() + "  comfort_noise_db: 0\n")
    result = _edge(rig, "run", "--frames", str(rig["frames"]))
    assert result.returncode == 0, result.stderr
    daemon = _played(rig)
    kept = _offline(rig["capture"], rig["reference"], settings=EnhancerSettings(far_end_comfort_noise_db=0.0))
    np.testing.assert_allclose(daemon, np.clip(kept, -1, 1), atol=1e-5)
    removed = _offline(rig["capture"], rig["reference"])
    last = slice(int(4.5 * FS), 6 * FS)
    assert 10 * np.log10(np.sum(daemon[last] ** 2) / np.sum(removed[last] ** 2)) > 3


def test_a_missing_reference_falls_back_to_noise_suppression_and_says_so(rig):
    rig["config"].write_text(rig["config"].read_text().replace("reference_device: pe_reference",
                                                               "reference_device: pe_no_such_reference"))
    result = _edge(rig, "run", "--frames", str(rig["frames"]))
    assert result.returncode == 0, result.stderr
    assert "pe_no_such_reference" in result.stderr and "echo cancellation is off" in result.stderr
    assert "no loudspeaker reference: noise suppression alone, the echo is NOT removed" in result.stderr
    # the stage still passes the microphone through as late as its residual suppressor would give it back
    late = np.concatenate([np.zeros(EchoCanceller().latency_samples, np.float32), rig["capture"]])[:rig["capture"].size]
    np.testing.assert_allclose(_played(rig), np.clip(_offline(late, None, canceller=False), -1, 1), atol=1e-5)


def test_check_verifies_the_reference_path(rig):
    good = _edge(rig, "check")
    assert "[ok] echo: SpeexDSP loaded" in good.stdout, good.stdout
    assert "[ok] echo reference: 'pe_reference' open at 48 kHz, FLOAT_LE, mono; 20 periods read, peak" \
        in good.stdout and "forwarded to 'pe_speaker'" in good.stdout
    rig["config"].write_text(rig["config"].read_text().replace("reference_device: pe_reference",
                                                               "reference_device: pe_no_such_reference"))
    bad = _edge(rig, "check")
    assert bad.returncode == 2
    assert "[FAIL] echo reference:" in bad.stdout and "pe_no_such_reference" in bad.stdout


def test_the_daemon_switches_a_joint_model_between_echo_and_no_echo_without_a_glitch(rig, tiny_echo_model):
    """A call on hold: the far end plays 2 s, is silent 1.5 s, plays again, while the near talker goes on.

    The daemon runs a joint model (138 inputs) behind the canceller: the canceller's echo estimate while the far
    end plays, far-end inputs of 0 while it is silent. Through the real ALSA PCMs, no period is dropped,
    repeated or muted at the switches (the output equals the per-frame pipeline, sample for sample after the
    prefill), and the output has no step at a switch larger than the talker's own sample-to-sample steps (the
    canceller cross-fades over one frame; the far-end inputs reach 0 two frames after the far end stops).
    """
    seconds = 6.0
    near = 0.15 * speech_like(seconds, seed=41) + 0.005 * noise("pink", seconds, seed=42)
    far = speech_like(seconds, seed=43) * 2.0
    hold = slice(int(2.0 * FS), int(3.5 * FS))
    far[hold] = 0.0
    mic = near + fftconvolve(far, rig["echo_path"])[:far.size]
    _replace_streams(rig, mic.astype(np.float32), far.astype(np.float32))
    model = tiny_echo_model["out"]
    rig["config"].write_text(rig["config"].read_text().replace(f"path: {DEFAULT_MODEL_PATH}", f"path: {model}"))
    result = _edge(rig, "run", "--frames", str(rig["frames"]))
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "the joint model removes the residual echo" in said and "SpeexDSP's residual suppression off" in said
    # it played and stopped; playing again within the minute is a change of mode left unsaid (one line a minute)
    assert said.count("echo: far end playing: cancelling its echo") == 1, said
    assert "echo: far end silent: passing the microphone through" in said, said
    daemon = _played(rig)
    expected = np.clip(_offline(rig["capture"], rig["reference"], model=model), -1, 1)
    np.testing.assert_allclose(daemon, expected, atol=1e-5)
    # a glitch would be a step: compare the steps at the two switches (+-2 periods) with the talker's steps
    steps = np.abs(np.diff(daemon))
    typical = np.percentile(steps[int(0.5 * FS):], 99.9)
    for switch_s in (2.0, 3.5):
        around = slice(int(switch_s * FS) - 2 * HOP_SAMPLES, int(switch_s * FS) + 4 * HOP_SAMPLES)
        assert steps[around].max() <= 1.5 * typical, (switch_s, steps[around].max(), typical)


def test_the_demo_with_a_far_end_cancels_the_loudspeakers_echo(tmp_path, monkeypatch):
    """`run --demo --with-far-end`: the demo's talker and babble, plus a second talker on the loudspeaker whose
    echo is 6 dB above the talker; the daemon reads it through its reference PCM and removes its echo."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from edge.commands.run import run_daemon_demo
    from edge.io.synthetic import demo_far_end
    from edge.io.wav import read_wav
    monkeypatch.setenv("ALSA_CONFIG_PATH", SYSTEM_ALSA_CONF)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    seconds, said = 6.0, []
    assert run_daemon_demo(None, tmp_path / "echo", say=said.append, seconds=seconds, far_end=True) == 0
    assert run_daemon_demo(None, tmp_path / "plain", say=lambda *_: None, seconds=seconds) == 0
    assert any("echo: linear canceller with SpeexDSP's residual echo suppression" in line for line in said), said
    assert any(line.startswith("echo: cancelling in ") for line in said), said
    far, echo = demo_far_end(seconds)
    np.testing.assert_allclose(read_wav(tmp_path / "echo" / "far_end.wav")[0][:, 0], far, atol=1 / 32768)
    noisy = read_wav(tmp_path / "echo" / "noisy.wav")[0][:, 0]
    plain_noisy = read_wav(tmp_path / "plain" / "noisy.wav")[0][:, 0]
    np.testing.assert_allclose(noisy - plain_noisy, echo, atol=2 / 32768)    # the microphone heard the echo
    with_echo = read_wav(tmp_path / "echo" / "enhanced.wav")[0][:, 0]
    without = read_wav(tmp_path / "plain" / "enhanced.wav")[0][:, 0]
    last = slice(int((seconds - 2) * FS), None)                              # after MDF's convergence
    left_db = 10 * np.log10(np.sum(echo[last] ** 2) / np.sum((with_echo - without)[last] ** 2))
    assert left_db > 12, left_db           # what the echo adds to the output is >12 dB below the echo itself
