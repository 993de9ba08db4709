"""Training with the int8 network's rounding as noise: every tensor the step form rounds gets uniform noise.

The shipped network is int8 throughout. Each of its ops rounds its output to
that tensor's grid, and the rounding adds up: on the real recordings at normal
level the int8 conversion of the joint run's epoch 266 scores 0.030 DNSMOS OVRL
below its float form, and its 16-bit activations (16x8) score as the float form
(docs/results.md, *What int8 costs*). Calibration recipes, fused gates and an
output correction did not recover it: the error is each op's own rounding.

So the network learns to live with it, as Quant-Noise (Fan et al. 2020) and
DiffQ (Defossez et al. 2021) do for weights: in training, every activation the
step form quantises gets uniform noise of a given number of its grid steps
(one step is the rounding's own spread), with straight-through gradients. The
grid is:

* fixed where the converter's is: 1/256 after a sigmoid, 1/128 after a tanh,
  2/255 for a GRU state (calibration sets every state's int8 scale to about
  1/127.5, its zero point to -1: the states span -1 .. 1);
* elsewhere (the features, matrix products and sums) the tensor's range / 255,
  as the converter's min/max calibration sets it, but over what one call sees:
  the whole batch for the layers outside the GRUs, one frame of the batch
  inside them, where the range is narrower than over the converter's 600
  calibration frames, so that noise is smaller than int8's step.

With ``round_fixed`` the tensors on fixed grids (sigmoids, tanhs, GRU states)
are rounded to those grids instead, clipped to int8's range, with straight-through
gradients: that rounding is not random. A GRU's update gate tops out at 255/256,
so a state int8 keeps fades by at least 1/256 a frame where the float form's can
hold, and the state grid's rounding adds a dead band. In the float network
(epoch 290, 12 of the teacher's unseen speakers' examples) rounding the gates
alone moves the gains by 0.044 (mean absolute) against the int8 conversion's
0.030, and every fixed grid together by 0.023, while two arms trained with the
noise left int8's error where it was (docs/training.md, *Training with the int8
rounding as noise*).

Nothing is added outside training (validation, saving, conversion): the saved
model is the plain form, with the same weights.
"""

import functools

#: The step of an int8 tensor after a sigmoid (TFLite's fixed output scale 1/256), after a tanh (1/128) and of
#: a carried GRU state (the converter's 1/127.5).
SIGMOID_STEP = 1.0 / 256.0
TANH_STEP = 1.0 / 128.0
STATE_STEP = 2.0 / 255.0
#: The values each fixed grid spans, in steps: a sigmoid's zero point is -128 (0 .. 255/256), a tanh's 0 (-1 ..
#: 127/128), a state's -1 as the shipped models' are (-127/127.5 .. 128/127.5; a state never reaches either end).
FIXED_GRID_CODES = {SIGMOID_STEP: (0.0, 255.0), TANH_STEP: (-128.0, 127.0), STATE_STEP: (-127.0, 128.0)}


def _uniform_step_noise(keras, x, step, noise_steps, seed, round_fixed=False):
    """``x`` plus uniform noise spanning ``noise_steps`` grid steps (``step`` None: the tensor's range / 255); with
    ``round_fixed``, a fixed grid's tensor rounded to it instead (straight-through: the gradient is the identity's)."""
    ops = keras.ops
    if round_fixed and step is not None:
        low, high = FIXED_GRID_CODES[step]
        return x + ops.stop_gradient(ops.clip(ops.round(x / step), low, high) * step - x)
    if noise_steps <= 0.0:
        return x
    if step is None:
        step = ops.stop_gradient((ops.max(x) - ops.min(x)) / 255.0)
    return x + keras.random.uniform(ops.shape(x), -0.5, 0.5, seed=seed) * (step * noise_steps)


@functools.cache
def quant_noise_layer(keras):
    """A weightless layer adding ``noise_steps`` int8 steps of uniform noise in training (``step`` None: from the
    range), or with ``round_fixed`` rounding to a fixed ``step``'s grid."""

    class QuantNoise(keras.layers.Layer):
        def __init__(self, noise_steps, step=None, round_fixed=False, **kwargs):
            if round_fixed and step is not None and step not in FIXED_GRID_CODES:
                raise ValueError(f"round_fixed: step {step!r} is none of the fixed grids {sorted(FIXED_GRID_CODES)}")
            super().__init__(**kwargs)
            self.noise_steps, self.step, self.round_fixed = float(noise_steps), step, bool(round_fixed)
            self._seed = keras.random.SeedGenerator()     # a seed of its own: layers' roundings are independent

        def call(self, x, training=False):
            if not training:
                return x
            return _uniform_step_noise(keras, x, self.step, self.noise_steps, self._seed, self.round_fixed)

    return QuantNoise


@functools.cache
def quant_noise_gru_cell(keras):
    """A GRU cell (a Keras GRUCell's weights, reset_after) with the step form's rounding as noise in training.

    The ops follow training.model's step form of a GRU: the input and
    recurrent products, the gates' sums and sigmoids, the reset product, the
    candidate's sum and tanh, then ``c + z (h - c)`` in three ops and the new
    state on its int8 grid.
    """
    ops = keras.ops

    class QuantNoiseGRUCell(keras.layers.GRUCell):
        def __init__(self, units, noise_steps, round_fixed=False, **kwargs):
            super().__init__(units, **kwargs)
            self.noise_steps, self.round_fixed = float(noise_steps), bool(round_fixed)
            self._noise_seed = keras.random.SeedGenerator()     # likewise, one per cell

        def call(self, inputs, states, training=False):
            if not training or (self.noise_steps <= 0.0 and not self.round_fixed):
                return super().call(inputs, states, training=training)
            h = states[0] if isinstance(states, (list, tuple)) else states
            units = self.units

            def noisy(x, step=None):
                return _uniform_step_noise(keras, x, step, self.noise_steps, self._noise_seed, self.round_fixed)

            from_input = noisy(ops.matmul(inputs, self.kernel) + self.bias[0])
            from_state = noisy(ops.matmul(h, self.recurrent_kernel) + self.bias[1])
            update = noisy(ops.sigmoid(noisy(from_input[:, :units] + from_state[:, :units])), SIGMOID_STEP)
            reset = noisy(ops.sigmoid(noisy(from_input[:, units:2 * units] + from_state[:, units:2 * units])),
                          SIGMOID_STEP)
            candidate = noisy(ops.tanh(noisy(from_input[:, 2 * units:]
                                             + noisy(reset * from_state[:, 2 * units:]))), TANH_STEP)
            new = noisy(candidate + noisy(update * noisy(h - candidate)), STATE_STEP)
            return new, [new] if isinstance(states, (list, tuple)) else new

    return QuantNoiseGRUCell
