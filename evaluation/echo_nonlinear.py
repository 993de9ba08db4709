"""Does a second, nonlinear reference help MDF with a clipping loudspeaker? (an experiment, not a product path)

The echo set's loudspeaker (``training.echo_synth.loudspeaker``) high-passes (the driver), then clips, then the
room follows: a memoryless nonlinearity between two linear filters. SpeexDSP's MDF can adapt one filter per loudspeaker
(``speex_echo_state_init_mc``), so a second "loudspeaker" carrying a nonlinear function of the reference lets it
fit the distortion's echo too: exactly so for a nonlinearity followed by a linear path (a Hammerstein system),
approximately here, where the driver's high-pass comes first. This runs our echo stage (delay tracking, reference gain, MDF; SpeexDSP's residual
suppression off, so the figure is the linear stage's) on the set's far-end single-talk clips, with MDF given the
reference alone or the reference plus one of these basis functions, and prints ERLE per clip::

    python -m evaluation.echo_nonlinear /tmp/echo-set

The added ABI (speexdsp 1.2; ``play`` then holds ``frame_size * nb_speakers`` interleaved samples)::

    SpeexEchoState *speex_echo_state_init_mc(int frame_size, int filter_length, int nb_mic, int nb_speakers);
"""

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

from edge.echo import EchoCanceller, EchoSettings
from edge.echo import speex_mdf
from evaluation.echo_eval import erle_db, load_set

FRAME = 480
#: Basis functions of the reference, normalised by its running peak (int16 units in and out), and the high-pass
#: applied to the reference before the basis (None: none). The set's loudspeaker high-passes (the driver, 150-400
#: Hz) *before* it clips, so the last rows feed the basis a reference high-passed at the middle of that range.
BASES = {
    "reference alone": (None, None),
    "+ x^3": (lambda u: u ** 3, None),
    "+ x·abs(x)": (lambda u: u * np.abs(u), None),
    "+ the part above half the peak": (lambda u: u - np.clip(u, -0.5, 0.5), None),
    "+ x^3 of the reference high-passed at 250 Hz": (lambda u: u ** 3, 250.0),
    "+ the part above half the peak, high-passed at 250 Hz": (lambda u: u - np.clip(u, -0.5, 0.5), 250.0),
}


class TwoReferenceMdf:
    """MDF with the reference and ``basis(reference)`` as two loudspeakers; the interface the echo stage uses."""

    def __init__(self, tail_samples, rate_hz, basis, highpass_hz=None):
        lib = self._lib = speex_mdf.library()
        lib.speex_echo_state_init_mc.restype = ctypes.c_void_p
        lib.speex_echo_state_init_mc.argtypes = [ctypes.c_int] * 4
        self.tail_samples, self.rate_hz = tail_samples, rate_hz
        self._state = self._new_state()
        self._basis, self._play, self._peak = basis, np.zeros(2 * FRAME, np.int16), 1000.0
        self._highpass = None
        if highpass_hz is not None:
            self._highpass = butter(2, highpass_hz, "highpass", fs=rate_hz, output="sos")
            self._highpass_state = sosfilt_zi(self._highpass) * 0.0

    def process(self, mic, far, out):
        x = far.astype(np.float64)
        if self._highpass is not None:
            x, self._highpass_state = sosfilt(self._highpass, x, zi=self._highpass_state)
        self._peak = max(self._peak * 0.9995, float(np.max(np.abs(x))), 1000.0)   # decays over ~20 s
        self._play[0::2] = far
        self._play[1::2] = np.clip(np.rint(self._peak * self._basis(x / self._peak)), -32768, 32767)
        i16 = ctypes.POINTER(ctypes.c_int16)
        self._lib.speex_echo_cancellation(self._state, mic.ctypes.data_as(i16), self._play.ctypes.data_as(i16),
                                          out.ctypes.data_as(i16))
        return out

    def _new_state(self):
        state = self._lib.speex_echo_state_init_mc(FRAME, self.tail_samples, 1, 2)
        rate = ctypes.c_int(int(self.rate_hz))
        self._lib.speex_echo_ctl(state, speex_mdf.ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        return state

    def reset(self):
        """A new state, as :meth:`edge.echo.speex_mdf.SpeexMdf.reset` makes (a restart is a start)."""
        old, self._state = self._state, self._new_state()
        self._lib.speex_echo_state_destroy(old)

    def close(self):
        if self._state:
            self._lib.speex_echo_state_destroy(self._state)
            self._state = None


def run_clip(clip, basis, highpass_hz=None):
    canceller = EchoCanceller(EchoSettings(residual_suppression=False))
    if basis is not None:
        canceller.mdf.close()
        canceller.mdf = TwoReferenceMdf(canceller.mdf.tail_samples, canceller.mdf.rate_hz, basis, highpass_hz)
    mic, far = clip["mic"], clip["far"]
    out = np.zeros_like(mic)
    for s in range(0, mic.size - FRAME + 1, FRAME):
        canceller.process(mic[s:s + FRAME], far[s:s + FRAME], out[s:s + FRAME])
    canceller.close()
    return erle_db(mic, out, 2.0), erle_db(mic, out, clip["seconds"] - 3.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("echo_set", type=Path, help="a folder built by `python -m evaluation.echo_set`")
    args = parser.parse_args(argv)
    clips = [clip for clip in load_set(args.echo_set) if clip["talk_type"] == "st"]
    print(f"linear stage (no residual suppression), {len(clips)} far-end single-talk clips: ERLE after 2 s / "
          "over the last 3 s, dB")
    print("| MDF references | " + " | ".join(clip["name"] for clip in clips) + " | mean |")
    print("|---|" + "---:|" * (len(clips) + 1))
    for label, (basis, highpass_hz) in BASES.items():
        erle = np.array([run_clip(clip, basis, highpass_hz) for clip in clips])
        cells = [f"{after:.1f} / {end:.1f}" for after, end in erle]
        print(f"| {label} | " + " | ".join(cells) + f" | {erle[:, 0].mean():.1f} / {erle[:, 1].mean():.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
