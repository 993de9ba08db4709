"""One error family: every command line prints ours as one line and exits 2, and lets anything else through."""

import json
import sys

import pytest

from edge.errors import DataError, MissingDependencyError, ModelError, PercepnetError, UsageError


def _edge(monkeypatch, error):
    from edge.commands import cli, files as file_commands

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(file_commands, "run_denoise", fail)
    return lambda: cli.main(["denoise", "in.wav", "out.wav"])


def _training(monkeypatch, error, tmp_path):
    from training import cli

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(cli, "build_cache", fail)
    return lambda: cli.main(["cache", "--corpus", str(tmp_path), "--out", str(tmp_path / "cache"), "--split", "train"])


def _converter(monkeypatch, error, tmp_path):
    import converter.__main__ as converter_cli

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(converter_cli, "convert", fail)
    return lambda: converter_cli.main(["convert", "m.keras", "--cache", str(tmp_path), "--out", str(tmp_path / "m")])


def _evaluation(monkeypatch, error, tmp_path):
    import evaluation.__main__ as evaluation_cli
    from evaluation import inputs

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(inputs, "load_noisy_only", fail)
    return lambda: evaluation_cli.main(["--noisy-only", str(tmp_path), "--methods", "noisy", "--out",
                                        str(tmp_path / "out")])


COMMANDS = {"percepnet-edge": lambda m, e, t: _edge(m, e), "percepnet-train": _training,
            "percepnet-convert": _converter, "python -m evaluation": _evaluation}


@pytest.mark.parametrize("command", COMMANDS)
def test_our_errors_are_one_line_and_status_2(command, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    run = COMMANDS[command](monkeypatch, DataError("the cache at X is empty; build it first"), tmp_path)
    assert run() == 2
    err = capsys.readouterr().err
    assert "the cache at X is empty; build it first" in err and "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("bug", [ValueError("operands could not be broadcast"), OSError(5, "Input/output error"),
                                 RuntimeError("boom"), KeyError("gain")])
def test_a_bug_is_a_traceback_not_a_tidy_message(command, bug, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    run = COMMANDS[command](monkeypatch, bug, tmp_path)
    with pytest.raises(type(bug)):
        run()


def test_a_cache_of_another_feature_version_is_refused_by_cache_and_fit(tmp_path, capsys):
    from training.cache import CacheError
    from training.cli import main
    from training.train import shard_files
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text(json.dumps({"feature_version": 0}))
    (cache / "train-00000.npz").write_bytes(b"")
    with pytest.raises(CacheError, match="holds features of version 0; this code computes version 3"):
        shard_files(cache, "train")
    corpus = tmp_path / "corpus"
    for folder in ("speech/a", "noise/b"):
        (corpus / folder).mkdir(parents=True)
    from tests.conftest import write_wav16
    from edge.io.synthetic import noise, speech_like
    write_wav16(corpus / "speech" / "a" / "x.wav", speech_like(1.0, seed=1, rate=48_000), 48_000)
    write_wav16(corpus / "noise" / "b" / "n.wav", 0.1 * noise("pink", 1.0, seed=2), 48_000)
    assert main(["cache", "--corpus", str(corpus), "--out", str(cache), "--shards", "1", "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "holds features of version 0" in err and "new folder" in err


def test_a_missing_runtime_is_a_missing_dependency_not_a_bad_model(monkeypatch):
    from edge.model.engine import ModelRunner
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)          # importing it now fails
    with pytest.raises(MissingDependencyError, match="no TFLite runtime is installed") as raised:
        ModelRunner(DEFAULT_MODEL_PATH, runtime="tflite_runtime")
    assert not isinstance(raised.value, ModelError)
    with pytest.raises(UsageError, match="unknown runtime"):
        ModelRunner(DEFAULT_MODEL_PATH, runtime="onnx")


def test_every_error_class_of_the_packages_is_in_the_family():
    """An exception class defined anywhere in the four packages derives from PercepnetError."""
    import importlib
    import inspect
    import pkgutil
    found = []
    for package in ("edge", "training", "converter", "evaluation"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            found += [(info.name, kind) for _, kind in inspect.getmembers(module, inspect.isclass)
                      if issubclass(kind, BaseException) and kind.__module__ == info.name]
    assert len(found) >= 10                                   # the walk really saw the packages
    strays = [f"{module}.{kind.__name__}" for module, kind in found if not issubclass(kind, PercepnetError)]
    assert strays == []


def test_an_output_folder_that_cannot_be_made_is_a_usage_error(tmp_path, capsys):
    from training.cli import main
    (tmp_path / "a-file").write_text("")
    assert main(["cache", "--out", str(tmp_path / "a-file" / "cache"), "--corpus", str(tmp_path)]) == 2
    assert f"--out {tmp_path / 'a-file' / 'cache'}: cannot create the folder" in capsys.readouterr().err


def test_a_model_path_that_is_not_a_tflite_file_is_named_as_such(tmp_path):
    """`--model percepnet_lite.keras` (or its .json) read the .json beside it and said the file was corrupt or
    replaced; a folder said there was no such file."""
    from edge.model.model_meta import load_metadata
    (tmp_path / "percepnet_lite.keras").write_bytes(b"PK\x03\x04 a training checkpoint")
    (tmp_path / "percepnet_lite.json").write_text('{"schema": 1}')
    for name in ("percepnet_lite.keras", "percepnet_lite.json"):
        with pytest.raises(ModelError, match=rf"{name}: not a converted model \(a \.tflite file\); name "
                                             r"percepnet_lite\.tflite or another \.tflite"):
            load_metadata(tmp_path / name)
    with pytest.raises(ModelError, match="a folder; name the model's .tflite file in it"):
        load_metadata(tmp_path)
