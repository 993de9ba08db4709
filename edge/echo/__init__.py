"""Acoustic echo control: the device hears what its loudspeaker plays and removes it.

``speex_mdf`` binds SpeexDSP's MDF linear canceller and its preprocessor (residual
echo suppression) by ctypes; ``delay`` estimates and tracks the bulk delay between
the loudspeaker reference and the microphone (GCC-PHAT) and delays the reference
by it; ``drift`` measures a clock difference between the two and reads the
reference at the microphone's rate (SpeexDSP's resampler); ``canceller`` combines them into one per-frame stage that runs before the
noise network and falls back to passing the microphone through (noise suppression
alone) while the reference is missing or silent. Imports only io, dsp and errors.
"""

from edge.echo.canceller import EchoCanceller, EchoSettings, Mode, for_model

__all__ = ["EchoCanceller", "EchoSettings", "Mode", "for_model"]
