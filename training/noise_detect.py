"""Does a noise segment hold speech? A small energy-and-pitch detector on edge's own analysis.

A noise corpus must not hold intelligible talkers: the network would learn to
remove speech. The detector reuses the enhancer's feature code
(:func:`edge.dsp.offline.analyse_signal`, one implementation): per 10 ms frame
its pitch tracker gives a period and a normalised pitch correlation, and the
band energies give the frame's level.

A frame is *voiced* when it is active (within :data:`ACTIVE_RANGE_DB` of the
segment's loud frames), its pitch correlation reaches
:data:`VOICED_CORRELATION` and its period lies in the range of speaking
voices (:data:`F0_RANGE_HZ`). Speech is not merely voiced: it is voiced in
syllables, 40-400 ms runs separated by consonants and pauses, several per
second, and its pitch moves. Hum, engines, fans and held musical notes are
voiced for seconds on end at a steady period; rain, wind and crowds are rarely
voiced at all. So a segment is called speech when

* at least :data:`MIN_SYLLABLES_PER_S` syllable-length voiced runs per second, and voiced
  runs of :data:`MIN_MEAN_RUN_S` on average (music and crowds give many 20-50 ms flickers),
* voiced frames make between :data:`VOICED_SHARE_RANGE` of the active frames,
* less than :data:`MAX_SUSTAINED_SHARE` of the voiced frames lie in runs
  longer than :data:`SUSTAINED_S` (a held tone), and
* the pitch moves within runs (median absolute frame-to-frame change of at
  least :data:`MIN_PITCH_MOVEMENT_SEMITONES`).

Its measured behaviour on known speech and known noise is in
docs/noise-corpus.md (``python -m training.noise_detect_check``).
"""

from dataclasses import dataclass

import numpy as np

from edge.dsp.constants import HOP_SAMPLES, SAMPLE_RATE_HZ
from edge.dsp.features import CORRELATION, LOG_ENERGY, LOG_ENERGY_OFFSET, LOG_ENERGY_SCALE

FRAME_S = HOP_SAMPLES / SAMPLE_RATE_HZ
ACTIVE_RANGE_DB = 30.0
VOICED_CORRELATION = 0.7
F0_RANGE_HZ = (70.0, 400.0)
SYLLABLE_S = (0.04, 0.40)
SUSTAINED_S = 0.6
MIN_SYLLABLES_PER_S = 0.8
MIN_MEAN_RUN_S = 0.07
VOICED_SHARE_RANGE = (0.05, 0.90)
MAX_SUSTAINED_SHARE = 0.35
MIN_PITCH_MOVEMENT_SEMITONES = 0.05


@dataclass(frozen=True)
class SpeechEvidence:
    """What the detector measured on one segment, and its verdict."""

    voiced_share: float           # voiced frames / active frames
    syllables_per_s: float        # voiced runs of syllable length per second of segment
    sustained_share: float        # share of voiced frames in runs longer than SUSTAINED_S
    pitch_movement_semitones: float
    is_speech: bool

    def describe(self):
        return (f"voiced {self.voiced_share:.2f}, {self.syllables_per_s:.1f} syllables/s, "
                f"sustained {self.sustained_share:.2f}, pitch moves {self.pitch_movement_semitones:.2f} st")


def _runs(mask):
    """(start, length) of each run of True in a boolean vector."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[::2], edges[1::2] - edges[::2]


def _frame_level_db(features):
    """Frame level in dB from the features' log band energies (undoing their normalisation)."""
    log10_energy = features[:, LOG_ENERGY] / LOG_ENERGY_SCALE - LOG_ENERGY_OFFSET
    return 10.0 * np.log10(np.sum(10.0 ** log10_energy, axis=1) + 1e-12)


def voiced_frames(features, periods):
    """Boolean per frame: active, strongly periodic, at a speaking voice's pitch."""
    level_db = _frame_level_db(features)
    active = level_db > np.percentile(level_db, 95) - ACTIVE_RANGE_DB
    f0_hz = SAMPLE_RATE_HZ / np.maximum(periods, 1)
    in_range = (f0_hz >= F0_RANGE_HZ[0]) & (f0_hz <= F0_RANGE_HZ[1])
    return active & in_range & (features[:, CORRELATION] >= VOICED_CORRELATION), active


def evidence_from_analysis(features, periods):
    """:class:`SpeechEvidence` from per-frame features (n, 70) and online pitch periods (n,)."""
    voiced, active = voiced_frames(features, periods)
    n_active = max(int(active.sum()), 1)
    starts, lengths = _runs(voiced)
    seconds = max(len(voiced) * FRAME_S, FRAME_S)
    run_s = lengths * FRAME_S
    syllables = (run_s >= SYLLABLE_S[0]) & (run_s <= SYLLABLE_S[1])
    n_voiced = max(int(voiced.sum()), 1)
    sustained = float(lengths[run_s > SUSTAINED_S].sum()) / n_voiced
    moves = []
    for start, length in zip(starts[syllables], lengths[syllables]):
        semitones = 12 * np.log2(periods[start:start + length].astype(np.float64))
        moves.append(np.abs(np.diff(semitones)))
    movement = float(np.median(np.concatenate(moves))) if moves else 0.0
    voiced_share = float(voiced.sum()) / n_active
    syllables_per_s = float(syllables.sum()) / seconds
    mean_run_s = float(run_s.mean()) if run_s.size else 0.0
    is_speech = bool(syllables_per_s >= MIN_SYLLABLES_PER_S and mean_run_s >= MIN_MEAN_RUN_S
                     and VOICED_SHARE_RANGE[0] <= voiced_share <= VOICED_SHARE_RANGE[1]
                     and sustained < MAX_SUSTAINED_SHARE
                     and movement >= MIN_PITCH_MOVEMENT_SEMITONES)
    return SpeechEvidence(voiced_share, syllables_per_s, sustained, movement, is_speech)


def speech_evidence(audio_48k):
    """:class:`SpeechEvidence` of a mono 48 kHz segment (uses edge's analysis; about 0.04 s per s)."""
    from edge.dsp.offline import analyse_signal
    analysis = analyse_signal(np.asarray(audio_48k, dtype=np.float64), highpass=True)
    return evidence_from_analysis(analysis.features, analysis.period_now)
