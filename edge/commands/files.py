"""File-to-file commands: the oracle run (and its built-in demo), and denoise.

Every command checks its output before any work: the folder exists and takes
a new file, there is room for the result, and the target is not a device,
FIFO or folder, nor (unless ``--follow-symlinks``) a symlink. ``denoise``
streams the file in one-second blocks, so its memory does not grow with the
file's length, and gives back the input's format: every channel enhanced on
its own, the same rate, sample format and length. The oracle, a research tool,
analyses whole files as mono and refuses long ones.
"""

import os
from pathlib import Path

import numpy as np

from edge.io import synthetic
from edge.io.atomic import probe_writable, refuse_special_target
from edge.errors import AudioFileError, UsageError
from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.io.wav import (MAX_CHANNELS, StreamResampler, WavReader, WavWriter, conversion_notes, resample,
                         wav_header_bytes, write_wav)
from edge.dsp import (LATENCY_MS, LATENCY_SAMPLES, ORACLE_SETTINGS, SAMPLE_RATE_HZ, Enhancer, EnhancerSettings,
                  frames_to_flush, highpass_signal, oracle_enhance)
from edge.dsp.constants import HOP_SAMPLES
from edge.io.quality import si_sdr_db, snr_db

#: Frames (10 ms) per streamed block: one second, so numpy calls are few and memory small.
BLOCK_FRAMES = 100
#: The oracle's batch analysis of clean and noisy holds several arrays per frame (about 7 MB per
#: second of audio, measured with tracemalloc); longer inputs are refused rather than risk the memory.
ORACLE_MAX_SECONDS = 30.0


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
        probe_writable(folder / path.name)
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot write in {folder} ({exc.strerror}); choose another folder") from None
    free = free_bytes(folder)
    if free < n_bytes:
        raise AudioFileError(f"{path}: not enough free space in {folder}: {free / 1e6:.1f} MB free, the output "
                             f"needs {n_bytes / 1e6:.1f} MB")
    return path


def refuse_same_file(in_path, out_path, what="the input file"):
    """OUT naming IN (the same path, a hard link or a symlink to it) would replace the original: refused."""
    try:
        same = os.path.samefile(in_path, out_path)
    except (OSError, ValueError):                  # OUT does not exist yet (or IN does not): not the same file
        same = False
    if same:
        raise UsageError(f"{out_path} is {what} {in_path}: writing it would replace the original; "
                         "name another output file")


def output_samples(n_samples, rate):
    """Samples of an output at the input's rate: the input's length through 48 kHz and back."""
    at_48k = int(round(n_samples * SAMPLE_RATE_HZ / rate))
    return int(round(at_48k * rate / SAMPLE_RATE_HZ))


def _wav_bytes(n_samples):
    """Size of a 16-bit mono WAV of ``n_samples`` (what the oracle writes)."""
    return 44 + 2 * n_samples


def _read_mono_48k(reader, say):
    """A whole (short) file as 48 kHz mono, saying what was converted."""
    for note in reader.notes + conversion_notes(reader.channels, reader.rate):
        say(f"{reader.path}: {note}")
    samples = reader.read_all()
    _warn_nonfinite(reader, say)
    mono = samples.mean(axis=1) if reader.channels > 1 else samples[:, 0]
    return resample(mono, reader.rate, SAMPLE_RATE_HZ)


def _warn_nonfinite(reader, say):
    if reader.nonfinite:
        first, last = reader.nonfinite_span_s
        say(f"warning: {reader.path}: {reader.nonfinite} NaN, infinite or absurd (beyond 1e6) samples between "
            f"{first:.3f} s and {last:.3f} s were replaced by silence (0) before enhancing")


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
    refuse_same_file(noisy_path, out_path, "the noisy file")
    refuse_same_file(clean_path, out_path, "the clean file")
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
    _say_written(out_path, clipped, say, f"{noisy_rate} Hz, mono, 16-bit integer")


def run_denoise(in_path, out_path, model_path=None, settings=EnhancerSettings(), num_threads=1, say=print,
                follow_symlinks=False, far_end_path=None, echo_settings=None):
    """``percepnet-edge denoise IN OUT [--far-end FAR]``: enhance with the int8 model; OUT has IN's format.

    Each channel is enhanced on its own (its own network state), and OUT keeps
    IN's rate, channels, sample format and length. Streams: the input is read,
    resampled, enhanced, resampled back and written one block at a time, so
    memory stays flat for any length. With ``far_end_path`` (what the
    loudspeaker played, starting with IN, same rate and format), each channel
    first goes through :class:`edge.echo.EchoCanceller` and the network
    enhances what is left.
    """
    from edge.model.engine import ModelRunner
    refuse_same_file(in_path, out_path)
    if far_end_path is not None:
        refuse_same_file(far_end_path, out_path, "the far-end file")
    with WavReader(in_path) as reader, _open_far_end(far_end_path, reader, say) as far_reader:
        if reader.channels > MAX_CHANNELS:
            raise AudioFileError(f"{in_path}: {reader.channels} channels; denoise enhances at most {MAX_CHANNELS}, "
                                 "each on its own: pick or mix the channels first, e.g. `sox in.wav out.wav remix 1 2`")
        target = prepare_output(out_path, wav_header_bytes(reader.fmt_chunk) + reader.frames * reader.block_align,
                                follow_symlinks)
        for note in reader.notes + conversion_notes(1, reader.rate):
            say(f"{in_path}: {note}")
        runners = [ModelRunner(model_path or DEFAULT_MODEL_PATH, num_threads=num_threads)
                   for _ in range(reader.channels)]
        say(f"model: {runners[0].describe()}" + (f", one per channel ({reader.channels})" if len(runners) > 1 else ""))
        joint = runners[0].far_end_inputs            # a joint echo-and-noise model: it reads the echo estimate
        enhancers = [Enhancer(runner, settings, noise_seed=channel) for channel, runner in enumerate(runners)]
        cancellers = None
        if far_reader is not None:
            from edge.echo import EchoCanceller, EchoSettings, for_model
            echo_settings = for_model(echo_settings or EchoSettings(), joint)
            cancellers = [EchoCanceller(echo_settings, on_event=_channel_events(c, reader.channels, say))
                          for c in range(reader.channels)]
            say(f"echo: SpeexDSP MDF, tail {echo_settings.tail_ms:g} ms, bulk delay "
                + (f"fixed at {echo_settings.fixed_delay_ms:g} ms" if echo_settings.fixed_delay_ms is not None
                   else f"tracked up to {echo_settings.delay_search_ms:g} ms")
                + (", residual echo suppression" if echo_settings.residual_suppression else "")
                + ("; the joint model removes the residual echo" if joint else ""))
        blocks = denoise_blocks(reader, enhancers, far_reader=far_reader, cancellers=cancellers)
        with WavWriter(target, reader.rate, reader.frames, reader.fmt_chunk) as writer:
            for block in blocks:
                writer.write(block)
        _warn_nonfinite(reader, say)
        if far_reader is not None:
            _warn_nonfinite(far_reader, say)
    _say_written(out_path, writer.clipped, say, reader.describe())


#: sox's ``-e`` for each of WavReader.encoding's values.
SOX_ENCODING = {"float": "floating-point", "unsigned": "unsigned-integer", "integer": "signed-integer"}


class _NoFarEnd:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _open_far_end(path, mic_reader, say):
    """FAR as a reader that matches MIC (rate, sample format; one channel or MIC's count), or a clear error."""
    if path is None:
        return _NoFarEnd()
    far = WavReader(path)
    try:
        if far.rate != mic_reader.rate or (far.format_tag, far.bits) != (mic_reader.format_tag, mic_reader.bits):
            raise AudioFileError(f"{path} ({far.describe()}) does not match {mic_reader.path} "
                                 f"({mic_reader.describe()}): the far end must have the microphone's rate and "
                                 f"sample format; convert it first, e.g. `sox {path} -r {mic_reader.rate} -b "
                                 f"{mic_reader.bits} -e {SOX_ENCODING[mic_reader.encoding]} far-matched.wav`")
        if far.channels not in (1, mic_reader.channels):
            raise AudioFileError(f"{path} has {far.channels} channels and {mic_reader.path} {mic_reader.channels}: "
                                 "the far end must be mono (what the loudspeaker played, shared by every "
                                 "microphone channel) or have one channel per microphone channel; mix it down "
                                 "first, e.g. `sox far.wav far-mono.wav remix -`")
        if far.frames < mic_reader.frames:
            say(f"{path}: {far.frames / far.rate:.2f} s, shorter than {mic_reader.path} "
                f"({mic_reader.frames / mic_reader.rate:.2f} s): the rest counts as silence (nothing played)")
        elif far.frames > mic_reader.frames:
            say(f"{path}: {far.frames / far.rate:.2f} s, longer than {mic_reader.path}: the rest is not used")
    except BaseException:
        far.close()
        raise
    return far


def _channel_events(channel, channels, say):
    prefix = f"channel {channel + 1}: " if channels > 1 else ""
    return lambda text: say(prefix + text)


def _read_far(far_reader, n, channels):
    """``n`` frames of the far end as ``(n, channels)``: silence past its end, one channel shared by all."""
    block = far_reader.read(n)
    if block.shape[0] < n:
        block = np.concatenate([block, np.zeros((n - block.shape[0], block.shape[1]))])
    return np.repeat(block, channels, axis=1) if block.shape[1] != channels else block


def denoise_blocks(reader, enhancers, block_frames=BLOCK_FRAMES, far_reader=None, cancellers=None):
    """The enhanced file at the input's rate as ``(n, channels)`` blocks, aligned with the input (latency removed),
    exactly as long as the input; channel ``c`` goes through ``cancellers[c]`` (with the far end of
    ``far_reader``) and ``enhancers[c]``."""
    cancellers = cancellers or [None] * len(enhancers)
    # Built now, not on the first block: a resampler designs its filter (and once imported scipy), and work cut by
    # a signal once the output's temporary file existed ended the process by SIGINT instead of a clean 128 + signal.
    chains = [_ChannelChain(reader.rate, reader.frames, enhancer, canceller)
              for enhancer, canceller in zip(enhancers, cancellers)]
    return _enhanced_blocks(reader, chains, block_frames, far_reader)


def _enhanced_blocks(reader, chains, block_frames, far_reader):
    block_in = max(1, block_frames * HOP_SAMPLES * reader.rate // SAMPLE_RATE_HZ)
    left_in, emitted = reader.frames, 0
    while not chains[0].done:
        if left_in > 0:
            block = reader.read(min(block_in, left_in))
            left_in = left_in - block.shape[0] if block.shape[0] else 0     # a file cut short ends here
            far = _read_far(far_reader, block.shape[0], len(chains)) if far_reader is not None else None
            outs = [chain.push(block[:, c], left_in == 0, None if far is None else far[:, c])
                    for c, chain in enumerate(chains)]
        else:
            outs = [chain.flush(block_frames) for chain in chains]            # the look-ahead, with silence
        out = np.stack(outs, axis=1)[:reader.frames - emitted]
        emitted += out.shape[0]
        if out.size:
            yield out
    if emitted < reader.frames:              # above 48 kHz, the round trip can come back one sample short
        yield np.zeros((reader.frames - emitted, len(chains)))


class _StageOutput:
    """The echo stage's frames, ``lead_samples`` (its latency) dropped, re-cut into frames for the enhancer, each
    with the echo estimate of the same samples (None where the stage passed the microphone through)."""

    def __init__(self, lead_samples):
        self.lead_samples = int(lead_samples)
        self._to_drop = self.lead_samples
        self._audio, self._echo, self._playing = np.zeros(0), np.zeros(0), np.zeros(0, bool)

    def push(self, frame, echo_estimate):
        """One stage call's output and echo estimate (both are copied: the stage reuses its buffers)."""
        playing = echo_estimate is not None
        echo = echo_estimate if playing else np.zeros(frame.size)
        self._audio = np.concatenate([self._audio, frame])
        self._echo = np.concatenate([self._echo, echo])
        self._playing = np.concatenate([self._playing, np.full(frame.size, playing)])
        drop = min(self._to_drop, self._audio.size)
        self._to_drop -= drop
        self._audio, self._echo, self._playing = self._audio[drop:], self._echo[drop:], self._playing[drop:]

    def frames(self):
        """``(audio, echo estimate or None)`` for every whole frame buffered; a frame counts as the far end
        playing when its newest sample does (that call's estimate)."""
        while self._audio.size >= HOP_SAMPLES:
            audio, echo, playing = self._audio[:HOP_SAMPLES], self._echo[:HOP_SAMPLES], self._playing[HOP_SAMPLES - 1]
            self._audio, self._echo, self._playing = (self._audio[HOP_SAMPLES:], self._echo[HOP_SAMPLES:],
                                                      self._playing[HOP_SAMPLES:])
            yield audio, (echo if playing else None)


class _ChannelChain:
    """One channel through the enhancer: its rate -> 48 kHz -> enhance -> its rate, streamed.

    As in :func:`edge.dsp.enhance_signal`, the input is followed by silence
    until its last sample has come out of the enhancer, and the 30 ms lead is
    dropped, so the output lines up with the input.
    """

    def __init__(self, rate, n_in, enhancer, canceller=None):
        self.to_48k = StreamResampler(rate, SAMPLE_RATE_HZ, n_in)
        self.from_48k = StreamResampler(SAMPLE_RATE_HZ, rate, self.to_48k.total_out)
        self.enhancer, self.canceller = enhancer, canceller
        # the far end takes the microphone's path to 48 kHz, so the two stay sample-aligned
        self.far_to_48k = StreamResampler(rate, SAMPLE_RATE_HZ, n_in) if canceller is not None else None
        self.n_frames = frames_to_flush(self.to_48k.total_out)
        self.frames_done, self.to_skip, self.to_emit = 0, LATENCY_SAMPLES, self.to_48k.total_out
        # The echo stage gives its output back late (its residual suppressor's block). Offline that lead is
        # dropped before the enhancer, so the enhancer sees what it sees without a far end, sample for sample,
        # wherever the stage passes the microphone through: one more stage call than enhancer frames.
        self.stage = _StageOutput(canceller.latency_samples) if canceller is not None else None
        self.stage_calls = self.n_frames + (1 if self.stage is not None and self.stage.lead_samples else 0)
        self.stage_calls_done = 0
        self.carry = np.zeros(0)
        self.far_carry = np.zeros(0)
        self.echo_free = np.empty(HOP_SAMPLES)

    @property
    def done(self):
        return self.frames_done == self.n_frames and (self.stage is None or self.stage_calls_done == self.stage_calls)

    def push(self, samples, last, far=None):
        far_new = self.far_to_48k.push(far, final=last) if self.canceller is not None else None
        return self._enhance(self.to_48k.push(samples, final=last), far_new)

    def flush(self, block_frames):
        silence = np.zeros(block_frames * HOP_SAMPLES)
        return self._enhance(silence, silence if self.canceller is not None else None)

    def _enhance(self, new, far_new=None):
        source = np.concatenate([self.carry, new]) if self.carry.size else new
        if self.canceller is None:
            calls = min(source.size // HOP_SAMPLES, self.n_frames - self.frames_done)
            out = np.empty(calls * HOP_SAMPLES)
            for t in range(calls):
                frame = slice(t * HOP_SAMPLES, (t + 1) * HOP_SAMPLES)
                self.enhancer.process(source[frame], out=out[frame])
            self.frames_done += calls
        else:
            far = np.concatenate([self.far_carry, far_new]) if self.far_carry.size else far_new
            calls = min(source.size // HOP_SAMPLES, self.stage_calls - self.stage_calls_done)
            frames = []
            for t in range(calls):                           # echo first: the network sees what is left
                frame = slice(t * HOP_SAMPLES, (t + 1) * HOP_SAMPLES)
                self.stage.push(self.canceller.process(source[frame], far[frame], self.echo_free),
                                self.canceller.echo_estimate)
                for mic, echo in self.stage.frames():
                    frames.append(self.enhancer.process(mic, echo_estimate=echo).copy())
            self.far_carry = far[calls * HOP_SAMPLES:]
            self.stage_calls_done += calls
            self.frames_done += len(frames)
            out = np.concatenate(frames) if frames else np.zeros(0)
        self.carry = source[calls * HOP_SAMPLES:]
        skip = min(self.to_skip, out.size)
        self.to_skip -= skip
        piece = out[skip:skip + self.to_emit]
        self.to_emit -= piece.size
        return self.from_48k.push(piece, final=self.done)


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
        _say_written(path, write_wav(targets[name], samples, SAMPLE_RATE_HZ), say,
                     f"{SAMPLE_RATE_HZ} Hz, mono, 16-bit integer")


def _say_written(path, clipped, say, layout):
    note = f" ({clipped} samples clipped to full scale)" if clipped else ""
    say(f"wrote {path} ({layout}){note}")
