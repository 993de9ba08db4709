"""File-to-file commands: the oracle run (and its built-in demo), and denoise."""

import os
from pathlib import Path

from . import synthetic
from .audio import read_wav, resample, to_dsp_format, write_wav
from .dsp import (LATENCY_MS, ORACLE_SETTINGS, SAMPLE_RATE_HZ, EnhancerSettings, enhance_signal,
                  highpass_signal, oracle_enhance)
from .quality import si_sdr_db, snr_db

#: The model `denoise` uses when none is named.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "lite" / "percepnet_lite.tflite"
DEMO_SECONDS = 8.0
DEMO_SNR_DB = 0.0
DEMO_NOISE = "pink"


class UsageError(ValueError):
    """Bad input from the user; the message says what to change."""


def load_mono_48k(path, say=print):
    """Read a WAV file, convert it to 48 kHz mono and say what was converted."""
    samples, rate = read_wav(path)
    mono, notes = to_dsp_format(samples, rate)
    for note in notes:
        say(f"{path}: {note}")
    return mono, rate


def report_oracle(clean, noisy, enhanced, say=print):
    """Print SNR and SI-SDR of the noisy input and the oracle output; return the gains in dB."""
    reference = highpass_signal(clean)            # the enhancer high-passes its input
    noisy_ref = highpass_signal(noisy)
    rows = [("noisy input", snr_db(reference, noisy_ref), si_sdr_db(reference, noisy_ref)),
            ("oracle output", snr_db(reference, enhanced), si_sdr_db(reference, enhanced))]
    say(f"{'':16}{'SNR dB':>10}{'SI-SDR dB':>12}")
    for name, snr, sisdr in rows:
        say(f"{name:16}{snr:10.2f}{sisdr:12.2f}")
    snr_gain, sisdr_gain = rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]
    say(f"{'gain':16}{snr_gain:+10.2f}{sisdr_gain:+12.2f}")
    return snr_gain, sisdr_gain


def run_oracle(clean_path, noisy_path, out_path, max_attenuation_db=ORACLE_SETTINGS.max_attenuation_db,
               say=print):
    """``percepnet-edge oracle CLEAN NOISY OUT``: the full chain with oracle gains and strengths."""
    clean, _ = load_mono_48k(clean_path, say)
    noisy, noisy_rate = load_mono_48k(noisy_path, say)
    if abs(clean.size - noisy.size) > 0:
        raise UsageError(f"{clean_path} and {noisy_path} differ in length ({clean.size} vs {noisy.size} "
                         "samples at 48 kHz): the oracle needs the clean signal and the noisy one aligned "
                         "sample for sample")
    settings = EnhancerSettings(max_attenuation_db=max_attenuation_db, postfilter_beta=0.0,
                                gain_release_per_frame=None)
    enhanced = oracle_enhance(clean, noisy, settings=settings)
    report_oracle(clean, noisy, enhanced, say)
    clipped = write_wav(out_path, resample(enhanced, SAMPLE_RATE_HZ, noisy_rate), noisy_rate)
    _say_written(out_path, noisy_rate, clipped, say)


def run_denoise(in_path, out_path, model_path=None, settings=EnhancerSettings(), num_threads=1, say=print):
    """``percepnet-edge denoise IN OUT``: enhance with the int8 model; OUT aligned with IN, same rate and length."""
    from .engine import ModelRunner
    noisy, rate = load_mono_48k(in_path, say)
    runner = ModelRunner(model_path or DEFAULT_MODEL, num_threads=num_threads)
    say(f"model: {runner.describe()}")
    enhanced = enhance_signal(noisy, runner, settings)
    clipped = write_wav(out_path, resample(enhanced, SAMPLE_RATE_HZ, rate), rate)
    _say_written(out_path, rate, clipped, say)


def run_demo(out_dir, say=print):
    """The built-in default: generated speech-like audio in pink noise at 0 dB, through the oracle."""
    os.makedirs(out_dir, exist_ok=True)
    clean = synthetic.speech_like(DEMO_SECONDS, seed=1)
    noisy = synthetic.mix_at_snr(clean, synthetic.noise(DEMO_NOISE, DEMO_SECONDS, seed=2), DEMO_SNR_DB)
    say(f"demo: {DEMO_SECONDS:.0f} s of generated speech-like audio in {DEMO_NOISE} noise at "
        f"{DEMO_SNR_DB:.0f} dB SNR, 48 kHz; algorithmic latency {LATENCY_MS:.1f} ms")
    enhanced = oracle_enhance(clean, noisy, settings=ORACLE_SETTINGS)
    report_oracle(clean, noisy, enhanced, say)
    for name, samples in (("clean", clean), ("noisy", noisy), ("oracle", enhanced)):
        path = os.path.join(out_dir, f"{name}.wav")
        _say_written(path, SAMPLE_RATE_HZ, write_wav(path, samples, SAMPLE_RATE_HZ), say)


def _say_written(path, rate, clipped, say):
    note = f" ({clipped} samples clipped to full scale)" if clipped else ""
    say(f"wrote {path} ({rate} Hz, mono, 16-bit){note}")
