"""`percepnet-edge denoise MIC OUT --far-end FAR`: the echo canceller ahead of the noise network (issue 21)."""
import numpy as np
import pytest
from scipy.signal import fftconvolve

from edge.commands.cli import main
from edge.echo import speex_mdf
from edge.io.synthetic import speech_like
from edge.io.wav import WavReader
from tests.test_denoise_format import model, write_file        # noqa: F401  (the fixture)

needs_speexdsp = pytest.mark.skipif(not speex_mdf.available(), reason="libspeexdsp.so.1 is not installed "
                                    "(sudo apt-get install libspeexdsp1; .ci/run installs it)")


def room(rate, seed=3):
    rng = np.random.default_rng(seed)
    n = int(0.06 * rate)
    h = rng.standard_normal(n) * 10 ** (-3 * np.arange(n) / n)
    h[0] = 3.0
    return np.concatenate([np.zeros(int(0.03 * rate)), h * 0.5 / np.sqrt(np.sum(h ** 2))])   # 30 ms bulk delay


def echo_clip(tmp_path, rate=48_000, seconds=6.0):
    far = speech_like(seconds, seed=11, rate=rate) * 2.0
    echo = fftconvolve(far, room(rate))[:far.size]
    write_file(tmp_path / "far.wav", far, rate)
    write_file(tmp_path / "mic.wav", echo, rate)
    return echo


def energy_db(x):
    return 10 * np.log10(np.sum(x ** 2) + 1e-20)


@needs_speexdsp
def test_the_far_end_echo_is_removed_before_the_network(tmp_path, model, capsys):
    echo = echo_clip(tmp_path)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "ns.wav")]) == 0
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "aec.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 0
    said = capsys.readouterr().out
    assert "echo: SpeexDSP MDF, tail 150 ms" in said and "reference delayed by" in said
    last = slice(-3 * 48_000, None)
    ns, aec = (WavReader(tmp_path / f"{name}.wav").read_all()[:, 0] for name in ("ns", "aec"))
    assert ns.size == aec.size == echo.size
    # the network alone keeps the echo (it is speech); with the far end it is gone
    assert energy_db(echo[last]) - energy_db(ns[last]) < 6
    assert energy_db(echo[last]) - energy_db(aec[last]) > 20


@needs_speexdsp
@pytest.mark.parametrize("rate, block_ms", [(48_000, 10.0), (16_000, 10.0), (48_000, 5.0)])
def test_a_silent_far_end_gives_exactly_what_denoise_gives_without_one(tmp_path, model, rate, block_ms):
    """The echo stage gives its output back a block late (SpeexDSP's residual suppressor); offline that lead is
    dropped before the enhancer, so near-end single talk is denoise's own output, sample for sample, and stays
    aligned with the input at any rate and block."""
    from edge.commands.files import run_denoise
    from edge.echo import EchoSettings
    near = speech_like(3.0, seed=5, rate=rate) * 0.5
    write_file(tmp_path / "mic.wav", near, rate)
    write_file(tmp_path / "far.wav", np.zeros(near.size), rate)
    run_denoise(tmp_path / "mic.wav", tmp_path / "ns.wav", say=lambda *_: None)
    run_denoise(tmp_path / "mic.wav", tmp_path / "aec.wav", far_end_path=tmp_path / "far.wav",
                echo_settings=EchoSettings(mdf_block_ms=block_ms), say=lambda *_: None)
    with WavReader(tmp_path / "ns.wav") as ns, WavReader(tmp_path / "aec.wav") as aec:
        np.testing.assert_array_equal(aec.read_all(), ns.read_all())


@needs_speexdsp
def test_a_far_end_at_another_rate_is_refused_with_what_to_do(tmp_path, model, capsys):
    write_file(tmp_path / "mic.wav", np.zeros(4800), 48_000)
    write_file(tmp_path / "far.wav", np.zeros(1600), 16_000)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 2
    err = capsys.readouterr().err
    assert "16000 Hz" in err and "must have the microphone's rate and sample format" in err and "sox" in err
    assert not (tmp_path / "out.wav").exists()


@needs_speexdsp
def test_a_far_end_in_another_sample_format_is_refused(tmp_path, model, capsys):
    write_file(tmp_path / "mic.wav", np.zeros(4800), 48_000)
    write_file(tmp_path / "far.wav", np.zeros(4800), 48_000, tag=3, bits=32)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 2
    assert "32-bit float" in capsys.readouterr().err


@needs_speexdsp
def test_the_advice_for_a_far_end_in_another_format_names_the_encoding(tmp_path, model, capsys):
    """`sox -b 32` alone writes 32-bit integers, which a 32-bit float microphone refuses again."""
    write_file(tmp_path / "mic.wav", np.zeros(4800), 48_000, tag=3, bits=32)
    write_file(tmp_path / "far.wav", np.zeros(4800), 48_000)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 2
    assert "-r 48000 -b 32 -e floating-point far-matched.wav" in capsys.readouterr().err


def test_denoise_refuses_to_write_over_its_far_end(tmp_path, capsys):
    """OUT naming FAR replaced what the loudspeaker played with the enhanced microphone, exit 0."""
    write_file(tmp_path / "mic.wav", np.zeros(4800), 48_000)
    far = write_file(tmp_path / "far.wav", np.ones(4800) * 0.1, 48_000)
    before = far.read_bytes()
    assert main(["denoise", str(tmp_path / "mic.wav"), str(far), "--far-end", str(far)]) == 2
    assert f"{far} is the far-end file {far}: writing it would replace the original" in capsys.readouterr().err
    assert far.read_bytes() == before


@needs_speexdsp
def test_a_far_end_with_other_channels_is_refused(tmp_path, model, capsys):
    write_file(tmp_path / "mic.wav", np.zeros((4800, 2)), 48_000)
    write_file(tmp_path / "far.wav", np.zeros((4800, 3)), 48_000)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 2
    assert "must be mono" in capsys.readouterr().err


@needs_speexdsp
def test_a_short_far_end_counts_as_silence_and_a_44k1_pair_works(tmp_path, model, capsys):
    rate = 44_100
    far = speech_like(1.0, seed=2, rate=rate) * 2.0
    write_file(tmp_path / "far.wav", far, rate)
    write_file(tmp_path / "mic.wav", np.concatenate([fftconvolve(far, room(rate))[:far.size], np.zeros(rate)]),
               rate)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"),
                 "--far-end", str(tmp_path / "far.wav")]) == 0
    assert "the rest counts as silence" in capsys.readouterr().out
    with WavReader(tmp_path / "out.wav") as out:
        assert (out.rate, out.frames) == (rate, 2 * rate)


def test_echo_options_without_a_far_end_are_a_usage_error(tmp_path, capsys):
    write_file(tmp_path / "mic.wav", np.zeros(4800), 48_000)
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "out.wav"), "--echo-tail-ms", "100"]) == 2
    assert "need --far-end" in capsys.readouterr().err
