"""Fixed numbers of the PercepNet representation.

Everything that changes what the features mean lives here. Bump
``FEATURE_VERSION`` whenever a change here, or in any stage that computes the
features, alters the feature values: trained models record the version and the
device refuses a model of a version it does not compute (COMPATIBLE_FEATURE_VERSIONS).
"""

#: Bumped on any change that alters the feature values or the band layout.
#: 1: the 70 features of :mod:`edge.dsp.features`.
#: 2: the same 70, unchanged, then the 68 far-end inputs of :mod:`edge.dsp.echo_features` (joint echo-and-noise
#:    models). A version-1 model or cache is a version-2 one whose far-end inputs are 0, so both are accepted.
#: 3: the same 138, unchanged, then the 34 noise-floor inputs of :mod:`edge.dsp.noise_floor` (floor models,
#:    172 inputs). They are computed from the log energies, so a version-1 or -2 cache serves a floor model.
FEATURE_VERSION = 3
#: Versions whose features this code computes exactly (see above).
COMPATIBLE_FEATURE_VERSIONS = (1, 2, 3)

SAMPLE_RATE_HZ = 48_000
HOP_SAMPLES = 480                      # 10 ms frame
WINDOW_SAMPLES = 2 * HOP_SAMPLES       # 20 ms power-complementary window
N_BINS = WINDOW_SAMPLES // 2 + 1       # 481 bins of 50 Hz
BIN_HZ = SAMPLE_RATE_HZ / WINDOW_SAMPLES

N_BANDS = 34
BANDS_TOP_HZ = 20_000.0
BAND_MIN_WIDTH_BINS = 2                # 100 Hz

PITCH_MIN_SAMPLES = 60                 # 800 Hz
PITCH_MAX_SAMPLES = 768                # 62.5 Hz
PITCH_DECIMATION = 4                   # coarse search at 12 kHz

#: Frames of look-ahead: gains for frame t are applied when frame t + 2 has
#: arrived. The network's convolutions see these future features, and the comb
#: filter and the pitch track use the same future samples, so they cost no
#: extra latency.
LOOKAHEAD_FRAMES = 2
LOOKAHEAD_SAMPLES = LOOKAHEAD_FRAMES * HOP_SAMPLES

#: Total algorithmic latency: STFT overlap (one hop) plus the look-ahead.
LATENCY_SAMPLES = HOP_SAMPLES + LOOKAHEAD_SAMPLES
LATENCY_MS = 1000.0 * LATENCY_SAMPLES / SAMPLE_RATE_HZ   # 30.0 ms

#: Comb filter: up to this many taps each side of the current period, fewer
#: when M * T would reach past the look-ahead (see :func:`edge.dsp.comb.taps_each_side`).
COMB_MAX_TAPS_EACH_SIDE = 3

N_FEATURES = 2 * N_BANDS + 2           # 34 log energies, 34 coherences, period, correlation
N_FAR_END_FEATURES = 2 * N_BANDS       # a joint echo model's: echo level and echo share per band (echo_features)
N_JOINT_FEATURES = N_FEATURES + N_FAR_END_FEATURES      # 138
N_FLOOR_FEATURES = N_BANDS             # a floor model's: each band's level over its noise floor (noise_floor)
N_FLOOR_JOINT_FEATURES = N_JOINT_FEATURES + N_FLOOR_FEATURES          # 172
