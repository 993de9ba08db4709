"""Shared fixtures: generated signals, and the team data set when it is present."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """../shared/data beside the checkout, or $PERCEPNET_DATA; None when absent."""
    candidate = Path(os.environ.get("PERCEPNET_DATA", REPO.parent / "shared" / "data"))
    return candidate if (candidate / "speech").is_dir() and (candidate / "noise").is_dir() else None


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("team data not found: put it at ../shared/data or set PERCEPNET_DATA "
                    "(the synthetic-signal tests cover the same properties)")
    return path


@pytest.fixture
def mini_corpus(tmp_path):
    """A corpus of generated WAVs in the shared data's layout (3 RAVDESS-named actors, 5 noises)."""
    from scipy.io import wavfile
    from edge.io.synthetic import noise, speech_like
    root = tmp_path / "corpus"
    for actor in (1, 2, 17):
        folder = root / "speech" / "ravdess" / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for clip in range(2):
            wavfile.write(folder / f"clip{clip}.wav", 48_000,
                          speech_like(1.0, seed=actor * 10 + clip).astype(np.float32))
    noise_dir = root / "noise" / "gen"
    noise_dir.mkdir(parents=True)
    for index, kind in enumerate(("white", "pink", "hum", "pink", "white")):
        wavfile.write(noise_dir / f"n{index}.wav", 44_100,
                      (0.1 * noise(kind, 2.0, seed=index, rate=44_100)).astype(np.float32))
    return root


def write_wav16(path, samples, rate=16_000):
    from scipy.io import wavfile
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16))


def clean_speech(seed, seconds=2.0, rate=16_000):
    from edge.io.synthetic import speech_like
    return speech_like(seconds, seed=seed, rate=rate, level_dbfs=-30.0)


@pytest.fixture
def downloads(tmp_path):
    """A speechocean762-shaped folder (clean, noisy and clipped files) and a team folder with RAVDESS."""
    from edge.io.synthetic import noise
    ocean = tmp_path / "speechocean762"
    for speaker in range(1, 19):                 # speakers 16 and 18 fall in the validation buckets
        for clip in range(2):
            write_wav16(ocean / "WAVE" / f"SPEAKER{speaker:04d}" / f"{speaker:04d}{clip}.WAV",
                        clean_speech(speaker * 10 + clip))
    hiss = 10 ** (-36 / 20) * noise("white", 2.0, seed=1, rate=16_000)              # about 6 dB SNR
    write_wav16(ocean / "WAVE" / "SPEAKER0001" / "noisy.WAV", clean_speech(99) + hiss)
    write_wav16(ocean / "WAVE" / "SPEAKER0002" / "clipped.WAV", np.clip(40 * clean_speech(98), -1, 1))
    shared = tmp_path / "shared"
    for actor in (1, 17):
        write_wav16(shared / "speech" / "ravdess" / f"Actor_{actor:02d}" / "a.wav",
                    clean_speech(actor, rate=48_000), 48_000)
    for index, kind in enumerate(("pink", "white", "hum", "pink", "white")):
        write_wav16(shared / "noise" / "gen" / f"n{index}.wav", 0.1 * noise(kind, 2.0, seed=index), 48_000)
    return {"speechocean762": ocean, "shared": shared}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _write_cache(folder, meta, example_of, seconds):
    """A feature cache (train: seeds 0-3, validation: 10-11) of ``example_of(seed, seconds)``'s arrays."""
    import json
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps(meta))
    for split, seeds in (("train", range(4)), ("validation", range(10, 12))):
        columns = {"features": [], "gain": [], "strength": [], "vad": []}
        for seed in seeds:
            for key, value in zip(columns, example_of(seed, seconds)):
                columns[key].append(value)
        np.savez(folder / f"{split}-00000.npz", **{k: np.stack(v).astype(np.float16) for k, v in columns.items()})
    return folder


def _noise_example(seed, seconds):
    """Generated speech in pink, white or hum noise at 5 dB, through the real DSP."""
    from edge.io.synthetic import mix_at_snr, noise, speech_like
    from training.cache import example_arrays
    clean = speech_like(seconds, seed=seed)
    return example_arrays(clean, mix_at_snr(clean, noise(["pink", "white", "hum"][seed % 3], seconds, seed=seed + 50),
                                            5.0))


def _write_feature_cache(folder):
    """A feature cache made from generated audio through the real DSP (train and validation)."""
    return _write_cache(folder, {"feature_version": 1}, _noise_example, 2.0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained tiny model converted end to end once per test session (about a minute)."""
    pytest.importorskip("tensorflow", reason="the convert extra (tensorflow-cpu) is not installed")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    cache = _write_feature_cache(tmp_path_factory.mktemp("convert") / "cache")
    return _convert_untrained("tiny", cache)


def _echo_example(seed, seconds):
    """Generated far end through a room, pink noise and (odd seeds: double talk) a near talker, through the real
    canceller and DSP: the 138 features of a joint model."""
    from scipy.signal import fftconvolve
    from edge.dsp import HOP_SAMPLES
    from edge.echo import EchoCanceller, EchoSettings
    from edge.io.synthetic import mix_at_snr, noise, speech_like
    from training.cache import example_arrays
    rng = np.random.default_rng(seed)
    near = speech_like(seconds, seed=seed) * (seed % 2)
    far = 0.5 * speech_like(seconds, seed=seed + 100)
    h = np.zeros(2400)
    h[480], h[481:] = 0.6, 0.03 * rng.standard_normal(1919) * np.exp(-np.arange(1919) / 400)
    mic = mix_at_snr(near, noise("pink", seconds, seed=seed + 50), 15.0) + fftconvolve(far, h)[:far.size]
    canceller, out = EchoCanceller(EchoSettings(residual_suppression=False)), np.zeros(mic.size)
    for start in range(0, mic.size, HOP_SAMPLES):
        canceller.process(mic[start:start + HOP_SAMPLES], far[start:start + HOP_SAMPLES], out[start:start + HOP_SAMPLES])
    canceller.close()
    return example_arrays(near, out, mic - out, 138)


def _convert_untrained(size, cache, variants=True):
    """An untrained model of ``size`` saved and converted end to end with ``cache``; the fixtures' dict."""
    from converter.convert import convert
    from training import model as net
    import keras
    work = cache.parent
    config = net.config_for(size)
    keras.utils.set_random_seed(7)                   # the same untrained weights every session: its proof passes
    model = net.build_sequence_model(config)
    model.save(work / f"percepnet_{size}.keras")
    out = work / "models" / f"percepnet_{size}.tflite"
    said = []
    metadata, report = convert(work / f"percepnet_{size}.keras", cache, out, variants=variants, say=said.append)
    assert metadata.verification["passed"], "\n".join(said)
    return {"work": work, "cache": cache, "model": model, "config": config, "out": out,
            "metadata": metadata, "report": report}


@pytest.fixture(scope="session")
def tiny_echo_model(tmp_path_factory):
    """An untrained tiny joint model (138 inputs) converted end to end with an echo cache, once per session."""
    pytest.importorskip("tensorflow", reason="the convert extra (tensorflow-cpu) is not installed")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from edge.echo import speex_mdf
    if not speex_mdf.available():
        pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1; .ci/run installs it)")
    cache = _write_cache(tmp_path_factory.mktemp("convert-echo") / "cache", {"feature_version": 2, "n_features": 138},
                         _echo_example, 3.0)
    return _convert_untrained("tiny_echo", cache, variants=False)


@pytest.fixture(scope="session")
def tiny_floor_model(tmp_path_factory, tiny_echo_model):
    """An untrained tiny floor model (172 inputs) converted end to end with the joint model's echo cache."""
    import shutil
    cache = tmp_path_factory.mktemp("convert-floor") / "cache"
    shutil.copytree(tiny_echo_model["cache"], cache)
    return _convert_untrained("tiny_echo_floor", cache, variants=False)
