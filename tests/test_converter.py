"""Converter and device engine: a small model converted end to end, then held to the float reference."""

import json
import re
import shutil

import numpy as np
import pytest
from scipy.io import wavfile

tf = pytest.importorskip("tensorflow", reason="the convert extra (tensorflow-cpu) is not installed")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")

from converter.calibration import CalibrationError  # noqa: E402
from converter.convert import ConversionError, convert, load_sequence_model  # noqa: E402
from edge.commands.cli import main as edge_main  # noqa: E402
from edge.dsp import FEATURE_VERSION  # noqa: E402
from edge.model.engine import ModelRunner  # noqa: E402
from edge.model.model_meta import ModelError, load_metadata, sidecar_path  # noqa: E402
from edge.io.synthetic import mix_at_snr, noise, speech_like  # noqa: E402
from training import model as net  # noqa: E402

EXPECTED_OPS = {"ADD", "CONCATENATION", "FULLY_CONNECTED", "LOGISTIC", "MUL", "QUANTIZE", "RESHAPE",
                "STRIDED_SLICE", "SUB", "TANH", "SPLIT"}


@pytest.fixture(scope="module")
def converted(tiny_model):
    return tiny_model


def test_every_op_and_tensor_is_integer(converted):
    flat = converted["metadata"].verification["flatbuffer"]
    assert flat["all_int8"] and flat["float_tensors"] == []
    assert set(flat["tensor_dtypes"]) <= {"int8", "int32"}
    assert set(flat["ops"]) <= EXPECTED_OPS


def test_metadata_round_trips_and_describes_the_model(converted):
    metadata = load_metadata(converted["out"])
    assert metadata.sha256 == converted["metadata"].sha256
    assert metadata.dsp["feature_version"] == FEATURE_VERSION and metadata.dsp["n_features"] == 70 and metadata.dsp["hop_samples"] == 480
    assert metadata.quantization == "int8" and metadata.size == "tiny"
    assert metadata.states == [name for name, _ in net.state_layout(converted["config"])]
    assert metadata.inputs["features"]["dtype"] == "int8" and metadata.inputs["features"]["scale"] > 0
    assert metadata.verification["passed"] is True
    # no --training-note: the sidecar says so, where it claimed the first model's data and licence for any model
    assert metadata.training_data.startswith("not given at conversion") and "RAVDESS" not in metadata.training_data


def test_variants_are_emitted_apart_and_labelled(converted):
    for quantization in ("float32", "int16x8", "dynamic-range"):
        variant = converted["report"][quantization]
        assert "/variants/" in variant
        assert load_metadata(variant).quantization == quantization


def test_16_bit_activations_track_the_float_model_closer_than_int8(converted, capsys):
    """What int8's rounding costs, in the variant that removes it (docs/results.md, *What int8 costs*)."""
    from converter.calibration import load_feature_sequences
    from evaluation.precision import compare, main as precision_main, runner_gains
    features = load_feature_sequences(converted["cache"], "validation", 2)      # the DSP's, not random
    expected = np.asarray(converted["model"](features)["gain"])
    errors = {name: compare(expected, runner_gains(converted["report"][name], features))
              for name in ("int8", "int16x8", "float32")}
    assert load_metadata(converted["report"]["int16x8"]).quantization == "int16x8"
    assert errors["float32"]["mean_abs"] < 1e-5
    assert errors["int16x8"]["mean_abs"] < 0.5 * errors["int8"]["mean_abs"], errors    # about 0.2 (untrained)
    assert sum(band["share"] for band in errors["int8"]["bands"]) == pytest.approx(1.0)
    model_path = converted["work"] / "percepnet_tiny.keras"
    assert precision_main([str(model_path), str(converted["out"]), "--cache", str(converted["cache"]),
                           "--examples", "1"]) == 0
    assert "mean |dg|" in capsys.readouterr().out
    assert precision_main([str(model_path), str(converted["out"]), "--cache", str(converted["work"] / "none")]) == 2


def test_int8_state_carry_over_tracks_the_float_model(converted):
    error = converted["metadata"].verification["gain_error"]
    assert error["gain_error_mean_steps"] < 2.0, error
    assert error["gain_error_max"] < 0.05, error
    assert converted["metadata"].verification["pesq"]["pesq_drop"] <= 0.05


def test_float_variant_through_the_runner_equals_keras_exactly(converted):
    """The runner's state plumbing, without quantisation: frame by frame == the sequence model."""
    features = np.random.default_rng(1).standard_normal((1, 60, 70)).astype(np.float32)
    expected = np.asarray(converted["model"](features)["gain"][0])
    runner = ModelRunner(converted["report"]["float32"])
    got = np.array([runner(features[0, t]).__getitem__(0).copy() for t in range(60)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    runner.reset()
    np.testing.assert_allclose(runner(features[0, 0])[0], expected[0], atol=1e-5)


def test_runner_reports_runtime_and_xnnpack(converted):
    runner = ModelRunner(converted["out"])
    assert runner.runtime == "ai_edge_litert" and runner.xnnpack_active
    assert not ModelRunner(converted["out"], use_xnnpack=False).xnnpack_active
    assert "XNNPACK active" in runner.describe()


def test_a_model_for_other_features_is_refused_with_the_difference(converted, tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(converted["out"], model)
    fields = json.loads(sidecar_path(converted["out"]).read_text())
    fields["dsp"]["feature_version"] = 999
    fields["dsp"]["hop_samples"] = 256
    sidecar_path(model).write_text(json.dumps(fields))
    with pytest.raises(ModelError, match=r"feature_version: model 999, DSP 3 \(reads versions 1, 2, 3\); hop_samples: model 256, DSP 480"):
        ModelRunner(model)


@pytest.mark.parametrize("damage, message", [
    ("no-sidecar", "metadata is missing"),
    ("corrupt-sidecar", "corrupt metadata"),
    ("corrupt-model", "does not match its metadata"),
    ("no-model", "no such model file"),
])
def test_missing_or_corrupt_models_are_clear_errors(converted, tmp_path, damage, message):
    model = tmp_path / "m.tflite"
    shutil.copy(converted["out"], model)
    shutil.copy(sidecar_path(converted["out"]), sidecar_path(model))
    if damage == "no-sidecar":
        sidecar_path(model).unlink()
    elif damage == "corrupt-sidecar":
        sidecar_path(model).write_text("{not json")
    elif damage == "corrupt-model":
        model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    else:
        model.unlink()
    with pytest.raises(ModelError, match=message):
        ModelRunner(model)


def test_converter_rejects_bad_inputs_and_leaves_nothing_behind(converted, tmp_path):
    out = tmp_path / "out.tflite"
    with pytest.raises(ConversionError, match=r"--out .*out\.bin: name a \.tflite file"):   # before any work
        convert(converted["work"] / "percepnet_tiny.keras", converted["cache"], tmp_path / "out.bin")
    with pytest.raises(ConversionError, match="no such file"):
        convert(tmp_path / "missing.keras", converted["cache"], out)
    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConversionError, match="not a loadable Keras model"):
        convert(tmp_path / "corrupt.keras", converted["cache"], out)
    import keras
    plain = keras.Sequential([keras.Input((70,)), keras.layers.Dense(34)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ConversionError, match="not a PercepNet sequence model"):
        convert(tmp_path / "plain.keras", converted["cache"], out)
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    (empty / "meta.json").write_text(json.dumps({"feature_version": 1}))
    with pytest.raises(CalibrationError, match="no train shards"):
        convert(converted["work"] / "percepnet_tiny.keras", empty, out)
    np.savez(empty / "train-00000.npz", features=np.zeros((1, 10, 42), np.float16))
    with pytest.raises(CalibrationError, match="expected \\(n, frames, 70 or 138\\)"):
        convert(converted["work"] / "percepnet_tiny.keras", empty, out)
    (empty / "train-00000.npz").write_bytes(b"PK\x03\x04 a shard cut short")
    with pytest.raises(CalibrationError, match="train-00000.npz: not a readable cache shard .*rebuild the cache"):
        convert(converted["work"] / "percepnet_tiny.keras", empty, out)
    (empty / "meta.json").write_text("{\"feature_version\": 1,")
    with pytest.raises(CalibrationError, match="meta.json: unreadable .*rebuild the cache"):
        convert(converted["work"] / "percepnet_tiny.keras", empty, out)
    (tmp_path / "taken.tflite").mkdir()
    (tmp_path / "a_file").write_text("")
    (tmp_path / "m.json").mkdir()
    for where, why in ((tmp_path / "taken.tflite", "is a folder, not a regular file"),
                       (tmp_path / "m.tflite", "m.json exists and is a folder"),       # its sidecar's place
                       (tmp_path / "a_file" / "m.tflite", "cannot write there"),
                       (tmp_path / "m.failed.tflite", "names ending in .unverified or .failed are the converter's")):
        with pytest.raises(ConversionError, match=f"{why}"):                    # before the model is even loaded
            convert(tmp_path / "missing.keras", converted["cache"], where)
    assert not out.exists() and not list(tmp_path.glob(".out.tflite*"))


def _shipped_pair(converted, folder):
    """A copy of the converted model and its sidecar at FOLDER/shipped.tflite: the model a conversion replaces."""
    out = folder / "shipped.tflite"
    shutil.copy(converted["out"], out)
    shutil.copy(sidecar_path(converted["out"]), sidecar_path(out))
    return out, out.read_bytes(), sidecar_path(out).read_bytes()


def test_a_model_that_fails_the_proof_never_replaces_out(converted, tmp_path, monkeypatch, capsys):
    """The int8 model and its sidecar were written first and proved after: one that failed, often into the shipped
    model's path, stayed there, and nothing downstream read `passed`."""
    from converter import verify
    out, model_bytes, sidecar_bytes = _shipped_pair(converted, tmp_path)
    monkeypatch.setattr(verify, "MAX_PESQ_DROP", -10.0)                      # no model can pass this
    metadata, report = convert(converted["work"] / "percepnet_tiny.keras", converted["cache"], out, variants=False)
    assert metadata.verification["passed"] is False
    assert out.read_bytes() == model_bytes and sidecar_path(out).read_bytes() == sidecar_bytes
    failed = tmp_path / "shipped.failed.tflite"
    assert report["int8"] == str(failed) and load_metadata(failed).verification["passed"] is False
    assert f"{out} was left as it was; the model that failed is {failed}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.failed.json", "shipped.failed.tflite",
                                                          "shipped.json", "shipped.tflite"]
    monkeypatch.undo()
    metadata, _ = convert(converted["work"] / "percepnet_tiny.keras", converted["cache"], out, variants=False)
    assert metadata.verification["passed"] is True and load_metadata(out).name == "shipped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.json", "shipped.tflite"]   # the stale failure too


def test_a_conversion_stopped_during_its_proof_leaves_out_as_it_was(converted, tmp_path, monkeypatch, capsys):
    from converter import verify
    from converter.__main__ import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    out, model_bytes, sidecar_bytes = _shipped_pair(converted, tmp_path)
    monkeypatch.setattr(verify, "verify", interrupted)
    status = main(["convert", str(converted["work"] / "percepnet_tiny.keras"), "--cache", str(converted["cache"]),
                   "--out", str(out), "--no-variants"])
    said = capsys.readouterr().err
    assert status == 130 and f"stopped by SIGINT before the end; {out} holds no model that has not passed" in said
    assert out.read_bytes() == model_bytes and sidecar_path(out).read_bytes() == sidecar_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.json", "shipped.tflite"]


def test_the_clean_clip_fails_the_proof_on_its_own(converted, monkeypatch):
    """Averaged with three noisy clips, a clean clip 0.2 worse as int8 passed when the noisy ones were level."""
    from converter import verify
    scores = {"audio": "stand-in", "clips": 4, "pesq_float": 3.0, "pesq_int8": 3.0, "pesq_noisy": 2.0,
              "pesq_drop": 0.0, "clean_clip": {"pesq_input": 4.6, "pesq_float": 4.5, "pesq_int8": 4.3,
                                                "pesq_drop": 0.2}}
    monkeypatch.setattr(verify, "pesq_drop", lambda *args, **kwargs: scores)
    said = []
    assert verify.verify(converted["out"], converted["cache"], converted["model"], say=said.append)["passed"] is False
    assert said[-1] == "verification FAILED: PESQ drop on the clean clip 0.200 > 0.05"
    scores["clean_clip"].update(pesq_int8=4.47, pesq_drop=0.03)
    assert verify.verify(converted["out"], converted["cache"], converted["model"], say=lambda *_: None)["passed"]


def test_verify_names_a_missing_model_instead_of_a_traceback(converted, tmp_path, capsys):
    from converter.__main__ import main
    status = main(["verify", str(tmp_path / "missing.tflite"), "--float-model",
                   str(converted["work"] / "percepnet_tiny.keras"), "--cache", str(converted["cache"])])
    assert status == 2 and "missing.tflite: no such model file" in capsys.readouterr().err


def test_verify_prints_the_json_report_alone_on_stdout(converted, capsys):
    from converter.__main__ import main
    status = main(["verify", str(converted["out"]), "--float-model", str(converted["work"] / "percepnet_tiny.keras"),
                   "--cache", str(converted["cache"])])
    said = capsys.readouterr()
    assert status == 0 and json.loads(said.out)["passed"] is True and "verification PASSED" in said.err


def test_load_sequence_model_recovers_the_config(converted):
    _, config = load_sequence_model(converted["work"] / "percepnet_tiny.keras")
    assert config == converted["config"]


def test_denoise_command_runs_the_int8_model_and_keeps_rate_and_length(converted, tmp_path, capsys):
    rate = 44_100
    noisy = mix_at_snr(speech_like(1.5, seed=3, rate=rate), noise("pink", 1.5, seed=4, rate=rate), 5.0)
    wavfile.write(tmp_path / "in.wav", rate, (noisy * 20000).astype(np.int16))
    assert edge_main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                      "--model", str(converted["out"])]) == 0
    out_rate, enhanced = wavfile.read(tmp_path / "out.wav")
    assert out_rate == rate and enhanced.shape == noisy.shape
    text = capsys.readouterr().out
    assert "resampled 44100 Hz -> 48000 Hz" in text and "XNNPACK active" in text


def test_whole_path_benchmark_reports_the_daemon_figures(converted, capsys):
    assert edge_main(["bench", "--seconds", "1", "--rounds", "1", "--no-peers", "--json",
                      "--model", str(converted["out"])]) == 0
    text = capsys.readouterr().out
    report = json.loads(text[text.index("{"):])
    for key in ("cpu_s_per_audio_s", "frame_ms_p50", "frame_ms_p99", "frame_ms_p999", "frame_ms_max",
                "deadline_misses", "rss_mb", "startup_s", "stages"):
        assert key in report, key
    assert set(report["stages"]) == {"network", "format_conversion", "dsp"}
    assert 0 < report["frame_ms_p50"] <= report["frame_ms_p99"] <= report["frame_ms_p999"] <= report["frame_ms_max"]
    assert report["frames_timed"] == 100                  # the misses are counted over every round's frames
    assert edge_main(["bench", "--seconds", "1", "--rounds", "2", "--no-peers", "--model", str(converted["out"])]) == 0
    assert re.search(r"deadline misses \d+ in 200 frames \(2 rounds\)", capsys.readouterr().out)


def test_long_digital_silence_skips_the_network_once_its_state_has_settled(converted):
    from edge.model.engine import SILENCE_SETTLE_FRAMES
    runner, reference = ModelRunner(converted["out"]), ModelRunner(converted["out"])
    features = np.random.default_rng(4).standard_normal((40, 70)) * 0.3
    silence = np.zeros(70)
    silence[:34] = -2.0                                      # log-energy feature of digital silence
    for frame in features[:20]:
        runner(frame)
        reference(frame)
    for _ in range(SILENCE_SETTLE_FRAMES):                  # short pauses run the network, as in training
        runner(silence)
        reference(silence)
    assert runner.silent_frames == 0
    settled = runner.gain.copy()
    for _ in range(500):                                    # then hours of silence cost nothing
        held = runner(silence)[0]
    assert runner.silent_frames == 500
    np.testing.assert_array_equal(held, settled)
    np.testing.assert_array_equal(runner(features[21])[0], reference(features[21])[0])
    runner(silence)
    assert runner.silent_frames == 500                      # speech restarted the count
