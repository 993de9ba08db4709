"""The echo stage after a step of the echo path: the filter re-adapts, or the reference's delay is re-set.

A period lost or repeated between the loudspeaker and the microphone moves the echo by
10 ms at once. The canceller re-sets the reference's delay (and restarts MDF) only when
the tracked delay moves later by more than a period or earlier by one or more
(:data:`edge.echo.canceller.DELAY_RESET_LATER_ABOVE_SAMPLES`); this runs both choices on the
same clips: the far end and room of :mod:`evaluation.echo_drift`, 80 ms away, and the
same room ``step`` ms further from half-way. Prints ERLE (microphone over output energy)
in 0.5 s windows after the step and over the last 10 s::

    python -m evaluation.echo_step --seconds 40 --step-ms 10 -10 20
"""

import argparse

import numpy as np

from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
import edge.echo.canceller as canceller_module
from edge.echo import EchoCanceller, EchoSettings
from evaluation.echo_drift import far_end, room_echo

FS = SAMPLE_RATE_HZ
#: Where the 0.5 s ERLE windows start, in seconds after the step.
WINDOWS_S = (0.0, 1.0, 1.5, 2.0, 2.5, 4.0, 10.0)


def stepped_echo(seconds, step_ms, delay_ms=80.0, seed=0):
    """(far end, microphone): the echo moves by ``step_ms`` half-way through."""
    far = far_end(seconds, seed, bandwidth_hz=20000.0)
    before, after = room_echo(far, delay_ms, seed), room_echo(far, delay_ms + step_ms, seed)
    half = far.size // 2 // HOP_SAMPLES * HOP_SAMPLES
    return far, np.concatenate([before[:half], after[half:]]), half


def run(far, mic, reset_one_period):
    """The canceller's output, re-setting the delay after a one-period step either way (``reset_one_period``) or
    never, and its delay changes."""
    kept = canceller_module.DELAY_RESET_LATER_ABOVE_SAMPLES, canceller_module.DELAY_RESET_EARLIER_AT_LEAST_SAMPLES
    limits = (HOP_SAMPLES - 1, HOP_SAMPLES) if reset_one_period else (HOP_SAMPLES, HOP_SAMPLES + 1)
    canceller_module.DELAY_RESET_LATER_ABOVE_SAMPLES, canceller_module.DELAY_RESET_EARLIER_AT_LEAST_SAMPLES = limits
    try:
        canceller = EchoCanceller(EchoSettings())
        out = np.zeros_like(mic)
        for start in range(0, mic.size - HOP_SAMPLES + 1, HOP_SAMPLES):
            frame = slice(start, start + HOP_SAMPLES)
            canceller.process(mic[frame], far[frame], out[frame])
        canceller.close()
    finally:
        canceller_module.DELAY_RESET_LATER_ABOVE_SAMPLES, canceller_module.DELAY_RESET_EARLIER_AT_LEAST_SAMPLES = kept
    return out, canceller.delay_changes


def erle_db(mic, out, start, seconds):
    part = slice(start, start + int(seconds * FS))
    return 10 * np.log10(np.sum(mic[part] ** 2) / max(np.sum(out[part] ** 2), 1e-20))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--step-ms", type=float, nargs="+", default=[10.0, -10.0, 20.0])
    args = parser.parse_args(argv)
    windows = " | ".join(f"{t:g} s" for t in WINDOWS_S)
    print(f"| step | after it | delay re-sets | ERLE dB from: {windows} | last 10 s |")
    print("|---|---|---:|" + "---:|" * (len(WINDOWS_S) + 1))
    for step_ms in args.step_ms:
        far, mic, half = stepped_echo(args.seconds, step_ms)
        for name, reset in (("MDF re-adapts (default when later)", False),
                            ("delay re-set, MDF restarted (default when earlier)", True)):
            out, changes = run(far, mic, reset)
            cells = " | ".join(f"{erle_db(mic, out, half + int(t * FS), 0.5):.1f}" for t in WINDOWS_S)
            print(f"| {step_ms:+g} ms | {name} | {changes} | {cells} | "
                  f"{erle_db(mic, out, mic.size - 10 * FS, 10.0):.1f} |", flush=True)


if __name__ == "__main__":
    main()
