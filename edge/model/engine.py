"""The device engine: runs the int8 step model through LiteRT, frame by frame.

:class:`ModelRunner` is a gain source for :class:`edge.dsp.Enhancer`: called
with the newest 70 features, it returns the gains and strengths of the frame
two frames back (the network's look-ahead), and keeps the recurrent state in
between.

State hand-over: every state output is written back to its input before the
next frame. Where the converter gave both the same scale and zero point the
raw int8 values are copied; elsewhere (the GRU states) they are requantised
through a 256-entry lookup table, one ``np.take`` per state, because copying
the raw int8 across different scales triples the error.
"""

import numpy as np

from edge.dsp.constants import N_BANDS, N_FEATURES
from edge.dsp.echo_features import N_JOINT_FEATURES
from edge.dsp.noise_floor import N_FLOOR_JOINT_FEATURES
from edge.dsp.features import ENERGY_FLOOR, LOG_ENERGY, LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE

#: Frames whose every band energy is below this are digital silence (about -117
#: dBFS). After SILENCE_SETTLE_FRAMES of them in a row the network is skipped, as
#: RNNoise does: no CPU is spent on hours of silence.
SILENCE_BAND_ENERGY = 1e-7
#: Silent frames the network still runs before it is skipped (0.5 s). Skipping at
#: once froze the state of the last word through every short, noise-gated pause,
#: a state the network never met in training: on gated clean speech the int8 lite
#: model lost 0.3 PESQ that way. Half a second lets the state settle where
#: training's silences leave it, so skipping changes nothing after that.
SILENCE_SETTLE_FRAMES = 50
_SILENCE_FEATURE = (np.log10(SILENCE_BAND_ENERGY + ENERGY_FLOOR) + LOG_ENERGY_OFFSET) * LOG_ENERGY_SCALE
from edge.errors import MissingDependencyError, ModelError, UsageError
from edge.model.litert import graph_of
from edge.model.model_meta import load_metadata, sidecar_path

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def _interpreter_class(preferred=None):
    """The first importable TFLite interpreter: LiteRT, then tflite-runtime, then TensorFlow."""
    reasons = []
    for runtime in ([preferred] if preferred else RUNTIMES):
        try:
            if runtime == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter, OpResolverType
            elif runtime == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter, OpResolverType
            elif runtime == "tensorflow":
                from tensorflow.lite.python.interpreter import Interpreter, OpResolverType
            else:
                raise UsageError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
            return runtime, Interpreter, OpResolverType
        except ImportError as exc:
            reasons.append(f"{runtime}: {exc}")
    raise MissingDependencyError("no TFLite runtime is installed (" + "; ".join(reasons) +
                             "); install one: pip install 'percepnet-edge[edge]'")


def _requantise_table(from_quant, to_quant):
    """int8 -> int8 lookup table, indexed by the uint8 view of the source value."""
    (from_scale, from_zero), (to_scale, to_zero) = from_quant, to_quant
    source = np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.float64)
    values = np.rint((source - from_zero) * (from_scale / to_scale)) + to_zero
    return np.clip(values, -128, 127).astype(np.int8)


class ModelRunner:
    """A converted PercepNet model, ready to be called once per frame.

    Args:
        model_path: the ``.tflite`` file; its sidecar ``.json`` must sit beside it.
        num_threads: interpreter threads (default 1: the audio thread's own core).
        use_xnnpack: apply LiteRT's default XNNPACK delegate (default True).
        runtime: force ``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``.

    Attributes:
        runtime: the runtime in use; ``xnnpack_active``: whether XNNPACK really
        runs the graph (a DELEGATE node in the op list, not the log line);
        ``metadata``; ``vad``: the last voice-activity probability (or None);
        ``gain_step``: the gain output's quantisation step (1.0 for float models).

    Raises:
        ModelError: a missing or corrupt model, one made for other features, or a runtime that changed.
        MissingDependencyError: no TFLite runtime is installed.
    """

    def __init__(self, model_path, num_threads=1, use_xnnpack=True, runtime=None):
        self.metadata = load_metadata(model_path)
        self.runtime, interpreter_class, resolvers = _interpreter_class(runtime)
        options = {"model_path": str(model_path), "num_threads": int(num_threads)}
        if not use_xnnpack:
            options["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = interpreter_class(**options)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{model_path}: the runtime cannot load it ({exc})") from None
        graph = graph_of(self.interpreter)
        self.xnnpack_active = "DELEGATE" in graph.ops
        self.num_threads = int(num_threads)
        self._bind_tensors(model_path, *self._checked_signature(model_path, graph.signatures))
        self.gain = np.ones(N_BANDS)
        self.strength = np.zeros(N_BANDS)
        self._gain_heads = [(self._heads[head][0], *self._heads[head][1], out)
                            for head, out in (("gain", self.gain), ("strength", self.strength))]
        self._vad_head = self._heads.get("vad")
        self._scratch_features = np.zeros(self.n_features)
        self.silent_frames = 0
        self._silent_run = 0
        self.vad = None
        self.reset()

    def _checked_signature(self, model_path, signatures):
        """The serving signature's inputs and outputs, holding every name the metadata relies on.

        Another valid ``.tflite`` (with a sidecar that matches its bytes) is
        refused here by name, not by a KeyError deep in the binding.
        """
        advice = "use a model made by the converter (python -m converter), with its own .json beside it"
        if "serving_default" not in signatures:
            raise ModelError(f"{model_path}: not a percepnet-edge model: it has no 'serving_default' "
                                     f"signature (it has: {', '.join(signatures) or 'none'}); {advice}")
        inputs, outputs = signatures["serving_default"]["inputs"], signatures["serving_default"]["outputs"]
        role = self.metadata.outputs
        for name in ("features", *self.metadata.states):
            if name not in inputs:
                raise ModelError(f"{model_path}: not a percepnet-edge model: its signature has no input "
                                         f"'{name}' (inputs: {', '.join(sorted(inputs))}); {advice}")
        for key in ("gain", "strength", *(f"new_{name}" for name in self.metadata.states)):
            if key not in role:
                raise ModelError(f"{sidecar_path(model_path)}: corrupt metadata: outputs has no '{key}'; "
                                         "re-run the converter")
        for key, name in role.items():
            if name not in outputs:
                raise ModelError(f"{model_path}: not a percepnet-edge model: its signature has no output "
                                         f"'{name}' ({key}; outputs: {', '.join(sorted(outputs))}); {advice}")
        return inputs, outputs

    def _bind_tensors(self, model_path, inputs, outputs):
        details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        role = self.metadata.outputs
        tensor = self.interpreter.tensor
        features = details[inputs["features"]]
        width = int(self.metadata.dsp.get("n_features", N_FEATURES))

        def shape(index):
            return tuple(int(d) for d in details[index]["shape"])

        if tuple(features["shape"]) != (1, width) or features["dtype"] not in (np.int8, np.float32):
            raise ModelError(f"{model_path}: the model's features input is {features['dtype'].__name__} "
                             f"{shape(inputs['features'])}, expected int8 or float32 (1, {width}) as its metadata "
                             "says; re-run the converter")
        declared = np.int8 if self.metadata.quantization == "int8" else np.float32
        if features["dtype"] != declared:         # e.g. a float variant renamed beside an int8 model's sidecar
            raise ModelError(f"{model_path}: its metadata says {self.metadata.quantization}, but the model takes "
                             f"{features['dtype'].__name__} features: the .json beside it belongs to another model; "
                             "keep each model with its own .json (re-run the converter)")
        #: Feature width: 70, 138 for a joint echo-and-noise model (the Enhancer needs ``far_end_inputs``), 172
        #: for a floor model (``floor_inputs`` as well).
        self.n_features = width
        self.far_end_inputs = width in (N_JOINT_FEATURES, N_FLOOR_JOINT_FEATURES)
        self.floor_inputs = width == N_FLOOR_JOINT_FEATURES
        self._features_in = tensor(inputs["features"])
        # Float models (the comparison variants) have scale 0: they take and give floats.
        self._features_quant = features["quantization"] if features["dtype"] == np.int8 else None
        self._heads = {}
        for head in ("gain", "strength", "vad"):
            if head in role:
                index = outputs[role[head]]
                wanted = (1, 1) if head == "vad" else (1, N_BANDS)
                if shape(index) != wanted:
                    raise ModelError(f"{model_path}: the model's {head} output is {shape(index)}, expected "
                                     f"{wanted}; it is not a percepnet-edge model for this DSP: re-run the converter")
                quant = details[index]["quantization"] if details[index]["dtype"] == np.int8 else (1.0, 0)
                self._heads[head] = (tensor(index), quant)
        self.gain_step = float(self._heads["gain"][1][0])
        self._states = []
        self._handover = []            # (source index, target index, table or None), for __call__
        for name in self.metadata.states:
            source, target = outputs[role[f"new_{name}"]], inputs[name]
            if shape(source) != shape(target):
                raise ModelError(f"{model_path}: the model's state {name!r} is {shape(target)} in and "
                                 f"{shape(source)} out: it cannot be carried from frame to frame; re-run the converter")
            source_quant, target_quant = details[source]["quantization"], details[target]["quantization"]
            same = source_quant == target_quant or details[target]["dtype"] != np.int8
            table = None if same else _requantise_table(source_quant, target_quant)
            self._states.append((tensor(source), tensor(target), table, target_quant[1]))
            self._handover.append((source, target, table))
        self._invoke = self.interpreter.invoke

    def reset(self):
        """Zero every state (a stream restart); the next frames start from silence."""
        for _, target, _, zero_point in self._states:
            target()[...] = zero_point
        self.vad = None
        self._silent_run = 0

    def __call__(self, features):
        """Run one frame: features (``n_features``,) float -> (gains, strengths) of the frame two back.

        From the :data:`SILENCE_SETTLE_FRAMES`-th consecutive frame of digital
        silence on, the network is not run and the previous outputs are
        returned (they multiply silence); ``silent_frames`` counts such frames.
        """
        if np.maximum.reduce(features[LOG_ENERGY]) < _SILENCE_FEATURE:          # .max() without its wrapper
            self._silent_run += 1
            if self._silent_run > SILENCE_SETTLE_FRAMES:
                self.silent_frames += 1
                return self.gain, self.strength
        else:
            self._silent_run = 0
        if self._features_quant is None:
            self._features_in()[0] = features
        else:
            scale, zero_point = self._features_quant
            np.divide(features, scale, out=self._scratch_features)
            np.rint(self._scratch_features, out=self._scratch_features)
            self._scratch_features += zero_point
            np.maximum(self._scratch_features, -128.0, out=self._scratch_features)   # np.clip, in two
            np.minimum(self._scratch_features, 127.0, out=self._scratch_features)    # cheaper ufunc calls
            self._features_in()[0] = self._scratch_features
        self._invoke()
        for accessor, head_scale, head_zero, out in self._gain_heads:
            np.subtract(accessor()[0], head_zero, out=out, dtype=np.float64)   # no int8 wrap-around
            out *= head_scale
        if self._vad_head is not None:
            accessor, (head_scale, head_zero) = self._vad_head
            self.vad = (float(accessor()[0, 0]) - head_zero) * head_scale
        # get_tensor/set_tensor: one call each, where a tensor() view costs a call and an assignment.
        get_tensor, set_tensor = self.interpreter.get_tensor, self.interpreter.set_tensor
        for source, target, table in self._handover:
            state = get_tensor(source)
            set_tensor(target, state if table is None else table.take(state.view(np.uint8)))
        return self.gain, self.strength

    def model_input(self):
        """A copy of the last frame's features as the network received them (int8 steps, or floats)."""
        return np.array(self._features_in()[0])

    def state_snapshot(self):
        """A copy of every state the next frame will start from, concatenated (for diagnostics)."""
        return np.concatenate([np.array(target()).ravel() for _, target, _, _ in self._states])

    def describe(self):
        """One line: model, runtime, XNNPACK, threads."""
        return (f"{self.metadata.name} ({self.metadata.size}, {self.metadata.quantization}, "
                f"{self.metadata.model_bytes / 1e6:.2f} MB) on {self.runtime}, "
                f"XNNPACK {'active' if self.xnnpack_active else 'off'}, {self.num_threads} thread(s)")
