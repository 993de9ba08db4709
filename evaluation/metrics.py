"""Alignment, quality metrics and CPU cost.

* Alignment: :func:`edge.io.quality.align` against the reference, lag searched
  within +-:data:`MAX_LAG_MS`; the lag found is reported per method.
* PESQ-WB (``pesq``, mode 'wb') and STOI (``pystoi``, which resamples to its
  10 kHz itself) on 16 kHz copies; SI-SDR (:func:`edge.io.quality.si_sdr_db`) at 48 kHz.
* DNSMOS P.835 (OVRL, SIG, BAK), offline, from the ONNX models bundled with
  ``speechmos``: through ``speechmos.dnsmos.run(audio_16k, sr=16000)`` when
  that imports (it needs ``librosa``), else the same primary model and the
  same segmentation and polynomial mapping run here with onnxruntime (P.808
  MOS, which needs librosa's mel spectrogram, is then left out).
* Cost: ``time.thread_time`` (this thread's CPU seconds) around the processing
  call only; ``time.process_time`` beside it reveals a method that computes on
  other threads.
"""

import time
from importlib import util as import_util
from pathlib import Path

import numpy as np

from edge.dsp import SAMPLE_RATE_HZ
from edge.io.quality import align, si_sdr_db
from edge.io.wav import resample

MAX_LAG_MS = 100.0
MAX_LAG = int(MAX_LAG_MS * SAMPLE_RATE_HZ / 1000)
METRIC_RATE = 16_000


def align_to(reference, output, lag_samples=None):
    """``(output shifted onto reference, same length; lag in ms)`` (positive lag: output is late); ``lag_samples``:
    the method's lag known beforehand (searched for when None)."""
    aligned, lag = align(reference, np.asarray(output, dtype=np.float64), MAX_LAG, lag_samples)
    return aligned, 1000.0 * lag / SAMPLE_RATE_HZ


def lag_samples(reference, output):
    """The lag of ``output`` behind ``reference`` (samples) that the cross-correlation finds."""
    return align(reference, np.asarray(output, dtype=np.float64), MAX_LAG)[1]


def timed(function, *args):
    """``(result, thread CPU seconds, process CPU seconds)`` of one call."""
    thread0, process0 = time.thread_time(), time.process_time()
    result = function(*args)
    return result, time.thread_time() - thread0, time.process_time() - process0


def to_metric_rate(signal, rate=SAMPLE_RATE_HZ):
    """The 16 kHz copy PESQ-WB, STOI and DNSMOS are computed on."""
    return resample(np.asarray(signal, dtype=np.float64), rate, METRIC_RATE)


def pesq_wb(reference, degraded, rate=SAMPLE_RATE_HZ):
    """PESQ-WB (ITU-T P.862.2) of ``degraded`` against ``reference``, both at ``rate``, scored at 16 kHz.

    Raises ``pesq.PesqError`` where PESQ finds no utterance in the reference.
    """
    from pesq import pesq
    return float(pesq(METRIC_RATE, to_metric_rate(reference, rate), to_metric_rate(degraded, rate), "wb"))


def missing_packages():
    """``{metric: reason}`` for the reference metrics whose package is not installed."""
    reasons = {}
    for metric, module, package in (("pesq_wb", "pesq", "pesq"), ("stoi", "pystoi", "pystoi")):
        if import_util.find_spec(module) is None:
            reasons[metric] = f"{package} is not installed: pip install {package}"
    return reasons


def reference_scores(clean, aligned, clean_16k, skip=()):
    """PESQ-WB, STOI and SI-SDR of an aligned output against the clean reference (None = not computed)."""
    scores = {"si_sdr_db": si_sdr_db(clean, aligned)}
    aligned_16k = to_metric_rate(aligned)
    scores["pesq_wb"] = None
    if "pesq_wb" not in skip:
        from pesq import PesqError
        try:
            scores["pesq_wb"] = pesq_wb(clean_16k, aligned_16k, rate=METRIC_RATE)
        except PesqError:                      # e.g. no utterance found in the reference
            pass
    scores["stoi"] = None
    if "stoi" not in skip:
        from pystoi import stoi
        scores["stoi"] = float(stoi(clean_16k, aligned_16k, METRIC_RATE, extended=False))
    return scores


class Dnsmos:
    """DNSMOS P.835 scorer; build with :meth:`load`, which says why when it cannot run."""

    INPUT_SECONDS = 9.01
    # speechmos.dnsmos.DNSMOS.get_polyfit_val, non-personalised (the DNS challenge mapping)
    _POLY = {"sig": np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
             "bak": np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
             "ovrl": np.poly1d([-0.06766283, 1.11546468, 0.04602535])}

    def __init__(self, backend, runner):
        self.backend, self._runner = backend, runner

    @classmethod
    def load(cls):
        """``(Dnsmos, None)`` or ``(None, reason)``."""
        try:
            from speechmos import dnsmos
            return cls("speechmos.dnsmos.run", cls._official(dnsmos)), None
        except ImportError as exc:
            official_error = exc
        spec = import_util.find_spec("speechmos")
        if spec is None or not spec.submodule_search_locations:
            return None, "speechmos is not installed: pip install speechmos onnxruntime librosa"
        model = Path(spec.submodule_search_locations[0]) / "dnsmos_models" / "sig_bak_ovr.onnx"
        try:
            import onnxruntime
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:                   # ImportError, or onnxruntime's own errors
            return None, f"speechmos.dnsmos does not import ({official_error}) and {model} cannot be run ({exc})"
        backend = f"speechmos ONNX model via onnxruntime (speechmos.dnsmos import failed: {official_error})"
        return cls(backend, cls._direct(session)), None

    @staticmethod
    def _official(dnsmos):
        def run(audio):
            result = dnsmos.run(audio, sr=METRIC_RATE)
            return {"ovrl": result["ovrl_mos"], "sig": result["sig_mos"], "bak": result["bak_mos"],
                    "p808": result["p808_mos"]}
        return run

    @classmethod
    def _direct(cls, session):
        """The primary model as speechmos runs it: repeat to >= 9.01 s, 9.01 s windows hopped by 1 s."""
        def run(audio):
            window = int(cls.INPUT_SECONDS * METRIC_RATE)
            while audio.size < window:
                audio = np.append(audio, audio)
            hops = int(np.floor(audio.size / METRIC_RATE) - cls.INPUT_SECONDS) + 1
            starts = np.arange(hops) * METRIC_RATE
            segments = audio[starts[:, None] + np.arange(window)[None, :]].astype(np.float32)
            raw = np.concatenate([session.run(None, {"input_1": segment[None]})[0] for segment in segments])
            return {"ovrl": float(np.mean(cls._POLY["ovrl"](raw[:, 2]))),
                    "sig": float(np.mean(cls._POLY["sig"](raw[:, 0]))),
                    "bak": float(np.mean(cls._POLY["bak"](raw[:, 1]))), "p808": None}
        return run

    def __call__(self, audio_16k):
        """``{"ovrl", "sig", "bak", "p808"}`` for a 16 kHz signal (clipped to [-1, 1] first)."""
        scores = self._runner(np.clip(np.asarray(audio_16k, dtype=np.float64), -1.0, 1.0))
        return {key: None if value is None else float(value) for key, value in scores.items()}
