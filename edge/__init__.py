"""percepnet-edge: real-time PercepNet speech noise suppression for ARM devices.

The device side lives here: the DSP core (:mod:`edge.dsp`), shared bit-for-bit
with the training pipeline, and the command line (:mod:`edge.commands.cli`).
"""

__version__ = "0.1.0"
