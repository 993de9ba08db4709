"""The evaluation loop: every method on every clip, then aligned, scored and timed alike.

For each clip the methods run one after the other (so a busy machine slows
all alike) on the noisy input followed by :data:`~.metrics.MAX_LAG_MS` of
zeros, so that a late output is complete after alignment. Each output is
aligned to the reference before scoring; without one (real recordings), it is
shifted by the method's lag measured on its warm-up run against clean speech.

The reference is the clean signal through the DSP's 40 Hz DC/rumble high-pass
(:func:`edge.dsp.highpass_signal`, documented there as the reference for
scoring), and every output passes through that same filter exactly once: an
output that did not (``Method.highpassed`` false) is filtered before
alignment. So some corpus recordings' sub-60 Hz rumble (up to 17 % of a
clip's energy), which every method removes, does not cap everyone's SI-SDR,
and the filter's phase is the same on both sides (a one-sample misalignment
alone would cap SI-SDR near 20 dB).

Each clip also carries its input level (:mod:`.levels`): the active speech
level of the clean reference, or of the input when there is none, and its
level band; the report breaks every table down by band.

A method that raises is reported with the error and dropped from the rest of
the run; its earlier clips are discarded too, so that every method's averages
cover the same clips.
"""

import hashlib

import numpy as np

from edge.dsp import SAMPLE_RATE_HZ, highpass_signal
from edge.io.synthetic import mix_at_snr, noise, speech_like

from . import levels, metrics

WARM_UP_SECONDS = 1.0
NO_REFERENCE = ("none: each method's lag measured once, against the clean speech of its warm-up run, and applied to "
                "every clip")
REFERENCE = "clean through the DSP's 40 Hz high-pass (edge.dsp.highpass_signal), as every output"


def _warm_up(method):
    """One untimed run on generated audio: lazy imports, library init and caches are not billed. Returns the
    method's lag (samples) against the warm-up's clean speech: clips without a clean reference are aligned by it.
    (A lag found per clip against the noisy input missed on 8 of the 62 real recordings, by up to 112 ms for
    RNNoise, whose lag is a constant 20 ms, and that lowered its DNSMOS there.)"""
    clean = speech_like(WARM_UP_SECONDS, seed=11)
    method.reset()
    padded = np.pad(mix_at_snr(clean, noise("pink", WARM_UP_SECONDS, seed=12), 5.0), (0, metrics.MAX_LAG))
    output = np.asarray(method.process(padded, np.pad(clean, (0, metrics.MAX_LAG))), dtype=np.float64).reshape(-1)
    if not method.highpassed:
        output = highpass_signal(output)
    return metrics.lag_samples(highpass_signal(clean), output)


def _run_one(method, clip, padded, reference, reference_16k, dnsmos, skip_metrics, lag_samples=None):
    """Process one clip with one method; returns its row of results. Without a clean reference the output is
    shifted by ``lag_samples`` (the warm-up's); with one, by the lag found against it."""
    method.reset()
    clean = None if clip.clean is None else np.pad(clip.clean, (0, padded.size - clip.noisy.size))
    output, cpu, process_cpu = metrics.timed(method.process, padded, clean)
    output = np.asarray(output, dtype=np.float64).reshape(-1)
    if output.size == 0 or not np.all(np.isfinite(output)):
        raise RuntimeError("the output is empty or holds non-finite samples")
    if not method.highpassed:
        output = highpass_signal(output)
    aligned, lag_ms = metrics.align_to(reference, output, None if clip.clean is not None else lag_samples)
    row = {"lag_ms": lag_ms, "cpu_s": cpu, "process_cpu_s": process_cpu,
           "audio_s": padded.size / SAMPLE_RATE_HZ}
    if clip.clean is not None:
        row.update(metrics.reference_scores(reference, aligned, reference_16k, skip_metrics))
    if dnsmos is not None:
        row.update({f"dnsmos_{k}": v for k, v in dnsmos(metrics.to_metric_rate(aligned)).items()})
    return row


def audio_sha256(clip):
    """A digest of the clip's samples (noisy, then clean when there is one), as float32: two runs that name the same
    clip but read other audio (a rebuilt corpus, another --seed or --seconds) are told apart by
    ``evaluation.combine``."""
    digest = hashlib.sha256(np.ascontiguousarray(clip.noisy, dtype="<f4").tobytes())
    if clip.clean is not None:
        digest.update(np.ascontiguousarray(clip.clean, dtype="<f4").tobytes())
    return digest.hexdigest()


def evaluate(clips, methods, use_dnsmos=True, say=print):
    """Run ``methods`` on ``clips``.

    Returns a dict: ``clips`` (per-clip results by method name), ``methods``
    (what ran, with latency and notes), ``skipped``, ``failed`` and
    ``metrics_skipped`` (each ``{name: reason}``), ``dnsmos_backend`` and
    ``has_reference``.
    """
    has_reference = all(clip.clean is not None for clip in clips)
    failed, skipped, metrics_skipped = {}, {}, dict(metrics.missing_packages()) if has_reference else {}
    if not has_reference:
        metrics_skipped.update({m: "no clean reference (--noisy-only)" for m in ("pesq_wb", "stoi", "si_sdr_db")})
    dnsmos, backend = None, None
    if use_dnsmos:
        dnsmos, reason = metrics.Dnsmos.load()
        if dnsmos is None:
            metrics_skipped["dnsmos"] = reason
        else:
            backend = dnsmos.backend
    else:
        metrics_skipped["dnsmos"] = "turned off (--no-dnsmos)"
    active, warm_up_lags = [], {}
    for method in methods:
        if method.needs_clean and not has_reference:
            skipped[method.name] = "needs the clean reference, which --noisy-only inputs lack"
            continue
        try:
            warm_up_lags[method.name] = _warm_up(method)
        except Exception as exc:                              # reported, never faked
            failed[method.name] = f"warm-up run failed: {type(exc).__name__}: {exc}"
            continue
        active.append(method)
    results = []
    for index, clip in enumerate(clips):
        padded = np.pad(clip.noisy, (0, metrics.MAX_LAG))
        reference = highpass_signal(clip.clean if clip.clean is not None else clip.noisy)
        reference_16k = metrics.to_metric_rate(reference)
        per_method = {}
        for method in list(active):
            try:
                per_method[method.name] = _run_one(method, clip, padded, reference, reference_16k,
                                                   dnsmos, metrics_skipped, warm_up_lags[method.name])
            except Exception as exc:
                failed[method.name] = f"failed on clip {clip.name}: {type(exc).__name__}: {exc}"
                active.remove(method)
                for earlier in results:
                    earlier["results"].pop(method.name, None)
        level_dbfs, level_of = levels.clip_level(clip, SAMPLE_RATE_HZ)
        results.append({"name": clip.name, "snr_db": clip.snr_db, "snr_bucket": clip.snr_bucket,
                        "family": clip.family, "group": clip.group, "seconds": clip.noisy.size / SAMPLE_RATE_HZ,
                        "audio_sha256": audio_sha256(clip),
                        "level_dbfs": level_dbfs, "level_of": level_of,
                        "level_band": levels.level_band(level_dbfs), "results": per_method})
        headline = "pesq_wb" if has_reference and "pesq_wb" not in metrics_skipped else "dnsmos_ovrl"
        say(f"[{index + 1}/{len(clips)}] {clip.name} {headline}: " + ", ".join(
            f"{name.split(' (')[0]} {row[headline]:.2f}" for name, row in per_method.items()
            if row.get(headline) is not None))
    ran = {m.name: {"kind": m.kind, "latency_ms": m.latency_ms, "note": m.note}
           for m in methods if m.name not in failed and m.name not in skipped}
    return {"clips": results, "methods": ran, "skipped": skipped, "failed": failed,
            "metrics_skipped": metrics_skipped, "dnsmos_backend": backend, "has_reference": has_reference,
            "reference": REFERENCE if has_reference else NO_REFERENCE}
