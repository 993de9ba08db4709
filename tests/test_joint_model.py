"""The joint echo-and-noise model's plumbing (issue 22): far-end inputs, echo examples, the 138-input model.

The far-end inputs are computed by one implementation (edge.dsp.echo_features) for the stream and for
training; they are exactly 0 without a reference, so a joint model then sees what a noise-only model sees.
"""
import json

import numpy as np
import pytest
from scipy.signal import fftconvolve

from edge.dsp import (FEATURE_VERSION, HOP_SAMPLES, N_FAR_END_FEATURES, N_FEATURES, N_JOINT_FEATURES, Enhancer,
                      EchoAnalysis, analyse_signal, far_end_features)
from edge.echo import EchoCanceller, EchoSettings, for_model, speex_mdf
from edge.io.synthetic import noise, speech_like

needs_speexdsp = pytest.mark.skipif(not speex_mdf.available(), reason="libspeexdsp.so.1 is not installed "
                                    "(sudo apt-get install libspeexdsp1; .ci/run installs it)")


class Recorder:
    """A gain source that keeps every feature vector it is given and changes nothing."""

    def __init__(self):
        self.seen = []

    def __call__(self, features):
        self.seen.append(np.array(features))
        return np.ones(34), np.zeros(34)


def frames(x):
    return [x[t * HOP_SAMPLES:(t + 1) * HOP_SAMPLES] for t in range(x.size // HOP_SAMPLES)]


def test_far_end_inputs_are_exactly_zero_without_an_echo_estimate_and_the_70_are_unchanged():
    signal = 0.3 * speech_like(1.0, seed=2)
    plain, joint = Recorder(), Recorder()
    a, b = Enhancer(plain), Enhancer(joint, far_end_inputs=True)
    out_a, out_b = np.zeros(HOP_SAMPLES), np.zeros(HOP_SAMPLES)
    for frame in frames(signal):
        a.process(frame, out=out_a)
        b.process(frame, out=out_b, echo_estimate=None if len(joint.seen) % 2 else np.zeros(HOP_SAMPLES))
        np.testing.assert_array_equal(out_a, out_b)
    seen = np.array(joint.seen)
    assert seen.shape == (len(plain.seen), N_JOINT_FEATURES)
    np.testing.assert_array_equal(seen[:, :N_FEATURES], np.array(plain.seen))
    assert not seen[:, N_FEATURES:].any()


def test_streamed_far_end_inputs_equal_the_training_form():
    rng = np.random.default_rng(4)
    output = 0.2 * speech_like(1.5, seed=5)
    echo = 0.1 * rng.standard_normal(output.size) * (np.arange(output.size) > 20_000)
    recorder = Recorder()
    enhancer = Enhancer(recorder, far_end_inputs=True)
    for out_frame, echo_frame in zip(frames(output), frames(echo)):
        enhancer.process(out_frame, echo_estimate=echo_frame)
    streamed = np.array(recorder.seen)[:, N_FEATURES:]
    batch = far_end_features(echo, analyse_signal(output).energy)
    np.testing.assert_allclose(streamed, batch, rtol=1e-12, atol=1e-12)
    assert not batch[:40].any() and batch[60:].min() >= 0.0          # echo starts at frame 41


def test_the_echo_level_rises_with_the_echo_and_the_share_stays_below_one():
    rng = np.random.default_rng(7)
    output_energy = np.full(34, 1e-3)
    levels, shares = [], []
    for gain_db in (-40, -20, 0, 20):
        analysis, out = EchoAnalysis(), np.zeros(N_FAR_END_FEATURES)
        echo = 10 ** (gain_db / 20) * 0.01 * rng.standard_normal(2 * HOP_SAMPLES)
        analysis.step(echo[:HOP_SAMPLES], output_energy, out)
        analysis.step(echo[HOP_SAMPLES:], output_energy, out)
        levels.append(out[:34].mean())
        shares.append(out[34:].copy())
    assert np.all(np.diff(levels) > 0.5)                               # 20 dB = 2/3 per step on this scale
    assert all(share.min() >= 0 and share.max() < 1 for share in shares)
    assert shares[-1].mean() > 0.9 > 0.1 > shares[0].mean()


@needs_speexdsp
def test_the_canceller_reports_what_it_removed_and_none_while_it_passes_through():
    from edge.echo.canceller import REFERENCE_GAP_FRAMES
    rng = np.random.default_rng(1)
    far = 0.3 * speech_like(4.0, seed=8)
    h = np.zeros(600)
    h[240], h[241:] = 0.5, 0.02 * rng.standard_normal(359)
    mic = fftconvolve(far, h)[:far.size] + 0.01 * speech_like(4.0, seed=9)
    canceller = EchoCanceller(for_model(EchoSettings(), far_end_inputs=True))
    assert canceller.settings.residual_suppression is False           # the joint model does that part
    out = np.zeros(HOP_SAMPLES)
    estimates = []
    for m, f in zip(frames(mic), frames(far)):
        canceller.process(m, f, out)
        if canceller.echo_estimate is not None:
            np.testing.assert_allclose(canceller.echo_estimate, m - out, atol=1e-12)
        estimates.append(canceller.echo_estimate is not None)
    assert sum(estimates) > 0.8 * len(estimates)
    for _ in range(REFERENCE_GAP_FRAMES + 2):                          # no reference (longer than a lost burst)
        canceller.process(mic[:HOP_SAMPLES], None, out)
    assert canceller.echo_estimate is None                            # nothing removed
    np.testing.assert_array_equal(out, mic[:HOP_SAMPLES])
    assert for_model(EchoSettings(), far_end_inputs=False).residual_suppression is True


tf = pytest.importorskip("tensorflow", reason="the training extra (tensorflow-cpu) is not installed")

from training import model as net  # noqa: E402
from training.cache import CacheError, CacheSpec, build_cache  # noqa: E402
from training.train import ExampleStore, widen_inputs  # noqa: E402


def test_a_noise_model_widened_to_the_joint_form_behaves_identically_without_far_end_inputs():
    plain = net.build_sequence_model(net.config_for("tiny"))
    joint_config = net.config_for("tiny_echo")
    assert joint_config.far_end_inputs and joint_config.n_features == N_JOINT_FEATURES
    joint = net.build_sequence_model(joint_config)
    joint.set_weights(widen_inputs(plain.get_weights(), joint.get_weights()))
    features = np.random.default_rng(3).uniform(-1, 1, (2, 30, N_FEATURES)).astype(np.float32)
    padded = np.concatenate([features, np.zeros((2, 30, N_FAR_END_FEATURES), np.float32)], axis=-1)
    np.testing.assert_allclose(np.asarray(joint(padded)["gain"]), np.asarray(plain(features)["gain"]), atol=1e-6)
    joint.get_layer("fc_in").set_weights([np.random.default_rng(5).normal(0, 0.3, (N_JOINT_FEATURES, 16)),
                                          joint.get_layer("fc_in").get_weights()[1]])
    echo = padded.copy()
    echo[..., N_FEATURES:] = 1.0
    assert np.abs(np.asarray(joint(echo)["gain"]) - np.asarray(joint(padded)["gain"])).max() > 1e-3
    with pytest.raises(ValueError, match="tiny_echo"):
        net.config_for("huge_echo")


@needs_speexdsp
def test_an_echo_cache_holds_far_end_inputs_and_reads_beside_a_noise_cache(mini_corpus, tmp_path):
    quiet = lambda *_: None                                              # noqa: E731
    echo_cache, noise_cache = tmp_path / "echo", tmp_path / "noise"
    build_cache(CacheSpec(str(mini_corpus), "train", shards=1, examples_per_shard=3, seconds=1.0, seed=2,
                          simulated_rooms=2, echo_share=1.0), echo_cache, workers=1, say=quiet)
    build_cache(CacheSpec(str(mini_corpus), "train", shards=1, examples_per_shard=2, seconds=1.0, seed=2,
                          simulated_rooms=2), noise_cache, workers=1, say=quiet)
    shard = np.load(echo_cache / "train-00000.npz")
    assert shard["features"].shape == (3, 100, N_JOINT_FEATURES)
    assert json.loads((echo_cache / "meta.json").read_text())["n_features"] == N_JOINT_FEATURES
    far = shard["features"][..., N_FEATURES:].astype(np.float32)
    assert np.isfinite(far).all() and far.min() >= 0
    store = ExampleStore([echo_cache, noise_cache], "train", say=quiet, n_features=N_JOINT_FEATURES)
    assert store.arrays["features"].shape == (5, 100, N_JOINT_FEATURES)
    assert not store.arrays["features"][3:, :, N_FEATURES:].any()      # the noise cache: no reference, 0
    narrow = ExampleStore([echo_cache], "train", say=quiet)             # a noise model reads the first 70
    np.testing.assert_array_equal(narrow.arrays["features"], shard["features"][..., :N_FEATURES])
    with pytest.raises(CacheError, match="holds 70 features per frame"):
        build_cache(CacheSpec(str(mini_corpus), "train", shards=2, examples_per_shard=1, seconds=1.0, seed=2,
                              echo_share=0.5), noise_cache, workers=1, say=quiet)


@needs_speexdsp
def test_echo_examples_remove_the_echo_and_keep_only_the_near_talker(mini_corpus):
    from training.corpus import scan
    from training.echo_synth import make_echo_example
    from training.synth import AudioBank, simulated_rooms
    train, _ = scan(mini_corpus)
    rng, rooms, bank = np.random.default_rng(11), simulated_rooms(2, 1), AudioBank(say=lambda *_: None)
    kinds = {}
    for _ in range(8):
        target, output, echo, talk_type = make_echo_example(train, rng, 1.0, bank, rooms, warmup_s=2.0)
        assert target.shape == output.shape == echo.shape == (48_000,)
        kinds.setdefault(talk_type, []).append((target, echo))
    assert {"dt", "st"} <= set(kinds)
    assert all(not target.any() for target, _ in kinds["st"])          # far end alone: the target is silence
    assert any(np.abs(echo).max() > 1e-3 for _, echo in kinds["st"] + kinds["dt"])
    for target, echo in kinds.get("nst", []):                          # the far end stopped: passed through
        assert not echo[-HOP_SAMPLES * 10:].any()


@needs_speexdsp
def test_asking_for_the_loudspeaker_signal_draws_the_same_echo_example(mini_corpus):
    """training.echo_cues reads the loudspeaker signal at its delay; asking for it must not move the cache's draws."""
    from training.corpus import scan
    from training.echo_synth import make_echo_example
    from training.synth import AudioBank, simulated_rooms
    train, _ = scan(mini_corpus)
    rooms, bank = simulated_rooms(2, 1), AudioBank(say=lambda *_: None)
    plain = make_echo_example(train, np.random.default_rng(5), 1.0, bank, rooms, warmup_s=1.0, talk_types=(0, 1, 0))
    signals = {}
    told = make_echo_example(train, np.random.default_rng(5), 1.0, bank, rooms, warmup_s=1.0, talk_types=(0, 1, 0),
                             signals=signals)
    assert all(np.array_equal(a, b) for a, b in zip(plain[:3], told[:3])) and plain[3] == told[3] == "st"
    loudspeaker = signals["loudspeaker_at_delay"]
    assert loudspeaker.shape == plain[1].shape and np.abs(loudspeaker).max() > 1e-3


def test_a_joint_model_converts_to_int8_and_its_proof_covers_the_far_end_inputs(tiny_echo_model):
    from edge.model.engine import ModelRunner
    metadata = tiny_echo_model["metadata"]
    assert metadata.dsp["feature_version"] == FEATURE_VERSION and metadata.dsp["n_features"] == N_JOINT_FEATURES
    assert metadata.inputs["features"]["shape"] == [1, N_JOINT_FEATURES]
    assert metadata.inputs["features"]["dtype"] == "int8"
    error = metadata.verification["gain_error"]
    assert error["far_end_frames"] > 0.5 * error["frames"]               # the echo cache's frames, not zeros
    assert error["gain_error_mean_far_end_frames"] < 4 * error["output_step"]
    assert metadata.verification["passed"]
    runner = ModelRunner(tiny_echo_model["out"])
    assert runner.far_end_inputs and runner.n_features == N_JOINT_FEATURES


def test_a_joint_model_proved_without_echo_frames_fails_and_is_not_installed(tiny_echo_model, tiny_model, tmp_path,
                                                                           capsys):
    """A noise-only cache gives the far-end inputs zeros only: the echo path went unproved and the model passed."""
    from converter.convert import convert
    out = tmp_path / "joint.tflite"
    metadata, report = convert(tiny_echo_model["work"] / "percepnet_tiny_echo.keras", tiny_model["cache"], out,
                               variants=False, verify_audio=False)
    assert metadata.verification["passed"] is False and metadata.verification["gain_error"]["far_end_frames"] == 0
    assert "FAILED: far-end inputs not covered" in capsys.readouterr().out
    assert not out.exists() and report["int8"] == str(tmp_path / "joint.failed.tflite")


@needs_speexdsp
def test_denoise_with_a_far_end_runs_the_joint_model_behind_the_canceller_without_speex_residual_suppression(tiny_echo_model, tmp_path, capsys):
    from edge.commands.cli import main
    from tests.test_denoise_format import write_file
    far = 0.5 * speech_like(4.0, seed=21)
    h = np.zeros(1500)
    h[480], h[700] = 0.7, 0.2
    mic = fftconvolve(far, h)[:far.size] + 0.05 * speech_like(4.0, seed=22)
    write_file(tmp_path / "far.wav", far, 48_000)
    write_file(tmp_path / "mic.wav", mic, 48_000)
    model = str(tiny_echo_model["out"])
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "joint.wav"), "--model", model,
                 "--far-end", str(tmp_path / "far.wav")]) == 0
    said = capsys.readouterr().out
    assert "the joint model removes the residual echo" in said and "residual echo suppression" not in said
    assert main(["denoise", str(tmp_path / "mic.wav"), str(tmp_path / "alone.wav"), "--model", model]) == 0
    from edge.io.wav import read_wav
    joint, alone = read_wav(tmp_path / "joint.wav")[0][:, 0], read_wav(tmp_path / "alone.wav")[0][:, 0]
    assert joint.shape == alone.shape == mic.shape
    assert np.sqrt(np.mean(joint[-48_000:] ** 2)) < 0.5 * np.sqrt(np.mean(alone[-48_000:] ** 2))


@needs_speexdsp
def test_a_joint_model_with_a_silent_or_vanishing_reference_equals_it_without_one(tiny_echo_model):
    """The far-end inputs do nothing while the reference is silent; a reference that comes and goes switches
    the canceller with a one-frame cross-fade and the far-end inputs follow within the 20 ms window."""
    from edge.echo.canceller import REFERENCE_GAP_FRAMES
    from edge.model.engine import ModelRunner
    near = 0.2 * speech_like(3.0, seed=31) + 0.01 * noise("pink", 3.0, seed=32)
    far = 0.4 * speech_like(3.0, seed=33)
    mic = near + 0.5 * np.concatenate([np.zeros(960), far[:-960]])

    def run(reference_of_frame, signal):
        runner = ModelRunner(tiny_echo_model["out"])
        canceller = EchoCanceller(for_model(EchoSettings(), True))
        recorder = Recorder()
        enhancer = Enhancer(lambda f: (recorder(f), runner(f))[1], far_end_inputs=True)
        out, cleaned = [], np.zeros(HOP_SAMPLES)
        for t, frame in enumerate(frames(signal)):
            canceller.process(frame, reference_of_frame(t), cleaned)
            out.append(enhancer.process(cleaned, echo_estimate=canceller.echo_estimate).copy())
        return np.concatenate(out), np.array(recorder.seen)

    silent = np.zeros(HOP_SAMPLES)
    alone, _ = run(lambda t: None, near)
    flickering, seen = run(lambda t: silent if (t // 50) % 2 else None, near)
    np.testing.assert_array_equal(flickering, alone)
    assert not seen[:, N_FEATURES:].any()
    ref = frames(far)
    vanishing, seen = run(lambda t: ref[t] if t < 150 else None, mic)       # the far end plays 1.5 s, then goes
    assert seen[100:150, N_FEATURES:].any(axis=1).all()                     # echo estimated while it plays
    gone = 150 + REFERENCE_GAP_FRAMES                                       # a shorter gap is a lost period
    assert seen[150:gone, N_FEATURES:].any(axis=1).all()                    # bridged: its echo is still estimated
    assert not seen[gone + 2:, N_FEATURES:].any()                           # 0 two frames after it is gone
    assert np.isfinite(vanishing).all() and np.abs(vanishing).max() < 1.0


def test_bench_model_times_a_joint_model_with_its_far_end_inputs_at_zero(tiny_echo_model, capsys):
    """bench-model feeds a joint model its 138 inputs (the far end silent), and prints its cost beside XNNPACK off."""
    from edge.commands.cli import main as edge_main
    assert edge_main(["bench-model", str(tiny_echo_model["out"]), "--frames", "60", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["size"], row["xnnpack"]) for row in rows] == [("tiny_echo", True), ("tiny_echo", False)]
    assert all(row["frame_us_p50"] > 0 for row in rows)
