"""The PercepNet DSP core, shared by the device and the training pipeline.

Streaming: :class:`Enhancer` (one 480-sample frame in, one out).
Batch: :func:`analyse_signal` (features), :func:`oracle_gains` (training
targets), :func:`enhance_signal` and :func:`oracle_enhance` (whole signals).
"""

from .constants import (COMPATIBLE_FEATURE_VERSIONS, FEATURE_VERSION, HOP_SAMPLES, LATENCY_MS, LATENCY_SAMPLES,
                        LOOKAHEAD_FRAMES, N_BANDS, N_BINS, N_FEATURES, SAMPLE_RATE_HZ, WINDOW_SAMPLES)
from .echo_features import N_FAR_END_FEATURES, N_JOINT_FEATURES, EchoAnalysis, far_end_features
from .noise_floor import N_FLOOR_JOINT_FEATURES, NoiseFloor, floor_features, model_inputs
from .enhancer import ORACLE_SETTINGS, Enhancer, EnhancerSettings, unity_gains
from .offline import (FrameGains, SignalAnalysis, analyse_signal, enhance_signal, frames_to_flush, highpass_signal,
                      n_frames_for, oracle_enhance, oracle_gains, with_flush_padding)

__all__ = [
    "COMPATIBLE_FEATURE_VERSIONS", "FEATURE_VERSION", "N_FAR_END_FEATURES", "N_JOINT_FEATURES", "EchoAnalysis",
    "far_end_features", "HOP_SAMPLES", "LATENCY_MS", "LATENCY_SAMPLES", "LOOKAHEAD_FRAMES", "N_BANDS",
    "N_BINS", "N_FEATURES", "SAMPLE_RATE_HZ", "WINDOW_SAMPLES", "ORACLE_SETTINGS", "Enhancer",
    "EnhancerSettings", "unity_gains", "FrameGains", "SignalAnalysis", "analyse_signal",
    "enhance_signal", "highpass_signal", "oracle_enhance", "oracle_gains", "n_frames_for", "frames_to_flush",
    "with_flush_padding", "N_FLOOR_JOINT_FEATURES", "NoiseFloor", "floor_features", "model_inputs",
]
