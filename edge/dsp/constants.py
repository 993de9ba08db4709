"""Fixed numbers of the PercepNet representation.

Everything that changes what the features mean lives here. Bump
``FEATURE_VERSION`` whenever a change here, or in any stage that computes the
features, alters the feature values: trained models record the version and the
device refuses a model whose version differs.
"""

#: Bumped on any change that alters the 70 feature values or the band layout.
FEATURE_VERSION = 1

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
