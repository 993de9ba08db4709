"""ALSA capture and playback through pyalsaaudio, with sample-format conversion.

:class:`AlsaDuplex` reads one 480-frame period as float mono (channel picked
or downmixed) and writes one float period back, converting to and from
S16_LE, S32_LE or FLOAT_LE. It recovers from xruns (an -EPIPE read or write
is counted and the stream re-prepared) and raises :class:`~edge.errors.DeviceError`
when a device disappears, which the daemon answers by reopening with backoff.

:class:`DeviceLocks` keeps two daemons off one device: an exclusive lock file
per PCM name, held for the daemon's life.
"""

import errno
import fcntl
import hashlib
import os
import re
from pathlib import Path

import numpy as np

from .dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from .errors import DeviceError, MissingDependencyError

_DTYPES = {"S16_LE": ("<i2", 32768.0), "S32_LE": ("<i4", 2147483648.0), "FLOAT_LE": ("<f4", 1.0)}


def decode(data, sample_format, channels, channel_mode, channel_index, out):
    """Interleaved bytes -> float mono frame in ``out`` (480,)."""
    dtype, scale = _DTYPES[sample_format]
    samples = np.frombuffer(data, dtype=dtype)
    if samples.size != HOP_SAMPLES * channels:
        raise ValueError(f"expected {HOP_SAMPLES * channels} samples, got {samples.size}")
    if channels == 1:
        np.multiply(samples, 1.0 / scale, out=out)
    elif channel_mode == "pick":
        np.multiply(samples[channel_index::channels], 1.0 / scale, out=out)
    else:
        np.mean(samples.reshape(HOP_SAMPLES, channels), axis=1, out=out)
        out *= 1.0 / scale
    return out


def encode(frame, sample_format, out_buffer):
    """Float mono frame -> bytes of the device format (clipped to full scale), via ``out_buffer``."""
    dtype, scale = _DTYPES[sample_format]
    if sample_format == "FLOAT_LE":
        np.clip(frame, -1.0, 1.0, out=out_buffer)
    else:
        np.clip(np.rint(frame * scale), -scale, scale - 1, out=out_buffer)
    return out_buffer.astype(dtype).tobytes()


def open_pcm(alsaaudio, kind, device, channels, format_code, periods):
    """A PCM at 48 kHz with 480-frame periods, with pyalsaaudio >= 0.9's keywords or 0.8's setters.

    Debian bookworm's python3-alsaaudio is 0.8.4, whose PCM() takes only
    (type, mode, device): the parameters are then set one by one, and the
    buffer size stays the device's default.
    """
    try:
        return alsaaudio.PCM(kind, alsaaudio.PCM_NORMAL, rate=SAMPLE_RATE_HZ, channels=channels,
                             format=format_code, periodsize=HOP_SAMPLES, periods=periods, device=device)
    except TypeError:
        pcm = alsaaudio.PCM(kind, alsaaudio.PCM_NORMAL, device=device)
        pcm.setchannels(channels)
        pcm.setrate(SAMPLE_RATE_HZ)
        pcm.setformat(format_code)
        pcm.setperiodsize(HOP_SAMPLES)
        return pcm


class AlsaDuplex:
    """Capture + playback PCMs at 48 kHz, 480-frame periods."""

    def __init__(self, audio_config):
        self.config = audio_config
        self.xruns = 0
        self._frame = np.zeros(HOP_SAMPLES)
        self._encode_buffer = np.zeros(HOP_SAMPLES)
        self.capture = self.playback = None

    def open(self):
        """Open both PCMs; raises DeviceError naming the device that failed and ALSA's reason."""
        try:
            import alsaaudio
        except ImportError as exc:
            raise MissingDependencyError(f"ALSA needs pyalsaaudio, which is not importable ({exc}): install "
                                         "python3-alsaaudio (Debian) or pip install 'percepnet-edge[edge]'") from None
        config = self.config
        format_code = getattr(alsaaudio, f"PCM_FORMAT_{config.sample_format}")
        self.close()
        for kind, device, channels in (("capture", config.capture_device, config.capture_channels),
                                       ("playback", config.playback_device, 1)):
            try:
                pcm = open_pcm(alsaaudio, getattr(alsaaudio, f"PCM_{kind.upper()}"), device, channels,
                                format_code, config.buffer_periods)
            except alsaaudio.ALSAAudioError as exc:
                self.close()
                raise DeviceError(f"cannot open {kind} device {device!r}: {exc}") from None
            setattr(self, kind, pcm)
        self._check_negotiated()

    def _check_negotiated(self):
        """Refuse a device that silently changed our rate or period (we never resample on the fly)."""
        for name, pcm in (("capture", self.capture), ("playback", self.playback)):
            rate = pcm.info()["rate"] if hasattr(pcm, "info") else SAMPLE_RATE_HZ
            if rate != SAMPLE_RATE_HZ:
                self.close()
                raise DeviceError(f"{name} device runs at {rate} Hz, not {SAMPLE_RATE_HZ}; use a plughw: "
                                 "device or an ALSA 'plug' PCM that converts the rate")

    def read(self):
        """One period as float mono (an internal buffer), or None after an overrun (counted)."""
        import alsaaudio
        try:
            length, data = self.capture.read()
        except alsaaudio.ALSAAudioError as exc:
            raise DeviceError(f"capture failed: {exc}") from None
        if length < 0 or len(data) == 0:
            if length == -errno.EPIPE or len(data) == 0:
                self.xruns += 1
                return None
            raise DeviceError(f"capture returned error {length}")
        c = self.config
        return decode(data, c.sample_format, c.capture_channels, c.channel_mode, c.channel_index, self._frame)

    def write(self, frame):
        """Write one float period; an underrun is counted and the stream continues."""
        import alsaaudio
        data = encode(frame, self.config.sample_format, self._encode_buffer)
        try:
            written = self.playback.write(data)
        except alsaaudio.ALSAAudioError as exc:
            if getattr(exc, "errno", None) == errno.EPIPE or "Broken pipe" in str(exc):
                self.xruns += 1
                return
            raise DeviceError(f"playback failed: {exc}") from None
        if written is not None and written < 0:
            self.xruns += 1

    def close(self):
        for pcm in (self.capture, self.playback):
            if pcm is not None:
                try:
                    pcm.close()
                except Exception:                          # closing a vanished device may fail; nothing to do
                    pass
        self.capture = self.playback = None


#: Where device locks live when systemd gives no $RUNTIME_DIRECTORY: the unit's RuntimeDirectory,
#: so that a daemon started by hand and the service see the same locks.
LOCK_FOLDER = "/run/percepnet-edge"


def lock_folder():
    return Path(os.environ.get("RUNTIME_DIRECTORY") or LOCK_FOLDER)


def lock_file_name(device):
    """A file name for a PCM name: readable, and unique through a hash (``hw:1,0`` and ``hw_1_0`` differ)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", device)[:64]
    return f"device-{readable}-{hashlib.sha1(device.encode()).hexdigest()[:8]}.lock"


class DeviceLocks:
    """An exclusive ``flock`` per ALSA PCM name (capture and playback), held until :meth:`release`.

    The kernel drops the locks when the process ends, even by SIGKILL, so a
    crash never leaves a device locked. Each lock file holds its owner's pid
    for the refusal message. The lock is per PCM *name*: two names for one
    card (``hw:1`` and ``plughw:1``) are not detected here, but ALSA refuses a
    second open of a ``hw`` device anyway.
    """

    def __init__(self, audio_config, folder=None, say=print):
        self.devices = {audio_config.capture_device: "capture", audio_config.playback_device: "playback"}
        self.folder = Path(folder) if folder is not None else lock_folder()
        self.say = say
        self._fds = []

    def acquire(self):
        """Take every lock or none; raises DeviceError naming the device and the pid that holds it."""
        try:
            self.folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            self.say(f"warning: device locks are off: cannot create {self.folder} ({exc.strerror}); a second "
                     "daemon on the same devices would not be refused (run as root or as the service)")
            return self
        for device, kind in self.devices.items():
            try:
                self._take(device, kind)
            except BaseException:
                self.release()
                raise
        return self

    def _take(self, device, kind):
        path = self.folder / lock_file_name(device)
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except PermissionError:              # the service's file, seen by another user: read-only suffices
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.say(f"warning: {kind} device {device!r} is not locked: cannot open {path} ({exc.strerror}); "
                     "a second daemon on it would not be refused")
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DeviceError(f"{kind} device {device!r} is already used by another percepnet-edge (pid {holder}, "
                             f"lock {path}); stop that one first (e.g. systemctl stop percepnet-edge) or choose "
                             "another device") from None
        self._fds.append(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fchmod(fd, 0o644)                 # readable by others under UMask=0077, for their message
        except OSError:                          # opened read-only: the lock holds, the pid note is skipped
            pass

    def release(self):
        for fd in self._fds:
            os.close(fd)                         # closing drops the flock; the file stays (removing it would race)
        self._fds = []
