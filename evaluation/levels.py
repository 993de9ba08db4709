"""Input level of a clip and its level band: every table is reported per band (issue 25).

The level is the **active speech level** in dBFS (full scale = 1.0), after
ITU-T P.56 method B: the signal's envelope (two one-pole smoothers of
``|x|``, 30 ms) is compared with thresholds one 6 dB step apart, each
crossing held for 200 ms; the level is the mean power over the active
samples at the threshold where that power sits :data:`P56_MARGIN_DB` above
the threshold. Pauses do not pull it down, so a sentence with long gaps
reads at the level its words are spoken at.

What is measured: the clean reference when the clip has one (how loud the
talker is), else the input itself (real recordings without a reference: the
level then includes the noise, which only matters at low SNR).

Bands (dBFS of active speech): quiet below -40, normal -35 to -15, loud above
-15. The 5 dB between quiet and normal is reported as its own band, so that
no clip is pushed into a band it does not belong to. Models are chosen on the
normal band first: a method that wins only at quiet or loud levels wins where
few users are.
"""

import numpy as np

#: ITU-T P.56 method B constants: envelope time constant, hangover, margin.
P56_TIME_CONSTANT_S = 0.03
P56_HANGOVER_S = 0.2
P56_MARGIN_DB = 15.9
#: Thresholds 2**-k of full scale, k = 0..P56_STEPS-1 (0 to -90 dBFS in 6 dB steps).
P56_STEPS = 16

QUIET_BELOW_DBFS = -40.0
NORMAL_FROM_DBFS = -35.0
LOUD_ABOVE_DBFS = -15.0

NORMAL = "normal (-35..-15 dBFS)"
QUIET = "quiet (< -40 dBFS)"
BETWEEN = "between (-40..-35 dBFS)"
LOUD = "loud (> -15 dBFS)"
SILENT = "no speech found"
#: Report order: the band models are chosen on comes first.
BAND_ORDER = (NORMAL, QUIET, BETWEEN, LOUD, SILENT)


def _one_pole(signal, coefficient):
    """``y[n] = coefficient * y[n-1] + (1 - coefficient) * x[n]``, (scipy.signal.lfilter)."""
    from scipy.signal import lfilter
    return lfilter([1.0 - coefficient], [1.0, -coefficient], signal)


def _held(mask, hold_samples):
    """``mask`` with every True sample extended by ``hold_samples`` samples after it (the hangover)."""
    counts = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    starts = np.maximum(np.arange(mask.size) - hold_samples, 0)
    return (counts[1:] - counts[starts]) > 0


def active_level_dbfs(signal, rate_hz):
    """Active speech level of ``signal`` (float, full scale 1.0) in dBFS, after ITU-T P.56 method B.

    Returns ``-inf`` for a signal with no sample above the lowest threshold
    (-90 dBFS), e.g. digital silence.
    """
    signal = np.asarray(signal, dtype=np.float64).reshape(-1)
    if signal.size == 0:
        raise ValueError("active_level_dbfs: the signal is empty")
    if rate_hz <= 0:
        raise ValueError(f"active_level_dbfs: rate_hz must be positive, got {rate_hz}")
    coefficient = np.exp(-1.0 / (rate_hz * P56_TIME_CONSTANT_S))
    envelope = _one_pole(_one_pole(np.abs(signal), coefficient), coefficient)
    hold_samples = int(np.ceil(P56_HANGOVER_S * rate_hz))
    energy = float(np.dot(signal, signal))
    thresholds_db = -6.0206 * np.arange(P56_STEPS - 1, -1, -1)        # lowest first
    previous = None
    for threshold_db in thresholds_db:
        active = int(np.count_nonzero(_held(envelope >= 10.0 ** (threshold_db / 20.0), hold_samples)))
        if active == 0:
            break
        level_db = 10.0 * np.log10(energy / active + 1e-300)
        difference = level_db - threshold_db
        if difference <= P56_MARGIN_DB:
            if previous is None:
                return float(level_db)
            (prev_level, prev_difference) = previous
            weight = (prev_difference - P56_MARGIN_DB) / (prev_difference - difference)
            return float(prev_level + weight * (level_db - prev_level))
        previous = (level_db, difference)
    return float(previous[0]) if previous is not None else float("-inf")


def level_band(level_dbfs):
    """The band of an active speech level in dBFS: one of :data:`BAND_ORDER`."""
    if level_dbfs is None or not np.isfinite(level_dbfs):
        return SILENT
    if level_dbfs < QUIET_BELOW_DBFS:
        return QUIET
    if level_dbfs < NORMAL_FROM_DBFS:
        return BETWEEN
    if level_dbfs <= LOUD_ABOVE_DBFS:
        return NORMAL
    return LOUD


def band_sort_key(band):
    """Sort key putting bands in :data:`BAND_ORDER` (unknown labels last, by name)."""
    return (BAND_ORDER.index(band), "") if band in BAND_ORDER else (len(BAND_ORDER), str(band))


def clip_level(clip, rate_hz):
    """``(level dBFS, what was measured)`` of a clip: its clean reference when it has one, else its input."""
    if clip.clean is not None:
        return active_level_dbfs(clip.clean, rate_hz), "clean reference"
    return active_level_dbfs(clip.noisy, rate_hz), "input (no reference)"
