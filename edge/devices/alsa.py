"""ALSA capture and playback through pyalsaaudio, with sample-format conversion.

:class:`AlsaDuplex` reads one 480-frame period as float mono (channel picked
or downmixed) and writes one float period back, converting to and from
S16_LE, S32_LE or FLOAT_LE. Playback starts with ``audio.playback_prefill_periods``
of silence queued, so that a paced device (a sound card, the loopback, PipeWire)
does not run dry while the next period is captured and enhanced. It recovers
from xruns (an -EPIPE read or write is counted and the stream re-prepared; an
underrun queues the prefill again) and raises :class:`~edge.errors.DeviceError`,
worded by :func:`edge.devices.sound_devices.explain`, when a device is missing, busy or
at the wrong rate, which the daemon answers by reopening with backoff.

:class:`DeviceLocks` keeps two daemons off one device: an exclusive lock file
per PCM name, held for the daemon's life.
"""

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
import threading
from pathlib import Path

import numpy as np

from edge.devices import negotiation, pipewire, sound_devices
from edge.dsp.constants import HOP_SAMPLES, LATENCY_SAMPLES, SAMPLE_RATE_HZ
from edge.errors import DeviceError, MissingDependencyError

log = logging.getLogger("percepnet-edge")

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
        low, high = -1.0, 1.0
        np.copyto(out_buffer, frame)
    else:
        low, high = -scale, scale - 1
        np.multiply(frame, scale, out=out_buffer)
        np.rint(out_buffer, out=out_buffer)
    # Clipped by two ufuncs: np.clip's Python wrapper costs more than both.
    np.maximum(out_buffer, low, out=out_buffer)
    np.minimum(out_buffer, high, out=out_buffer)
    return out_buffer.astype(dtype).tobytes()


def open_pcm(alsaaudio, kind, device, channels, format_code, periods):
    """A PCM at 48 kHz with 480-frame periods, with pyalsaaudio >= 0.10's keywords or older ones' setters.

    ALSA takes its nearest values where a device cannot do what was asked, without an error:
    :func:`edge.devices.negotiation.refuse_disagreement` compares them with the request. Debian bookworm's
    python3-alsaaudio is 0.8.4, whose PCM() takes only (type, mode, device) and has no ``info()`` (0.9 takes no
    ``periods``): the parameters are then set one by one, their answers kept as the PCM's ``info()``, and the
    buffer is the 4 periods those versions ask for (said once in the log when ``periods`` asks for another).
    """
    global _SAID_FOUR_PERIODS
    try:
        return alsaaudio.PCM(kind, alsaaudio.PCM_NORMAL, rate=SAMPLE_RATE_HZ, channels=channels,
                             format=format_code, periodsize=HOP_SAMPLES, periods=periods, device=device)
    except TypeError:
        pcm = alsaaudio.PCM(kind, alsaaudio.PCM_NORMAL, device=device)
        # Each setter applies every setting again, in ALSA's order (format, channels, rate, period), and answers
        # with what is in force: set in that order, a later call cannot move what an earlier one answered.
        answers = {"format_name": negotiation.format_name(alsaaudio, pcm.setformat(format_code))}
        answers["channels"] = pcm.setchannels(channels)
        answers["rate"] = pcm.setrate(SAMPLE_RATE_HZ)
        answers["period_size"] = pcm.setperiodsize(HOP_SAMPLES)
        if periods != OLD_PYALSAAUDIO_PERIODS and not _SAID_FOUR_PERIODS:
            _SAID_FOUR_PERIODS = True
            log.warning(f"pyalsaaudio older than 0.10 asks ALSA for {OLD_PYALSAAUDIO_PERIODS} periods of buffer and "
                        f"cannot be told otherwise: audio.buffer_periods ({periods}) is not applied; "
                        "pip install 'pyalsaaudio>=0.10' applies it")
        return negotiation.SetterAnswers(pcm, answers)


#: The buffer, in periods, that pyalsaaudio before 0.10 asks for (0.8.4's alsapcm_setup; 0.9 asks near it).
OLD_PYALSAAUDIO_PERIODS = 4
#: open_pcm() has logged that an old pyalsaaudio leaves audio.buffer_periods unapplied (once a process).
_SAID_FOUR_PERIODS = False


def output_delay_samples(audio_config):
    """Samples from a captured sample to its enhanced copy in the playback stream: the algorithmic
    latency plus the prefill (device buffering comes on top on real devices)."""
    return LATENCY_SAMPLES + audio_config.playback_prefill_periods * HOP_SAMPLES


#: PCMs open one at a time: the echo reference reopens in a background thread and sets PIPEWIRE_ALSA for its own
#: streams, which pipewire-alsa reads while a PCM opens, so a microphone opened at the same moment would take the
#: reference's properties (a capture from a sink's monitor).
_OPENING = threading.Lock()
#: How long an open waits for another one in progress before it fails (and the daemon retries it). An open takes
#: milliseconds. open() takes the lock up to four times (capture, playback, reference, loudspeaker), and asks pw-dump
#: twice (edge.devices.pipewire): at most 2 s + 2 x 0.5 s between two watchdog pings (WatchdogSec=5).
OPEN_WAIT_S = 0.5


@contextlib.contextmanager
def _one_open_at_a_time(what):
    """Hold the PCM-open lock for the block; DeviceError when another open has held it for OPEN_WAIT_S."""
    if not _OPENING.acquire(timeout=OPEN_WAIT_S):
        raise DeviceError(f"{what}: another sound device open has not returned in {OPEN_WAIT_S:g} s (a stalled "
                          "ALSA device or PipeWire server, or an echo reference still reopening); the open is retried")
    try:
        yield
    finally:
        _OPENING.release()


@contextlib.contextmanager
def _pipewire_environment(make):
    """PIPEWIRE_ALSA = ``make(its current value)`` while a PCM opens (pipewire-alsa reads it then), restored after.
    Callers hold :func:`_one_open_at_a_time` around it and the open, so no other open sees it."""
    before = os.environ.get(pipewire.ENV)
    os.environ[pipewire.ENV] = make(before)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(pipewire.ENV, None)
        else:
            os.environ[pipewire.ENV] = before


def _pinned_stream(device):
    """PIPEWIRE_ALSA with node.dont-reconnect while a PCM that names a PipeWire node opens (see
    :func:`edge.devices.pipewire.pinned_environment`); a default-following device ("pipewire") is left as it is."""
    if pipewire.target_node(device) is None:
        return contextlib.nullcontext()
    return _pipewire_environment(pipewire.pinned_environment)


def _side_stream(device, role, capture_sink=False):
    """PIPEWIRE_ALSA for the echo path's own streams, set only while one opens."""
    if not pipewire.uses_pipewire(device):
        return contextlib.nullcontext()
    return _pipewire_environment(lambda current: pipewire.side_stream_environment(current, role, capture_sink))


#: The echo path is closed (and retried by the daemon) after this many periods lost in a row on its reference or
#: its forwarding (0.5 s): a burst of xruns is shorter; a stream that nothing serves any more never recovers.
DEAD_AFTER_PERIODS = 50
#: A reference that has not delivered its first period this many periods after it opened (5 s; a PipeWire
#: monitor took about ten) is closed and retried like a dead one.
START_WITHIN_PERIODS = 500
_NOTHING_SERVES = ": nothing serves its stream (unplugged, its PipeWire node gone, or the device stalled)"
#: How long close() waits for a background reopen of the reference before leaving it to close its own PCMs.
RETRY_JOIN_TIMEOUT_S = 2.0


def _close_quietly(pcm):
    if pcm is not None:
        try:
            pcm.close()
        except Exception:                                  # a vanished device may fail to close; nothing to do
            pass


class AlsaDuplex:
    """Capture + playback PCMs at 48 kHz, 480-frame periods; optionally a reference capture PCM.

    The reference (``reference_device``: what the loudspeaker plays, for the echo
    canceller) is read right after each microphone period into :attr:`reference_frame`.
    It is optional by design: when it does not open, or fails or runs dry mid-run,
    :attr:`reference_frame` is None, :attr:`reference_problem` says why, and the
    microphone path goes on (the canceller then passes the microphone through and
    says so). It is tried again at every reopen, and whenever the daemon calls
    :meth:`retry_reference` (with backoff, while the microphone keeps running): in a
    background thread, so that the audio thread never waits on an open; the next
    :meth:`read` takes over what opened.
    """

    def __init__(self, audio_config, proc="/proc", reference_device=None, speaker_device=None):
        self.config = audio_config
        self.proc = proc                       # where sound_devices looks for cards and holders (tests: a fake tree)
        self.reference_device = reference_device
        self.speaker_device = speaker_device   # the daemon plays the reference here (the real loudspeaker)
        self.xruns = 0
        self.reference_xruns = 0               # periods the reference lost once it had started delivering
        self._reference_started = False
        sample_bytes = np.dtype(_DTYPES[audio_config.sample_format][0]).itemsize
        self._capture_frame_bytes = audio_config.capture_channels * sample_bytes
        self._reference_period_bytes = HOP_SAMPLES * sample_bytes       # mono
        self._frame = np.zeros(HOP_SAMPLES)
        self._reference_buffer = np.zeros(HOP_SAMPLES)
        self._encode_buffer = np.zeros(HOP_SAMPLES)
        self._silence = b""
        self.capture = self.playback = self.reference = self.speaker = None
        self.reference_frame = None
        self.reference_problem = None
        self._retry = None                     # the background thread of retry_reference()
        self._reopened = None                  # what it opened: (reference, speaker, problem), for read() to adopt
        self._abandoned = False                # close() stopped waiting for that thread
        self._reference_lost_in_a_row = self._forward_lost_in_a_row = self._capture_lost_in_a_row = 0
        self._playback_lost_in_a_row = 0
        # Called between the steps of open() that may each wait for PipeWire (pw-dump, PW_DUMP_TIMEOUT_S) and for
        # another open (OPEN_WAIT_S per PCM): the daemon pings systemd's watchdog there (WatchdogSec=5).
        self.keepalive = lambda: None

    def open(self):
        """Open both PCMs; raises DeviceError naming the device that failed and ALSA's reason."""
        try:
            import alsaaudio  # noqa: F401 (whether it imports; open_one uses it)
        except ImportError as exc:
            raise MissingDependencyError(f"ALSA needs pyalsaaudio, which is not importable ({exc}): install "
                                         "python3-alsaaudio (Debian) or pip install 'percepnet-edge[edge]'") from None
        config = self.config
        self.close()
        self._capture_lost_in_a_row = self._playback_lost_in_a_row = 0
        pipewire.check_targets(config)          # a missing node would be silently replaced by the default one
        for kind in ("capture", "playback"):
            self.open_one(kind)
        self._silence = encode(np.zeros(HOP_SAMPLES), config.sample_format, self._encode_buffer)
        self._prefill()
        if self.reference_device is not None:
            self.keepalive()
            self.open_reference()

    def open_reference(self):
        """Open the reference capture PCM (mono, the audio section's sample format); a failure is recorded."""
        self._adopt_reference(*self._open_reference_pcms())

    def retry_reference(self):
        """Try a missing reference (and its forwarding) again in a background thread; the next :meth:`read`
        takes over what opened, or records why not. False when nothing is missing or a try is still running."""
        if self.reference_device is None or self.reference is not None or self._reopened is not None or (
                self._retry is not None and self._retry.is_alive()):
            return False
        self._abandoned = False

        def attempt():
            try:
                opened = self._open_reference_pcms(start=True)
            except Exception as exc:                       # anything else: a reason to log, not a dead thread
                opened = (None, None, f"echo reference {self.reference_device!r}: reopening failed "
                                      f"({type(exc).__name__}: {exc})")
            if self._abandoned:                            # close() gave up waiting: nobody will take these over
                for pcm in opened[:2]:
                    _close_quietly(pcm)
                return
            self._reopened = opened

        self._retry = threading.Thread(target=attempt, name="percepnet-reference-retry", daemon=True)
        self._retry.start()
        return True

    def _open_reference_pcms(self, start=False):
        """(reference, speaker, None) opened, or (None, None, why): touches none of this object's state, so it can
        run beside the audio thread. ``start``: read one period, so that the reference's stream runs and the audio
        thread's first read of it does not wait a period."""
        import alsaaudio
        config = self.config
        sample_format = getattr(alsaaudio, f"PCM_FORMAT_{config.sample_format}")
        try:                                 # a missing node: opening would block, or link to another node
            missing = pipewire.missing_target({"echo reference": self.reference_device,
                                               "loudspeaker": self.speaker_device})
        except (pipewire.PipeWireError, MissingDependencyError) as exc:
            missing = f"echo reference {self.reference_device!r}: {exc}"
        if missing is not None:
            return None, None, missing
        try:
            with _one_open_at_a_time(f"echo reference {self.reference_device!r}"), \
                    _side_stream(self.reference_device, "reference", capture_sink=True):
                reference = open_pcm(alsaaudio, alsaaudio.PCM_CAPTURE, self.reference_device, 1, sample_format,
                                     config.buffer_periods)
        except alsaaudio.ALSAAudioError as exc:
            return None, None, sound_devices.explain("capture", self.reference_device, str(exc), self.proc)
        except DeviceError as exc:
            return None, None, str(exc)
        try:
            self._refuse_disagreement(reference, "echo reference", self.reference_device, "echo.reference_device", 1)
        except DeviceError as exc:
            _close_quietly(reference)
            return None, None, str(exc)
        speaker = None
        if self.speaker_device is not None:
            try:
                with _one_open_at_a_time(f"loudspeaker {self.speaker_device!r}"), \
                        _side_stream(self.speaker_device, "forward"):
                    speaker = open_pcm(alsaaudio, alsaaudio.PCM_PLAYBACK, self.speaker_device, 1, sample_format,
                                       config.buffer_periods)
            except alsaaudio.ALSAAudioError as exc:
                _close_quietly(reference)
                return None, None, sound_devices.explain("playback", self.speaker_device, str(exc), self.proc)
            except DeviceError as exc:
                _close_quietly(reference)
                return None, None, str(exc)
            try:
                self._refuse_disagreement(speaker, "loudspeaker", self.speaker_device, "echo.speaker_device", 1)
            except DeviceError as exc:
                for pcm in (reference, speaker):
                    _close_quietly(pcm)
                return None, None, str(exc)
        if start:
            try:
                reference.read()
            except alsaaudio.ALSAAudioError as exc:
                for pcm in (reference, speaker):
                    _close_quietly(pcm)
                return None, None, f"echo reference {self.reference_device!r} failed: {exc}"
        return reference, speaker, None

    def _adopt_reference(self, reference, speaker, problem):
        """Take over what :meth:`_open_reference_pcms` opened, or record why it could not."""
        self._reference_started = False
        if problem is not None:
            self._drop_reference(problem)
            return
        self.reference, self.speaker, self.reference_problem = reference, speaker, None
        self._reference_lost_in_a_row = self._forward_lost_in_a_row = 0
        self._silence = encode(np.zeros(HOP_SAMPLES), self.config.sample_format, self._encode_buffer)
        if speaker is not None:
            for _ in range(self.config.playback_prefill_periods):     # the same slack as the microphone's output
                self._forward(self._silence)

    def _drop_reference(self, why):
        for pcm in (self.reference, self.speaker):
            _close_quietly(pcm)
        self.reference, self.speaker, self.reference_frame = None, None, None
        self.reference_problem = f"{why}; echo cancellation is off until the reference is back"

    def read_reference(self):
        import alsaaudio
        try:
            length, data = self.reference.read()
        except alsaaudio.ALSAAudioError as exc:
            self._drop_reference(f"echo reference {self.reference_device!r} failed: {exc}")
            return None
        if length < 0 or len(data) != self._reference_period_bytes:
            # this period has no reference; the next may. Before its first period a stream is starting (a
            # PipeWire monitor took about ten periods to deliver, measured): not a loss to report
            self.reference_xruns += self._reference_started
            self._reference_lost_in_a_row += 1          # before its first period too: a stream that never starts
            if self.speaker is not None:
                self._forward(self._silence)               # keep the loudspeaker's stream fed
            self._drop_if_dead()
            return None
        self._reference_started = True
        self._reference_lost_in_a_row = 0
        if self.speaker is not None:
            self._forward(data)                            # exactly what the canceller gets as its reference
        if self._drop_if_dead():
            return None
        return decode(data, self.config.sample_format, 1, "downmix", 0, self._reference_buffer)

    def _forward(self, data):
        import alsaaudio
        try:
            if self._forward_once(data):
                self._forward_lost_in_a_row = 0
                return
            self.reference_xruns += 1                      # an underrun: re-prepared; refill, as write() does
            for _ in range(self.config.playback_prefill_periods):
                self._forward_once(self._silence)
            refilled = self._forward_once(data)
            self._forward_lost_in_a_row = 0 if refilled else self._forward_lost_in_a_row + 1
        except alsaaudio.ALSAAudioError as exc:
            self._drop_reference(f"loudspeaker {self.speaker_device!r} failed: {exc}")

    def _forward_once(self, data):
        """False on an underrun (pyalsaaudio >= 0.9: a negative count; 0.8: EPIPE raised); other errors raise."""
        import alsaaudio
        try:
            written = self.speaker.write(data)
        except alsaaudio.ALSAAudioError as exc:
            if getattr(exc, "errno", None) == errno.EPIPE or "Broken pipe" in str(exc):
                return False
            raise
        return written is None or written >= 0

    def _drop_if_dead(self):
        """Close the echo path when its reference or its forwarding has lost DEAD_AFTER_PERIODS in a row, or the
        reference has not started START_WITHIN_PERIODS after it opened: a stream
        that nothing serves any more (on PipeWire: its node is gone, and the stream is not moved to another, which
        for the forwarded copy could be the "Echo-cancelled speaker" itself) is reopened by the daemon's retries
        when its node is back, where an open stream would stay orphaned. True when it was closed."""
        if self.reference is None:                         # _forward may have dropped it already
            return True
        started, lost = self._reference_started, self._reference_lost_in_a_row
        if not started and lost >= START_WITHIN_PERIODS:
            why = (f"echo reference {self.reference_device!r} delivered nothing in the "
                   f"{START_WITHIN_PERIODS * HOP_SAMPLES // SAMPLE_RATE_HZ} s after it opened (a stream that never "
                   "started: its device or PipeWire node not running)")
        elif started and lost >= DEAD_AFTER_PERIODS:
            why = f"echo reference {self.reference_device!r} lost {lost} periods in a row{_NOTHING_SERVES}"
        elif self._forward_lost_in_a_row >= DEAD_AFTER_PERIODS:
            why = (f"loudspeaker {self.speaker_device!r} lost {self._forward_lost_in_a_row} periods in a row"
                   f"{_NOTHING_SERVES}")
        else:
            return False
        self._drop_reference(why)
        return True

    def open_one(self, kind):
        """Open the capture or the playback PCM; on failure close both and raise the explained DeviceError."""
        import alsaaudio
        config = self.config
        device = getattr(config, f"{kind}_device")
        channels = config.capture_channels if kind == "capture" else 1
        try:
            with _one_open_at_a_time(f"{kind} device {device!r}"), _pinned_stream(device):
                pcm = open_pcm(alsaaudio, getattr(alsaaudio, f"PCM_{kind.upper()}"), device, channels,
                               getattr(alsaaudio, f"PCM_FORMAT_{config.sample_format}"), config.buffer_periods)
        except alsaaudio.ALSAAudioError as exc:
            self.close()
            raise DeviceError(sound_devices.explain(kind, device, str(exc), self.proc)) from None
        except DeviceError:                                  # another open held the lock too long
            self.close()
            raise
        setattr(self, kind, pcm)
        self._check_negotiated((kind,))

    def _prefill(self):
        """Queue the configured periods of silence ahead of the next output period."""
        for _ in range(self.config.playback_prefill_periods):
            self._write_bytes(self._silence)

    def _refuse_disagreement(self, pcm, role, device, setting, channels):
        """:func:`edge.devices.negotiation.refuse_disagreement` with this duplex's format and buffer."""
        negotiation.refuse_disagreement(pcm, role, device, setting, channels, self.config.sample_format,
                                        self.config.buffer_periods, tuple(_DTYPES))

    def _check_negotiated(self, kinds=("capture", "playback")):
        """Refuse a device that silently took another rate, channel count, format or period than asked (we never
        resample or convert on the fly); both PCMs are closed first."""
        config = self.config
        for name in kinds:
            try:
                self._refuse_disagreement(getattr(self, name), f"{name} device", getattr(config, f"{name}_device"),
                                          f"audio.{name}_device", config.capture_channels if name == "capture" else 1)
            except DeviceError:
                self.close()
                raise

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
                self._capture_lost_in_a_row += 1
                if self._capture_lost_in_a_row >= DEAD_AFTER_PERIODS:
                    # an xrun is followed by data; a stream that nothing serves any more (seen when a PipeWire node
                    # went) returns nothing at once, forever: a busy loop, unless it is reopened
                    raise DeviceError(f"capture lost {self._capture_lost_in_a_row} periods in a row: the stream "
                                      "stopped (the device unplugged, or its PipeWire node gone)")
                return None
            raise DeviceError(f"capture returned error {length}")
        self._capture_lost_in_a_row = 0
        c = self.config
        if len(data) != HOP_SAMPLES * self._capture_frame_bytes:
            # a stream that stopped under us (seen when a PipeWire node went: 256 of 480 frames, then nothing)
            raise DeviceError(f"capture delivered {len(data) // self._capture_frame_bytes} of {HOP_SAMPLES} frames: "
                              "the stream stopped (the device unplugged, or its PipeWire node gone)")
        frame = decode(data, c.sample_format, c.capture_channels, c.channel_mode, c.channel_index, self._frame)
        if self._reopened is not None:                     # retry_reference() finished: take its result over
            reopened, self._reopened = self._reopened, None
            self._adopt_reference(*reopened)
        if self.reference is not None:
            self.reference_frame = self.read_reference()
        return frame

    def write(self, frame):
        """Write one float period; an underrun is counted, the prefill queued again and the period written."""
        data = encode(frame, self.config.sample_format, self._encode_buffer)
        written = self._write_bytes(data)
        if not written:
            self.xruns += 1
            self._prefill()
            written = self._write_bytes(data)
        # refused even after the refill: nothing serves the stream
        self._playback_lost_in_a_row = 0 if written else self._playback_lost_in_a_row + 1
        if self._playback_lost_in_a_row >= DEAD_AFTER_PERIODS:
            raise DeviceError(f"playback lost {self._playback_lost_in_a_row} periods in a row: the stream stopped "
                              "(the device unplugged, or its PipeWire node gone)")

    def _write_bytes(self, data):
        """False on an underrun (the stream is re-prepared: pyalsaaudio does it, or 0.8's error says it)."""
        import alsaaudio
        try:
            written = self.playback.write(data)
        except alsaaudio.ALSAAudioError as exc:
            if getattr(exc, "errno", None) == errno.EPIPE or "Broken pipe" in str(exc):
                return False
            raise DeviceError(f"playback failed: {exc}") from None
        return written is None or written >= 0

    def close(self):
        if self._retry is not None:                        # an open in flight finishes first: nothing leaks
            self._retry.join(RETRY_JOIN_TIMEOUT_S)
            if self._retry.is_alive():                     # stuck in an open: it closes what it opens itself
                self._abandoned = True
            self._retry = None
        if self._reopened is not None:
            for pcm in self._reopened[:2]:
                _close_quietly(pcm)
            self._reopened = None
        for pcm in (self.capture, self.playback, self.reference, self.speaker):
            _close_quietly(pcm)
        self.capture = self.playback = self.reference = self.speaker = None
        self.reference_frame = None


#: Where device locks live when systemd gives no $RUNTIME_DIRECTORY: the unit's RuntimeDirectory,
#: so that a daemon started by hand and the service see the same locks.
LOCK_FOLDER = "/run/percepnet-edge"


def lock_folder():
    return Path(os.environ.get("RUNTIME_DIRECTORY") or LOCK_FOLDER)


def lock_file_name(device):
    """A file name for a PCM name: readable, and unique through a hash (``hw:1,0`` and ``hw_1_0`` differ)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", device)[:64]
    return f"device-{readable}-{hashlib.sha1(device.encode()).hexdigest()[:8]}.lock"


def lock_holder_pid(fd, proc="/proc"):
    """The pid holding a flock on the file open as ``fd``, from the kernel's /proc/locks (None if not listed).

    The pid written into a lock file can be stale: a root `check` left root-owned files that the service could
    not write its pid into, so a refusal named the long-dead check. The kernel's table is always right.
    """
    info = os.fstat(fd)
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        lines = Path(proc, "locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters are marked "->" and skipped
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].isdigit():
            return int(fields[4])
    return None


class DeviceLocks:
    """An exclusive ``flock`` per ALSA PCM name (capture and playback), held until :meth:`release`.

    The kernel drops the locks when the process ends, even by SIGKILL, so a
    crash never leaves a device locked. A refusal names the holder as the
    kernel's lock table gives it (the pid the holder wrote in the file is only a
    fallback). The lock is per PCM *name*: two names for one card (``hw:1`` and
    ``plughw:1``) are not detected here, but ALSA refuses a second open of a
    ``hw`` device anyway.

    Locks fail closed: a lock path that is a symbolic link or not a regular file
    (planted by another member of group ``audio`` in the shared folder) is never
    followed and refuses the start, naming the path to remove. ``create=False``
    (``check``) creates no folder and no file, writes nothing, and only takes
    the locks that exist, so a root ``check`` leaves nothing root-owned behind.
    """

    def __init__(self, audio_config, folder=None, say=print, create=True, proc="/proc"):
        self.devices = {audio_config.capture_device: "capture", audio_config.playback_device: "playback"}
        self.folder = Path(folder) if folder is not None else lock_folder()
        self.say, self.create, self.proc = say, create, proc
        self._fds = []

    def acquire(self):
        """Take every lock or none; raises DeviceError naming the device and the pid that holds it."""
        if not self.create and not self.folder.is_dir():
            return self                          # nobody holds a lock in a folder that does not exist
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

    def _open(self, path):
        """The lock file open without following a symlink, or None (check: no such file). Raises OSError."""
        flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        if not self.create:
            try:
                return os.open(path, os.O_RDONLY | flags)
            except FileNotFoundError:
                return None
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except PermissionError:                  # another user's file: read-only suffices for flock
            return os.open(path, os.O_RDONLY | flags)

    def _take(self, device, kind):
        path = self.folder / lock_file_name(device)
        try:
            fd = self._open(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DeviceError(self._planted(kind, device, path, "a symbolic link")) from None
            self.say(f"warning: {kind} device {device!r} is not locked: cannot open {path} ({exc.strerror}); "
                     "a second daemon on it would not be refused")
            return
        if fd is None:
            return
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise DeviceError(self._planted(kind, device, path, "not a regular file"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder_pid(fd, self.proc)
            if holder is None:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DeviceError(f"{kind} device {device!r} is already used by another percepnet-edge (pid {holder}, "
                             f"lock {path}); stop that one first (e.g. systemctl stop percepnet-edge) or choose "
                             "another device") from None
        self._fds.append(fd)
        if not self.create:
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fchmod(fd, 0o644)                 # readable by others under UMask=0077, for their message
        except OSError:                          # opened read-only: the lock holds, the pid note is skipped
            pass

    @staticmethod
    def _planted(kind, device, path, what):
        try:
            owner = f", owned by uid {os.lstat(path).st_uid}"
        except OSError:
            owner = ""
        return (f"{kind} device {device!r}: its lock {path} is {what}{owner}; a lock is never followed, so the "
                f"device cannot be locked and the daemon does not start. Remove it (sudo rm {path}) and start again")

    def release(self):
        for fd in self._fds:
            os.close(fd)                         # closing drops the flock; the file stays (removing it would race)
        self._fds = []
