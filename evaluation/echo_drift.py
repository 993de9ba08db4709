"""The echo stage under clock drift: ERLE with the drift followed and only reported.

A noise-like far end (pink, 4 Hz syllabic modulation, -20 dBFS, band-limited to 20 kHz by
default) and its echo through a
synthetic 50 ms room 30 ms away, recorded on a clock ``ppm`` off (a polyphase
resampling of the echo), through :class:`edge.echo.EchoCanceller` with
``drift_compensation`` on and off. Prints ERLE (microphone over output energy) over
the last 5 s, the drift estimate, the filter restarts and the stage's cost per frame (p50, p99.9)::

    python -m evaluation.echo_drift --seconds 60 --ppm 100 -100 10 0

With the far end up to 24 kHz, what lies above the resampler's passband (SpeexDSP quality 4:
about 22 kHz) is in the echo but not in the resampled reference, and caps a followed drift's
ERLE near 30 dB on this signal (``--bandwidth-hz 0`` shows it).
"""

import argparse
import time

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.echo import EchoCanceller, EchoSettings

FS = SAMPLE_RATE_HZ


def far_end(seconds, seed=0, bandwidth_hz=None):
    """A noise-like far end: pink, 4 Hz syllabic modulation, -20 dBFS; nothing above ``bandwidth_hz`` (None: up to
    24 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    frequencies = np.fft.rfftfreq(n, 1 / FS)
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(frequencies, 100))
    if bandwidth_hz is not None:
        spectrum[frequencies > bandwidth_hz] = 0.0
    far = np.fft.irfft(spectrum, n) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / FS))
    far *= 0.1 / np.sqrt(np.mean(far ** 2))
    return far


def room_echo(far, delay_ms=30.0, seed=0):
    """``far`` through a synthetic room ``delay_ms`` away (a strong first tap and a 50 ms exponential tail, -6 dB
    in all), plus a -70 dBFS floor. One ``seed``, one room: two delays of it differ by a shift only."""
    rng = np.random.default_rng(seed)
    n = far.size
    rng.standard_normal(n)                   # the far end's draw: the same room as before the two were split
    taps = int(0.05 * FS)
    room = rng.standard_normal(taps) * 10 ** (-3 * np.arange(taps) / taps)
    room[0] = 3.0
    room = np.concatenate([np.zeros(int(delay_ms * FS / 1000)), room * 0.5 / np.sqrt(np.sum(room ** 2))])
    return fftconvolve(far, room)[:n] + rng.standard_normal(n) * 10 ** (-70 / 20)


def drifting_echo(seconds, ppm, seed=0, bandwidth_hz=None):
    """(far end, microphone): the echo of ``far`` recorded on a clock ``ppm`` slower (later and later);
    ``bandwidth_hz``: the far end holds nothing above it (None: up to 24 kHz)."""
    far = far_end(seconds, seed, bandwidth_hz)
    return far, recorded_on_drifting_clock(room_echo(far, 30.0, seed), ppm)


def recorded_on_drifting_clock(signal, ppm):
    """``signal`` as a card whose clock runs ``ppm`` slower records it (positive: later and later), same length."""
    if not ppm:
        return signal
    up = 1_000_000 // int(np.gcd(1_000_000, abs(ppm)))
    return resample_poly(signal, up + up * ppm // 1_000_000, up)[:signal.size]


def run(far, mic, compensate):
    canceller = EchoCanceller(EchoSettings(drift_compensation=compensate))
    out = np.zeros_like(mic)
    costs = []
    for start in range(0, mic.size - HOP_SAMPLES + 1, HOP_SAMPLES):
        frame = slice(start, start + HOP_SAMPLES)
        began = time.perf_counter()
        canceller.process(mic[frame], far[frame], out[frame])
        costs.append(time.perf_counter() - began)
    last = slice(mic.size - 5 * FS, mic.size)
    erle_db = 10 * np.log10(np.sum(mic[last] ** 2) / np.sum(out[last] ** 2))
    return erle_db, canceller, 1e6 * np.percentile(costs, [50, 99.9])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ppm", type=int, nargs="+", default=[100, -100, 10, 0])
    parser.add_argument("--bandwidth-hz", type=float, default=20000.0,
                        help="the far end's bandwidth (0: all 24 kHz; default 20 kHz, as speech and music "
                             "reach a small loudspeaker)")
    args = parser.parse_args(argv)
    print("| clock drift | reported only: ERLE dB | followed: ERLE dB | estimate ppm | restarts (followed) "
          "| us/frame, p50 / p99.9 (reported; followed) |")
    print("|---|---:|---:|---:|---:|---:|")
    for ppm in args.ppm:
        far, mic = drifting_echo(args.seconds, ppm, bandwidth_hz=args.bandwidth_hz or None)
        off, _, off_us = run(far, mic, False)
        on, canceller, on_us = run(far, mic, True)
        estimate = "-" if canceller.drift_ppm is None else f"{canceller.drift_ppm:+.1f}"
        followed = "" if canceller.drift_followed else " (not followed)"
        print(f"| {ppm:+d} ppm | {off:.1f} | {on:.1f}{followed} | {estimate} | {canceller.delay_changes} "
              f"| {off_us[0]:.0f} / {off_us[1]:.0f}; {on_us[0]:.0f} / {on_us[1]:.0f} |")


if __name__ == "__main__":
    main()
