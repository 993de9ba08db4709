"""The streaming enhancer: one 10 ms frame in, one 10 ms frame out.

:meth:`Enhancer.process` reads top to bottom as the algorithm:

1. input: validate, replace non-finite samples, high-pass, append to history;
2. pitch: online period for the newest frame, smoothed period for the frame
   ``LOOKAHEAD_FRAMES`` back;
3. analysis in one FFT call: the newest frame, the same window one period
   earlier, and the comb-filtered delayed frame; their band energies;
4. features of the newest frame (with ``far_end_inputs``, also the echo
   estimate's: :mod:`edge.dsp.echo_features`; with ``floor_inputs``, each
   band's level over its noise floor: :mod:`edge.dsp.noise_floor`);
5. gains and strengths for the delayed frame, from a gain source (the
   network, or the oracle), then the limits: gain exponent, release,
   envelope post-filter, attenuation floor;
6. pitch-filter mix and band gains on the delayed frame, then comfort noise
   where the gains suppress (off unless ``comfort_noise_db`` is set: :mod:`edge.dsp.comfort`);
7. synthesis: inverse FFT and overlap-add.

All arrays are allocated once in ``__init__``; a frame allocates only
a few small temporaries inside numpy. Output lags input by
:data:`~edge.dsp.constants.LATENCY_SAMPLES` (30 ms).
"""

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .bands import band_matrix
from .comb import REACH_SAMPLES, comb_filter
from .constants import (HOP_SAMPLES, LOOKAHEAD_FRAMES, N_BANDS, N_BINS, N_FEATURES,
                        PITCH_MAX_SAMPLES, WINDOW_SAMPLES)
from .comfort import ComfortNoise, check_level_db, fill_power_ratio
from .echo_features import N_FAR_END_FEATURES, N_JOINT_FEATURES, EchoAnalysis
from .features import LOG_ENERGY, assemble, band_energies_and_cross, coherence_from_cross
from .iir import StreamIIR
from .noise_floor import FLOOR, N_FLOOR_FEATURES, NoiseFloor
from .unusable import check, repair
from .gains import (GAIN_EXPONENT, GAIN_EXPONENT_RANGE, GAIN_RELEASE_PER_FRAME, MAX_ATTENUATION_DB,
                    POSTFILTER_BETA, GainApplier, attenuation_floor, envelope_postfilter)
from .pitch import HISTORY_NEEDED, PitchTracker
from .stft import analyse, synthesise, vorbis_window

#: RNNoise's DC/rumble high-pass biquad (about 40 Hz corner at 48 kHz).
HIGHPASS_B = np.array([1.0, -2.0, 1.0])
HIGHPASS_A = np.array([1.0, -1.99599, 0.99600])

#: History kept behind the newest sample: the delayed frame's window, the
#: look-ahead after it, and the comb filter's reach before it.
HISTORY_SAMPLES = max(HISTORY_NEEDED, WINDOW_SAMPLES + LOOKAHEAD_FRAMES * HOP_SAMPLES + REACH_SAMPLES,
                      WINDOW_SAMPLES + PITCH_MAX_SAMPLES)

#: Rows of the per-frame analysis batch.
NEWEST, ONE_PERIOD_BACK, COMB_FILTERED = 0, 1, 2
_N_ANALYSED = 3

GainSource = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class EnhancerSettings:
    """User-facing knobs of the DSP chain, with their defaults.

    Attributes:
        max_attenuation_db: deepest suppression of any band, in dB (30 -> gains >= 0.0316).
        postfilter_beta: envelope post-filter strength; 0 turns it off.
        gain_release_per_frame: a band gain falls by at most this factor per
            frame (0.6 ~ 135 ms RT60); ``None`` turns the limit off.
        highpass: apply RNNoise's DC/rumble high-pass to the input.
        gain_exponent: power on the network's gains before the limits (1 = as
            trained; 1..3, higher suppresses deeper where gains are low).
        comfort_noise_db: comfort noise where the gains suppress, this many dB
            relative to the input's background (-60..0, e.g. -20); ``None`` (the
            default): off, suppressed bands fall to the attenuation floor.
        far_end_comfort_noise_db: the same, only on frames where the echo
            canceller is removing a far end (``process`` is given an echo
            estimate), and there instead of ``comfort_noise_db``; ``None``: off.
    """

    max_attenuation_db: float = MAX_ATTENUATION_DB
    postfilter_beta: float = POSTFILTER_BETA
    gain_release_per_frame: Optional[float] = GAIN_RELEASE_PER_FRAME
    highpass: bool = True
    gain_exponent: float = GAIN_EXPONENT
    comfort_noise_db: Optional[float] = None
    far_end_comfort_noise_db: Optional[float] = None

    def __post_init__(self):
        attenuation_floor(self.max_attenuation_db)        # validates
        check_level_db(self.comfort_noise_db)
        check_level_db(self.far_end_comfort_noise_db)
        if not (np.isfinite(self.postfilter_beta) and self.postfilter_beta >= 0.0):
            raise ValueError(f"postfilter_beta must be >= 0, got {self.postfilter_beta!r}")
        low, high = GAIN_EXPONENT_RANGE
        if not (np.isfinite(self.gain_exponent) and low <= self.gain_exponent <= high):
            raise ValueError(f"gain_exponent must be in {low:g}..{high:g}, got {self.gain_exponent!r}")
        release = self.gain_release_per_frame
        if release is not None and not 0.0 <= release < 1.0:
            raise ValueError(f"gain_release_per_frame must be in [0, 1) or None, got {release!r}")


#: Settings for the oracle: targets are applied as they are, without inference-time shaping.
ORACLE_SETTINGS = EnhancerSettings(postfilter_beta=0.0, gain_release_per_frame=None)


def unity_gains(features):
    """A gain source that changes nothing: gains 1, no pitch filtering."""
    return _UNITY_GAIN, _ZERO_STRENGTH


#: "No silent input in living memory" for the comfort noise's hold.
_LONG_AGO = 1 << 30

_UNITY_GAIN = np.ones(N_BANDS)
_ZERO_STRENGTH = np.zeros(N_BANDS)


class HighPass:
    """RNNoise's DC/rumble high-pass as a streaming filter with its state (numpy only, :mod:`edge.dsp.iir`).

    Its state is flushed to 0 before it turns denormal.
    """

    def __init__(self):
        self._filter = StreamIIR(HIGHPASS_B, HIGHPASS_A)

    @property
    def state(self):
        """The filter's state: one complex value per first-order section."""
        return self._filter.section_state

    def reset(self):
        self._filter.reset()

    def process(self, frame, out=None):
        return self._filter.process(frame, out)


class Enhancer:
    """Streaming PercepNet enhancer.

    Args:
        gain_source: called once per frame with the newest features (70, 138
            with ``far_end_inputs``, 172 with ``floor_inputs`` too); returns ``(gains, strengths)`` (34 each)
            for the frame ``LOOKAHEAD_FRAMES`` earlier. Defaults to :func:`unity_gains`.
        settings: :class:`EnhancerSettings`.
        far_end_inputs: compute the 68 far-end inputs of a joint echo-and-noise
            model from the ``echo_estimate`` given to :meth:`process`; None (the
            default): the gain source's own ``far_end_inputs`` (a
            :class:`~edge.model.engine.ModelRunner` of a joint model has it), else off.
        floor_inputs: also compute the 34 noise-floor inputs of a floor model
            (needs ``far_end_inputs``); None: the gain source's own ``floor_inputs``.
        noise_seed: the comfort noise's seed (``comfort_noise_db`` only): give each
            channel its own, so that their comfort noise is not the same signal.

    Attributes:
        features: the newest frame's feature vector (valid after ``process``).
        frames_processed, nonfinite_frames: counters.
    """

    def __init__(self, gain_source: Optional[GainSource] = None,
                 settings: EnhancerSettings = EnhancerSettings(), far_end_inputs: Optional[bool] = None,
                 noise_seed: int = 0, floor_inputs: Optional[bool] = None):
        self.gain_source = gain_source or unity_gains
        if far_end_inputs is None:                   # a joint model's runner says so itself
            far_end_inputs = bool(getattr(gain_source, "far_end_inputs", False))
        if floor_inputs is None:
            floor_inputs = bool(getattr(gain_source, "floor_inputs", False))
        if floor_inputs and not far_end_inputs:
            raise ValueError("floor_inputs follow the far-end inputs (a floor model takes 172 inputs): "
                             "set far_end_inputs too")
        self.settings = settings
        self.weights = band_matrix()
        self.window = vorbis_window()
        self._floor = attenuation_floor(settings.max_attenuation_db)
        self.highpass = HighPass()
        self.pitch = PitchTracker()
        self.applier = GainApplier(self.weights)
        # Fill power ratios without and with a far end (0: track the background, add nothing); with a far end,
        # its own level where one is set, else the general one.
        general, far_end = settings.comfort_noise_db, settings.far_end_comfort_noise_db
        levels = (general, general if far_end is None else far_end)
        self._comfort_ratios = tuple(0.0 if level is None else fill_power_ratio(level) for level in levels)
        self.comfort = None if levels == (None, None) else ComfortNoise(self.weights, noise_seed)
        depth = LOOKAHEAD_FRAMES + 1
        # Per slot of the look-ahead ring: whether a far end played; and frames since a digitally silent input.
        self._far_end_ring = np.zeros(depth, dtype=bool)
        self._frames_since_silence = _LONG_AGO
        self.history = np.zeros(HISTORY_SAMPLES)
        self.spectrum_ring = np.zeros((depth, N_BINS), dtype=np.complex128)
        self.energy_ring = np.zeros((depth, N_BANDS))
        self.features = np.zeros(N_FEATURES + (N_FAR_END_FEATURES if far_end_inputs else 0)
                                 + (N_FLOOR_FEATURES if floor_inputs else 0))
        self.echo_analysis = EchoAnalysis() if far_end_inputs else None
        self.noise_floor = NoiseFloor() if floor_inputs else None
        self.coherence = np.zeros(N_BANDS)
        self.gain = np.ones(N_BANDS)
        self.previous_gain = np.ones(N_BANDS)
        self._released = np.ones(N_BANDS)
        self._input = np.zeros(HOP_SAMPLES)
        self._frames = np.zeros((_N_ANALYSED, WINDOW_SAMPLES))
        self._spectra = np.zeros((_N_ANALYSED, N_BINS), dtype=np.complex128)
        self._squares = np.zeros((_N_ANALYSED + 1, 2 * N_BINS))
        self._bin_power = np.zeros((_N_ANALYSED + 1, N_BINS))
        self._band_power = np.zeros((_N_ANALYSED + 1, N_BANDS))      # three band energies, one cross-power
        self._output_spectrum = np.zeros(N_BINS, dtype=np.complex128)
        self._scratch = np.zeros(WINDOW_SAMPLES)
        self._overlap = np.zeros(HOP_SAMPLES)
        self._output = np.zeros(HOP_SAMPLES)
        self.frames_processed = 0
        self.nonfinite_frames = 0

    def reset(self):
        """Return to the freshly constructed state (stream restart)."""
        for array in (self.history, self.spectrum_ring, self.energy_ring, self.features,
                      self._overlap):
            array[...] = 0.0
        self.previous_gain[:] = 1.0
        self.highpass.reset()
        self.pitch.reset()
        if self.echo_analysis is not None:
            self.echo_analysis.reset()
        if self.noise_floor is not None:
            self.noise_floor.reset()
        if self.comfort is not None:
            self.comfort.reset()
        self._far_end_ring[:] = False
        self._frames_since_silence = _LONG_AGO
        self.frames_processed = 0
        self.nonfinite_frames = 0

    def process(self, frame, out=None, echo_estimate=None):
        """Enhance one 480-sample frame (float, full scale +-1).

        ``echo_estimate``: the 480 samples the linear echo canceller removed
        from the microphone to give ``frame``; None when there is no reference
        or the far end is silent. Read by a joint model's far-end inputs
        (``far_end_inputs``) and, as "a far end is playing", by
        ``far_end_comfort_noise_db``; otherwise ignored.

        Returns the output frame that lags the input by 30 ms. Without ``out``
        the result is an internal buffer that the next call overwrites.
        Raises ValueError for a frame of the wrong shape. A frame with
        non-finite samples, or samples beyond 1e6 (``edge.dsp.unusable``), is
        repaired (those samples 0 or clipped) and counted in ``nonfinite_frames``.
        """
        self._take_input(frame)
        history, end = self.history, self.history.shape[0]
        newest = self.frames_processed % (LOOKAHEAD_FRAMES + 1)
        delayed = (self.frames_processed - LOOKAHEAD_FRAMES) % (LOOKAHEAD_FRAMES + 1)

        # Pitch: online period for the features, smoothed period for the delayed frame's comb.
        period_now, correlation_now, period_delayed = self.pitch.step(history, end)

        # Analysis, in one FFT call: the newest frame, the newest frame one
        # period earlier (for the coherences), and the comb-filtered delayed frame.
        frames = self._frames
        frames[NEWEST] = history[end - WINDOW_SAMPLES:]
        frames[ONE_PERIOD_BACK] = history[end - WINDOW_SAMPLES - period_now:end - period_now]
        comb_filter(history, end - WINDOW_SAMPLES - LOOKAHEAD_FRAMES * HOP_SAMPLES, period_delayed,
                    frames[COMB_FILTERED])
        spectra = analyse(frames, self.window, frames, self._spectra)
        # Their band energies and the coherences' numerator Re<X, X_T>, in one band product.
        band_power = band_energies_and_cross(spectra, self.weights, self._squares, self._bin_power,
                                             self._band_power)
        energies, cross = band_power[:_N_ANALYSED], band_power[_N_ANALYSED]
        self.spectrum_ring[newest] = spectra[NEWEST]
        self.energy_ring[newest] = energies[NEWEST]
        self._far_end_ring[newest] = echo_estimate is not None

        # Features of the newest frame.
        coherence_from_cross(cross, energies[NEWEST], energies[ONE_PERIOD_BACK], self.coherence)
        assemble(energies[NEWEST], self.coherence, period_now, correlation_now, self.features[:N_FEATURES])
        if self.echo_analysis is not None:
            self.echo_analysis.step(echo_estimate, energies[NEWEST], self.features[N_FEATURES:N_JOINT_FEATURES])
        if self.noise_floor is not None:
            self.noise_floor.step(self.features[LOG_ENERGY], self.features[FLOOR])

        # Gains and strengths for the delayed frame (network or oracle), then their limits.
        gain, strength = self.gain_source(self.features)
        self._limit_gains(gain, self.energy_ring[delayed])

        # Pitch-filter mix and band gains on the delayed frame; comfort noise where they suppress.
        self.applier.apply(self.spectrum_ring[delayed], self.energy_ring[delayed],
                           spectra[COMB_FILTERED], energies[COMB_FILTERED],
                           strength, self.gain, self._output_spectrum)
        if self.comfort is not None:
            # The delayed frame's window spans its hop and the one before; the high-pass settles within 3 more.
            touched_by_silence = self._frames_since_silence <= LOOKAHEAD_FRAMES + 4
            self.comfort.add(self._output_spectrum, self.energy_ring[delayed], self.gain,
                             self._comfort_ratios[int(self._far_end_ring[delayed])], hold=touched_by_silence)

        # Synthesis.
        self.frames_processed += 1
        return synthesise(self._output_spectrum, self.window, self._overlap, self._scratch,
                          self._output if out is None else out)

    def _take_input(self, frame):
        """Validate, sanitise and high-pass the new frame; shift it into the history."""
        frame = np.asarray(frame)
        if frame.shape != (HOP_SAMPLES,):
            raise ValueError(f"Enhancer.process expects one frame of {HOP_SAMPLES} mono samples "
                             f"(10 ms at 48 kHz), got an array of shape {frame.shape}")
        np.copyto(self._input, frame, casting="unsafe")
        energy, usable = check(self._input)
        if not usable:
            energy = repair(self._input)
            self.nonfinite_frames += 1
        self._frames_since_silence = 0 if energy == 0.0 else min(self._frames_since_silence + 1, _LONG_AGO)
        history = self.history
        history[:-HOP_SAMPLES] = history[HOP_SAMPLES:]
        if self.settings.highpass:
            self.highpass.process(self._input, out=history[-HOP_SAMPLES:])
        else:
            history[-HOP_SAMPLES:] = self._input

    def _limit_gains(self, gain, noisy_energy):
        """Gain exponent, release limit, envelope post-filter and attenuation floor, into ``self.gain``."""
        shaped = gain
        if self.settings.gain_exponent != 1.0:
            shaped = np.power(gain, self.settings.gain_exponent, out=self._released)
        release = self.settings.gain_release_per_frame
        if release is not None:
            # A band gain falls by at most the release factor per frame; the result is also next frame's reference.
            self.previous_gain *= release
            shaped = np.maximum(shaped, self.previous_gain, out=self.previous_gain)
        envelope_postfilter(shaped, noisy_energy, self.settings.postfilter_beta, out=self.gain)
        return np.maximum(self.gain, self._floor, out=self.gain)
