"""The 68 far-end inputs of a joint echo-and-noise model (feature version 2), and their one implementation.

A joint model sees the 70 features of :mod:`edge.dsp.features`, computed on the
linear canceller's **output** (the signal it enhances), followed by::

    [70:104]   echo estimate level per band: (log10(E_y + 1e-9) + 9) / 3   (no echo -> exactly 0)
    [104:138]  echo share per band: E_y / (E_y + E_out + 1e-9), in [0, 1)  (no echo -> exactly 0)

where ``y = microphone - canceller output`` is what the linear filter took out
(its echo estimate) and ``E_out`` is the output's band energy, the one the 70
features use. Both rows are 0 when there is no loudspeaker reference or the
far end is silent (the canceller then passes the microphone through, so y = 0):
a joint model then sees what a noise-only model sees, and a version-1 cache or
model is a version-2 one with these inputs at 0.

Why these two: the level says how much echo the linear stage found in the band
(the residue scales with it); the share says how much of what is left could be
that residue. PercepNet's echo work (Valin et al., ICASSP 2021) feeds the
network the same three signals.

:class:`EchoAnalysis` is the streaming form; :func:`far_end_features` runs it
over a whole signal, so training and the device compute these values in the
same code.
"""

import numpy as np

from .bands import band_energy, band_matrix
from .constants import HOP_SAMPLES, N_BANDS, N_BINS, N_FAR_END_FEATURES, N_FEATURES, N_JOINT_FEATURES, WINDOW_SAMPLES
from .features import ENERGY_FLOOR
from .stft import analyse, vorbis_window

ECHO_LEVEL = slice(N_FEATURES, N_FEATURES + N_BANDS)
ECHO_SHARE = slice(N_FEATURES + N_BANDS, N_JOINT_FEATURES)
_LOG_FLOOR = -np.log10(ENERGY_FLOOR)                       # 9: silence -> 0


class EchoAnalysis:
    """Band energies of the echo estimate's newest 20 ms window, and the 68 far-end inputs from them.

    All arrays are allocated once; :meth:`step` allocates nothing but numpy's FFT output.
    """

    def __init__(self):
        self.weights = band_matrix()
        self.window = vorbis_window()
        self.history = np.zeros(WINDOW_SAMPLES)
        self._windowed = np.zeros(WINDOW_SAMPLES)
        self._spectrum = np.zeros(N_BINS, dtype=np.complex128)
        self._power = np.zeros(N_BINS)
        self.echo_energy = np.zeros(N_BANDS)
        self._frames_since_echo = 2                  # both halves of the window are silent

    def reset(self):
        self.history[:] = 0.0
        self.echo_energy[:] = 0.0
        self._frames_since_echo = 2

    def step(self, echo_estimate, output_energy, out):
        """Write the 68 inputs for the newest frame into ``out`` (68,).

        ``echo_estimate``: the 480 samples the linear filter removed in this frame
        (microphone - canceller output), or None when there is none (no reference,
        far end silent). ``output_energy``: the canceller output's band energies
        for the same window (the enhancer's own analysis).
        """
        history = self.history
        history[:HOP_SAMPLES] = history[HOP_SAMPLES:]
        if echo_estimate is None:
            history[HOP_SAMPLES:] = 0.0
            self._frames_since_echo += 1
        else:
            history[HOP_SAMPLES:] = echo_estimate
            self._frames_since_echo = 0 if np.any(echo_estimate) else self._frames_since_echo + 1
        if self._frames_since_echo >= 2:             # an all-zero window: exactly 0, without an FFT
            self.echo_energy[:] = 0.0
            out[:] = 0.0
            return out
        analyse(history, self.window, self._windowed, self._spectrum)
        np.square(self._spectrum.real, out=self._power)
        self._power += np.square(self._spectrum.imag)
        energy = band_energy(self._power, self.weights, out=self.echo_energy)
        level, share = out[:N_BANDS], out[N_BANDS:]
        np.add(energy, ENERGY_FLOOR, out=level)
        np.log10(level, out=level)
        level += _LOG_FLOOR
        level *= 1.0 / 3.0
        np.add(energy, output_energy, out=share)
        share += ENERGY_FLOOR
        np.divide(energy, share, out=share)
        return out


def far_end_features(echo_estimate, output_energy):
    """The far-end inputs of every frame of a whole signal: (n_frames, 68).

    ``echo_estimate``: microphone - canceller output, one sample per sample of
    the output; ``output_energy``: (n_frames, 34) band energies of the output
    (:func:`edge.dsp.analyse_signal`'s ``energy``). Runs :class:`EchoAnalysis`
    frame by frame, exactly as the stream does.
    """
    n_frames = output_energy.shape[0]
    padded = np.zeros(n_frames * HOP_SAMPLES)
    samples = np.asarray(echo_estimate, dtype=np.float64)[:padded.size]
    padded[:samples.size] = samples
    analysis, out = EchoAnalysis(), np.zeros((n_frames, N_FAR_END_FEATURES))
    for t in range(n_frames):
        analysis.step(padded[t * HOP_SAMPLES:(t + 1) * HOP_SAMPLES], output_energy[t], out[t])
    return out
