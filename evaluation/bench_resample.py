"""The numpy resampler (edge.dsp.polyphase, what a device runs) against scipy's resample_poly, in one run.

    python -m evaluation.bench_resample [--rounds 5]

For the rates a WAV most often has, to or from 48 kHz, and two lengths (10 s and 10 min of 16 kHz noise, as
sample counts), each call timed in turn with scipy's on the same signal: medians, and their ratio. Both use
the default filter (Kaiser beta 5); the outputs are checked to agree to 1e-12 first.
"""

import argparse
import statistics
import time

import numpy as np

from edge.dsp import polyphase

#: (label, up, down): to 48 kHz from 16, 44.1 and 11.025 kHz, from 48 kHz to 16 kHz, 44.1 kHz and 6 kHz.
RATIOS = [("16 -> 48 kHz", 3, 1), ("44.1 -> 48 kHz", 160, 147), ("11.025 -> 48 kHz", 640, 147),
          ("48 -> 16 kHz", 1, 3), ("48 -> 44.1 kHz", 147, 160), ("384 -> 48 kHz", 1, 8)]
LENGTHS = [("160,000 samples", 160_000), ("9.6 M samples", 9_600_000)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed calls of each, alternating (default 5)")
    args = parser.parse_args(argv)
    from scipy import signal                           # the host's: this compares against it
    print("| ratio | signal | numpy ms | scipy ms | numpy / scipy |")
    print("|---|---|---:|---:|---:|")
    for length_label, n in LENGTHS:
        x = np.random.default_rng(0).standard_normal(n)
        for label, up, down in RATIOS:
            resampler = polyphase.Polyphase(up, down)
            worst = float(np.max(np.abs(resampler(x[:48_000]) - signal.resample_poly(x[:48_000], up, down))))
            if worst > 1e-12:
                raise SystemExit(f"{label}: the two disagree by {worst:.3g}")
            ours, theirs = [], []
            for _ in range(args.rounds):
                for times, call in ((ours, lambda: resampler(x)), (theirs, lambda: signal.resample_poly(x, up, down))):
                    start = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - start)
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"| {label} | {length_label} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
