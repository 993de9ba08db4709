"""`denoise` gives back what it was given (issue 26 items 3-5, issue 24 item 6).

The same rate, channels, sample format and length; each channel enhanced on its own; NaN and infinity repaired
with a warning that says how many and where; headers that lie refused before anything large is read.
"""
import struct
import subprocess
import sys

import numpy as np
import pytest

from edge.commands.cli import main
from edge.io.synthetic import mix_at_snr, noise, speech_like
from edge.io.wav import WavReader, WavWriter, encode
from edge.model.model_meta import DEFAULT_MODEL_PATH


@pytest.fixture
def model():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    return DEFAULT_MODEL_PATH


def fmt_chunk(tag, channels, rate, bits, extensible=False):
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align, align, bits)
    if extensible:                      # cbSize, valid bits, channel mask (front left + right), sub-format GUID
        body += struct.pack("<HHI", 22, bits, 0x3) + struct.pack("<H", tag) + bytes.fromhex(
            "000000001000800000aa00389b71")
    return body


def write_file(path, samples, rate, tag=1, bits=16, extensible=False):
    samples = np.atleast_2d(samples.T).T
    with WavWriter(path, rate, samples.shape[0], fmt_chunk(tag, samples.shape[1], rate, bits, extensible)) as out:
        out.write(samples)
    return path


def noisy(seconds, rate, seed=1):
    return mix_at_snr(speech_like(seconds, seed=seed, rate=rate), noise("pink", seconds, seed=seed + 1, rate=rate), 5.0)


@pytest.mark.parametrize("tag, bits", [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)])
def test_every_sample_format_round_trips_through_the_writer_and_reader(tmp_path, tag, bits):
    signal = np.stack([noisy(0.05, 44_100), -noisy(0.05, 44_100, seed=5)], axis=1) * 0.9
    path = write_file(tmp_path / "x.wav", signal, 44_100, tag, bits, extensible=bits > 16)
    with WavReader(path) as reader:
        back = reader.read_all()
        assert (reader.rate, reader.channels, reader.bits, reader.format_tag) == (44_100, 2, bits, tag)
    step = 2.0 ** -(bits - 1) if tag == 1 else 1e-7
    assert np.max(np.abs(back - signal)) <= step
    if bits == 8:                       # an odd number of 8-bit mono bytes gets RIFF's pad byte
        path = write_file(tmp_path / "odd.wav", signal[:101, 0], 44_100, 1, 8)
        assert path.stat().st_size % 2 == 0 and WavReader(path).frames == 101


def test_a_44k1_stereo_24_bit_file_comes_back_as_44k1_stereo_24_bit_of_the_same_length(tmp_path, model, capsys):
    """The issue's case; and each channel is enhanced on its own: a silent channel stays silent."""
    speech = noisy(1.3, 44_100) * 0.5
    source = write_file(tmp_path / "in.wav", np.stack([speech, np.zeros_like(speech)], axis=1), 44_100, 1, 24,
                        extensible=True)
    assert main(["denoise", str(source), str(tmp_path / "out.wav")]) == 0
    assert "wrote" in capsys.readouterr().out
    with WavReader(source) as given, WavReader(tmp_path / "out.wav") as got:
        assert got.fmt_chunk == given.fmt_chunk                 # format, channels, rate and channel mask
        assert got.frames == given.frames
        enhanced = got.read_all()
    assert np.max(np.abs(enhanced[:, 1])) == 0.0
    mono = write_file(tmp_path / "mono.wav", speech, 44_100, 1, 24)
    assert main(["denoise", str(mono), str(tmp_path / "mono-out.wav")]) == 0
    with WavReader(tmp_path / "mono-out.wav") as alone:
        np.testing.assert_array_equal(enhanced[:, 0], alone.read_all()[:, 0])     # as if it were alone
    assert np.max(np.abs(enhanced[:, 0] - speech)) > 0.1                         # enhanced, not passed through


@pytest.mark.parametrize("rate, frames", [(96_000, 96_001), (44_100, 44_101), (8_000, 8_003)])
def test_the_output_has_exactly_the_input_length_at_any_rate(tmp_path, model, rate, frames):
    source = write_file(tmp_path / "in.wav", noisy(frames / rate + 0.01, rate)[:frames], rate)
    assert WavReader(source).frames == frames
    assert main(["denoise", str(source), str(tmp_path / "out.wav")]) == 0
    with WavReader(tmp_path / "out.wav") as got:
        assert (got.rate, got.frames) == (rate, frames)


def test_nan_and_infinity_are_repaired_with_a_warning_that_says_how_many_and_where(tmp_path, model, capsys):
    signal = noisy(2.0, 48_000).astype(np.float32)
    signal[24_000] = np.nan
    signal[24_001] = np.inf
    signal[72_000] = -np.inf
    source = write_file(tmp_path / "in.wav", signal, 48_000, 3, 32)
    assert main(["denoise", str(source), str(tmp_path / "out.wav")]) == 0
    out = capsys.readouterr().out
    assert ("3 NaN, infinite or absurd (beyond 1e6) samples between 0.500 s and 1.500 s were replaced by silence (0)"
            in out)
    with WavReader(tmp_path / "out.wav") as got:
        assert np.all(np.isfinite(got.read_all()))


def test_a_64_bit_sample_too_large_to_square_is_repaired_with_the_same_warning(tmp_path, model, capsys):
    """1e160 is finite, but its square is not: it once made NaN output for a few hundred ms, uncounted."""
    signal = noisy(1.0, 48_000)
    signal[12_000] = 1e160
    signal[36_000] = -2e6
    source = write_file(tmp_path / "in.wav", signal, 48_000, 3, 64)
    assert main(["denoise", str(source), str(tmp_path / "out.wav")]) == 0
    assert "2 NaN, infinite or absurd (beyond 1e6) samples between 0.250 s and 0.750 s" in capsys.readouterr().out
    with WavReader(tmp_path / "out.wav") as got:
        enhanced = got.read_all()
    assert np.all(np.isfinite(enhanced)) and np.max(np.abs(enhanced)) < 1.0


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty (0 bytes)"),
    (b"hello\n", "not a WAV file (it starts with b'hello\\n'"),
    (b"just some longer text that is not audio\n", "not a WAV file (it starts with b'just som'"),
    (b"RIFF\x10\x00", "truncated WAV file: it ends inside the RIFF header"),
])
def test_empty_and_text_files_are_named_for_what_they_are(tmp_path, capsys, content, message):
    (tmp_path / "in.wav").write_bytes(content)
    assert main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]) == 2
    assert message in capsys.readouterr().err


def test_the_a_law_refusal_lists_8_bit_pcm_among_the_supported_formats(tmp_path, capsys):
    path = tmp_path / "alaw.wav"
    body = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + 16 + 8 + 100) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                     + body + b"data" + struct.pack("<I", 100) + bytes(100))
    assert main(["denoise", str(path), str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err
    assert "A-law with 8-bit samples is not supported" in err and "8-bit unsigned" in err


def test_a_fmt_chunk_that_claims_4_gb_is_refused_without_reading_it(tmp_path):
    """An 84-byte file whose 'fmt ' chunk claims 0xFFFFFFFE bytes: refused in a process capped at 256 MB."""
    path = tmp_path / "liar.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 76) + b"WAVE" + b"fmt " + struct.pack("<I", 0xFFFFFFFE) + bytes(64))
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    run = f"from edge.commands.cli import main; raise SystemExit(main(['denoise', {str(path)!r}, '/dev/null']))"
    result = subprocess.run([sys.executable, "-c", limit + run], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "its 'fmt ' chunk claims 4294967294 bytes in a 84-byte file" in result.stderr


def test_more_channels_than_denoise_enhances_are_refused_with_what_to_do(tmp_path, capsys, model):
    source = write_file(tmp_path / "wide.wav", np.zeros((480, 9)), 48_000)
    assert main(["denoise", str(source), str(tmp_path / "out.wav")]) == 2
    assert "9 channels; denoise enhances at most 8" in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists()


def test_encode_clips_integers_at_full_scale_and_keeps_floats(tmp_path):
    values = np.array([-2.0, -1.0, 0.0, 0.5, 2.0])
    data, clipped = encode(values, 1, 16)
    assert clipped == 2 and list(np.frombuffer(data, "<i2")) == [-32768, -32768, 0, 16384, 32767]
    data, clipped = encode(values, 3, 32)
    assert clipped == 0 and list(np.frombuffer(data, "<f4")) == list(values)


def test_a_65535_channel_file_is_refused_in_little_memory_leaving_nothing(tmp_path):
    """Issue 24 item 6: a 196 MB, 65535-channel 8-bit file peaked at 1.86 GB (a block was one second times the
    channels) and was killed under 1 GiB, leaving a .tmp. The channel limit refuses it before any block; the
    file here is sparse (a header that claims 196 MB of data, holes for the rest)."""
    channels, data_bytes = 65535, 196 << 20
    path = tmp_path / "wide.wav"
    fmt = struct.pack("<HHIIHH", 1, channels, 48_000, 48_000 * channels, channels, 8)
    with open(path, "wb") as stream:
        stream.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", data_bytes))
        stream.truncate(44 + data_bytes)
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    out = tmp_path / "out.wav"
    run = f"from edge.commands.cli import main; raise SystemExit(main(['denoise', {str(path)!r}, {str(out)!r}]))"
    result = subprocess.run([sys.executable, "-c", limit + run], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "65535 channels; denoise enhances at most 8" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.wav"]


def test_a_block_is_bounded_whatever_the_rate_and_channels():
    """Issue 24 item 6: the largest block denoise reads (384 kHz, 8 channels, float64) stays a few tens of MB."""
    from edge.commands.files import BLOCK_FRAMES
    from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
    from edge.io.wav import MAX_CHANNELS, MAX_RATE_HZ
    block_frames = BLOCK_FRAMES * HOP_SAMPLES * MAX_RATE_HZ // SAMPLE_RATE_HZ
    assert block_frames * MAX_CHANNELS * 8 <= 32 << 20


def _with_data_size(path, declared_bytes, tail=b""):
    """``path`` (a 44-byte-header WAV from write_file) with its data chunk's size field set, ``tail`` appended."""
    blob = bytearray(path.read_bytes())
    assert blob[36:40] == b"data"
    blob[40:44] = struct.pack("<I", declared_bytes)
    path.write_bytes(bytes(blob) + tail)
    return path


def test_a_header_written_before_the_audio_ended_is_said_not_silently_cut(tmp_path):
    """A writer into a pipe cannot go back to fix its header: it declared 4,000 frames and 32,000 followed, and
    only the 4,000 came out, without a word."""
    path = _with_data_size(write_file(tmp_path / "in.wav", noisy(2.0, 16_000), 16_000), 8_000)
    with WavReader(path) as reader:
        assert reader.frames == 4_000
        assert any("56000 bytes after it do not start a chunk" in note and "sox --ignore-length" in note
                   for note in reader.notes)


def test_a_chunk_after_the_data_is_not_taken_for_audio(tmp_path):
    path = write_file(tmp_path / "in.wav", noisy(0.5, 16_000), 16_000)
    path.write_bytes(path.read_bytes() + b"LIST" + struct.pack("<I", 4) + b"INFO")
    with WavReader(path) as reader:
        assert reader.frames == 8_000 and reader.notes == []


def test_a_data_size_of_0_with_audio_after_it_is_read_to_the_end(tmp_path):
    """The other placeholder a streaming writer leaves: it was 'the file holds no samples' for a 96 kB file."""
    path = _with_data_size(write_file(tmp_path / "in.wav", noisy(1.0, 48_000), 48_000), 0)
    with WavReader(path) as reader:
        assert reader.frames == 48_000
        assert any("declares 0 bytes (a streamed file's placeholder)" in note for note in reader.notes)


def test_an_odd_chunk_without_its_pad_byte_is_read_with_a_note(tmp_path):
    """A LIST chunk of 5 bytes and no pad byte before 'data' (a common writer bug) was a 'truncated' file."""
    path = write_file(tmp_path / "in.wav", noisy(0.5, 16_000), 16_000)
    blob = path.read_bytes()
    path.write_bytes(blob[:36] + b"LIST" + struct.pack("<I", 5) + b"INFO1" + blob[36:])
    with WavReader(path) as reader, WavReader(write_file(tmp_path / "ref.wav", noisy(0.5, 16_000), 16_000)) as ref:
        assert reader.frames == 8_000
        assert reader.notes == ["the 'LIST' chunk (5 bytes) has no pad byte; read as if it had"]
        np.testing.assert_array_equal(reader.read_all(), ref.read_all())


def test_a_signal_inside_the_writer_leaves_no_hidden_temporary_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt (SIGINT, or SIGTERM under stop_signals_raise) while the writer writes its header, before
    the with-block exists, or between its close and its rename, left `.out.wav.*.tmp` beside the output."""
    import os

    class Interrupted:
        def write(self, data):
            raise KeyboardInterrupt

        def close(self):
            pass
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda handle, mode: (os.close(handle), Interrupted())[1])
    with pytest.raises(KeyboardInterrupt):
        WavWriter(tmp_path / "out.wav", 48_000, 10, fmt_chunk(1, 1, 48_000, 16))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "fdopen", real_fdopen)

    def interrupted_rename(source, target):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted_rename)
    with pytest.raises(KeyboardInterrupt):
        with WavWriter(tmp_path / "out.wav", 48_000, 10, fmt_chunk(1, 1, 48_000, 16)) as out:
            out.write(np.zeros((10, 1)))
    assert list(tmp_path.iterdir()) == []


def test_an_rf64_file_and_a_short_extensible_header_are_named(tmp_path):
    """RF64 (a field recorder's or ffmpeg's large-file WAV) was "not a WAV file"; an EXTENSIBLE header too short to
    carry its sample format was "format 65534"."""
    from edge.errors import AudioFileError
    rf64 = tmp_path / "long.wav"
    rf64.write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEds64" + b"\0" * 64)
    with pytest.raises(AudioFileError, match=r"an RF64 \(large-file\) WAV, which is not read here; convert it first"):
        WavReader(rf64)
    short = struct.pack("<HHIIHH", 0xFFFE, 1, 48_000, 96_000, 2, 16)        # 16 bytes: no sub-format
    data = np.zeros(4, "<i2").tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(short)) + short + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "short.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFileError, match=r"WAVE_FORMAT_EXTENSIBLE with a 16-byte 'fmt ' chunk \(too short to "
                                             r"name its sample format\) with 16-bit samples is not supported"):
        WavReader(tmp_path / "short.wav")


def test_a_data_chunk_that_ends_inside_a_frame_says_what_is_dropped(tmp_path):
    chunk = fmt_chunk(1, 2, 48_000, 16)
    data = np.zeros(8, "<i2").tobytes() + b"\x01\x02\x03"                     # 4 stereo frames and 3 bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(chunk)) + chunk + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "ragged.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body) + 1) + body + b"\0")
    with WavReader(tmp_path / "ragged.wav") as reader:
        assert reader.frames == 4
        assert reader.notes == ["the data chunk ends 3 byte(s) short of a whole 4-byte frame; those bytes are dropped"]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, OSError], ids=["a signal", "a full disk"])
def test_a_writer_that_fails_to_start_leaves_no_file_and_no_descriptor(tmp_path, monkeypatch, raised):
    import os
    from edge.errors import AudioFileError
    opened = []
    real_fdopen = os.fdopen

    def fdopen_failing(handle, mode):                      # the descriptor exists, no stream owns it yet
        opened.append(handle)
        raise raised(28, "No space left on device") if raised is OSError else raised()
    monkeypatch.setattr(os, "fdopen", fdopen_failing)
    with pytest.raises(AudioFileError if raised is OSError else KeyboardInterrupt):
        WavWriter(tmp_path / "out.wav", 48_000, 10, fmt_chunk(1, 1, 48_000, 16))
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert list(tmp_path.iterdir()) == [] and len(opened) == 1
    with pytest.raises(OSError):                           # closed by the writer, not leaked
        os.fstat(opened[0])


def test_a_long_extensible_header_with_an_unknown_sub_format_is_not_called_short(tmp_path):
    from edge.errors import AudioFileError
    chunk = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 48_000, 96_000, 2, 16, 22, 16, 0) + struct.pack("<H", 0xFFFE) \
        + b"\0" * 14                                          # 40 bytes, a sub-format of 0xFFFE
    data = np.zeros(4, "<i2").tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(chunk)) + chunk + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "odd.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioFileError, match=r"format 65534 with 16-bit samples is not supported"):
        WavReader(tmp_path / "odd.wav")
