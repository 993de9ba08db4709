"""What a converted model's arithmetic costs: its gains against the float network's, by how deep the float gain is.

The int8 network's gains differ from the float network's most where the
float gain is small, which is where noise is removed (docs/results.md, *What
int8 costs*). This prints, per feature cache and per converted model, the mean
absolute gain difference and, in four bands of the float gain, the mean and
mean absolute difference in dB, beside what rounding the float gains to the
int8 output grid alone (1/256) would cost::

    python -m evaluation.precision RUN.keras RUN.tflite variants/RUN_int16x8.tflite --cache CACHE/v4-echo \\
        --cache CACHE/v3-noise --cache CACHE/teacher-v2-val

Each model runs frame by frame through the device's runner, states carried;
the float network is the Keras sequence model the converter started from.
"""

import argparse
import sys

import numpy as np

#: Bands of the float gain: removed, deep, partial, kept.
GAIN_BANDS = ((0.0, 0.03), (0.03, 0.1), (0.1, 0.3), (0.3, 1.01))
#: The int8 output grid of a sigmoid head (TFLite's fixed scale).
OUTPUT_STEP = 1.0 / 256.0
_FLOOR = 1e-3          # -60 dB: an int8 gain of 0 would otherwise be -inf dB


def gain_db(gain):
    return 20.0 * np.log10(np.maximum(gain, _FLOOR))


def runner_gains(model_path, features):
    """Gains of a converted model over (examples, frames, n) features, frame by frame from reset states."""
    from converter.verify import runner_outputs
    return runner_outputs(model_path, features)[0]


def compare(float_gains, gains):
    """``{"mean_abs": ..., "bands": [{"low", "high", "share", "db_mean", "db_abs", "output_rounding_db_abs"}]}``."""
    rounded = np.round(float_gains / OUTPUT_STEP) * OUTPUT_STEP
    bands = []
    for low, high in GAIN_BANDS:
        inside = (float_gains >= low) & (float_gains < high)
        if not inside.any():
            continue
        diff = gain_db(gains[inside]) - gain_db(float_gains[inside])
        bands.append({"low": low, "high": high, "share": float(inside.mean()), "db_mean": float(diff.mean()),
                      "db_abs": float(np.abs(diff).mean()),
                      "output_rounding_db_abs": float(np.abs(gain_db(rounded[inside])
                                                             - gain_db(float_gains[inside])).mean())})
    return {"mean_abs": float(np.abs(gains - float_gains).mean()), "bands": bands}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("keras_model", help="the float model the conversions started from (.keras)")
    parser.add_argument("models", nargs="+", help="converted models (.tflite, their .json beside them)")
    parser.add_argument("--cache", action="append", required=True,
                        help="a feature cache; its validation split is used (repeat for several, each reported)")
    parser.add_argument("--examples", type=int, default=24, help="examples per cache (default 24)")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error(f"--examples {args.examples}: give 1 or more")
    from converter.calibration import load_feature_sequences
    from converter.convert import load_sequence_model
    from converter.verify import float_outputs
    from edge.errors import PercepnetError
    try:
        model, config = load_sequence_model(args.keras_model)
        for cache in args.cache:
            features = load_feature_sequences(cache, "validation", args.examples, n_features=config.n_features)
            float_gains = float_outputs(model, features)[0]
            for path in args.models:
                result = compare(float_gains, runner_gains(path, features))
                cells = [f"{cache} | {path} | mean |dg| {result['mean_abs']:.4f}"]
                cells += [f"[{b['low']}, {b['high']}) {b['share']:.0%}: {b['db_mean']:+.2f} dB, |{b['db_abs']:.2f}| "
                          f"(output rounding |{b['output_rounding_db_abs']:.2f}|)" for b in result["bands"]]
                print(" | ".join(cells), flush=True)
    except PercepnetError as exc:                  # a calibration error is one too
        print(f"evaluation.precision: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
