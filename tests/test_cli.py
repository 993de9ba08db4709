"""The percepnet-edge command line, run in-process on generated files."""

import json

import numpy as np
import pytest
from scipy.io import wavfile

from edge.commands.cli import main
from edge.io.synthetic import DEMO_SECONDS, mix_at_snr, noise, speech_like


def test_demo_writes_wavs_and_reports_a_gain(tmp_path, capsys):
    assert main(["oracle", "--demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("clean", "noisy", "oracle"):
        rate, data = wavfile.read(tmp_path / f"{name}.wav")
        assert rate == 48_000 and data.dtype == np.int16 and data.size == DEMO_SECONDS * 48_000
    gain_line = [line for line in out.splitlines() if line.startswith("gain")][0]
    snr_gain = float(gain_line.split()[1])
    assert snr_gain > 6.0                   # +7.1 dB in babble at 5 dB SNR


def test_oracle_converts_rate_and_channels_and_says_so(tmp_path, capsys):
    rate = 16_000
    clean = speech_like(2.0, seed=1, rate=rate)
    noisy = mix_at_snr(clean, noise("white", 2.0, seed=2, rate=rate), 5.0)
    stereo = np.stack([noisy, noisy], axis=1)
    wavfile.write(tmp_path / "clean.wav", rate, clean.astype(np.float32))
    wavfile.write(tmp_path / "noisy.wav", rate, (stereo * 32767).astype(np.int16))
    assert main(["oracle", str(tmp_path / "clean.wav"), str(tmp_path / "noisy.wav"),
                 str(tmp_path / "out.wav")]) == 0
    out = capsys.readouterr().out
    assert "mixed 2 channels down to mono" in out and "resampled 16000 Hz -> 48000 Hz" in out
    out_rate, enhanced = wavfile.read(tmp_path / "out.wav")
    assert out_rate == rate and enhanced.shape == (noisy.size,)


@pytest.mark.parametrize("args, message", [
    (["oracle"], "oracle needs CLEAN NOISY OUT"),
    (["oracle", "missing.wav", "missing.wav", "out.wav"], "missing.wav: no such file"),
    (["denoise", "missing.wav", "out.wav"], "missing.wav: no such file"),
])
def test_usage_errors_are_clear(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_oracle_refuses_clean_and_noisy_of_different_lengths(tmp_path, capsys):
    wavfile.write(tmp_path / "a.wav", 48_000, np.zeros(48_000, np.int16))
    wavfile.write(tmp_path / "b.wav", 48_000, np.zeros(24_000, np.int16))
    assert main(["oracle", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), str(tmp_path / "o.wav")]) == 2
    assert "differ in length" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_corrupt_wav_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00not a wave file at all")
    assert main(["oracle", str(tmp_path / "bad.wav"), str(tmp_path / "bad.wav"), str(tmp_path / "o.wav")]) == 2
    assert "not a WAV file" in capsys.readouterr().err


def test_bench_json_has_the_numbers(capsys):
    assert main(["bench", "--seconds", "1", "--rounds", "1", "--no-peers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = report["results"]["percepnet-edge DSP only (no network)"]
    assert 0 < row["frame_us_p50"] <= row["frame_us_p99"] <= row["frame_us_max"]
    assert row["cpu_s_per_audio_s"] > 0            # how much is a measurement: the benchmark prints it


def test_bench_model_refuses_more_frames_than_memory_holds(capsys):
    """10 M frames asked for 38 GB of signal at once (the whole signal is made in memory): killed, no message."""
    with pytest.raises(SystemExit) as raised:
        main(["bench-model", "x.tflite", "--frames", "30001"])
    assert raised.value.code == 2
    assert "argument --frames: 30001 is not allowed; expected 1..30000" in capsys.readouterr().err
