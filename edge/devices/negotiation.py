"""What an ALSA PCM agreed to, against what the daemon asked for.

pyalsaaudio configures a PCM with ALSA's *nearest* values and raises nothing when a device cannot do what was
asked: a microphone that records only in stereo opens for a mono request and delivers two channels, and a MEMS
microphone that speaks only S32_LE delivers 32-bit samples for an S16_LE request. Read as asked, such periods come
out twice as long, or as noise, and the daemon would take them for a stream that stopped and reopen it forever.
So every PCM is compared with the request as soon as it opens, and a difference is refused with the setting that
fixes it.

pyalsaaudio >= 0.10 reads the settings back (``PCM.info()``). 0.8 (Debian bookworm's python3-alsaaudio) has no
``info()``: each setter answers with the value ALSA took, which :class:`SetterAnswers` keeps, and it cannot set the
buffer size at all.
"""

import logging

from edge.devices.sound_devices import plug_name
from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.errors import DeviceError

log = logging.getLogger("percepnet-edge")
#: (device, periods) pairs whose short buffer has been logged: once each a process.
_SAID_SHORT_BUFFER = set()


class SetterAnswers:
    """A pyalsaaudio 0.8 PCM with an ``info()`` that returns what its setters answered.

    Every other attribute is the PCM's own. ``answers`` maps 'channels', 'rate', 'format_name' and 'period_size'
    to the values ALSA took (None where a setter answered nothing).
    """

    def __init__(self, pcm, answers):
        self._pcm, self._answers = pcm, {key: value for key, value in answers.items() if value is not None}
        self.read, self.write = getattr(pcm, "read", None), getattr(pcm, "write", None)   # per frame: no __getattr__

    def info(self):
        return dict(self._answers)

    def __getattr__(self, name):
        return getattr(self._pcm, name)


def format_name(alsaaudio, code):
    """The name of pyalsaaudio's format code (``PCM_FORMAT_S16_LE`` -> 'S16_LE'), or None when it has none."""
    if code is None:
        return None
    names = [name[len("PCM_FORMAT_"):] for name in dir(alsaaudio)
             if name.startswith("PCM_FORMAT_") and getattr(alsaaudio, name) == code]
    return names[0] if names else f"format code {code}"


def refuse_disagreement(pcm, role, device, setting, channels, sample_format, periods, readable_formats):
    """Raise DeviceError when ``pcm`` runs at another rate, channel count, sample format or period size than asked.

    ``role`` names the stream in the message ('capture device', 'echo reference'), ``setting`` the configuration
    key that names its device ('audio.capture_device'). A buffer of fewer periods than asked is not refused, only
    logged: it leaves less slack against scheduling delays, and some devices cannot do more. Settings that the
    installed pyalsaaudio cannot read back pass.
    """
    info = pcm.info() if hasattr(pcm, "info") else {}
    plug = plug_name(device)
    by_plug = (f"set {setting} to {plug!r}, which converts" if plug else
               "use a plughw: device or an ALSA 'plug' PCM, which converts")
    rate = info.get("rate", SAMPLE_RATE_HZ)
    if rate != SAMPLE_RATE_HZ:
        raise DeviceError(f"{role} {device!r} runs at {rate} Hz, not {SAMPLE_RATE_HZ}: {by_plug} the rate")
    got = info.get("channels", channels)
    if got != channels:
        fix = (f"set audio.capture_channels to {got} (audio.channel_mode then downmixes them or picks one), or "
               f"{by_plug}" if setting == "audio.capture_device" else by_plug)
        raise DeviceError(f"{role} {device!r} opened with {got} channel(s), not the {channels} asked for: {fix}")
    got = info.get("format_name", sample_format)
    if got != sample_format:
        if got not in readable_formats:
            fix = f"{by_plug} (the daemon reads {', '.join(readable_formats)})"
        elif setting.startswith("audio."):
            fix = f"set audio.sample_format to {got} (every device the daemon opens then uses it), or {by_plug}"
        else:                 # the echo devices follow audio.sample_format: the microphone may not take the other
            fix = (f"{by_plug}, or set audio.sample_format to {got} if the microphone and the output take it too "
                   "(every device the daemon opens uses it)")
        raise DeviceError(f"{role} {device!r} opened with {got} samples, not the {sample_format} asked for: {fix}")
    got = info.get("period_size", HOP_SAMPLES)
    if got != HOP_SAMPLES:
        raise DeviceError(f"{role} {device!r} runs with {got}-frame periods, not {HOP_SAMPLES}: use a device that "
                          f"accepts 10 ms periods (a plughw: device, or a dsnoop/dmix PCM with period_size "
                          f"{HOP_SAMPLES})")
    got = info.get("periods", periods)
    if got < periods and (device, got) not in _SAID_SHORT_BUFFER:      # once a device: a reopen takes it again
        _SAID_SHORT_BUFFER.add((device, got))
        log.warning(f"{role} {device!r} took a buffer of {got} periods, fewer than the {periods} of "
                    f"audio.buffer_periods: {got * HOP_SAMPLES * 1000 // SAMPLE_RATE_HZ} ms of slack against "
                    "scheduling delays (the device's limit; a dsnoop or dmix PCM's buffer_size sets it)")
