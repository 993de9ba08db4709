"""SpeexDSP's MDF echo canceller and preprocessor through ctypes (the system's ``libspeexdsp.so.1``).

The ABI relied on (speexdsp 1.2.x: Debian / Raspberry Pi OS ``libspeexdsp1``; headers
``speex/speex_echo.h``, ``speex/speex_preprocess.h``; ``spx_int16_t`` = int16_t,
``spx_int32_t`` = int32_t; the state types are opaque pointers)::

    SpeexEchoState *speex_echo_state_init(int frame_size, int filter_length);
    void speex_echo_state_destroy(SpeexEchoState *st);
    int  speex_echo_ctl(SpeexEchoState *st, int request, void *ptr);
    void speex_echo_cancellation(SpeexEchoState *st, const spx_int16_t *rec, const spx_int16_t *play,
                                 spx_int16_t *out);
    SpeexPreprocessState *speex_preprocess_state_init(int frame_size, int sampling_rate);
    void speex_preprocess_state_destroy(SpeexPreprocessState *st);
    int  speex_preprocess_ctl(SpeexPreprocessState *st, int request, void *ptr);
    int  speex_preprocess_run(SpeexPreprocessState *st, spx_int16_t *x);      /* in place */

and, for the reference's clock drift (``speex/speex_resampler.h``; ``spx_uint32_t`` = uint32_t; the float
build's ``process_float`` takes ``float``)::

    SpeexResamplerState *speex_resampler_init_frac(spx_uint32_t nb_channels, spx_uint32_t ratio_num,
        spx_uint32_t ratio_den, spx_uint32_t in_rate, spx_uint32_t out_rate, int quality, int *err);
    void speex_resampler_destroy(SpeexResamplerState *st);
    int  speex_resampler_process_float(SpeexResamplerState *st, spx_uint32_t channel_index, const float *in,
                                       spx_uint32_t *in_len, float *out, spx_uint32_t *out_len);
    int  speex_resampler_set_rate_frac(SpeexResamplerState *st, spx_uint32_t ratio_num, spx_uint32_t ratio_den,
                                       spx_uint32_t in_rate, spx_uint32_t out_rate);
    int  speex_resampler_get_input_latency(SpeexResamplerState *st);
    int  speex_resampler_skip_zeros(SpeexResamplerState *st);
    int  speex_resampler_reset_mem(SpeexResamplerState *st);

Request codes (the header's numbers): echo SET_SAMPLING_RATE 24 and GET_IMPULSE_RESPONSE_SIZE 27 /
GET_IMPULSE_RESPONSE 29 (``int*`` / ``spx_int32_t*``); preprocess SET_DENOISE 0, SET_NOISE_SUPPRESS 18,
SET_ECHO_SUPPRESS 20, SET_ECHO_SUPPRESS_ACTIVE 22 (``spx_int32_t*``, dB) and SET_ECHO_STATE 24, whose
``ptr`` is the ``SpeexEchoState*`` itself, not its address.

Behaviour this module depends on (read in mdf.c / preprocess.c and measured):

- the echo state starts at 8000 Hz: the rate is set right after init, which also sets the adaptation
  constants and the input DC notch (a 2nd-order high-pass, -9 dB at 50 Hz, phase shift up to ~300 Hz);
- the preprocessor suppresses residual echo only while its denoiser is on, so noise suppression is
  kept on with a 0 dB limit (the network does the noise; this stage does only echo);
- ``speex_echo_state_reset`` zeroes the filter but keeps its per-block adaptation weights (``prop``), so a
  restart makes a new state instead (:meth:`SpeexMdf.reset`);
- the library is built in floating point on Debian for amd64 and arm64 (``dh $@``, configure defaults).
"""

import ctypes
import ctypes.util

import numpy as np

from edge.errors import MissingDependencyError, UsageError

LIBRARY_NAME = "libspeexdsp.so.1"
INSTALL_HINT = "install it with `sudo apt-get install libspeexdsp1` (Debian, Raspberry Pi OS, Ubuntu)"

ECHO_SET_SAMPLING_RATE = 24
ECHO_GET_IMPULSE_RESPONSE_SIZE = 27
ECHO_GET_IMPULSE_RESPONSE = 29
PREPROCESS_SET_DENOISE = 0
PREPROCESS_SET_NOISE_SUPPRESS = 18
PREPROCESS_SET_ECHO_SUPPRESS = 20
PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE = 22
PREPROCESS_SET_ECHO_STATE = 24

_P = ctypes.c_void_p
_INT = ctypes.c_int
_I16P = ctypes.POINTER(ctypes.c_int16)
_U32 = ctypes.c_uint32
_U32P = ctypes.POINTER(ctypes.c_uint32)
_F32P = ctypes.POINTER(ctypes.c_float)
_SIGNATURES = {
    "speex_echo_state_init": (_P, [_INT, _INT]),
    "speex_echo_state_destroy": (None, [_P]),
    "speex_echo_ctl": (_INT, [_P, _INT, _P]),
    "speex_echo_cancellation": (None, [_P, _I16P, _I16P, _I16P]),
    "speex_preprocess_state_init": (_P, [_INT, _INT]),
    "speex_preprocess_state_destroy": (None, [_P]),
    "speex_preprocess_ctl": (_INT, [_P, _INT, _P]),
    "speex_preprocess_run": (_INT, [_P, _I16P]),
    "speex_resampler_init_frac": (_P, [_U32, _U32, _U32, _U32, _U32, _INT, ctypes.POINTER(_INT)]),
    "speex_resampler_destroy": (None, [_P]),
    "speex_resampler_process_float": (_INT, [_P, _U32, _F32P, _U32P, _F32P, _U32P]),
    "speex_resampler_set_rate_frac": (_INT, [_P, _U32, _U32, _U32, _U32]),
    "speex_resampler_get_input_latency": (_INT, [_P]),
    "speex_resampler_skip_zeros": (_INT, [_P]),
    "speex_resampler_reset_mem": (_INT, [_P]),
}
_library = None


def library():
    """The loaded libspeexdsp with its signatures declared; :class:`MissingDependencyError` if it is absent."""
    global _library
    if _library is None:
        name = ctypes.util.find_library("speexdsp") or LIBRARY_NAME
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise MissingDependencyError(f"echo cancellation needs SpeexDSP ({LIBRARY_NAME}), which is not "
                                         f"installed: {INSTALL_HINT}; or set echo.enabled: false") from None
        for function, (restype, argtypes) in _SIGNATURES.items():
            try:
                handle = getattr(lib, function)
            except AttributeError:
                raise MissingDependencyError(f"{name} has no {function}: it is not SpeexDSP 1.2; "
                                             f"{INSTALL_HINT}") from None
            handle.restype, handle.argtypes = restype, argtypes
        _library = lib
    return _library


def available():
    """True when libspeexdsp loads (tests skip on False, saying why)."""
    try:
        library()
        return True
    except MissingDependencyError:
        return False


def _int32(value):
    return ctypes.byref(ctypes.c_int32(int(value)))


class SpeexMdf:
    """One MDF canceller (and optionally its residual-echo preprocessor) over int16 frames.

    :meth:`process` takes the microphone frame and the time-aligned reference frame
    (int16, ``frame_samples`` each) and writes the echo-cancelled frame into ``out``;
    no array is allocated per frame. ``block_samples`` (default: the frame) is MDF's own block:
    a frame is cancelled in ``frame_samples / block_samples`` steps, MDF adapting after each
    (a trial setting: docs/echo.md, *MDF's block*).
    """

    def __init__(self, frame_samples, tail_samples, rate_hz, residual_suppression=True,
                 echo_suppress_db=-40, echo_suppress_active_db=-15, block_samples=None):
        block_samples = frame_samples if block_samples is None else int(block_samples)
        if block_samples <= 0 or frame_samples % block_samples:
            raise UsageError(f"echo canceller: a block of {block_samples} samples does not divide the frame of "
                             f"{frame_samples}")
        if tail_samples < block_samples:
            raise UsageError(f"echo canceller: block {block_samples} and tail {tail_samples} samples: the tail must "
                             "be at least one block")
        lib = self._lib = library()
        self.frame_samples, self.tail_samples, self.rate_hz = frame_samples, tail_samples, rate_hz
        self.block_samples = block_samples
        self._pre = None
        self._echo = self._new_echo_state()
        if residual_suppression:
            self._pre = lib.speex_preprocess_state_init(block_samples, int(rate_hz))
            lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_ECHO_STATE, self._echo)   # the pointer itself
            # denoiser on (or the echo gain is never applied) with a 0 dB noise floor: echo only
            lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_DENOISE, _int32(1))
            lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_NOISE_SUPPRESS, _int32(0))
            lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_ECHO_SUPPRESS, _int32(echo_suppress_db))
            lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, _int32(echo_suppress_active_db))

    @property
    def latency_samples(self):
        """How late :meth:`process` gives a sample back: one block with the residual suppression (the
        preprocessor's weighted overlap-add returns the previous block), none without (MDF itself is in step)."""
        return self.block_samples if self._pre is not None else 0

    def process(self, mic, far, out):
        """``out`` = ``mic`` without the echo of ``far``, :attr:`latency_samples` late; all int16 C-contiguous
        arrays of one frame."""
        for array in (mic, far, out):
            if array.dtype != np.int16 or array.shape != (self.frame_samples,) or not array.flags.c_contiguous:
                raise ValueError(f"expected C-contiguous int16 arrays of {self.frame_samples} samples")
        lib, step = self._lib, 2 * self.block_samples           # bytes per block of int16
        mic_at, far_at, out_at = mic.ctypes.data, far.ctypes.data, out.ctypes.data
        for offset in range(0, 2 * self.frame_samples, step):
            block_out = ctypes.cast(out_at + offset, _I16P)
            lib.speex_echo_cancellation(self._echo, ctypes.cast(mic_at + offset, _I16P),
                                        ctypes.cast(far_at + offset, _I16P), block_out)
            if self._pre is not None:
                lib.speex_preprocess_run(self._pre, block_out)
        return out

    def _new_echo_state(self):
        echo = self._lib.speex_echo_state_init(self.block_samples, self.tail_samples)
        if not echo:
            raise MemoryError("speex_echo_state_init returned NULL")
        rate = ctypes.c_int(int(self.rate_hz))
        self._lib.speex_echo_ctl(echo, ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))     # default is 8000 Hz
        return echo

    def reset(self):
        """Forget the echo path (after the reference delay moved, the old filter is wrong everywhere): a new
        echo state, the same as a start. ``speex_echo_state_reset`` zeroes the filter but keeps its per-block
        adaptation weights (``prop``, set at init, re-shaped only once the filter has adapted again), so a restart
        adapted otherwise than a start, and held 29.7 dB of ERLE over the last 10 s after a +20 ms step where a new
        state reaches 46.3 (``python -m evaluation.echo_step``, docs/echo.md). The preprocessor keeps its state and
        follows the new echo state."""
        old, self._echo = self._echo, self._new_echo_state()
        if self._pre:
            self._lib.speex_preprocess_ctl(self._pre, PREPROCESS_SET_ECHO_STATE, self._echo)
        self._lib.speex_echo_state_destroy(old)

    def impulse_response(self):
        """The adaptive filter, time domain (its peak is the echo path's strongest tap)."""
        size = ctypes.c_int32()
        self._lib.speex_echo_ctl(self._echo, ECHO_GET_IMPULSE_RESPONSE_SIZE, ctypes.byref(size))
        response = np.zeros(size.value, np.int32)
        self._lib.speex_echo_ctl(self._echo, ECHO_GET_IMPULSE_RESPONSE, response.ctypes.data_as(_P))
        return response

    def close(self):
        if self._pre:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if self._echo:
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self):
        if getattr(self, "_lib", None) is not None:
            self.close()
