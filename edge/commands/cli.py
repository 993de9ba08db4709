"""``percepnet-edge``: the device command line.

Subcommands:
  oracle   the full DSP chain with oracle gains (the upper bound), or --demo
  denoise  enhance a WAV file with a trained model
  bench    per-frame cost of the DSP chain, beside RNNoise
  bench-model  per-frame cost of the network alone (XNNPACK on and off)
  run      the real-time ALSA daemon (or --demo through ALSA's file plugin)
  check    validate a config, its model, devices and permissions
  profile  CPU, power and frame time of the running pipeline against an idle baseline
  soak     benchmark: hours of audio through the daemon with faults injected; what leaks
"""

import argparse
import contextlib
import signal
import sys

# Nothing heavy is imported at module level: `run` installs its signal handlers
# before numpy and the model load (see edge.daemon.control).

DEFAULT_DEMO_DIR = "out/demo"
#: The same limits as the config's (edge.daemon.config) for the same knobs.
THREADS_RANGE = (1, 8)
ATTENUATION_DB_RANGE = (0.0, 100.0)
POSTFILTER_BETA_RANGE = (0.0, 1.0)


def _in_range(kind, low, high=None):
    """An argparse type: ``kind`` parsed, then refused outside [low, high] with the allowed range named."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if not (value >= low and (high is None or value <= high)):          # also refuses NaN
            allowed = f"{low:g}..{high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is not allowed; expected {allowed}")
        return value
    return parse


def _instance_name(text):
    """An argparse type: letters, digits, '_', '.', '-' (an ALSA card id, a unit instance), at most 64."""
    import re
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use 1-64 letters, digits, '_', '.' or '-' "
                                         "(e.g. the ALSA card id, as the templated unit passes it)")
    return text


def _parser():
    from edge.dsp import LATENCY_MS, EnhancerSettings
    from edge.dsp.comfort import LEVEL_DB_RANGE as COMFORT_DB_RANGE
    from edge.dsp.gains import GAIN_EXPONENT_RANGE
    _DSP = EnhancerSettings()        # the documented defaults of the DSP chain
    parser = argparse.ArgumentParser(
        prog="percepnet-edge",
        description="Real-time PercepNet speech noise suppression (48 kHz, 10 ms frames, "
                    f"{LATENCY_MS:.0f} ms algorithmic latency).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    oracle = commands.add_parser(
        "oracle", help="run the DSP chain with ideal gains computed from the clean signal",
        description="Enhance NOISY with the oracle gains and pitch-filter strengths computed from "
                    "CLEAN: the upper bound the network chases. Inputs of any rate or channel count "
                    "are converted to 48 kHz mono; OUT has NOISY's rate and length.")
    oracle.add_argument("clean", nargs="?", help="clean reference WAV")
    oracle.add_argument("noisy", nargs="?", help="noisy WAV, sample-aligned with CLEAN")
    oracle.add_argument("out", nargs="?", help="output WAV")
    oracle.add_argument("--demo", nargs="?", const=DEFAULT_DEMO_DIR, metavar="DIR",
                        help=f"generate a clean + noise sample and run on it, writing WAVs to DIR "
                             f"(default {DEFAULT_DEMO_DIR})")
    oracle.add_argument("--max-attenuation-db", type=_in_range(float, *ATTENUATION_DB_RANGE),
                        default=_DSP.max_attenuation_db,
                        help=f"deepest suppression of any band in dB (default {_DSP.max_attenuation_db:g})")
    oracle.add_argument("--follow-symlinks", action="store_true",
                        help="write through an output that is a symbolic link (refused otherwise)")

    denoise = commands.add_parser("denoise", help="enhance a WAV file with a trained model",
                                  description="Enhance IN with a trained model, each channel on its own "
                                              "(at most 8); OUT is aligned with IN (delay compensated) and has "
                                              "its rate, channels, sample format and length.")
    denoise.add_argument("input", metavar="IN")
    denoise.add_argument("output", metavar="OUT")
    denoise.add_argument("--model", help="int8 .tflite model with its .json metadata beside it "
                                         "(default: models/lite/percepnet_lite.tflite)")
    denoise.add_argument("--max-attenuation-db", type=_in_range(float, *ATTENUATION_DB_RANGE),
                         default=_DSP.max_attenuation_db,
                         help=f"deepest suppression of any band in dB (default {_DSP.max_attenuation_db:g})")
    denoise.add_argument("--postfilter-beta", type=_in_range(float, *POSTFILTER_BETA_RANGE),
                         default=_DSP.postfilter_beta,
                         help=f"envelope post-filter strength, 0 = off (default {_DSP.postfilter_beta:g})")
    denoise.add_argument("--gain-exponent", type=_in_range(float, *GAIN_EXPONENT_RANGE),
                         default=_DSP.gain_exponent,
                         help=f"power on the network's gains, 1 = as trained, higher suppresses deeper "
                              f"(default {_DSP.gain_exponent:g})")
    denoise.add_argument("--comfort-noise-db", type=_in_range(float, *COMFORT_DB_RANGE),
                         default=_DSP.comfort_noise_db,
                         help="comfort noise where the gains suppress, this many dB relative to the input's "
                              "background (-60..0, e.g. -20; default: off)")
    denoise.add_argument("--far-end-comfort-noise-db", type=_in_range(float, *COMFORT_DB_RANGE),
                         default=_DSP.far_end_comfort_noise_db,
                         help="the same, only while the far end plays (needs --far-end; default: off)")
    denoise.add_argument("--threads", type=_in_range(int, *THREADS_RANGE), default=1,
                         help="interpreter threads, 1..8 (default 1)")
    denoise.add_argument("--follow-symlinks", action="store_true",
                         help="write through an OUT that is a symbolic link (refused otherwise)")
    denoise.add_argument("--far-end", metavar="FAR",
                         help="what the loudspeaker played, starting with IN (same rate and sample format; mono "
                              "or one channel per IN channel): its echo is cancelled before the noise network")
    denoise.add_argument("--echo-tail-ms", type=_in_range(float, 10.0, 500.0), default=None,
                         help="echo path length the canceller's filter covers after the bulk delay (default 150)")
    denoise.add_argument("--echo-delay-search-ms", type=_in_range(float, 0.0, 1000.0), default=None,
                         help="largest loudspeaker-to-microphone bulk delay searched (default 250; 0 = none)")

    bench = commands.add_parser("bench", help="per-frame cost of the DSP chain, beside RNNoise")
    bench.add_argument("--seconds", type=_in_range(float, 1.0, 3600.0), default=20.0,
                       help="generated audio length (default 20)")
    bench.add_argument("--rounds", type=_in_range(int, 1, 100), default=3, help="alternating rounds (default 3)")
    bench.add_argument("--no-peers", action="store_true", help="skip RNNoise")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--model", help="also measure the whole path with this .tflite model")
    bench.add_argument("--imports", action="store_true",
                       help="instead: the resident memory each of the daemon's imports adds, in a fresh interpreter")
    run = commands.add_parser("run", help="the real-time daemon (ALSA capture -> enhance -> playback)")
    run.add_argument("--config", help="YAML config (default: built-in defaults)")
    run.add_argument("--frames", type=_in_range(int, 1), help="stop after N frames")
    run.add_argument("--duration", type=_in_range(float, 0.01), metavar="SECONDS",
                     help="stop after this much audio")
    run.add_argument("--demo", nargs="?", const="out/daemon-demo", metavar="DIR",
                     help="run through ALSA's file plugin on generated audio, writing WAVs to DIR")
    run.add_argument("--with-far-end", action="store_true",
                     help="with --demo: the loudspeaker also plays a second talker whose echo the microphone "
                          "hears; the daemon cancels it through its reference path (writes far_end.wav too)")
    run.add_argument("--instance", type=_instance_name, metavar="NAME",
                     help="this daemon's name among several (the templated unit passes %%i): the telemetry's "
                          "instance_name label, its .prom file name and its PipeWire stream names "
                          "(default: none, one daemon)")

    check = commands.add_parser("check", help="validate config, model, devices and permissions")
    check.add_argument("--config", required=True)

    profile = commands.add_parser("profile", help="CPU, power and frame time against an idle baseline")
    profile.add_argument("--duration", default="10m", help="total time, e.g. 30s, 10m (default 10m)")
    profile.add_argument("--out", required=True, help="folder for report.md, summary.json, samples.csv, plots")
    profile.add_argument("--config", help="YAML config (model, devices, telemetry roots)")
    profile.add_argument("--source", choices=("virtual", "alsa"), default="virtual",
                         help="generated audio paced at real time, or the config's ALSA devices")

    soak = commands.add_parser("soak", help="benchmark: the daemon for hours of audio with device losses and "
                                            "SIGHUP injected; RSS, fds, threads and misses at start and end")
    soak.add_argument("--audio-minutes", type=_in_range(float, 2.0), default=60.0,
                      help="minutes of audio to process, as fast as the machine allows (default 60)")
    soak.add_argument("--model", help="model to run (default: the shipped lite model)")
    soak.add_argument("--loss-every-min", type=_in_range(float, 0.1), default=5.0,
                      help="a device loss every this many minutes of audio (default 5)")
    soak.add_argument("--outage-opens", type=_in_range(int, 0, 20), default=3,
                      help="failed reopens per device loss (default 3)")
    soak.add_argument("--sighup-every-min", type=_in_range(float, 0.1), default=2.0,
                      help="a SIGHUP reload every this many minutes of audio (default 2)")
    soak.add_argument("--json", action="store_true", help="print one JSON object")
    soak.add_argument("--http-load", action="store_true",
                      help="serve the metrics endpoint on a loopback port under slow and idle clients and a "
                           "scrape a second, from a separate process (frame times and scrape latency reported)")

    bench_model = commands.add_parser("bench-model", help="per-frame cost of the network alone")
    bench_model.add_argument("models", nargs="+", metavar="MODEL", help=".tflite files (with metadata)")
    # at most 5 minutes of audio: the signal and its features are made whole in memory (10 M frames were 38 GB)
    bench_model.add_argument("--frames", type=_in_range(int, 1, 30_000), default=2000)
    bench_model.add_argument("--json", action="store_true")
    return parser


def main(argv=None):
    """Entry point of the ``percepnet-edge`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    control = None
    if argv[:1] == ["run"]:                 # first of all: a signal during start-up must not kill the daemon
        from edge.daemon.control import SignalControl
        control = SignalControl().install()
    try:
        return _dispatch(argv, control)
    finally:
        if control is not None:
            control.restore()


def _dispatch(argv, control):
    from edge.errors import PercepnetError
    args = _parser().parse_args(argv)
    try:
        if args.command == "oracle":
            from edge.commands.files import run_oracle, run_oracle_demo
            if args.demo is not None:
                with stop_signals_raise():
                    run_oracle_demo(args.demo, follow_symlinks=args.follow_symlinks)
            elif None in (args.clean, args.noisy, args.out):
                raise _usage("oracle needs CLEAN NOISY OUT, or --demo [DIR]")
            else:
                with stop_signals_raise():
                    run_oracle(args.clean, args.noisy, args.out, args.max_attenuation_db,
                               follow_symlinks=args.follow_symlinks)
        elif args.command == "denoise":
            from edge.dsp import EnhancerSettings
            from edge.commands.files import run_denoise
            settings = EnhancerSettings(max_attenuation_db=args.max_attenuation_db,
                                        postfilter_beta=args.postfilter_beta, gain_exponent=args.gain_exponent,
                                        comfort_noise_db=args.comfort_noise_db,
                                        far_end_comfort_noise_db=args.far_end_comfort_noise_db)
            echo_settings = None
            if args.far_end is not None:
                from edge.echo import EchoSettings
                overrides = {key: value for key, value in (("tail_ms", args.echo_tail_ms),
                                                            ("delay_search_ms", args.echo_delay_search_ms))
                             if value is not None}
                echo_settings = EchoSettings(**overrides)
            elif args.echo_tail_ms is not None or args.echo_delay_search_ms is not None:
                raise _usage("--echo-tail-ms and --echo-delay-search-ms need --far-end FAR")
            elif args.far_end_comfort_noise_db is not None:
                raise _usage("--far-end-comfort-noise-db needs --far-end FAR")
            with stop_signals_raise():
                run_denoise(args.input, args.output, args.model, settings, args.threads,
                            follow_symlinks=args.follow_symlinks, far_end_path=args.far_end,
                            echo_settings=echo_settings)
        elif args.command == "bench":
            from edge.commands.bench import run_bench, run_import_footprint
            if args.imports:
                run_import_footprint(args.model, args.json)
            else:
                run_bench(args.seconds, args.rounds, not args.no_peers, args.json, args.model)
        elif args.command == "run":
            from edge.commands import run as daemon_commands
            if args.demo is not None:
                return daemon_commands.run_daemon_demo(args.config, args.demo, control=control,
                                                       far_end=args.with_far_end)
            if args.with_far_end:
                raise _usage("--with-far-end belongs to --demo (a real far end comes from the config's echo "
                             "section: reference_device)")
            return daemon_commands.run(args.config, args.frames, args.duration, control=control,
                                       instance=args.instance)
        elif args.command == "check":
            from edge.commands import run as daemon_commands
            return daemon_commands.check(args.config)
        elif args.command == "profile":
            from edge.commands.profile import parse_duration, run_profile
            with stop_signals_raise():
                run_profile(parse_duration(args.duration), args.out, args.config, args.source)
        elif args.command == "soak":
            from edge.commands.soak import run_soak
            run_soak(args.audio_minutes, args.model, args.loss_every_min, args.outage_opens, args.sighup_every_min,
                     args.json, http_load=args.http_load)
        elif args.command == "bench-model":
            from edge.commands.bench import run_model_bench
            run_model_bench(args.models, args.frames, args.json)
    except PercepnetError as exc:                   # ours say what to do; anything else is a bug: a traceback
        print(f"percepnet-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:                # SIGINT, or SIGTERM/SIGHUP in a file command (stop_signals_raise);
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT   # writers cleaned up
        report, writing = getattr(exc, "profile_report", None), getattr(exc, "profile_writing", False)
        if args.command != "profile":
            kept = "the output file was not written (nothing half-written is left)"
        elif report is not None:
            kept = f"the report of what ran is {report}" + (" (its plots may be missing or from an earlier run)"
                                                             if writing else "")
        elif writing:
            kept = f"stopped while writing into {args.out}: files there may be from an earlier run"
        else:
            kept = "nothing was written (no frame had been processed)"
        print(f"percepnet-edge: stopped by {signal.Signals(signum).name} before the end; {kept}", file=sys.stderr)
        return 128 + signum
    return 0


@contextlib.contextmanager
def stop_signals_raise():
    """SIGTERM and SIGHUP raise KeyboardInterrupt(signum) for the block, as SIGINT does, so every ``finally`` and
    ``__exit__`` runs (the WAV writer removes its temporary file); by default they killed the process and left a
    hidden .tmp beside the output."""
    def raise_stopped(signum, _frame):
        raise KeyboardInterrupt(signum)
    previous = {signum: signal.signal(signum, raise_stopped) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _usage(message):
    from edge.errors import UsageError
    return UsageError(message)


if __name__ == "__main__":
    sys.exit(main())
