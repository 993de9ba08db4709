"""Daemon configuration: YAML validated into typed settings at load time.

Every error names the key, the bad value and what is allowed (and, from
:func:`load`, the file); unknown keys are errors. A model path given in the
file is resolved against the file's folder; without one, the shipped model is
used (:data:`edge.model.model_meta.DEFAULT_MODEL_PATH`) wherever the file lives.
"""

import ipaddress
import os
import reprlib
import select
import stat
import time
import unicodedata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Optional, Tuple

import yaml

from edge.dsp.enhancer import EnhancerSettings
from edge.dsp.comfort import LEVEL_DB_RANGE as COMFORT_DB_RANGE
from edge.dsp.gains import GAIN_EXPONENT_RANGE
from edge.errors import ConfigError
from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.daemon.telemetry import TelemetryConfig

_DSP_DEFAULTS = EnhancerSettings()

SAMPLE_FORMATS = ("S16_LE", "S32_LE", "FLOAT_LE")
#: Where configs/default.yaml lives: the built-in defaults resolve the model path from here.
DEFAULTS_FOLDER = Path(__file__).resolve().parents[2] / "configs"
CHANNEL_MODES = ("downmix", "pick")
#: A config is a few hundred bytes; anything this big is the wrong file.
MAX_CONFIG_BYTES = 64 * 1024
#: YAML nodes after anchors and aliases are expanded: the full default.yaml has about 100. A 429-byte file of
#: nested aliases expands to 10^9 (the "billion laughs"); counting before constructing keeps it a message.
MAX_CONFIG_NODES = 10_000
#: Nesting depth of the YAML (a config is 3 deep: section, key, list). PyYAML composes recursively, so
#: 1,000 nested brackets were a RecursionError; the depth is checked while composing.
MAX_CONFIG_DEPTH = 20
#: How long a config given as a FIFO may take to arrive (a reload thread never waits longer).
CONFIG_FIFO_WAIT_S = 10.0
#: Longest string value (a device name or a path): longer is a pasted blob, not a setting.
MAX_STRING_CHARS = 4096
#: CPU numbers a cpu_set_t can hold.
MAX_CPUS = 1024
OVERRUN_POLICIES = ("bypass", "hold", "drop-model", "off")


@dataclass(frozen=True)
class AudioConfig:
    capture_device: str = "default"
    playback_device: str = "default"
    sample_format: str = "S16_LE"
    capture_channels: int = 1
    channel_mode: str = "downmix"
    channel_index: int = 0
    buffer_periods: int = 4
    playback_prefill_periods: int = 2


@dataclass(frozen=True)
class ModelConfig:
    path: str = os.path.relpath(DEFAULT_MODEL_PATH, DEFAULTS_FOLDER)    # as configs/default.yaml writes it
    threads: int = 1
    xnnpack: bool = True


@dataclass(frozen=True)
class DspConfig:
    max_attenuation_db: float = _DSP_DEFAULTS.max_attenuation_db
    postfilter_beta: float = _DSP_DEFAULTS.postfilter_beta
    gain_release_per_frame: Optional[float] = _DSP_DEFAULTS.gain_release_per_frame
    highpass: bool = True
    lookahead_frames: int = 2
    gain_exponent: float = _DSP_DEFAULTS.gain_exponent
    comfort_noise_db: Optional[float] = _DSP_DEFAULTS.comfort_noise_db


@dataclass(frozen=True)
class RealtimeConfig:
    deadline_ms: float = 10.0
    overrun_policy: str = "hold"
    drop_model_frames: int = 100
    sched_fifo_priority: Optional[int] = None
    cpu_affinity: Optional[Tuple[int, ...]] = None
    device_retry_max_s: float = 5.0


@dataclass(frozen=True)
class EchoConfig:
    enabled: bool = False
    reference_device: Optional[str] = None
    speaker_device: Optional[str] = None
    tail_ms: float = 150.0
    delay_search_ms: float = 250.0
    residual_suppression: bool = True
    drift_compensation: bool = True
    comfort_noise_db: Optional[float] = None


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dsp: DspConfig = field(default_factory=DspConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    echo: EchoConfig = field(default_factory=EchoConfig)
    source: str = "<defaults>"

    def model_path(self):
        """The model file: relative paths count from the config file's folder (configs/ for the defaults)."""
        path = Path(self.model.path)
        if path.is_absolute():
            return path
        base = DEFAULTS_FOLDER if self.source == "<defaults>" else Path(self.source).parent
        return (base / path).resolve()

    def echo_settings(self):
        """The canceller's settings (:class:`edge.echo.EchoSettings`) from the ``echo`` section."""
        from edge.echo import EchoSettings
        echo = self.echo
        return EchoSettings(tail_ms=echo.tail_ms, delay_search_ms=echo.delay_search_ms,
                            residual_suppression=echo.residual_suppression,
                            drift_compensation=echo.drift_compensation)

    def enhancer_settings(self):
        from edge.dsp import EnhancerSettings
        return EnhancerSettings(self.dsp.max_attenuation_db, self.dsp.postfilter_beta,
                                self.dsp.gain_release_per_frame, self.dsp.highpass, self.dsp.gain_exponent,
                                self.dsp.comfort_noise_db, self.echo.comfort_noise_db)


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 8
_SHOWN.maxlevel = 3


def shown(value):
    """A value as a message shows it: repr, cut to a few dozen characters and a few items, however big it is.

    reprlib stops at its limits instead of formatting the whole value and cutting afterwards: the whole
    repr of an aliased YAML list was 10^9 items, which killed the daemon it was meant to inform.
    """
    return _SHOWN.repr(value)


def _key_shown(key):
    """A key as the message names it: a plain short string as is, anything else (a number, a blob) via shown()."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 64 else shown(key)


def _check(condition, key, value, allowed):
    if not condition:
        raise ConfigError(f"{key}: {shown(value)} is not allowed; expected {allowed}")


def _string_problem(text):
    """Why a string cannot be a setting (None if it can): too long, a control character (NUL) or a lone surrogate."""
    if len(text) > MAX_STRING_CHARS:
        return f"a string of at most {MAX_STRING_CHARS} characters"
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cs"):        # NUL, newline, escape, or "\ud800"
            return (f"text without control characters or lone surrogates (found U+{ord(char):04X}); device names "
                    "and paths are printable text")
    return None


def _section(cls, name, raw):
    if raw is None:
        raw = {}
    _check(isinstance(raw, dict), name, raw, "a mapping of keys")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known), key=str)          # keys may be numbers too
    if unknown:
        raise ConfigError(f"{name}.{_key_shown(unknown[0])}: unknown key; allowed keys in {name}: {', '.join(known)}")
    values = {}
    for key, value in raw.items():
        default = known[key].default
        full = f"{name}.{key}"
        if value is None and "Optional" in str(known[key].type):
            values[key] = None
            continue
        if isinstance(default, bool):
            _check(isinstance(value, bool), full, value, "true or false")
        elif isinstance(default, int) and not isinstance(default, bool):
            _check(isinstance(value, int) and not isinstance(value, bool), full, value, "an integer")
        elif isinstance(default, float):
            _check(isinstance(value, (int, float)) and not isinstance(value, bool), full, value, "a number")
            try:
                value = float(value)
            except OverflowError:              # an integer of hundreds of digits: no setting's range holds it
                raise ConfigError(f"{full}: an integer of {len(str(value))} digits is not allowed; expected a "
                                  "number in the range configs/default.yaml documents") from None
        elif isinstance(default, str):
            _check(isinstance(value, str), full, value,
                   "a string" + (" (YAML reads an unquoted on, off, yes or no as true or false: quote it, "
                                 "'off')" if isinstance(value, bool) else ""))
        if isinstance(value, str):
            problem = _string_problem(value)
            _check(problem is None, full, value, problem)
        values[key] = value
    return cls(**values)


def _check_comfort_noise_db(key, value):
    low, high = COMFORT_DB_RANGE
    _check(value is None or (_is_number(value) and low <= value <= high), key, value,
           f"{low:g}..{high:g} dB relative to the input's background, or null (off)")


def _validate(config):
    audio, dsp, realtime, model = config.audio, config.dsp, config.realtime, config.model
    _check(audio.sample_format in SAMPLE_FORMATS, "audio.sample_format", audio.sample_format,
           f"one of {', '.join(SAMPLE_FORMATS)}")
    _check(audio.channel_mode in CHANNEL_MODES, "audio.channel_mode", audio.channel_mode,
           f"one of {', '.join(CHANNEL_MODES)}")
    _check(1 <= audio.capture_channels <= 32, "audio.capture_channels", audio.capture_channels, "1..32")
    _check(0 <= audio.channel_index < audio.capture_channels, "audio.channel_index", audio.channel_index,
           f"0..{audio.capture_channels - 1} (below audio.capture_channels)")
    _check(2 <= audio.buffer_periods <= 32, "audio.buffer_periods", audio.buffer_periods, "2..32")
    _check(0 <= audio.playback_prefill_periods < audio.buffer_periods, "audio.playback_prefill_periods",
           audio.playback_prefill_periods, f"0..{audio.buffer_periods - 1} (below audio.buffer_periods)")
    # an empty name is not a default: '' opens no PCM (and as a model path it is the config's own folder)
    for key, value in (("audio.capture_device", audio.capture_device), ("audio.playback_device", audio.playback_device),
                       ("model.path", model.path)):
        _check(value.strip() != "", key, value, "a non-empty name (configs/default.yaml gives the default)")
    _check(1 <= model.threads <= 8, "model.threads", model.threads, "1..8")
    _check(0 <= dsp.max_attenuation_db <= 100, "dsp.max_attenuation_db", dsp.max_attenuation_db, "0..100 dB")
    _check(0 <= dsp.postfilter_beta <= 1, "dsp.postfilter_beta", dsp.postfilter_beta, "0..1 (0 = off)")
    _check(_is_number(dsp.gain_exponent) and GAIN_EXPONENT_RANGE[0] <= dsp.gain_exponent <= GAIN_EXPONENT_RANGE[1],
           "dsp.gain_exponent", dsp.gain_exponent,
           "{:g}..{:g} (1 = the gains as trained; higher suppresses deeper)".format(*GAIN_EXPONENT_RANGE))
    release = dsp.gain_release_per_frame
    _check(release is None or (_is_number(release) and 0 <= release < 1),
           "dsp.gain_release_per_frame", release, "a number in [0, 1) or null (off)")
    _check_comfort_noise_db("dsp.comfort_noise_db", dsp.comfort_noise_db)
    _check(dsp.lookahead_frames == 2, "dsp.lookahead_frames", dsp.lookahead_frames,
           "2 (the shipped models are trained with 20 ms look-ahead)")
    _check(1 <= realtime.deadline_ms <= 10, "realtime.deadline_ms", realtime.deadline_ms, "1..10 ms")
    _check(realtime.overrun_policy in OVERRUN_POLICIES, "realtime.overrun_policy", realtime.overrun_policy,
           f"one of {', '.join(OVERRUN_POLICIES)}")
    _check(1 <= realtime.drop_model_frames <= 100_000, "realtime.drop_model_frames",
           realtime.drop_model_frames, "1..100000")
    priority = realtime.sched_fifo_priority
    _check(priority is None or (_is_integer(priority) and 1 <= priority <= 99),
           "realtime.sched_fifo_priority", priority, "null (off) or 1..99")
    cpus = realtime.cpu_affinity
    _check(cpus is None or (isinstance(cpus, (list, tuple)) and cpus
                            and all(_is_integer(c) and 0 <= c < MAX_CPUS for c in cpus)),
           "realtime.cpu_affinity", cpus, f"null (any CPU) or a list of CPU numbers 0..{MAX_CPUS - 1}, e.g. [3]")
    _check(0.1 <= realtime.device_retry_max_s <= 600, "realtime.device_retry_max_s",
           realtime.device_retry_max_s, "0.1..600 s")
    echo = config.echo
    _check(echo.reference_device is None or (isinstance(echo.reference_device, str) and echo.reference_device),
           "echo.reference_device", echo.reference_device, "null or an ALSA PCM name")
    _check(not echo.enabled or echo.reference_device is not None, "echo.reference_device", echo.reference_device,
           "the ALSA PCM that records what the loudspeaker plays (e.g. percepnet_speaker_ref, see docs/echo.md) "
           "when echo.enabled is true")
    _check(echo.speaker_device is None or (isinstance(echo.speaker_device, str) and echo.speaker_device),
           "echo.speaker_device", echo.speaker_device, "null (the daemon does not forward) or an ALSA PCM name")
    _check(echo.speaker_device is None or echo.speaker_device != echo.reference_device, "echo.speaker_device",
           echo.speaker_device, "a PCM other than echo.reference_device (forwarding into itself is a loop)")
    _check_comfort_noise_db("echo.comfort_noise_db", echo.comfort_noise_db)
    _check(10 <= echo.tail_ms <= 500, "echo.tail_ms", echo.tail_ms, "10..500 ms")
    _check(0 <= echo.delay_search_ms <= 1000, "echo.delay_search_ms", echo.delay_search_ms, "0..1000 ms (0 = none)")
    telemetry = config.telemetry
    _check(0.5 <= telemetry.interval_s <= 3600, "telemetry.interval_s", telemetry.interval_s, "0.5..3600 s")
    for key in ("json_path", "prometheus_dir"):
        value = getattr(telemetry, key)
        _check(value is None or (isinstance(value, str) and value), f"telemetry.{key}", value,
               "null (off) or a path" + (' ("-" = stdout)' if key == "json_path" else ""))
    for key in ("sysfs_root", "procfs_root"):            # '' would read the daemon's working folder as /sys
        value = getattr(telemetry, key)
        _check(value.strip() != "", f"telemetry.{key}", value, "a folder (the defaults /sys and /proc; other roots "
               "are for tests)")
    # A missing prometheus_dir is not a config error: telemetry never stops the audio, so the daemon starts (or
    # reloads) without that sink and retries it every interval; `check` reports it (edge.daemon.telemetry).
    port = telemetry.http_port
    _check(port is None or (_is_integer(port) and 1 <= port <= 65535), "telemetry.http_port", port,
           "null (off) or a TCP port 1..65535")
    _check(_is_ip_address(telemetry.http_host), "telemetry.http_host", telemetry.http_host,
           "an IP address such as 127.0.0.1 (loopback) or localhost; host names are not resolved")


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)      # YAML's true is not port 1


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_ip_address(host):
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _TooBig(ConfigError):
    """Raised inside the YAML loader; :func:`parse` words it with the file's name."""


class _BadValue(ConfigError):
    """Raised while the YAML's values are built; :func:`parse` words it with the file's name."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting depth checked as nodes are composed (before Python recursion runs out),
    and a key given twice in one mapping refused (PyYAML keeps the last silently: a second ``audio:`` section
    would drop every device the first one set)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _TooBig(f"nested more than {MAX_CONFIG_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _BadValue(f"{_key_shown(key)} is given twice in one mapping (line "
                                        f"{key_node.start_mark.line + 1}); keep one")
                    seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_nodes(root):
    """Nodes in the document with every alias expanded, counted without expanding anything (memoised per node);
    _TooBig beyond MAX_CONFIG_NODES or for an alias that contains itself."""
    sizes, open_nodes = {}, set()

    def size(node):
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _TooBig("an alias refers to a node that contains it (a recursive structure)")
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_CONFIG_NODES:
            raise _TooBig(f"more than {MAX_CONFIG_NODES} values once its anchors and aliases are expanded")
        sizes[key] = total
        return total
    return size(root)


def safe_load_bounded(text):
    """``yaml.safe_load`` within the limits: depth, and values after alias expansion (``_TooBig`` otherwise)."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_nodes(node)
        try:
            return loader.construct_document(node)
        except _BadValue:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # PyYAML builds values with Python's own parsers: a date like 2024-13-45, `!!float abc`, an integer of
            # more than 4300 digits raise these, not YAMLError
            raise _BadValue(f"a value that cannot be read ({type(exc).__name__}: {exc})") from None
    finally:
        loader.dispose()


def parse(text, source="<string>"):
    """Parse YAML text into a validated :class:`Config`."""
    try:
        raw = safe_load_bounded(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({_cut(str(exc))})") from None
    except _TooBig as exc:
        raise ConfigError(f"{source}: refused: the YAML is {exc}; a config is a short mapping of sections "
                          "(see configs/default.yaml)") from None
    except _BadValue as exc:
        raise ConfigError(f"{source}: not valid YAML: {_cut(str(exc))}") from None
    if raw is None:                                       # an empty file (or only comments): every default
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with sections "
                          "audio, model, dsp, realtime, telemetry, echo")
    sections = {"audio": AudioConfig, "model": ModelConfig, "dsp": DspConfig, "realtime": RealtimeConfig,
                "telemetry": TelemetryConfig, "echo": EchoConfig}
    unknown = sorted(set(raw) - set(sections), key=str)
    if unknown:
        raise ConfigError(f"{_key_shown(unknown[0])}: unknown section; allowed sections: {', '.join(sections)}")
    parts = {name: _section(cls, name, raw.get(name)) for name, cls in sections.items()}
    if "path" not in (raw.get("model") or {}):            # not "../models" from wherever the file lives
        parts["model"] = replace(parts["model"], path=str(DEFAULT_MODEL_PATH))
    _validate(Config(**parts, source=source))
    if parts["realtime"].cpu_affinity is not None:         # hashable and immutable once valid
        parts["realtime"] = replace(parts["realtime"], cpu_affinity=tuple(parts["realtime"].cpu_affinity))
    return Config(**parts, source=source)


def _cut(text, limit=300):
    """One line of at most ``limit`` characters (PyYAML's messages span lines: a mark, then the offending text)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _read_config_bytes(path):
    """At most MAX_CONFIG_BYTES + 1 bytes of the config. A regular file is read; a FIFO (``--config <(...)``) is
    read within CONFIG_FIFO_WAIT_S, never waited on for good (each SIGHUP while the path was a FIFO without a
    writer used to leave one thread blocked in open()); a device (/dev/zero), folder or socket is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)       # a FIFO opens at once this way
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except ValueError:                                      # a NUL in the path
        raise ConfigError(f"{shown(str(path))}: not a usable path (it contains a NUL character)") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            return _read_fifo(fd, path)
        if not stat.S_ISREG(mode):
            kind = ("a folder" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket")
            raise ConfigError(f"{path}: is {kind}, not a regular file; a config is a YAML file "
                              "(see configs/default.yaml)")
        with os.fdopen(os.dup(fd), "rb") as stream:
            return stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    finally:
        os.close(fd)


def _read_fifo(fd, path):
    """Everything a writer puts in the FIFO until it closes it, within CONFIG_FIFO_WAIT_S (Linux's poll() reports
    nothing until a writer has opened it, then end of file once it closes)."""
    deadline = time.monotonic() + CONFIG_FIFO_WAIT_S
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while len(data) <= MAX_CONFIG_BYTES:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise ConfigError(f"{path}: is a FIFO, and no complete config came through it within "
                              f"{CONFIG_FIFO_WAIT_S:g} s; give a regular file")
        if not poller.poll(left_s * 1000):
            continue
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return data
        data += chunk
    return data


def load(path):
    """Read and validate a YAML config file; every error names the file."""
    path = Path(path)
    data = _read_config_bytes(path)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few hundred bytes "
                          "of YAML, so this is probably the wrong file (see configs/default.yaml)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte 0x{data[exc.start]:02x} at offset {exc.start} is not "
                          "UTF-8); a config is YAML text, see configs/default.yaml") from None
    try:
        return parse(text, str(path))
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(f"{path}:"):
            raise
        raise ConfigError(f"{path}: {message}") from None
