"""``python -m converter`` (also ``percepnet-convert``): convert and verify models."""

import argparse
import json
import signal
import sys

from edge.errors import PercepnetError

from .convert import DEFAULT_TRAINING_NOTE, convert, load_sequence_model


def _parser():
    parser = argparse.ArgumentParser(prog="percepnet-convert", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("convert", help="Keras model -> int8 TFLite + metadata, then verify")
    run.add_argument("model", help="trained .keras file (percepnet-train fit)")
    run.add_argument("--cache", required=True, action="append",
                     help="feature cache: calibration (train shards) and checks (validation shards); "
                          "repeat to pool several")
    run.add_argument("--out", required=True, help="output .tflite path; the metadata goes beside it as .json")
    run.add_argument("--corpus", default=None, help="corpus for the PESQ check's validation audio "
                                                    "(default: generated speech and noise)")
    run.add_argument("--training-note", default=DEFAULT_TRAINING_NOTE,
                     help="what the model was trained on, with licences (stored in its metadata; default: says it "
                          "was not given)")
    run.add_argument("--no-variants", action="store_true", help="skip the float32, int16x8 and dynamic-range variants")
    check = commands.add_parser("verify", help="re-run the verification of a converted model")
    check.add_argument("tflite")
    check.add_argument("--float-model", required=True, help="the .keras model it was converted from")
    check.add_argument("--cache", required=True, action="append")
    check.add_argument("--corpus", default=None)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        from edge.commands.cli import stop_signals_raise
        from .verify import verify
        with stop_signals_raise():                 # SIGTERM and SIGHUP clean up as Ctrl-C does
            return _run(args, verify)
    except PercepnetError as exc:                  # ours say what to do; anything else is a bug: a traceback
        print(f"percepnet-convert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        kept = (f"{args.out} holds no model that has not passed its proof" if args.command == "convert"
                else "nothing was written")
        print(f"percepnet-convert: stopped by {signal.Signals(signum).name} before the end; {kept}", file=sys.stderr)
        return 128 + signum


def _run(args, verify):
    """The command; its exit status (0: the proof passed, 1: it failed)."""
    if args.command == "convert":
        metadata, _ = convert(args.model, args.cache, args.out, args.training_note, variants=not args.no_variants,
                              corpus=args.corpus)
        return 0 if metadata.verification.get("passed", False) else 1
    model, config = load_sequence_model(args.float_model)
    report = verify(args.tflite, args.cache, model, config, corpus=args.corpus,
                    say=lambda line: print(line, file=sys.stderr))      # stdout: the JSON report alone
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
