"""Candidate far-end inputs, judged before a cache is built: how much of the oracle gain each one explains.

``python -m training.echo_cues --corpus CORPUS --noise-corpus NOISE`` draws double-talk and
far-end single-talk examples as the cache does and, on every band-frame where the canceller
removed something, measures how well each cue alone predicts the oracle gain: Spearman's rank
correlation, and the share of the gain's variance that the cue's 20 quantile bins explain (R2).
The cues:

- ``share``: today's echo-share input (:mod:`edge.dsp.echo_features`, E_y / (E_y + E_out));
- ``coherence out-y``, ``mic-y``, ``mic-out``: the magnitude-squared coherence per band between two
  of the microphone, the canceller's output and its echo estimate y, cross-spectra smoothed over
  frames (``alpha`` 0.8: about 45 ms), as WebRTC's legacy AEC suppressor used them;
- ``envelope correlation out-y``: the correlation over time (about 100 ms) of the output's and the
  echo estimate's log band energies: residual echo rises and falls with the echo estimate, a talker
  does not.
- ``far-end level``, ``far-end over output``, ``echo estimate over far-end``: the loudspeaker's own band
  energy at the microphone's delay (the device knows it from its delay tracker), its share beside the
  canceller's output, and the linear filter's apparent echo-path gain per band. These tell the network when
  the far end plays even where the canceller found little (before it converges, after a path change, and
  where clipping leaves echo that no linear filter models).
"""

import argparse

import numpy as np

ALPHA = 0.8


def coherence(a, b, weights, alpha=ALPHA):
    """(n_frames, n_bands) band coherence of two (n_frames, n_bins) spectra, cross-spectra smoothed by ``alpha``."""
    from edge.dsp.bands import band_energy
    cross = np.zeros(a.shape[1], complex)
    power_a, power_b = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    out = np.zeros((a.shape[0], weights.shape[0]))
    for t in range(a.shape[0]):
        cross = alpha * cross + (1 - alpha) * a[t] * np.conj(b[t])
        power_a = alpha * power_a + (1 - alpha) * np.abs(a[t]) ** 2
        power_b = alpha * power_b + (1 - alpha) * np.abs(b[t]) ** 2
        out[t] = band_energy(np.abs(cross) ** 2, weights) / (band_energy(power_a * power_b, weights) + 1e-18)
    return out


def envelope_correlation(energy_a, energy_b, alpha=0.9):
    """(n_frames, n_bands) correlation of two bands' log energies over time, exponentially weighted
    (``alpha`` 0.9: about 100 ms), as a stream would keep it."""
    a, b = np.log10(energy_a + 1e-9), np.log10(energy_b + 1e-9)
    mean_a, mean_b = a[0].copy(), b[0].copy()
    var_a, var_b, cov = np.zeros_like(mean_a), np.zeros_like(mean_b), np.zeros_like(mean_a)
    out = np.zeros_like(a)
    for t in range(a.shape[0]):
        mean_a = alpha * mean_a + (1 - alpha) * a[t]
        mean_b = alpha * mean_b + (1 - alpha) * b[t]
        da, db = a[t] - mean_a, b[t] - mean_b
        var_a = alpha * var_a + (1 - alpha) * da * da
        var_b = alpha * var_b + (1 - alpha) * db * db
        cov = alpha * cov + (1 - alpha) * da * db
        out[t] = cov / np.sqrt(var_a * var_b + 1e-12)
    return out


def explained(cue, gain, bins=20):
    """R2 of the gain predicted by the mean gain of the cue's quantile bin."""
    edges = np.quantile(cue, np.linspace(0, 1, bins + 1))[1:-1]
    which = np.digitize(cue, edges)
    means = np.array([gain[which == b].mean() if np.any(which == b) else 0.0 for b in range(bins)])
    return 1.0 - np.mean((gain - means[which]) ** 2) / np.var(gain)


def explained_jointly(a, b, gain, bins=10):
    """R2 of the gain predicted by the mean gain of the joint cell of ``a``'s and ``b``'s quantile bins: what
    ``b`` adds beside ``a`` (compare with :func:`explained` of ``a`` alone at ``bins`` bins)."""
    cell = np.zeros(gain.size, dtype=np.int64)
    for cue in (a, b):
        edges = np.quantile(cue, np.linspace(0, 1, bins + 1))[1:-1]
        cell = cell * bins + np.digitize(cue, edges)
    sums, counts = np.bincount(cell, gain), np.bincount(cell)
    means = sums / np.maximum(counts, 1)
    return 1.0 - np.mean((gain - means[cell]) ** 2) / np.var(gain)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--noise-corpus")
    parser.add_argument("--examples", type=int, default=8, help="per talk type (4 s each)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from scipy.stats import spearmanr

    from edge.dsp.bands import band_energy, band_matrix, power_spectrum
    from edge.dsp.constants import HOP_SAMPLES, WINDOW_SAMPLES
    from edge.dsp.echo_features import ECHO_SHARE, N_FEATURES, far_end_features
    from edge.dsp.offline import oracle_gains
    from edge.dsp.stft import analyse_frames, vorbis_window

    from . import echo_synth
    from .cache import _split_of
    from .synth import AudioBank, simulated_rooms
    split = _split_of(args.corpus, "validation", args.noise_corpus)
    bank, rooms = AudioBank(say=lambda m: None), simulated_rooms(4, seed=5)
    weights, window = band_matrix(), vorbis_window()
    rng = np.random.default_rng(args.seed)
    cues = {name: [] for name in ("share", "echo level", "coherence out-y", "coherence mic-y", "coherence mic-out",
                                  "envelope correlation out-y", "far-end level", "far-end over output",
                                  "echo estimate over far-end")}
    gains = []
    for probabilities in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)):
        for _ in range(args.examples):
            signals = {}
            target, output, estimate, _ = echo_synth.make_echo_example(split, rng, 4.0, bank, rooms,
                                                                        talk_types=probabilities, signals=signals)
            gain, _, analysis, _ = oracle_gains(target, output)
            n = gain.shape[0]
            out_spectra = analysis.spectra[:n]
            # frame t's window ends at sample 480 (t + 1) of the estimate, as the stream's does
            padded = np.concatenate([np.zeros(WINDOW_SAMPLES), estimate, np.zeros(WINDOW_SAMPLES)])
            starts = HOP_SAMPLES * (np.arange(n) + 1)
            y = analyse_frames(padded[starts[:, None] + np.arange(WINDOW_SAMPLES)[None]], window)
            mic = out_spectra + y
            far_padded = np.concatenate([np.zeros(WINDOW_SAMPLES), signals["loudspeaker_at_delay"],
                                         np.zeros(WINDOW_SAMPLES)])
            far = band_energy(power_spectrum(analyse_frames(
                far_padded[starts[:, None] + np.arange(WINDOW_SAMPLES)[None]], window)), weights)
            y_energy = band_energy(power_spectrum(y), weights)
            active = y_energy > 1e-9
            inputs = far_end_features(estimate, analysis.energy[:n])
            values = {"share": inputs[:, ECHO_SHARE.start - N_FEATURES:],
                      "echo level": inputs[:, :ECHO_SHARE.start - N_FEATURES],
                      "coherence out-y": coherence(out_spectra, y, weights),
                      "coherence mic-y": coherence(mic, y, weights),
                      "coherence mic-out": coherence(mic, out_spectra, weights),
                      "envelope correlation out-y": envelope_correlation(analysis.energy[:n], y_energy),
                      "far-end level": np.log10(far + 1e-9),
                      "far-end over output": far / (far + analysis.energy[:n] + 1e-9),
                      "echo estimate over far-end": np.log10((y_energy + 1e-9) / (far + 1e-9))}
            for name, value in values.items():
                cues[name].append(value[active])
            gains.append(gain[active])
    gain = np.concatenate(gains)
    print(f"{gain.size:,} band-frames with an echo estimate, double talk and far-end single talk")
    print("| cue | Spearman with the oracle gain | R2 (20 bins) |\n|---|---:|---:|")
    for name, parts in cues.items():
        cue = np.concatenate(parts)
        print(f"| {name} | {spearmanr(cue, gain)[0]:+.3f} | {explained(cue, gain):.3f} |")
    # What a cue adds beside today's inputs: joint 10 x 10 bins with the echo share, and with the echo level.
    share, level = np.concatenate(cues["share"]), np.concatenate(cues["echo level"])
    print(f"\nbeside today's inputs, R2 of joint 10 x 10 bins (share alone at 10 bins: "
          f"{explained(share, gain, 10):.3f}, level alone: {explained(level, gain, 10):.3f}, "
          f"share with level: {explained_jointly(share, level, gain):.3f})")
    print("| cue | with the echo share | with the echo level |\n|---|---:|---:|")
    for name, parts in cues.items():
        if name in ("share", "echo level"):
            continue
        cue = np.concatenate(parts)
        print(f"| {name} | {explained_jointly(share, cue, gain):.3f} | {explained_jointly(level, cue, gain):.3f} |")


if __name__ == "__main__":
    main()
