"""Host-side helpers of scripts/arm64-check, run with the native (x86) venv python.

Subcommands (each prints one JSON object on stdout):
  sample WAV CAPTURE_RAW --seconds S   the generated noisy input, as a 16-bit WAV and as the
                                       float32 capture.raw of the daemon run (same samples,
                                       padded to whole frames plus the algorithmic latency)
  daemon-setup DIR CAPTURE_RAW PLAYBACK_RAW MODEL   asoundrc (ALSA file plugin) + config.yaml
  compare-wav REF OTHER                max |diff| in 16-bit LSB and SNR of OTHER against REF
  compare-raw REF OTHER --skip N --count N   the same for float32 playback.raw files
  far-sample MIC FAR --seconds S       a loudspeaker's echo for `denoise --far-end`: FAR (what it played,
                                       pink noise at a syllabic rhythm) and MIC (its echo through a synthetic room 40 ms later,
                                       a near talker in the last 3/8, noise at -60 dBFS), 16-bit WAVs
  erle MIC OUT --start-s A --end-s B   echo removed (dB) over A..B s, where only the far end plays
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _stats(ref, other):
    if ref.shape != other.shape:
        raise SystemExit(f"compare: shapes differ: {ref.shape} vs {other.shape}")
    diff = ref - other
    energy = float(np.sum(ref ** 2))
    error = float(np.sum(diff ** 2))
    snr = float("inf") if error == 0 else 10 * np.log10(max(energy, 1e-30) / error)
    return {"samples": int(ref.size), "differing": int(np.count_nonzero(diff)),
            "max_abs_diff_lsb": float(np.max(np.abs(diff))) * 32768.0 if ref.size else 0.0,
            "snr_db": snr, "ref_rms_dbfs": float(10 * np.log10(max(energy / max(ref.size, 1), 1e-30)))}


def sample(args):
    from scipy.io import wavfile
    from edge.dsp import HOP_SAMPLES, LATENCY_SAMPLES, SAMPLE_RATE_HZ, with_flush_padding
    from edge.io.synthetic import mix_at_snr, noise, speech_like
    clean = speech_like(args.seconds, seed=1)
    noisy = mix_at_snr(clean, noise("babble-like", args.seconds, seed=2), 5.0)
    pcm = np.round(np.clip(noisy, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16)
    wavfile.write(args.wav, SAMPLE_RATE_HZ, pcm)
    samples = pcm.astype(np.float32) / 32768.0          # both runs see exactly the WAV's samples
    capture = with_flush_padding(samples, np.float32)
    n_frames = capture.size // HOP_SAMPLES
    capture.tofile(args.capture)
    print(json.dumps({"samples": int(samples.size), "frames": int(n_frames), "latency": int(LATENCY_SAMPLES),
                      "rate": SAMPLE_RATE_HZ}))


def daemon_setup(args):
    from edge.commands.run import file_plugin_asoundrc
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    asoundrc = file_plugin_asoundrc(folder, Path(args.capture).resolve(), Path(args.playback).resolve())
    config = folder / "config.yaml"
    config.write_text(
        "audio:\n"
        "  capture_device: pe_capture\n"
        "  playback_device: pe_playback\n"
        "  sample_format: FLOAT_LE\n"
        "  capture_channels: 1\n"
        "model:\n"
        f"  path: {json.dumps(str(Path(args.model).resolve()))}\n"
        "realtime:\n"
        "  overrun_policy: \"off\"\n")
    print(json.dumps({"asoundrc": str(asoundrc), "config": str(config)}))


def compare_wav(args):
    from scipy.io import wavfile
    (rate_a, a), (rate_b, b) = wavfile.read(args.ref), wavfile.read(args.other)
    if rate_a != rate_b or a.dtype != np.int16 or b.dtype != np.int16:
        raise SystemExit(f"compare: expected two 16-bit WAVs at one rate, got {a.dtype}@{rate_a} "
                         f"and {b.dtype}@{rate_b}")
    print(json.dumps(_stats(a.astype(np.float64) / 32768.0, b.astype(np.float64) / 32768.0)))


def compare_raw(args):
    a, b = (np.fromfile(p, np.float32).astype(np.float64) for p in (args.ref, args.other))
    want = args.skip + args.count
    for path, x in ((args.ref, a), (args.other, b)):
        if x.size < want:
            raise SystemExit(f"compare: {path} holds {x.size} samples, expected at least {want}")
    print(json.dumps(_stats(a[args.skip:want], b[args.skip:want])))


def far_sample(args):
    from scipy.io import wavfile
    from scipy.signal import fftconvolve
    from edge.dsp import SAMPLE_RATE_HZ
    from edge.io.synthetic import noise, speech_like
    rng = np.random.default_rng(4)
    n = int(args.seconds * SAMPLE_RATE_HZ)
    # the far end: pink noise at a 4 Hz syllabic rhythm (MDF converges on it within the sample; on speech-like
    # sound it takes longer, docs/echo.md), -20 dBFS rms
    far = noise("pink", args.seconds, seed=5)[:n] * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / SAMPLE_RATE_HZ))
    far *= 0.1 / np.sqrt(np.mean(far ** 2))
    room = rng.standard_normal(4800) * 10 ** (-3 * np.arange(4800) / 4800)     # 100 ms, -60 dB at its end
    room[0] = 3.0
    room *= 0.5 / np.sqrt(np.sum(room ** 2))
    delay = int(0.040 * SAMPLE_RATE_HZ)
    mic = np.concatenate([np.zeros(delay), fftconvolve(far, room)[:n - delay]])
    near = 0.1 * speech_like(args.seconds, seed=6)[:n]
    near[:n * 5 // 8] = 0.0                              # far end alone for the first 5 of 8 s: where ERLE is read
    mic = mic + near + 10 ** (-60 / 20) * rng.standard_normal(n)
    for path, x in ((args.mic, mic), (args.far, far)):
        wavfile.write(path, SAMPLE_RATE_HZ, np.round(np.clip(x, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16))
    print(json.dumps({"samples": n, "far_end_alone_s": [0.0, n * 5 / 8 / SAMPLE_RATE_HZ]}))


def erle(args):
    from scipy.io import wavfile
    (rate, mic), (_, out) = wavfile.read(args.mic), wavfile.read(args.out)
    part = slice(int(args.start_s * rate), int(args.end_s * rate))
    mic, out = mic[part].astype(np.float64), out[part].astype(np.float64)
    print(json.dumps({"erle_db": float(10 * np.log10(np.sum(mic ** 2) / max(np.sum(out ** 2), 1e-30)))}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample")
    p.add_argument("wav")
    p.add_argument("capture")
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("daemon-setup")
    for name in ("dir", "capture", "playback", "model"):
        p.add_argument(name)
    p = sub.add_parser("compare-wav")
    p.add_argument("ref")
    p.add_argument("other")
    p = sub.add_parser("compare-raw")
    p.add_argument("ref")
    p.add_argument("other")
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p = sub.add_parser("far-sample")
    p.add_argument("mic")
    p.add_argument("far")
    p.add_argument("--seconds", type=float, default=8.0)
    p = sub.add_parser("erle")
    p.add_argument("mic")
    p.add_argument("out")
    p.add_argument("--start-s", type=float, required=True)
    p.add_argument("--end-s", type=float, required=True)
    args = parser.parse_args()
    {"sample": sample, "daemon-setup": daemon_setup, "compare-wav": compare_wav,
     "compare-raw": compare_raw, "far-sample": far_sample, "erle": erle}[args.command](args)


if __name__ == "__main__":
    main()
