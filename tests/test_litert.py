"""The one place that reads LiteRT's private graph calls: right on today's runtime, a clear error on a changed one."""

import numpy as np
import pytest

from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.errors import ModelError

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")


def _interpreter(xnnpack):
    options = {} if xnnpack else {
        "experimental_op_resolver_type": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = litert.Interpreter(model_path=str(DEFAULT_MODEL_PATH), **options)
    interpreter.allocate_tensors()
    return interpreter


def test_ops_and_signatures_of_the_shipped_model():
    from edge.model.litert import graph_of
    plain, delegated = graph_of(_interpreter(False)), graph_of(_interpreter(True))
    assert "DELEGATE" in delegated.ops and "DELEGATE" not in plain.ops
    assert {"FULLY_CONNECTED", "QUANTIZE"} & plain.ops
    serving = plain.signatures["serving_default"]
    details = {d["index"]: d for d in _interpreter(False).get_tensor_details()}
    assert tuple(details[serving["inputs"]["features"]]["shape"]) == (1, 70)
    assert all(isinstance(index, int) for index in serving["outputs"].values())


class _Renamed:
    """A runtime whose private calls went away."""

    def get_tensor_details(self):
        return []


class _Reshaped:
    """A runtime whose signature list gives names only, without tensor indices."""

    def _get_ops_details(self):
        return [{"op_name": "FULLY_CONNECTED"}]

    def _get_full_signature_list(self):
        return {"serving_default": {"inputs": ["features"], "outputs": ["output_0"]}}


@pytest.mark.parametrize("interpreter", [_Renamed(), _Reshaped()], ids=["renamed", "reshaped"])
def test_a_runtime_that_changed_is_a_model_error_that_says_what_to_install(interpreter):
    from edge.model.litert import TESTED_LITERT, graph_of
    with pytest.raises(ModelError, match="no longer describes its graph") as raised:
        graph_of(interpreter)
    assert f"ai-edge-litert=={TESTED_LITERT}" in str(raised.value) and "ai-edge-litert 2." in str(raised.value)


def test_the_daemon_and_denoise_refuse_to_start_on_a_changed_runtime(monkeypatch, tmp_path, capsys):
    from edge.commands.cli import main
    from edge.model.engine import ModelRunner
    monkeypatch.setattr(litert.Interpreter, "_get_full_signature_list", _Reshaped._get_full_signature_list,
                        raising=False)
    with pytest.raises(ModelError, match="no longer describes its graph"):
        ModelRunner(DEFAULT_MODEL_PATH)
    from edge.io.wav import write_wav
    write_wav(tmp_path / "in.wav", np.zeros(4800), 48_000)
    assert main(["denoise", str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]) == 2
    assert "no longer describes its graph" in capsys.readouterr().err


def test_the_gain_step_is_the_gain_outputs_quantisation():
    from edge.model.engine import ModelRunner
    runner = ModelRunner(DEFAULT_MODEL_PATH)
    interpreter = runner.interpreter
    from edge.model.litert import graph_of
    outputs = graph_of(interpreter).signatures["serving_default"]["outputs"]
    index = outputs[runner.metadata.outputs["gain"]]
    scale = {d["index"]: d for d in interpreter.get_tensor_details()}[index]["quantization"][0]
    assert runner.gain_step == scale and 1 / 300 < runner.gain_step < 1 / 200        # gains 0..1 in 256 steps
