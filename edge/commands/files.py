"""File-to-file commands: the oracle run (and its built-in demo), and denoise.

Every command checks its output before any work: the folder exists and takes
a new file, there is room for the result, and the target is not a device,
FIFO or folder, nor (unless ``--follow-symlinks``) a symlink. ``denoise``
streams the file in one-second blocks, so its memory does not grow with the
file's length; the oracle analyses whole files and refuses long ones.
"""

import os
import tempfile
from pathlib import Path

import numpy as np

from edge.io import synthetic
from edge.io.atomic import refuse_special_target
from edge.errors import AudioFileError, UsageError
from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.io.wav import (StreamResampler, WavReader, WavWriter, conversion_notes, resample,
                    write_wav)
from edge.dsp import (LATENCY_MS, LATENCY_SAMPLES, ORACLE_SETTINGS, SAMPLE_RATE_HZ, Enhancer, EnhancerSettings,
                  frames_to_flush, highpass_signal, oracle_enhance)
from edge.dsp.constants import HOP_SAMPLES
from edge.io.quality import si_sdr_db, snr_db

#: Frames (10 ms) per streamed block: one second, so numpy calls are few and memory small.
BLOCK_FRAMES = 100
#: The oracle's batch analysis of clean and noisy holds several arrays per frame (about 7 MB per
#: second of audio, measured with tracemalloc); longer inputs are refused rather than risk the memory.
ORACLE_MAX_SECONDS = 30.0
WAV_HEADER_BYTES = 44


def free_bytes(folder):
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def prepare_output(path, n_bytes, follow_symlinks=False):
    """Check an output path before any processing; returns the path to write (a symlink's target if allowed)."""
    path = Path(path)
    if path.is_symlink():
        if not follow_symlinks:
            raise AudioFileError(f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through "
                                 "it: give the real path, or pass --follow-symlinks")
        path = path.resolve()
    try:
        refuse_special_target(path)
    except FileExistsError as exc:
        raise AudioFileError(exc.strerror) from None
    folder = path.absolute().parent
    if not folder.is_dir():
        raise AudioFileError(f"{path}: the folder {folder} does not exist" if not folder.exists()
                             else f"{path}: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot write in {folder} ({exc.strerror}); choose another folder") from None
    free = free_bytes(folder)
    if free < n_bytes:
        raise AudioFileError(f"{path}: not enough free space in {folder}: {free / 1e6:.1f} MB free, the output "
                             f"needs {n_bytes / 1e6:.1f} MB")
    return path


def output_samples(n_samples, rate):
    """Samples of an output at the input's rate: the input's length through 48 kHz and back."""
    at_48k = int(round(n_samples * SAMPLE_RATE_HZ / rate))
    return int(round(at_48k * rate / SAMPLE_RATE_HZ))


def _wav_bytes(n_samples):
    return WAV_HEADER_BYTES + 2 * n_samples


def _read_mono_48k(reader, say):
    """A whole (short) file as 48 kHz mono, saying what was converted."""
    for note in reader.notes + conversion_notes(reader.channels, reader.rate):
        say(f"{reader.path}: {note}")
    samples = reader.read_all()
    mono = samples.mean(axis=1) if reader.channels > 1 else samples[:, 0]
    return resample(mono, reader.rate, SAMPLE_RATE_HZ)


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
               say=print, follow_symlinks=False):
    """``percepnet-edge oracle CLEAN NOISY OUT``: the full chain with oracle gains and strengths."""
    with WavReader(clean_path) as clean_reader, WavReader(noisy_path) as noisy_reader:
        for reader in (clean_reader, noisy_reader):
            seconds = reader.frames / reader.rate
            if seconds > ORACLE_MAX_SECONDS:
                raise UsageError(f"{reader.path}: {seconds:.1f} s long; the oracle analyses whole files in memory "
                                 f"and takes at most {ORACLE_MAX_SECONDS:.0f} s: cut it first, e.g. "
                                 f"`sox in.wav out.wav trim 0 {ORACLE_MAX_SECONDS:.0f}`")
        noisy_rate = noisy_reader.rate
        target = prepare_output(out_path, _wav_bytes(output_samples(noisy_reader.frames, noisy_rate)),
                                follow_symlinks)
        clean = _read_mono_48k(clean_reader, say)
        noisy = _read_mono_48k(noisy_reader, say)
    if abs(clean.size - noisy.size) > 0:
        raise UsageError(f"{clean_path} and {noisy_path} differ in length ({clean.size} vs {noisy.size} "
                         "samples at 48 kHz): the oracle needs the clean signal and the noisy one aligned "
                         "sample for sample")
    settings = EnhancerSettings(max_attenuation_db=max_attenuation_db, postfilter_beta=0.0,
                                gain_release_per_frame=None)
    enhanced = oracle_enhance(clean, noisy, settings=settings)
    report_oracle(clean, noisy, enhanced, say)
    clipped = write_wav(target, resample(enhanced, SAMPLE_RATE_HZ, noisy_rate), noisy_rate)
    _say_written(out_path, noisy_rate, clipped, say)


def run_denoise(in_path, out_path, model_path=None, settings=EnhancerSettings(), num_threads=1, say=print,
                follow_symlinks=False):
    """``percepnet-edge denoise IN OUT``: enhance with the int8 model; OUT aligned with IN, same rate and length.

    Streams: the input is read, resampled, enhanced, resampled back and
    written one block at a time, so memory stays flat for any length.
    """
    from edge.model.engine import ModelRunner
    with WavReader(in_path) as reader:
        n_out = output_samples(reader.frames, reader.rate)
        target = prepare_output(out_path, _wav_bytes(n_out), follow_symlinks)
        for note in reader.notes + conversion_notes(reader.channels, reader.rate):
            say(f"{in_path}: {note}")
        runner = ModelRunner(model_path or DEFAULT_MODEL_PATH, num_threads=num_threads)
        say(f"model: {runner.describe()}")
        enhancer = Enhancer(runner, settings)
        with WavWriter(target, reader.rate, n_out) as writer:
            for block in denoise_blocks(reader, enhancer):
                writer.write(block)
    _say_written(out_path, reader.rate, writer.clipped, say)


def denoise_blocks(reader, enhancer, block_frames=BLOCK_FRAMES):
    """The enhanced file at the input's rate, block by block, aligned with the input (latency removed)."""
    to_48k = StreamResampler(reader.rate, SAMPLE_RATE_HZ, reader.frames)
    from_48k = StreamResampler(SAMPLE_RATE_HZ, reader.rate, to_48k.total_out)
    for enhanced, last in _enhanced_48k(reader, to_48k, enhancer, block_frames):
        out = from_48k.push(enhanced, final=last)
        if out.size:
            yield out


def _enhanced_48k(reader, to_48k, enhancer, block_frames):
    """Yields ``(samples, last)``: the 48 kHz enhanced signal without its 30 ms lead, as enhance_signal gives it.

    As in :func:`edge.dsp.enhance_signal`, the input is followed by silence
    until the last input sample has come out of the enhancer.
    """
    total = to_48k.total_out
    n_frames = frames_to_flush(total)
    block_in = max(1, block_frames * HOP_SAMPLES * reader.rate // SAMPLE_RATE_HZ)
    carry = np.zeros(0)
    frames_done, to_skip, to_emit, left_in = 0, LATENCY_SAMPLES, total, reader.frames
    while frames_done < n_frames:
        if left_in > 0:
            block = reader.read(min(block_in, left_in))
            left_in = left_in - block.shape[0] if block.shape[0] else 0     # a file cut short ends here
            mono = block.mean(axis=1) if reader.channels > 1 else block[:, 0]
            new = to_48k.push(mono, final=left_in == 0)
        else:
            new = np.zeros(block_frames * HOP_SAMPLES)                    # flush the look-ahead with silence
        source = np.concatenate([carry, new]) if carry.size else new
        count = min(source.size // HOP_SAMPLES, n_frames - frames_done)
        out = np.empty(count * HOP_SAMPLES)
        for t in range(count):
            frame = slice(t * HOP_SAMPLES, (t + 1) * HOP_SAMPLES)
            enhancer.process(source[frame], out=out[frame])
        carry = source[count * HOP_SAMPLES:]
        frames_done += count
        skip = min(to_skip, out.size)
        to_skip -= skip
        piece = out[skip:skip + to_emit]
        to_emit -= piece.size
        yield piece, frames_done == n_frames


def run_oracle_demo(out_dir, say=print, follow_symlinks=False):
    """The built-in default of ``oracle``: the demo input (:func:`edge.io.synthetic.demo_mixture`) through the oracle."""
    os.makedirs(out_dir, exist_ok=True)
    n_bytes = _wav_bytes(int(synthetic.DEMO_SECONDS * SAMPLE_RATE_HZ))
    targets = {name: prepare_output(os.path.join(out_dir, f"{name}.wav"), n_bytes, follow_symlinks)
               for name in ("clean", "noisy", "oracle")}
    clean, noisy = synthetic.demo_mixture()
    say(f"demo: {synthetic.describe_demo()}, 48 kHz; algorithmic latency {LATENCY_MS:.1f} ms")
    enhanced = oracle_enhance(clean, noisy, settings=ORACLE_SETTINGS)
    report_oracle(clean, noisy, enhanced, say)
    for name, samples in (("clean", clean), ("noisy", noisy), ("oracle", enhanced)):
        path = os.path.join(out_dir, f"{name}.wav")
        _say_written(path, SAMPLE_RATE_HZ, write_wav(targets[name], samples, SAMPLE_RATE_HZ), say)


def _say_written(path, rate, clipped, say):
    note = f" ({clipped} samples clipped to full scale)" if clipped else ""
    say(f"wrote {path} ({rate} Hz, mono, 16-bit){note}")
