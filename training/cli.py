"""``percepnet-train``: build a corpus, build the feature cache, then train.

  percepnet-train corpus --out CORPUS --shared ../shared/data --source gcompris=DIR [--source NAME=DIR ...]
  percepnet-train noise-corpus --out NOISE --sources /work/extdata/sources --shared ../shared/data --speech-corpus CORPUS
  percepnet-train cache --corpus ../shared/data --out CACHE [--shards N --examples-per-shard K --seconds S]
                        [--echo-share 0.6]        (echo examples, for a joint model: --size lite_echo)
  percepnet-train teacher-cache --realworld CORPUS/realworld --out TEACHER [--shards N --workers 1]
  percepnet-train fit --cache CACHE --out models/lite --size lite [--epochs E] [--strategy mirrored]
  percepnet-train compare --run lite=RUN_LITE --run mid=RUN_MID      (validation loss per CPU-hour)
"""

import argparse
import sys

from pathlib import Path

from edge.errors import PercepnetError, UsageError

from .cache import CacheSpec, build_cache
from .corpus_build import build_corpus
from .noise_build import build_noise_corpus
from .noise_sources import NOISE_SOURCES
from .sources import SOURCES
from .synth import CLEAN_PROBABILITY, SNR_RANGE_DB
from .model import ECHO_SUFFIX, FLOOR_SUFFIX, SIZES
from .train import OVER_SUPPRESSION_WEIGHT, fit

SIZE_CHOICES = (tuple(SIZES) + tuple(f"{name}{ECHO_SUFFIX}" for name in SIZES)
                + tuple(f"{name}{ECHO_SUFFIX}{FLOOR_SUFFIX}" for name in SIZES))


def _parser():
    parser = argparse.ArgumentParser(prog="percepnet-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="turn downloaded public speech sources into a corpus folder")
    corpus.add_argument("--out", required=True, help="corpus folder to create (outside the repository)")
    corpus.add_argument("--source", action="append", default=[], metavar="NAME=DIR",
                        help=f"a downloaded source; NAME one of {', '.join(SOURCES)} (see docs/corpus.md)")
    corpus.add_argument("--shared", default=None, metavar="DIR",
                        help="the team data folder (../shared/data): its RAVDESS and word lists join the "
                             "speech, its noise/ and rir/ are linked")
    corpus.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    noise = commands.add_parser("noise-corpus", help="turn downloaded noise sources (and synthesis) into a "
                                "noise corpus folder, filtered, split and licensed (docs/noise-corpus.md)")
    noise.add_argument("--out", required=True, help="noise corpus folder to create (outside the repository)")
    noise.add_argument("--sources", default=None, metavar="DIR",
                       help="the raw downloads (noise/ and music/ inside, see /work/extdata/sources/SOURCES.md)")
    noise.add_argument("--shared", default=None, metavar="DIR", help="the team data folder (../shared/data)")
    noise.add_argument("--speech-corpus", default=None, metavar="DIR",
                       help="a built speech corpus: its training speakers make the babble and TV/radio classes")
    noise.add_argument("--only", action="append", default=None, metavar="SOURCE",
                       help=f"build only these sources (repeat; known: {', '.join(NOISE_SOURCES)})")
    noise.add_argument("--synthetic-clips", type=int, default=30,
                       help="10 s clips per synthetic class (default 30: 5 min each; 0: none)")
    noise.add_argument("--seed", type=int, default=1, help="seed of the synthetic classes (default 1)")
    noise.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    cache = commands.add_parser("cache", help="synthesise mixtures and cache features + oracle targets")
    cache.add_argument("--corpus", default="../shared/data", help="corpus folder (speech/, noise/, rir/)")
    cache.add_argument("--out", required=True, help="cache folder")
    cache.add_argument("--noise-corpus", default=None, metavar="DIR",
                       help="take recorded noise from this noise corpus (its train split for training shards, "
                            "its validation split for validation shards, classes drawn evenly) instead of "
                            "the corpus's noise/ folder")
    cache.add_argument("--split", choices=("train", "validation", "both"), default="both")
    cache.add_argument("--shards", type=int, default=400, help="training shards (default 400: 4.4 h of mixtures)")
    cache.add_argument("--validation-shards", type=int, default=None,
                       help="validation shards (default: shards / 16, at least 4)")
    cache.add_argument("--examples-per-shard", type=int, default=10)
    cache.add_argument("--seconds", type=float, default=4.0, help="length of each example")
    cache.add_argument("--seed", type=int, default=7)
    cache.add_argument("--snr-db", type=float, nargs=2, metavar=("MIN", "MAX"), default=SNR_RANGE_DB,
                       help=f"noise SNR range in dB (default {SNR_RANGE_DB[0]:g} {SNR_RANGE_DB[1]:g})")
    cache.add_argument("--clean-share", type=float, default=CLEAN_PROBABILITY,
                       help=f"share of examples with no noise (default {CLEAN_PROBABILITY:g})")
    cache.add_argument("--echo-share", type=float, default=0.0,
                       help="share of echo examples for a joint echo-and-noise model (training.echo_synth; "
                            "needs libspeexdsp1); above 0 the cache holds the 68 far-end inputs too (default 0)")
    cache.add_argument("--double-talk-share", type=float, default=None,
                       help="share of double talk among the echo examples (default 0.4; far-end and near-end "
                            "single talk share the rest 35:25)")
    cache.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    teacher = commands.add_parser("teacher-cache", help="label real recordings with a teacher (DeepFilterNet3) and "
                                  "cache features + our oracle targets in the cache's format (docs/training.md)")
    teacher.add_argument("--realworld", required=True, metavar="DIR",
                         help="a corpus built by percepnet-train corpus, or its realworld/ folder (the manifest "
                              "beside it gives speakers and splits)")
    teacher.add_argument("--out", required=True, help="cache folder (outside the repository)")
    teacher.add_argument("--split", choices=("train", "validation", "both"), default="both")
    teacher.add_argument("--shards", type=int, default=90, help="training shards (default 90: 2 h of 4 s examples)")
    teacher.add_argument("--validation-shards", type=int, default=None,
                         help="validation shards (default: shards / 12, at least 4)")
    teacher.add_argument("--examples-per-shard", type=int, default=20)
    teacher.add_argument("--seconds", type=float, default=4.0,
                         help="length of each example (the same as the caches it is pooled with)")
    teacher.add_argument("--seed", type=int, default=7)
    teacher.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    teacher.add_argument("--teacher-level-dbfs", type=float, default=None, metavar="DB",
                         help="RMS level the teacher hears each segment at, in dBFS (default: "
                              "training.teacher.TEACHER_LEVEL_DBFS, -20; the first cache, teacher-v1, used -30)")
    teacher.add_argument("--max-snr-db", type=float, default=None, metavar="DB",
                         help="only real recordings whose SNR estimate (the corpus filter's, manifest snr_db) is "
                              "below DB: the noisiest ones (default: all)")
    check = commands.add_parser("teacher-check", help="DNSMOS of the input, the teacher, and our DSP driven by "
                                "the teacher's targets on teacher validation audio")
    check.add_argument("--realworld", required=True, metavar="DIR", help="as for teacher-cache")
    check.add_argument("--clips", type=int, default=6)
    check.add_argument("--seconds", type=float, default=4.0)
    check.add_argument("--seed", type=int, default=99)
    train = commands.add_parser("fit", help="train a model on a cache")
    train.add_argument("--cache", required=True, action="append",
                       help="cache folder; repeat to train on several (their shards are pooled)")
    train.add_argument("--validation-cache", action="append", metavar="DIR",
                       help="take the validation shards from these folders (repeatable) instead of --cache's, "
                            "so that a run whose training pool is replaced by fresh mixtures keeps validating "
                            "on the same examples (default: --cache's validation shards)")
    train.add_argument("--out", required=True, help="folder for the model, checkpoints and history")
    train.add_argument("--size", default="lite", choices=SIZE_CHOICES,
                       help="model size; NAME_echo is its joint echo-and-noise form (138 inputs; default lite)")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3,
                       help="Adam's starting rate (default 1e-3); halved whenever the validation loss has not "
                            "improved for 3 epochs. A resumed run keeps the rate its optimiser state holds "
                            "unless --restart-learning-rate is given")
    train.add_argument("--restart-learning-rate", action="store_true",
                       help="on resume, set the rate back to --learning-rate (the halvings start again)")
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--strategy", default="default", choices=("default", "mirrored", "multi-worker"))
    train.add_argument("--init-from", metavar="MODEL.keras",
                       help="start from these weights (same size), e.g. to fine-tune on a new cache")
    train.add_argument("--over-suppression-weight", type=float, default=OVER_SUPPRESSION_WEIGHT,
                       help="extra weight on gain errors that attenuate more than the target "
                            f"(default {OVER_SUPPRESSION_WEIGHT:g}; 0 is the paper's loss)")
    train.add_argument("--seed", type=int, default=0, help="seed of the batch order (default 0)")
    train.add_argument("--quiet-lead-share", type=float, default=0.0,
                       help="share of training examples whose first 0.2-2 s are a microphone floor alone, "
                            "so noise starts mid-example (default 0: none)")
    train.add_argument("--state-noise", type=float, default=0.0,
                       help="uniform noise of up to this much added to every GRU state each training frame, "
                            "so that one int8 rounding step (1/127.5) does not move the outputs "
                            "(default 0: none)")
    train.add_argument("--int8-aware", metavar="MODEL.json",
                       help="round the features and every state carried between frames to the int8 grids of "
                            "this converted model's metadata (beside its .tflite), in training and validation "
                            "(quantization-aware fine-tuning; default: float)")
    train.add_argument("--quant-noise", type=float, default=0.0, metavar="STEPS",
                       help="uniform noise of this many int8 grid steps on every tensor the int8 network rounds, "
                            "in training only, so that the conversion's rounding moves the outputs less "
                            "(training.quant_noise; 2 matches the int8 lite_echo's gain error; default 0: none)")
    train.add_argument("--quant-round", action="store_true",
                       help="in training, round every tensor on a fixed int8 grid (the GRUs' sigmoids 1/256 up to "
                            "255/256, tanhs 1/128, GRU states 1/127.5; the output heads are left alone) to that "
                            "grid, with straight-through gradients, in place of --quant-noise's noise there "
                            "(training.quant_noise; default: off)")
    train.add_argument("--keep-epochs", action="store_true",
                       help="also write each epoch's weights to OUT/epochs/eN.weights.h5 (N from 1, as the "
                            "model cards count), so that any epoch can be measured later (default: only the "
                            "best model and the latest state are kept)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads TensorFlow may use (default: all cores); two runs side by side "
                            "with --threads 1 each get equal CPU time")
    train.add_argument("--time-budget-min", type=float, default=None,
                       help="stop at the first epoch end past this many minutes")
    compare = commands.add_parser("compare", help="fit runs side by side: best validation loss per CPU-hour")
    compare.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                         help="a fit --out folder (repeat for each run to compare)")
    compare.add_argument("--budgets", type=int, default=8,
                         help="CPU budgets (rows), evenly spaced up to the shortest run's CPU (default 8)")
    bench = commands.add_parser("bench", help="training throughput: input feed, model step and fit, frames/s")
    bench.add_argument("--cache", required=True, action="append", help="cache folder (repeatable)")
    bench.add_argument("--size", default="lite", choices=SIZE_CHOICES)
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--steps", type=int, default=12, help="timed batches per figure (default 12)")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command in ("corpus", "noise-corpus", "cache", "teacher-cache", "fit"):
            _output_folder(args.out)
        if args.command == "corpus":
            roots = _named_folders(args.source, "--source", "gcompris=~/GCompris-voices")
            build_corpus(args.out, roots, args.shared, args.workers)
        elif args.command == "noise-corpus":
            build_noise_corpus(args.out, args.sources, args.shared, args.speech_corpus, args.workers,
                               args.synthetic_clips, args.seed, args.only)
        elif args.command == "cache":
            splits = ("train", "validation") if args.split == "both" else (args.split,)
            for split in splits:
                shards = args.shards if split == "train" else (args.validation_shards or max(4, args.shards // 16))
                build_cache(CacheSpec(args.corpus, split, shards, args.examples_per_shard, args.seconds,
                                      args.seed, snr_db_min=args.snr_db[0], snr_db_max=args.snr_db[1],
                                      clean_share=args.clean_share, noise_corpus=args.noise_corpus,
                                      echo_share=args.echo_share, double_talk_share=args.double_talk_share),
                            args.out, args.workers)
        elif args.command == "teacher-cache":
            from .teacher import TeacherSpec, build_teacher_cache
            splits = ("train", "validation") if args.split == "both" else (args.split,)
            for split in splits:
                shards = args.shards if split == "train" else (args.validation_shards or max(4, args.shards // 12))
                build_teacher_cache(TeacherSpec(args.realworld, split, shards, args.examples_per_shard, args.seconds,
                                                args.seed, max_snr_db=args.max_snr_db,
                                                **({} if args.teacher_level_dbfs is None
                                                   else {"teacher_level_dbfs": args.teacher_level_dbfs})),
                                    args.out, args.workers)
        elif args.command == "teacher-check":
            from .teacher import check_targets
            means, _ = check_targets(args.realworld, args.clips, args.seconds, args.seed)
            print("DNSMOS means | OVRL | SIG | BAK")
            for name, scores in means.items():
                print(f"{name} | {scores['ovrl']:.2f} | {scores['sig']:.2f} | {scores['bak']:.2f}")
        elif args.command == "compare":
            from .compare import run
            run(_named_folders(args.run, "--run", "lite=runs/lite"), args.budgets)
        elif args.command == "bench":
            from .bench import run
            run(args.cache, args.size, args.batch_size, args.steps)
        else:
            if args.threads:
                import tensorflow as tf
                tf.config.threading.set_intra_op_parallelism_threads(args.threads)
                tf.config.threading.set_inter_op_parallelism_threads(args.threads)
            fit(args.cache, args.out, args.size, args.epochs, args.batch_size, args.learning_rate,
                args.strategy, args.steps_per_epoch, args.time_budget_min, init_from=args.init_from,
                over_suppression_weight=args.over_suppression_weight, seed=args.seed,
                quiet_lead_share=args.quiet_lead_share, state_noise=args.state_noise,
                int8_aware=args.int8_aware, restart_learning_rate=args.restart_learning_rate,
                validation_cache=args.validation_cache, keep_epochs=args.keep_epochs, quant_noise=args.quant_noise,
                quant_round=args.quant_round)
    except PercepnetError as exc:                   # ours say what to do; anything else is a bug: a traceback
        print(f"percepnet-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _named_folders(items, option, example):
    """``{name: folder}`` from ``NAME=DIR`` arguments of ``option``; a malformed one is a usage error."""
    folders = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"{option} {item!r}: expected NAME=DIR, e.g. {example}")
        folders[name] = folder
    return folders


def _output_folder(path):
    """Create ``--out`` before any work, so that an unwritable place is a clear error, not a traceback later."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create the folder ({exc.strerror}); choose another place") from None


if __name__ == "__main__":
    sys.exit(main())
