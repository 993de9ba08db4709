"""The PercepNet network, in two sizes from one definition, and in two forms.

* The **sequence form** (training): features (batch, frames, 70) -> gains,
  strengths (and optionally voice activity), each (batch, frames, ...). Every
  layer is causal; the output at frame t describes frame t - LOOKAHEAD_FRAMES,
  so the whole network (not only its convolutions) sees 2 frames of future.
* The **step form** (conversion, device): one frame in, one frame out, with the
  convolution histories and GRU states as explicit inputs and outputs. It uses
  only dense layers and element-wise ops, which convert to a fully int8
  TFLite flatbuffer. :func:`step_model_from` copies the sequence weights in.

Layers (``full``, about 8 M weights, as in the paper): FC 70->128 tanh,
Conv1D 128->512 k5 tanh, Conv1D 512->512 k3 tanh, 3 x GRU 512, gain head
GRU 512 -> FC 34 sigmoid, strength head GRU 128 -> FC 34 sigmoid, and an
optional voice-activity head FC 1 sigmoid on the last shared GRU.
"""

import functools
from dataclasses import asdict, dataclass, replace

import numpy as np

from edge.dsp.constants import LOOKAHEAD_FRAMES, N_BANDS, N_FEATURES
from edge.dsp.echo_features import N_JOINT_FEATURES
from edge.dsp.noise_floor import N_FLOOR_JOINT_FEATURES

#: Suffix of a size name that adds the 68 far-end inputs (``lite_echo``: the joint echo-and-noise lite model).
ECHO_SUFFIX = "_echo"
#: Suffix after ``_echo`` that adds the 34 noise-floor inputs (``lite_echo_floor``: 172 inputs, edge.dsp.noise_floor).
FLOOR_SUFFIX = "_floor"

CONV1_KERNEL = 5
CONV2_KERNEL = 3


@dataclass(frozen=True)
class ModelConfig:
    """Layer widths of one model size."""

    name: str
    fc_units: int
    conv_units: int
    gru_units: int
    gru_layers: int
    gain_gru_units: int
    strength_gru_units: int
    vad_head: bool = True
    #: The joint echo-and-noise form: 138 inputs (the 70 features, then edge.dsp.echo_features' 68).
    far_end_inputs: bool = False
    #: The floor form: 172 inputs (the joint model's 138, then edge.dsp.noise_floor's 34).
    floor_inputs: bool = False

    @property
    def n_features(self):
        if self.floor_inputs:
            return N_FLOOR_JOINT_FEATURES
        return N_JOINT_FEATURES if self.far_end_inputs else N_FEATURES

    def as_dict(self):
        return asdict(self)


SIZES = {
    "full": ModelConfig("full", fc_units=128, conv_units=512, gru_units=512, gru_layers=3,
                        gain_gru_units=512, strength_gru_units=128),
    "lite": ModelConfig("lite", fc_units=96, conv_units=192, gru_units=192, gru_layers=3,
                        gain_gru_units=192, strength_gru_units=64),
    # Between the two, for the Pi 4's budget: about 2.3 times lite's multiply-adds.
    "mid": ModelConfig("mid", fc_units=128, conv_units=288, gru_units=288, gru_layers=3,
                       gain_gru_units=288, strength_gru_units=96),
    # For tests and quick iterations only; never shipped.
    "tiny": ModelConfig("tiny", fc_units=16, conv_units=24, gru_units=24, gru_layers=2,
                        gain_gru_units=24, strength_gru_units=8),
}


def config_for(size):
    """The :class:`ModelConfig` of a size name (``lite``, ``lite_echo`` for its joint echo-and-noise form,
    ``lite_echo_floor`` for that with the noise-floor inputs), with a clear error for unknown names."""
    base, floor = (size[:-len(FLOOR_SUFFIX)], True) if size.endswith(FLOOR_SUFFIX) else (size, False)
    base, echo = (base[:-len(ECHO_SUFFIX)], True) if base.endswith(ECHO_SUFFIX) else (base, False)
    if base not in SIZES or (floor and not echo):
        names = ", ".join(f"{name}, {name}{ECHO_SUFFIX}, {name}{ECHO_SUFFIX}{FLOOR_SUFFIX}" for name in SIZES)
        raise ValueError(f"unknown model size {size!r}; choose one of {names}") from None
    config = SIZES[base]
    return replace(config, name=size, far_end_inputs=echo, floor_inputs=floor) if base != size else config


def _keras():
    import keras
    return keras


#: One int8 step of a state in [-1, 1] (the converter's scale for every GRU state is 1/127.5).
INT8_STATE_STEP = 2.0 / 255.0


def on_int8_grid(keras, x, grid):
    """``x`` rounded to an int8 tensor's grid ``(scale, zero_point)``; gradients pass straight through.

    The grids are the converter's own (a converted model's metadata), so a
    network trained through them meets in training the rounding the int8
    flatbuffer applies between frames.
    """
    scale, zero_point = grid
    steps = keras.ops.clip(keras.ops.round(x / scale) + zero_point, -128.0, 127.0)
    return x + keras.ops.stop_gradient((steps - zero_point) * scale - x)


@functools.cache
def _int8_aware_gru_cell(keras):
    """A GRU cell whose new state gets, in this order, training noise and the int8 state's rounding."""

    class Int8AwareGRUCell(keras.layers.GRUCell):
        def __init__(self, units, state_noise=0.0, state_grid=None, **kwargs):
            super().__init__(units, **kwargs)
            self.state_noise = float(state_noise)
            self.state_grid = state_grid
            self._noise_seed = keras.random.SeedGenerator(7)

        def call(self, inputs, states, training=False):
            h, _ = super().call(inputs, states, training=training)
            if training and self.state_noise > 0.0:
                h = h + keras.random.uniform(keras.ops.shape(h), -self.state_noise, self.state_noise,
                                             seed=self._noise_seed)
            if self.state_grid is not None:        # validation too: its loss is then the int8 network's
                h = on_int8_grid(keras, h, self.state_grid)
            return h, [h] if isinstance(states, (list, tuple)) else h

    return Int8AwareGRUCell


@functools.cache
def _int8_grid_layer(keras):
    class Int8Grid(keras.layers.Layer):
        """Rounds its input to one int8 tensor's grid (straight-through gradients); no weights."""

        def __init__(self, grid, **kwargs):
            super().__init__(**kwargs)
            self.grid = tuple(grid)

        def call(self, x):
            return on_int8_grid(keras, x, self.grid)

    return Int8Grid


def _gru(keras, units, name, state_noise, state_grid=None):
    """A sequence GRU; with ``state_noise`` or ``state_grid``, a cell that perturbs or rounds its state.

    The cell's weights are a GRU's, so the weights move freely between the forms.
    """
    if state_noise <= 0.0 and state_grid is None:
        return keras.layers.GRU(units, return_sequences=True, name=name)
    cell = _int8_aware_gru_cell(keras)(units, state_noise, state_grid)
    return keras.layers.RNN(cell, return_sequences=True, name=name)


def build_sequence_model(config: ModelConfig, state_noise=0.0, int8_grids=None, quant_noise=0.0, quant_round=False):
    """The training form: features (batch, frames, 70 or 138) -> dict of per-frame outputs.

    ``state_noise`` > 0 (training only): every GRU state gets uniform noise of
    +-``state_noise`` per frame, so that the network learns outputs that a
    one-step difference in an int8 state does not move (docs/training.md,
    *Inaudible input changes*).

    ``int8_grids`` (``{tensor name: (scale, zero_point)}`` for the step form's
    ``features`` and every name of :func:`state_layout`, as a converted model's
    metadata gives them): the features and every tensor the step form carries
    from frame to frame (convolution histories, GRU states) are rounded to
    those grids, in training and validation, which is quantization-aware
    training of what the int8 network keeps between frames.

    ``quant_noise`` > 0 (training only): every tensor the int8 step form
    rounds gets uniform noise of that many of its grid steps
    (training.quant_noise), so that the network learns outputs that the int8
    conversion's rounding does not move; ``quant_round`` (training only)
    rounds the tensors on fixed grids (sigmoids, tanhs, GRU states) to them
    instead, with straight-through gradients. Neither combines with the first two.

    Save any of these kinds through :func:`plain_form`.
    """
    keras = _keras()
    layers = keras.layers
    grids = int8_grids or {}
    if quant_noise > 0.0 or quant_round:
        if state_noise > 0.0 or grids:
            raise ValueError("quant_noise and quant_round do not combine with state_noise or int8_grids: choose one")
        return _quant_noise_sequence_model(keras, config, quant_noise, quant_round)

    def on_grid(x, name):
        return _int8_grid_layer(keras)(grids[name], name=f"{name}_int8")(x) if name in grids else x

    features = keras.Input((None, config.n_features), name="features")
    x = layers.Dense(config.fc_units, activation="tanh", name="fc_in")(on_grid(features, "features"))
    x = on_grid(x, "conv1_history")
    x = layers.Conv1D(config.conv_units, CONV1_KERNEL, padding="causal", activation="tanh", name="conv1")(x)
    x = on_grid(x, "conv2_history")
    x = layers.Conv1D(config.conv_units, CONV2_KERNEL, padding="causal", activation="tanh", name="conv2")(x)
    for index in range(config.gru_layers):
        name = f"gru{index + 1}"
        x = _gru(keras, config.gru_units, name, state_noise, grids.get(f"{name}_state"))(x)
    gain = _gru(keras, config.gain_gru_units, "gain_gru", state_noise, grids.get("gain_gru_state"))(x)
    gain = layers.Dense(N_BANDS, activation="sigmoid", name="gain")(gain)
    strength = _gru(keras, config.strength_gru_units, "strength_gru", state_noise,
                    grids.get("strength_gru_state"))(x)
    strength = layers.Dense(N_BANDS, activation="sigmoid", name="strength")(strength)
    outputs = {"gain": gain, "strength": strength}
    if config.vad_head:
        outputs["vad"] = layers.Dense(1, activation="sigmoid", name="vad")(x)
    return keras.Model(features, outputs, name=f"percepnet_{config.name}")


def _quant_noise_sequence_model(keras, config: ModelConfig, noise_steps, round_fixed=False):
    """The sequence form with training.quant_noise's noise (or rounding) after every op the step form rounds.

    The same layers and weights in the same order as the plain form: each
    dense or convolution layer is linear, followed by noise, its activation
    and noise on the activation's fixed grid (an output's own rounding is left
    out: nothing after it could learn to absorb it).
    """
    from .quant_noise import TANH_STEP, quant_noise_gru_cell, quant_noise_layer
    layers, noise = keras.layers, quant_noise_layer(keras)

    def activated(x, layer, activation, step):
        x = layers.Activation(activation)(noise(noise_steps)(layer(x)))
        return x if step is None else noise(noise_steps, step, round_fixed)(x)

    def gru(x, units, name):
        cell = quant_noise_gru_cell(keras)(units, noise_steps, round_fixed)
        return layers.RNN(cell, return_sequences=True, name=name)(x)

    features = keras.Input((None, config.n_features), name="features")
    x = activated(noise(noise_steps)(features), layers.Dense(config.fc_units, name="fc_in"), "tanh", TANH_STEP)
    x = activated(x, layers.Conv1D(config.conv_units, CONV1_KERNEL, padding="causal", name="conv1"), "tanh",
                  TANH_STEP)
    x = activated(x, layers.Conv1D(config.conv_units, CONV2_KERNEL, padding="causal", name="conv2"), "tanh",
                  TANH_STEP)
    for index in range(config.gru_layers):
        x = gru(x, config.gru_units, f"gru{index + 1}")
    outputs = {"gain": activated(gru(x, config.gain_gru_units, "gain_gru"), layers.Dense(N_BANDS, name="gain"),
                                 "sigmoid", None)}
    outputs["strength"] = activated(gru(x, config.strength_gru_units, "strength_gru"),
                                    layers.Dense(N_BANDS, name="strength"), "sigmoid", None)
    if config.vad_head:
        outputs["vad"] = activated(x, layers.Dense(1, name="vad"), "sigmoid", None)
    return keras.Model(features, outputs, name=f"percepnet_{config.name}")


def plain_form(model, config: ModelConfig):
    """The same weights in the plain form (keras.layers.GRU, no rounding): what is saved, converted and shipped."""
    plain = build_sequence_model(config)
    plain.set_weights(model.get_weights())
    return plain


def state_layout(config: ModelConfig):
    """Names and widths of the step form's state tensors, in input order."""
    layout = [("conv1_history", (CONV1_KERNEL - 1) * config.fc_units),
              ("conv2_history", (CONV2_KERNEL - 1) * config.conv_units)]
    layout += [(f"gru{index + 1}_state", config.gru_units) for index in range(config.gru_layers)]
    layout += [("gain_gru_state", config.gain_gru_units), ("strength_gru_state", config.strength_gru_units)]
    return layout


def _gru_step(layers, x, state, units, name):
    """One step of a Keras GRU (reset_after=True, gates z, r, h) from dense layers."""
    from_input = layers.Dense(3 * units, name=f"{name}_input")(x)
    from_state = layers.Dense(3 * units, name=f"{name}_recurrent")(state)
    update = layers.Activation("sigmoid")(layers.Add()([from_input[:, :units], from_state[:, :units]]))
    reset = layers.Activation("sigmoid")(
        layers.Add()([from_input[:, units:2 * units], from_state[:, units:2 * units]]))
    candidate = layers.Activation("tanh")(
        layers.Add()([from_input[:, 2 * units:], layers.Multiply()([reset, from_state[:, 2 * units:]])]))
    # h' = z h + (1 - z) c  ==  c + z (h - c)
    return layers.Add()([candidate, layers.Multiply()([update, layers.Subtract()([state, candidate])])])


def build_step_model(config: ModelConfig):
    """The streaming form: one frame plus states in, outputs plus new states out.

    Inputs (batch 1): ``features`` (1, 70), then the states of
    :func:`state_layout`. Outputs: ``gain`` (1, 34), ``strength`` (1, 34),
    ``vad`` (1, 1) if the model has the head, then the new states in the same
    order as the inputs. Output t describes frame t - 2.
    """
    keras = _keras()
    layers = keras.layers
    features = keras.Input((config.n_features,), batch_size=1, name="features")
    states = {name: keras.Input((width,), batch_size=1, name=name) for name, width in state_layout(config)}
    x = layers.Dense(config.fc_units, activation="tanh", name="fc_in")(features)
    window1 = layers.Concatenate(name="conv1_window")([states["conv1_history"], x])
    x = layers.Dense(config.conv_units, activation="tanh", name="conv1")(window1)
    window2 = layers.Concatenate(name="conv2_window")([states["conv2_history"], x])
    x = layers.Dense(config.conv_units, activation="tanh", name="conv2")(window2)
    new_states = {"conv1_history": window1[:, config.fc_units:],
                  "conv2_history": window2[:, config.conv_units:]}
    for index in range(config.gru_layers):
        name = f"gru{index + 1}"
        x = _gru_step(layers, x, states[f"{name}_state"], config.gru_units, name)
        new_states[f"{name}_state"] = x
    gain_state = _gru_step(layers, x, states["gain_gru_state"], config.gain_gru_units, "gain_gru")
    strength_state = _gru_step(layers, x, states["strength_gru_state"], config.strength_gru_units,
                               "strength_gru")
    new_states["gain_gru_state"], new_states["strength_gru_state"] = gain_state, strength_state
    outputs = [layers.Dense(N_BANDS, activation="sigmoid", name="gain")(gain_state),
               layers.Dense(N_BANDS, activation="sigmoid", name="strength")(strength_state)]
    if config.vad_head:
        outputs.append(layers.Dense(1, activation="sigmoid", name="vad")(x))
    # Identity layers give the new states stable, readable names in the flatbuffer.
    outputs += [layers.Identity(name=f"new_{name}")(new_states[name]) for name, _ in state_layout(config)]
    return keras.Model([features] + list(states.values()), outputs, name=f"percepnet_{config.name}_step")


def step_model_from(sequence_model, config: ModelConfig):
    """A step-form model carrying the weights of ``sequence_model``."""
    step = build_step_model(config)
    copy = lambda name, weights: step.get_layer(name).set_weights(weights)  # noqa: E731
    copy("fc_in", sequence_model.get_layer("fc_in").get_weights())
    for conv in ("conv1", "conv2"):
        kernel, bias = sequence_model.get_layer(conv).get_weights()       # (k, in, out)
        copy(conv, [kernel.reshape(-1, kernel.shape[-1]), bias])
    grus = [f"gru{index + 1}" for index in range(config.gru_layers)] + ["gain_gru", "strength_gru"]
    for gru in grus:
        kernel, recurrent, bias = sequence_model.get_layer(gru).get_weights()   # bias (2, 3u)
        copy(f"{gru}_input", [kernel, bias[0]])
        copy(f"{gru}_recurrent", [recurrent, bias[1]])
    for head in ("gain", "strength") + (("vad",) if config.vad_head else ()):
        copy(head, sequence_model.get_layer(head).get_weights())
    return step


def zero_states(config: ModelConfig):
    """Initial states of the step form, as float32 arrays (1, width)."""
    return {name: np.zeros((1, width), np.float32) for name, width in state_layout(config)}


def output_delay_frames():
    """Frames by which the network's outputs lag its inputs (its look-ahead)."""
    return LOOKAHEAD_FRAMES
