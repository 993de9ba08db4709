"""The ``run``, ``check`` and ``run --demo`` commands around :class:`~edge.daemon.loop.AudioLoop`."""

import contextlib
import ctypes
import grp
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.daemon import config as config_module
from edge.devices import pipewire
from edge.io import synthetic
from edge.daemon.control import SignalControl
from edge.daemon.loop import AudioLoop, apply_realtime, default_runner_factory
from edge.dsp import HOP_SAMPLES, SAMPLE_RATE_HZ, with_flush_padding
from edge.dsp.offline import frames_to_flush
from edge.devices.alsa import AlsaDuplex, DeviceLocks, output_delay_samples
from edge.devices.sound_devices import library_messages, said_by_alsa
from edge.errors import DeviceError, MissingDependencyError, PercepnetError
from edge.daemon.sdnotify import Notifier

SYSTEM_ALSA_CONF = "/usr/share/alsa/alsa.conf"
#: `run --demo` stopped by a signal before the end: 128 + SIGTERM, as a shell reports a process it ended.
DEMO_STOPPED_STATUS = 143


def _logging():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s percepnet-edge %(levelname)s %(message)s")


def run(config_path, frames=None, duration_s=None, say=print, control=None, io_factory=AlsaDuplex, on_loop=None,
        instance=None):
    """``percepnet-edge run --config FILE [--instance NAME]``: the daemon. Returns the exit status.

    ``instance`` (the templated unit's ``%i``) labels the telemetry and names
    the daemon's PipeWire streams.

    ``control`` carries the signal handlers the command line installed before
    the heavy imports; without one (in-process callers) they are installed
    here and removed on return. ``io_factory`` builds the audio I/O from the
    audio config and ``on_loop(loop)`` sees the loop before it runs (the soak
    benchmark injects faults and samples the process through them).
    """
    _logging()
    own_control = control is None
    control = control or SignalControl().install()
    notifier = Notifier()
    notifier.status("starting: loading the config and the model")
    try:
        started = time.monotonic()
        config = config_module.load(config_path) if config_path else config_module.Config()
        locks = DeviceLocks(config.audio, say=say).acquire()
        try:
            with pipewire_streams(instance):
                return _serve(config, config_path, frames, duration_s, say, control, notifier, started, io_factory,
                              on_loop, instance)
        finally:
            locks.release()
    finally:
        if own_control:
            control.restore()


def pipewire_streams(instance=None):
    """PIPEWIRE_ALSA set for the block: the daemon's PipeWire streams are one named filter (edge.devices.pipewire)."""
    return temporary_environment(**{pipewire.ENV: pipewire.environment(instance, os.environ.get(pipewire.ENV))})


def _serve(config, config_path, frames, duration_s, say, control, notifier, started, io_factory, on_loop, instance):
    apply_realtime(config.realtime, say)
    reference = {"reference_device": config.echo.reference_device,
                 "speaker_device": config.echo.speaker_device} if config.echo.enabled else {}
    loop = AudioLoop(config, io_factory(config.audio, **reference), notifier=notifier, stop=control.stop)
    _announce(loop, started, say)
    if control.stop.is_set():
        logging.getLogger("percepnet-edge").info("stopped during start-up (signal); exiting")
        return 0
    control.attach(loop, config_path)
    telemetry = None
    t = config.telemetry
    if t.json_path or t.prometheus_dir or t.http_port is not None:
        from edge.daemon.telemetry import Telemetry
        telemetry = Telemetry(t, loop, say, instance=instance).start()
    if on_loop is not None:
        on_loop(loop)
    try:
        loop.run(max_frames=frames, duration_s=duration_s)
    finally:
        if telemetry is not None:
            telemetry.stop()
    say(loop.summary())
    return 0


def check(config_path, say=print, proc="/proc"):
    """``percepnet-edge check --config FILE``: config, model, devices, permissions. Returns the exit status.

    A device that does not open is explained (edge.devices.sound_devices: module not loaded, no such card, busy and
    by whom, wrong rate) with the command that fixes it; ``proc`` is where that looks (tests: a fake tree).
    """
    problems = []

    def item(name, ok, detail):
        say(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
        if not ok and name not in problems:
            problems.append(name)

    try:
        config = config_module.load(config_path)
        item("config", True, f"{config_path} is valid")
    except config_module.ConfigError as exc:
        item("config", False, str(exc))
        return 2
    try:
        with library_messages():            # LiteRT's "INFO: Created ... delegate" says nothing the item does not
            runner = default_runner_factory(config)
        item("model", True, runner.describe())
        if not runner.xnnpack_active and config.model.xnnpack:
            item("xnnpack", False, "XNNPACK requested but not active: install ai-edge-litert"
                 if runner.runtime != "ai_edge_litert" else "XNNPACK requested but ai-edge-litert did not apply it "
                 "on this CPU (its log above says why; it reads /proc/cpuinfo and /sys/devices/system/cpu); "
                 "set model.xnnpack: false to run without it")
    except Exception as exc:                              # every model failure is reported, not raised
        item("model", False, _error_text(exc))
    with pipewire_streams():
        _check_devices(config.audio, item, say, proc)
        _check_echo(config, item, proc)
    _check_telemetry(config.telemetry, item, say)
    cpus = config.realtime.cpu_affinity
    if cpus:
        try:
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, set(cpus))
            os.sched_setaffinity(0, before)
            item("realtime", True, f"CPU affinity {list(cpus)} can be applied")
        except OSError:
            item("realtime", False, f"realtime.cpu_affinity {list(cpus)}: not all of these CPUs exist here "
                                    f"(this machine has CPUs {_cpu_list(os.sched_getaffinity(0))})")
    check_priority(config.realtime.sched_fifo_priority, item, limits=unit_limits_for(config.audio))
    in_audio_group = os.geteuid() == 0 or _in_group("audio")
    item("permissions", in_audio_group, "may use /dev/snd" if in_audio_group
         else "not in the 'audio' group: add the service user to it")
    say("check " + ("passed" if not problems else f"FAILED: {', '.join(problems)}"))
    return 0 if not problems else 2                 # every check is a problem the user can fix (README)


def _error_text(exc):
    """An exception as a sentence: ours carry one; anything else gets its type too ('features' alone says nothing)."""
    if isinstance(exc, PercepnetError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _cpu_list(cpus):
    return ", ".join(str(c) for c in sorted(cpus))


def _check_telemetry(telemetry_config, item, say):
    """Every configured sink must be writable (or listenable) now, not discovered broken after start."""
    from edge.daemon.telemetry import check_sinks
    for level, text in check_sinks(telemetry_config):
        if level == "warn":
            say(f"[warn] telemetry: {text}")
        else:
            item("telemetry", level == "ok", text)


def _check_devices(audio, item, say, proc):
    """Open and close both devices, under their locks; devices a running daemon holds are reported, not opened.

    The locks are taken without creating or writing anything (``create=False``): a root ``check`` (install.sh
    runs one) used to leave root-owned lock files that the service could not write its pid into.
    """
    locks = DeviceLocks(audio, say=say, create=False)
    try:
        locks.acquire()
    except DeviceError as exc:
        item("devices", True, f"not opened: {exc}")
        return
    duplex = AlsaDuplex(audio, proc=proc)

    def failed(exc, lines):
        said = said_by_alsa(lines)
        item("devices", False, str(exc) + (f" (ALSA: {'; '.join(said)})" if said else ""))

    try:
        with library_messages() as lines:
            duplex.open()
        item("devices", True, f"capture {audio.capture_device!r} and playback "
                              f"{audio.playback_device!r} open at 48 kHz, {audio.sample_format}")
    except pipewire.PipeWireError as exc:
        # Raised before anything opens; opening a PCM whose target node is missing can block in pipewire-alsa.
        item("devices", False, str(exc))
    except DeviceError as exc:
        failed(exc, lines)
        duplex.close()
        for kind in ("capture", "playback"):              # the open stops at the first; say every one
            try:
                with library_messages() as lines:
                    duplex.open_one(kind)
            except DeviceError as other:
                if str(other) != str(exc):
                    failed(other, lines)
            finally:
                duplex.close()
    except MissingDependencyError as exc:
        item("devices", False, str(exc))
    finally:
        duplex.close()
        locks.release()


#: The system units `check` compares realtime.sched_fifo_priority with (a template is asked about through an
#: instance name: every instance has its template's limits).
SERVICE_UNITS = ("percepnet-edge.service", "percepnet-edge@check.service")


def service_rtprio_limits(run=subprocess.run):
    """{unit: LimitRTPRIO} of the installed percepnet-edge system units, from systemctl (drop-ins included);
    empty where none is installed or there is no systemd."""
    limits = {}
    for unit in SERVICE_UNITS:
        try:
            done = run(["systemctl", "show", "--property=LoadState,LimitRTPRIO", unit], capture_output=True,
                       text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        shown = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        if shown.get("LoadState") == "loaded" and shown.get("LimitRTPRIO", "").isdigit():
            limits[unit.replace("@check.", "@.")] = int(shown["LimitRTPRIO"])
    return limits


def units_refusing_priority(priority, limits):
    """[(unit, limit)] of the units whose LimitRTPRIO is below ``priority``."""
    return [(unit, limit) for unit, limit in sorted(limits.items()) if priority > limit]


def unit_limits_for(audio):
    """Where the service's rtprio limit comes from: the system units' LimitRTPRIO, or, for the PipeWire set-up
    (the user's unit, without LimitRTPRIO=), none but the user's own limit, which `check` meets itself."""
    user_unit = any(map(pipewire.uses_pipewire, (audio.capture_device, audio.playback_device)))
    return dict if user_unit else service_rtprio_limits


def check_priority(priority, item, limits=service_rtprio_limits):
    """`check`'s realtime.sched_fifo_priority item: whether this process may take it, and whether the installed
    units allow it (root may use any priority, and a user's own rtprio limit is not the service's)."""
    if not priority:
        return
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        os.sched_setscheduler(0, before[0], before[1])
    except PermissionError:
        item("realtime", False, f"SCHED_FIFO priority {priority} not permitted (LimitRTPRIO= in the unit)")
        return
    above = units_refusing_priority(priority, limits())
    for unit, limit in above:
        fix = (f"use 1..{limit}, or raise LimitRTPRIO= with `systemctl edit {unit}`" if limit > 0 else
               f"add LimitRTPRIO={priority} with `systemctl edit {unit}`")
        item("realtime", False, f"SCHED_FIFO priority {priority} is permitted here, but {unit} allows at most "
                                f"{limit} (LimitRTPRIO={limit}): the service would run without it; {fix}")
    if not above:
        item("realtime", True, f"SCHED_FIFO priority {priority} permitted")


#: Periods read from the echo reference by `check`: enough to see whether something plays, short enough not to wait.
CHECK_REFERENCE_PERIODS = 20


def _check_echo(config, item, proc):
    """With echo on: SpeexDSP loads, and the reference PCM opens at 48 kHz and delivers periods (and how loud)."""
    echo = config.echo
    if not echo.enabled:
        return
    from edge.echo import speex_mdf
    try:
        speex_mdf.library()
        item("echo", True, f"SpeexDSP loaded; tail {echo.tail_ms:g} ms, delay search up to {echo.delay_search_ms:g} ms")
    except MissingDependencyError as exc:
        item("echo", False, str(exc))
    duplex = AlsaDuplex(config.audio, proc=proc, reference_device=echo.reference_device,
                        speaker_device=echo.speaker_device)
    try:
        import alsaaudio  # noqa: F401
    except ImportError as exc:
        item("echo reference", False, f"pyalsaaudio is not importable ({exc})")
        return
    try:
        with library_messages() as lines:
            duplex.open_reference()
            peak, periods = 0.0, 0
            for _ in range(CHECK_REFERENCE_PERIODS if duplex.reference is not None else 0):
                frame = duplex.read_reference()
                if frame is None:
                    break
                peak, periods = max(peak, float(np.max(np.abs(frame)))), periods + 1
        if duplex.reference_problem is not None:
            said = said_by_alsa(lines)
            item("echo reference", False, duplex.reference_problem + (f" (ALSA: {'; '.join(said)})" if said else ""))
        elif periods < CHECK_REFERENCE_PERIODS:
            item("echo reference", False, f"{echo.reference_device!r} opened but delivered {periods} of "
                                          f"{CHECK_REFERENCE_PERIODS} periods: is its stream running?")
        else:
            level = f"peak {20 * np.log10(peak):.0f} dBFS" if peak > 0 else "silent (nothing playing now)"
            item("echo reference", True, f"{echo.reference_device!r} open at 48 kHz, {config.audio.sample_format}, "
                                         f"mono; {CHECK_REFERENCE_PERIODS} periods read, {level}"
                                         + (f"; forwarded to {echo.speaker_device!r}" if echo.speaker_device else ""))
    finally:
        duplex.close()


def _in_group(name):
    try:
        return grp.getgrnam(name).gr_gid in os.getgroups()
    except KeyError:
        return False


def _announce(loop, started, say):
    """The start-up lines: the model and its start-up time, and what removes the echo when the echo section is on."""
    say(f"model: {loop.pipeline.network.describe()}; start-up {time.monotonic() - started:.2f} s")
    echo = loop.pipeline.describe_echo()
    if echo is not None:
        say(echo)


def file_plugin_asoundrc(folder, capture_raw, playback_raw, reference_raw=None):
    """An asoundrc defining ``pe_capture`` (reads capture_raw) and ``pe_playback`` (writes playback_raw);
    with ``reference_raw``, also ``pe_reference`` (reads it) and ``pe_speaker`` (writes speaker.raw in folder)."""
    path = Path(folder) / "asoundrc"
    reference = "" if reference_raw is None else f"""pcm.pe_reference {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{reference_raw}"
    format "raw"
}}
pcm.pe_speaker {{
    type file
    slave.pcm "null"
    file "{Path(folder) / 'speaker.raw'}"
    format "raw"
}}
"""
    path.write_text(reference + f"""pcm.pe_capture {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{capture_raw}"
    format "raw"
}}
pcm.pe_playback {{
    type file
    slave.pcm "null"
    file "{playback_raw}"
    format "raw"
}}
""")
    return path


def run_daemon_demo(config_path, out_dir, say=print, control=None, seconds=synthetic.DEMO_SECONDS,
                    far_end=False):
    """The built-in default: the daemon through ALSA's ``file`` plugin on generated audio.

    No sound card is needed: capture reads a generated noisy recording, playback
    writes a raw file, which is then aligned and saved as WAV beside the input.
    The raw files and the asoundrc live in a temporary folder removed at the end.

    ``far_end``: the loudspeaker also plays a second talker whose echo reaches the microphone
    (:func:`edge.io.synthetic.demo_far_end`); the daemon reads it through its reference PCM, forwards it to a
    loudspeaker PCM and cancels its echo (the ``echo`` section on, with the config's other echo keys), and
    ``far_end.wav`` is written too.
    """
    from edge.io.wav import write_wav
    from edge.commands.files import output_samples, prepare_output
    _logging()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_bytes = 44 + 2 * output_samples(int(seconds * SAMPLE_RATE_HZ), SAMPLE_RATE_HZ)
    targets = {name: prepare_output(out_dir / f"{name}.wav", n_bytes) for name in ("noisy", "enhanced")}
    config = config_module.load(config_path) if config_path else config_module.Config()
    noisy = synthetic.demo_mixture(seconds)[1]          # the clean half is not kept: peak RSS is reported
    n_samples = noisy.size
    with tempfile.TemporaryDirectory(prefix="percepnet-demo-") as folder:
        work = Path(folder)
        reference = {}
        if far_end:
            far, echo = synthetic.demo_far_end(seconds)
            noisy += echo
            with_flush_padding(far, np.float32).tofile(work / "reference.raw")
            write_wav(prepare_output(out_dir / "far_end.wav", n_bytes), far, SAMPLE_RATE_HZ)
            del far, echo
            reference = {"reference_device": "pe_reference", "speaker_device": "pe_speaker"}
        with_flush_padding(noisy, np.float32).tofile(work / "capture.raw")
        write_wav(targets["noisy"], noisy, SAMPLE_RATE_HZ)
        say(f"wrote {out_dir / 'noisy.wav'}" + (f" and {out_dir / 'far_end.wav'}" if far_end else ""))
        del noisy                                       # the daemon reads it from the capture file
        release_freed_memory()
        asoundrc = file_plugin_asoundrc(work, work / "capture.raw", work / "playback.raw",
                                        reference_raw=work / "reference.raw" if far_end else None)
        audio = replace(config.audio, capture_device="pe_capture", playback_device="pe_playback",
                        sample_format="FLOAT_LE", capture_channels=1, channel_index=0)
        config = replace(config, audio=audio)
        if far_end:
            config = replace(config, echo=replace(config.echo, enabled=True, **reference))
        say(f"demo: {synthetic.describe_demo(seconds)}"
            + (f", and {synthetic.describe_far_end_demo()}" if far_end else "")
            + f" through ALSA's file plugin (raw capture and playback files in {work}, removed at the end)")
        with temporary_environment(ALSA_CONFIG_PATH=f"{SYSTEM_ALSA_CONF}:{asoundrc}"):
            started = time.monotonic()
            loop = AudioLoop(config, AlsaDuplex(config.audio, **reference), stop=control.stop if control else None)
            _announce(loop, started, say)
            # the echo stage's residual suppressor adds its block to the enhancer's latency
            stage_samples = loop.pipeline.canceller.latency_samples if loop.pipeline.canceller is not None else 0
            loop.run(max_frames=frames_to_flush(n_samples + stage_samples))
        if loop.counters.frames < frames_to_flush(n_samples + stage_samples):   # SIGTERM/SIGINT: no result
            targets["noisy"].unlink(missing_ok=True)            # written before the run; not a result alone
            say(f"demo stopped by a signal after {loop.counters.frames * HOP_SAMPLES / SAMPLE_RATE_HZ:.1f} s of "
                f"{seconds:g} s; {out_dir} was not written (a truncated enhanced.wav would pass for a result)")
            return DEMO_STOPPED_STATUS
        delay = output_delay_samples(config.audio) + stage_samples
        played = np.memmap(work / "playback.raw", np.float32, mode="r")     # not copied: peak RSS is reported
        write_wav(targets["enhanced"], played[delay:delay + n_samples], SAMPLE_RATE_HZ)
        del played
    say(f"wrote {out_dir / 'enhanced.wav'}")
    if far_end:
        c = loop.counters
        say(f"echo: cancelling in {c.echo_cancelling_frames} of {c.frames} frames; reference xruns "
            f"{loop.io.reference_xruns}; " + (f"{loop.pipeline.canceller.delay_ms:.0f} ms of delay compensated"
                                               if loop.pipeline.canceller.delay_found else "the echo NOT found"))
    say(loop.summary())
    return 0


def release_freed_memory():
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Generating the demo audio frees several signal-sized arrays; glibc keeps
    such memory in the process after the first one (its mmap threshold
    adapts), and the demo reports the peak RSS of a daemon, not of a
    generator.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):                   # not glibc: nothing to release this way
        pass


@contextlib.contextmanager
def temporary_environment(**values):
    """Environment variables set for the block, then put back as they were.

    ALSA reads ALSA_CONFIG_PATH when it opens a device, and the device locks
    read RUNTIME_DIRECTORY: in-process runs (the demo, the soak) have no
    other way to point them elsewhere.
    """
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
