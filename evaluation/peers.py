"""Peer denoisers timed and scored in the same run as our DSP.

Only RNNoise for now, through the PyPI package ``pyrnnoise`` (the ``bench``
extra: ``pip install 'percepnet-edge[bench]'``).  We skip its high-level
``RNNoise`` class (which resamples through libav and converts dtypes on every
frame) and call the bundled C library through the ctypes handle that
``pyrnnoise.rnnoise`` already sets up: ``lib.rnnoise_create(None)``, then one
``lib.rnnoise_process_frame(state, out, in)`` per 480-sample 48 kHz frame, on
float32 samples in the int16 scale (+-32768), in place, and
``lib.rnnoise_destroy(state)``: the per-frame cost of a real-time caller plus
one ctypes call.

RNNoise's output lags its input by :data:`RNNOISE_LAG` = 960 samples (two
frames, 20 ms at 48 kHz), measured on the library pyrnnoise 0.4.5 bundles by
cross-correlating a synthetic voiced signal with the output (normalised peak
0.998 at 960; an older RNNoise build may lag by one frame less).
pyrnnoise is imported lazily: importing it also imports ``audiolab`` and
``av`` (about 0.2 s), which the device never needs.
"""

from __future__ import annotations

import ctypes
import time
from typing import Callable

import numpy as np

from edge.dsp import HOP_SAMPLES, SAMPLE_RATE_HZ, n_frames_for

RNNOISE_RATE = SAMPLE_RATE_HZ
RNNOISE_FRAME = HOP_SAMPLES     # RNNoise works in 10 ms frames at 48 kHz too
RNNOISE_LAG = 960  # samples at 48 kHz, measured
_SCALE = 32768.0


def rnnoise_available() -> str | None:
    """Return None when pyrnnoise can be used, else a human-readable reason."""
    try:
        from pyrnnoise import rnnoise  # noqa: F401
    except ImportError as exc:
        return f"pyrnnoise is not installed ({exc}): pip install 'percepnet-edge[bench]'"
    except OSError as exc:  # the wheel's shared library is missing or will not load
        return f"pyrnnoise cannot load its RNNoise library: {exc}"
    return None


def _frames(audio: np.ndarray) -> np.ndarray:
    """The signal as a (n_frames, 480) float64 array, zero-padded at the end."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {audio.shape}")
    n_frames = n_frames_for(audio.size)
    padded = np.zeros(n_frames * RNNOISE_FRAME)
    padded[: audio.size] = audio
    return padded.reshape(n_frames, RNNOISE_FRAME)


def _run(audio: np.ndarray, timer: Callable[[], float] | None):
    """Denoise frame by frame with a fresh state; optionally time each frame.

    Returns ``(output frames, per-frame times or None)``.  The timed region of
    a frame covers what a real-time caller does per frame: scale the float
    frame to int16 range into a float32 buffer, one ``rnnoise_process_frame``
    call in place, and scale the result back to float.
    """
    from pyrnnoise.rnnoise import lib

    frames = _frames(audio)
    out = np.empty_like(frames)
    times = np.empty(len(frames)) if timer is not None else None
    buf = np.empty(RNNOISE_FRAME, dtype=np.float32)
    ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    process = lib.rnnoise_process_frame
    state = lib.rnnoise_create(None)
    if not state:
        raise MemoryError("rnnoise_create failed")
    try:
        for i, frame in enumerate(frames):
            if timer is not None:
                t0 = timer()
            np.multiply(frame, _SCALE, out=buf, casting="same_kind")
            process(state, ptr, ptr)
            np.multiply(buf, 1.0 / _SCALE, out=out[i])
            if timer is not None:
                times[i] = timer() - t0
    finally:
        lib.rnnoise_destroy(state)
    return out, times


def rnnoise_frame_times(audio: np.ndarray, timer: Callable[[], float] = time.perf_counter) -> np.ndarray:
    """Per-frame RNNoise processing times, in seconds, as a float64 array.

    ``audio`` is a float mono 48 kHz signal in [-1, 1]; it is cut into
    480-sample frames (the last one zero-padded) and run through a fresh
    RNNoise state one call per frame, int16-scale conversion included in each
    timed region (see :func:`_run`).  ``timer`` returns seconds: the default
    ``time.perf_counter`` gives wall time, ``time.thread_time`` gives this
    thread's CPU time (so ``times.sum() / duration`` is CPU seconds per audio
    second).  The first frame also pays for cold caches.
    """
    return _run(audio, timer)[1]


def rnnoise_denoise(audio: np.ndarray) -> np.ndarray:
    """RNNoise's output for the whole signal, float, same scale and length as input.

    The output lags the input by :data:`RNNOISE_LAG` (960) samples and is not
    compensated here: to align with the input, use ``out[RNNOISE_LAG:]``
    against ``audio[:-RNNOISE_LAG]``.
    """
    n = np.asarray(audio).size
    return _run(audio, None)[0].reshape(-1)[:n]
