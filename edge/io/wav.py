"""WAV files in and out, and conversion to the 48 kHz mono the DSP runs at.

Whole files (:func:`read_wav`, :func:`write_wav`) for short clips, and streams
(:class:`WavReader`, :class:`StreamResampler`, :class:`WavWriter`) for the
file commands, whose memory must not grow with the file's length.
Everything the device runs needs numpy alone: resampling is
:mod:`edge.dsp.polyphase` (scipy's ``resample_poly``, in numpy), so a device
installs no scipy. :func:`read_wav` is the host's whole-file reader (training,
evaluation) and imports scipy's WAV reader; no device command calls it.
"""

import os
import stat
import struct
from math import gcd
from pathlib import Path

import numpy as np

from edge.io.atomic import TempFile, refuse_special_target
from edge.dsp import polyphase
from edge.dsp.constants import SAMPLE_RATE_HZ
from edge.dsp.unusable import MAX_SAMPLE
from edge.errors import AudioFileError

#: Sample rates the file commands accept; anything else is a broken header, not audio
#: (a 4 KB file declaring 1 Hz once asked for a 48,000-fold resampling and 2.4 GB).
MIN_RATE_HZ, MAX_RATE_HZ = 8_000, 384_000
_CONVERT_ADVICE = "convert it first, e.g. `sox in.xxx -b 16 out.wav`"


def read_wav(path):
    """Read a WAV file as float64 in [-1, 1], shape (n_samples, n_channels), and its rate."""
    from scipy.io import wavfile                      # host side only: see the module doc
    try:
        rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except struct.error:
        raise AudioFileError(f"{path}: truncated WAV header; {_CONVERT_ADVICE}") from None
    except (ValueError, OSError) as exc:
        raise AudioFileError(f"{path}: not a readable WAV file ({exc}); "
                             "convert it first, e.g. `sox in.xxx -b 16 out.wav`") from None
    if data.dtype == np.uint8:
        samples = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        samples = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    else:
        samples = data.astype(np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no samples")
    return samples, int(rate)


def to_dsp_format(samples, rate):
    """Mix to mono and resample to 48 kHz. Returns ``(mono, notes)``.

    ``notes`` lists, in words, every conversion made, so the caller can tell
    the user (an empty list means the input was already 48 kHz mono).
    """
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE_HZ:
        mono = resample(mono, rate, SAMPLE_RATE_HZ)
    return mono, conversion_notes(samples.shape[1], rate)


def conversion_notes(channels, rate):
    """In words, what :func:`to_dsp_format` does to audio of this layout (empty: already 48 kHz mono)."""
    notes = []
    if channels > 1:
        notes.append(f"mixed {channels} channels down to mono (mean)")
    if rate != SAMPLE_RATE_HZ:
        notes.append(f"resampled {rate} Hz -> {SAMPLE_RATE_HZ} Hz")
    return notes


def resample(samples, rate_from, rate_to):
    """Polyphase resampling; the result has round(n * rate_to / rate_from) samples."""
    if rate_from == rate_to:
        return samples
    common = gcd(int(rate_from), int(rate_to))
    out = polyphase.resample_poly(samples, rate_to // common, rate_from // common)
    return out[:int(round(samples.shape[0] * rate_to / rate_from))]


def write_wav(path, samples, rate):
    """Write mono float samples as 16-bit PCM, atomically. Returns the number of clipped samples.

    The file appears complete or not at all: it is written to a temporary
    file beside the target, then renamed.
    """
    samples = np.asarray(samples)                    # converted block by block (it may be a memory map)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AudioFileError(f"{path}: the folder {directory} does not exist")
    try:
        refuse_special_target(path)                  # a device, FIFO or folder: never replaced
    except FileExistsError as exc:
        raise AudioFileError(exc.strerror) from None
    # In one-second blocks, so that no temporary is the size of the signal (peak RSS is reported).
    with WavWriter(path, rate, samples.shape[0]) as writer:
        for start in range(0, samples.shape[0], int(rate)):
            writer.write(samples[start:start + int(rate)])
    return writer.clipped


def check_rate(path, rate):
    """Refuse a sample rate no real recording has (a corrupt or hand-made header)."""
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioFileError(f"{path}: declares a sample rate of {rate} Hz; expected {MIN_RATE_HZ}..{MAX_RATE_HZ} "
                             f"Hz, so the header is probably wrong; {_CONVERT_ADVICE}")


#: WAVE format tags: integer PCM and IEEE float (WAVE_FORMAT_EXTENSIBLE carries one of them inside).
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


#: Channels the file commands enhance (each one separately). More is a header error or a microphone array
#: that wants beamforming first; either way the block size (one second times the channels) must stay bounded.
MAX_CHANNELS = 8
#: A 'fmt ' chunk is 16-40 bytes; anything this large is a corrupt header, not a format.
MAX_FMT_BYTES = 1024


def open_regular_file(path):
    """``path`` open for binary reading, if it is a regular file. A FIFO or pipe (``<(...)``, ``/dev/stdin``) is
    refused at once: opening one waited for a writer forever, and reading one ended in ``Illegal seek``; the
    reader seeks past chunks and needs the file's size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)      # a FIFO opens at once this way
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO or pipe" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
        raise AudioFileError(f"{path}: is {kind}, not a WAV file; the file commands read regular files (they seek): "
                             "save the stream to a file first, e.g. `cat > in.wav`")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class WavReader:
    """A WAV file read block by block as float64 ``(n, channels)`` in [-1, 1], scaled as :func:`read_wav` does.

    The header is parsed and checked when the file is opened (a truncated or
    odd header is an :class:`AudioFileError` naming the file), so nothing is
    processed before the input is known to be usable. ``notes`` lists, in
    words, anything read differently from what the header declares.

    NaN and infinite samples (float files), and finite ones beyond 1e6 (120 dB
    over full scale: their squares overflow the chain's statistics,
    :mod:`edge.dsp.unusable`), are replaced by 0 as they are read; ``nonfinite``
    counts them and ``nonfinite_span_s`` gives the first and last time they
    occur, for the warning the caller prints.
    """

    def __init__(self, path):
        self.path = path
        self.notes = []
        self.nonfinite, self.nonfinite_span_s = 0, None
        self._file = open_regular_file(path)
        try:
            self._parse_header()
        except BaseException:
            self._file.close()
            raise
        self._left = self.frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()

    def _truncated(self, where):
        return AudioFileError(f"{self.path}: truncated WAV file: it ends inside {where}; {_CONVERT_ADVICE}")

    def _parse_header(self):
        stream = self._file
        file_bytes = os.fstat(stream.fileno()).st_size
        head = stream.read(12)
        if not head:
            raise AudioFileError(f"{self.path}: the file is empty (0 bytes); give a WAV file")
        if head.startswith(b"RF64") or head.startswith(b"BW64"):
            raise AudioFileError(f"{self.path}: an RF64 (large-file) WAV, which is not read here; {_CONVERT_ADVICE} "
                                 "(a plain WAV holds up to 4 GiB: cut a longer recording into parts)")
        if not head.startswith(b"RIFF"[:len(head)]) or (len(head) == 12 and head[8:12] != b"WAVE"):
            raise AudioFileError(f"{self.path}: not a WAV file (it starts with {head[:8]!r}, not 'RIFF....WAVE'); "
                                 f"{_CONVERT_ADVICE}")
        if len(head) < 12:
            raise self._truncated("the RIFF header")
        layout = None
        while True:
            chunk = stream.read(8)
            if len(chunk) < 8:
                raise self._truncated("the 'fmt ' chunk" if layout is None else "the chunk list, before 'data'")
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                if size > MAX_FMT_BYTES:                 # a corrupt size: never read what cannot be there
                    raise AudioFileError(f"{self.path}: corrupt WAV header: its 'fmt ' chunk claims {size} bytes "
                                         f"in a {file_bytes}-byte file; {_CONVERT_ADVICE}")
                body = stream.read(size + size % 2)
                if size < 16 or len(body) < size:
                    raise self._truncated("the 'fmt ' chunk")
                layout = self._layout(body, size)
                self.fmt_chunk = body[:size]
            elif name == b"data":
                if layout is None:
                    raise AudioFileError(f"{self.path}: the 'data' chunk comes before 'fmt '; {_CONVERT_ADVICE}")
                break
            else:
                stream.seek(size + size % 2, os.SEEK_CUR)
                if size % 2 and not self._chunk_at(stream.tell(), file_bytes) \
                        and self._chunk_at(stream.tell() - 1, file_bytes):
                    # a writer that left out the pad byte after an odd-sized chunk (a common bug): its next chunk
                    # starts a byte early
                    self.notes.append(f"the {name.decode('latin-1')!r} chunk ({size} bytes) has no pad byte; "
                                      "read as if it had")
                    stream.seek(-1, os.SEEK_CUR)
        self.format_tag, self.channels, self.rate, self.block_align, self.bits = layout
        data_start = stream.tell()
        available = file_bytes - data_start
        if size > available:                         # cut short, or a streamed file's placeholder size
            self.notes.append(f"the data chunk declares {size} bytes but the file holds {available}; "
                              f"reading {available}")
            size = available
        elif size == 0 and available > 0:            # the other placeholder a streaming writer leaves
            self.notes.append(f"the data chunk declares 0 bytes (a streamed file's placeholder) and {available} "
                              f"follow; reading {available}")
            size = available
        elif available - size - size % 2 >= 8 and not self._chunk_at(data_start + size + size % 2, file_bytes):
            # a header written before the audio ended (a writer into a pipe cannot go back to fix it): the bytes
            # after the declared data are not a chunk, so they are likely audio; said, not guessed at
            self.notes.append(f"the data chunk declares {size} bytes, and {available - size} bytes after it do not "
                              f"start a chunk (audio after a header written too early?): only the declared "
                              f"{size // self.block_align} frames are read; if the rest is audio, fix the header "
                              "first, e.g. `sox --ignore-length in.wav fixed.wav`")
        self.frames = size // self.block_align
        if self.frames == 0:
            raise AudioFileError(f"{self.path}: the file holds no samples")
        if size % self.block_align:
            self.notes.append(f"the data chunk ends {size % self.block_align} byte(s) short of a whole "
                              f"{self.block_align}-byte frame; those bytes are dropped")

    def _chunk_at(self, offset, file_bytes):
        """Whether a RIFF chunk header (a printable four-letter id and a size that fits) starts at ``offset``."""
        here = self._file.tell()
        self._file.seek(offset)
        head = self._file.read(8)
        self._file.seek(here)
        return (len(head) == 8 and all(0x20 <= byte <= 0x7E for byte in head[:4])
                and struct.unpack("<I", head[4:])[0] <= file_bytes - offset - 8)

    def _layout(self, body, size):
        tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
        if tag == _EXTENSIBLE and size >= 26:
            tag = struct.unpack("<H", body[24:26])[0]
        supported = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}
        if tag not in supported or bits not in supported[tag]:
            name = {6: "A-law", 7: "mu-law", 2: "ADPCM", 0x11: "IMA ADPCM", 0x55: "MP3"}.get(tag, f"format {tag}")
            if tag == _EXTENSIBLE and size < 26:
                name = f"WAVE_FORMAT_EXTENSIBLE with a {size}-byte 'fmt ' chunk (too short to name its sample format)"
            raise AudioFileError(f"{self.path}: {name} with {bits}-bit samples is not supported "
                                 f"(8-bit unsigned, 16/24/32-bit integer PCM and 32/64-bit float are); "
                                 f"{_CONVERT_ADVICE}")
        if channels < 1 or block_align != channels * bits // 8:
            raise AudioFileError(f"{self.path}: inconsistent WAV header ({channels} channels, {bits}-bit, "
                                 f"{block_align}-byte frames); {_CONVERT_ADVICE}")
        check_rate(self.path, rate)
        return tag, channels, rate, block_align, bits

    @property
    def encoding(self):
        """``float``, ``unsigned`` (8-bit) or ``integer`` (signed)."""
        return "float" if self.format_tag == _FLOAT else ("unsigned" if self.bits == 8 else "integer")

    def describe(self):
        """The sample format in words: ``44100 Hz, 2 channels, 24-bit integer``."""
        kind = self.encoding
        return (f"{self.rate} Hz, {self.channels} channel{'s' if self.channels > 1 else ''}, "
                f"{self.bits}-bit {kind}")

    def read(self, n_frames):
        """The next ``n_frames`` (fewer at the end) as float64 ``(n, channels)``."""
        n_frames = min(n_frames, self._left)
        first = self.frames - self._left
        data = self._file.read(n_frames * self.block_align)
        n_frames = len(data) // self.block_align
        self._left -= n_frames
        samples = self._decode(data[:n_frames * self.block_align]).reshape(n_frames, self.channels)
        if self.format_tag == _FLOAT:
            self._repair(samples, first)
        return samples

    def _repair(self, samples, first_frame):
        """NaN, infinity and absurd values are not audio: 0 in their place, counted and located for the caller's
        warning."""
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(samples) <= MAX_SAMPLE)          # NaN compares False
        if not bad.any():
            return
        frames = np.flatnonzero(bad.any(axis=1)) + first_frame
        span = (frames[0] / self.rate, frames[-1] / self.rate)
        self.nonfinite += int(np.count_nonzero(bad))
        self.nonfinite_span_s = span if self.nonfinite_span_s is None else (self.nonfinite_span_s[0], span[1])
        samples[bad] = 0.0

    def read_all(self):
        return self.read(self.frames)

    def _decode(self, data):
        if self.format_tag == _FLOAT:
            return np.frombuffer(data, "<f4" if self.bits == 32 else "<f8").astype(np.float64)
        if self.bits == 8:
            return (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) / 128.0
        if self.bits == 24:                          # three little-endian bytes, two's complement
            raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int64)
            values = ((raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) ^ 0x800000) - 0x800000
            return values.astype(np.float64) / 8388608.0
        dtype = "<i2" if self.bits == 16 else "<i4"
        return np.frombuffer(data, dtype).astype(np.float64) / float(-np.iinfo(dtype).min)


def encode(samples, format_tag, bits):
    """Float samples (any shape, interleaved order) as a WAV's bytes; the inverse of ``WavReader._decode``.

    Returns ``(bytes, clipped)``: integer formats clip at full scale and count what they clipped; float formats
    keep every value, as the input's own format would.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if format_tag == _FLOAT:
        return samples.astype("<f4" if bits == 32 else "<f8").tobytes(), 0
    clipped = int(np.count_nonzero(np.abs(samples) > 1.0))
    if bits == 8:
        return np.clip(np.round(samples * 128.0) + 128.0, 0, 255).astype(np.uint8).tobytes(), clipped
    full = float(1 << (bits - 1))
    values = np.clip(np.round(samples * full), -full, full - 1).astype(np.int64)
    if bits == 24:
        as_bytes = (values & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
        return as_bytes.tobytes(), clipped
    return values.astype("<i2" if bits == 16 else "<i4").tobytes(), clipped


class StreamResampler:
    """:func:`resample` applied block by block, equal to resampling the whole signal at once (to ~1e-15: the
    products group their sums differently).

    An output sample depends only on the input within the FIR filter's
    reach. Outputs are computed once their reach has arrived, from a segment
    starting on a multiple of the decimation factor (so the polyphase grid
    lines up with the whole-signal one) far enough back to cover the reach;
    only that margin is kept between blocks. ``total_in`` fixes the output
    length, as the whole-signal call's trim does.
    """

    def __init__(self, rate_from, rate_to, total_in):
        common = gcd(int(rate_from), int(rate_to))
        self.up, self.down = int(rate_to) // common, int(rate_from) // common
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate                         # the default filter's
        self._resample = polyphase.for_ratio(self.up, self.down)     # its branches laid out once, not per push
        reach_in = half_len // self.up + 2               # input samples on either side of an output sample
        self._margin = (-(-reach_in // self.down) + 1) * self.down
        self.total_in = int(total_in)
        self.total_out = int(round(self.total_in * self.up / self.down))
        self._buffer = np.zeros(0)
        self._start = 0                                  # input index of _buffer[0]
        self._received = 0
        self._emitted = 0

    def _segment_start(self, first_output):
        """Where to start resampling so that ``first_output`` and everything after it are exact."""
        return max(0, (first_output * self.down // self.up - self._margin) // self.down * self.down)

    def push(self, samples, final=False):
        """Add input; returns every output sample that is now final (all of them when ``final``)."""
        if self.up == self.down:
            return np.asarray(samples, dtype=np.float64)
        if len(samples):
            self._buffer = np.concatenate([self._buffer, samples])
            self._received += len(samples)
        if final:
            end = self.total_out
        else:
            end = min(self.total_out, max(self._emitted, (self._received - self._margin) * self.up // self.down))
        if end <= self._emitted:
            return np.zeros(0)
        start = self._segment_start(self._emitted)
        resampled = self._resample(self._buffer[start - self._start:])
        offset = start * self.up // self.down
        out = resampled[self._emitted - offset:end - offset]
        self._emitted = end
        keep = self._segment_start(end)
        self._buffer = self._buffer[keep - self._start:]
        self._start = keep
        return out


#: The 'fmt ' chunk of 16-bit mono PCM at a given rate (everything the daemon and the oracle write).
def pcm16_mono_fmt(rate):
    return struct.pack("<HHIIHH", _PCM, 1, int(rate), 2 * int(rate), 2, 16)


class WavWriter:
    """A WAV file written block by block, atomically: a temporary file beside the target, renamed at the end.

    ``fmt_chunk`` is the body of the 'fmt ' chunk to write (the input's own, so that the output has its
    format, channels and channel mask; default 16-bit mono PCM at ``rate``). Blocks are float
    ``(n, channels)`` (or ``(n,)`` for mono). Use as a context manager; any failure removes the temporary file
    and leaves the target as it was. A write error is an :class:`AudioFileError` naming the target. ``clipped``
    counts samples beyond full scale (integer formats only).
    """

    def __init__(self, path, rate, n_frames, fmt_chunk=None):
        self.path = Path(path)
        self.fmt_chunk = fmt_chunk or pcm16_mono_fmt(rate)
        tag, self.channels, _, _, block_align, self.bits = struct.unpack("<HHIIHH", self.fmt_chunk[:16])
        self.format_tag = struct.unpack("<H", self.fmt_chunk[24:26])[0] if tag == _EXTENSIBLE else tag
        self.n_frames, self.clipped, self._written = int(n_frames), 0, 0
        self._data_bytes = self.n_frames * block_align
        header = wav_header_bytes(self.fmt_chunk)
        if header + self._data_bytes + self._data_bytes % 2 > 0xFFFFFFFF:
            raise AudioFileError(f"{self.path}: the output would hold {self._data_bytes} bytes of audio, more than "
                                 "a WAV file can (4 GiB); cut the input into parts")
        self._tmp, self._stream, handle = TempFile(self.path), None, None
        try:
            handle = self._tmp.create()
            self._stream = os.fdopen(handle, "wb")
            self._put(struct.pack("<4sI4s4sI", b"RIFF", header - 8 + self._data_bytes + self._data_bytes % 2,
                                  b"WAVE", b"fmt ", len(self.fmt_chunk)) + self.fmt_chunk
                      + b"\0" * (len(self.fmt_chunk) % 2) + struct.pack("<4sI", b"data", self._data_bytes))
        except OSError as exc:
            self._discard(handle)
            raise AudioFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        except BaseException:               # a signal before the with-block exists: no __exit__ will clean up
            self._discard(handle)
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self._commit()
        else:
            self._discard()

    def write(self, samples):
        samples = np.asarray(samples, dtype=np.float64)
        data, clipped = encode(samples, self.format_tag, self.bits)
        self.clipped += clipped
        self._put(data)
        self._written += samples.shape[0]

    def _put(self, data):
        try:
            self._stream.write(data)
        except OSError as exc:
            self._discard()
            raise AudioFileError(f"{self.path}: cannot write: {exc.strerror}") from None

    def _commit(self):
        if self._written != self.n_frames:
            self._discard()
            raise AssertionError(f"wrote {self._written} frames, the header says {self.n_frames}")
        try:
            if self._data_bytes % 2:
                self._stream.write(b"\0")           # RIFF chunks are word-aligned
            self._stream.close()
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp.path, 0o666 & ~umask)
            os.replace(self._tmp.path, self.path)
        except OSError as exc:
            self._discard()
            raise AudioFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        except BaseException:               # a signal between close() and the rename: no hidden .tmp left
            self._discard()
            raise

    def _discard(self, handle=None):
        """Close and remove the temporary file; ``handle``: its descriptor, when no stream owns it yet."""
        try:
            if self._stream is not None:
                self._stream.close()
            elif handle is not None:
                os.close(handle)
        except OSError:
            pass
        self._tmp.remove()


def wav_header_bytes(fmt_chunk):
    """Bytes before the audio in a file :class:`WavWriter` writes with this 'fmt ' chunk."""
    return 12 + 8 + len(fmt_chunk) + len(fmt_chunk) % 2 + 8
