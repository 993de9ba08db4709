"""evaluation.gain_maps: the replay it scores maps with is the model's own output, and maps act as named."""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ
from edge.model.model_meta import DEFAULT_MODEL_PATH
from edge.io.synthetic import mix_at_snr, noise, set_level, speech_like


@pytest.fixture(scope="module")
def recorded():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import record
    speech = set_level(speech_like(2.0, seed=8), -26.0)
    noisy = mix_at_snr(speech, noise("pink", 2.0, seed=9), 0.0)
    output, replayable = record(ModelRunner(DEFAULT_MODEL_PATH), noisy)
    return noisy, output, replayable, speech


def test_replaying_the_recorded_outputs_reproduces_the_model(recorded):
    from evaluation.gain_maps import replay
    noisy, output, replayable, _ = recorded
    assert np.max(np.abs(replay(noisy, replayable) - output)) < 1e-12


def test_a_power_above_one_suppresses_more_and_a_vad_gate_only_where_the_model_hears_no_speech(recorded):
    from evaluation.gain_maps import MAPS, replay
    noisy, output, replayable, _ = recorded
    gains, vad = replayable.gains, replayable.vad
    by_name = {name: (gain_map, settings) for name, gain_map, settings in MAPS}
    squared = replay(noisy, replayable, *by_name["gain ** 2"])
    assert np.mean(squared ** 2) < np.mean(output ** 2)
    gate = by_name["x0.3 where VAD < 0.3"][0]
    gated, _ = gate(replayable)
    speaking = vad >= 0.3
    assert np.array_equal(gated[speaking], gains[speaking])
    assert np.allclose(gated[~speaking & (vad == 0.0)], 0.3 * gains[~speaking & (vad == 0.0)])
    assert 0.0 < vad.min() or (~speaking).any()


def test_the_decisive_map_pushes_gains_away_from_one_half_and_keeps_their_order(recorded):
    from evaluation.gain_maps import MAPS
    replayable = recorded[2]
    decide = {name: gain_map for name, gain_map, _ in MAPS}["decisive 2"]
    gains = replayable.gains
    decided, kept_strengths = decide(replayable)
    assert np.array_equal(kept_strengths, replayable.strengths)
    low, high = gains < 0.5, gains > 0.5
    assert low.any() and high.any()
    assert np.all(decided[low] <= gains[low]) and np.all(decided[high] >= gains[high])
    order = np.argsort(gains.ravel(), kind="stable")
    assert np.all(np.diff(decided.ravel()[order]) >= -1e-12)             # monotonic: the model's ranking stays
    points = replayable._replace(gains=np.array([[0.0, 0.25, 0.5, 0.75, 1.0]]))
    assert np.allclose(decide(points)[0], [[0.0, 0.125, 0.5, 0.875, 1.0]])


def test_the_oracle_rows_answer_the_calls_the_oracle_enhancer_would(recorded):
    """Oracle gains and strengths replayed with the oracle's settings give oracle_enhance, bit for bit,
    so the oracle-for-one-head maps put each oracle row on the frame it was computed for."""
    from edge.dsp import LOOKAHEAD_FRAMES, ORACLE_SETTINGS, oracle_enhance
    from evaluation.gain_maps import MAPS, replay, with_oracle
    noisy, _, replayable, speech = recorded
    rec = with_oracle(replayable, speech, noisy)
    assert np.all(rec.oracle_gains[:LOOKAHEAD_FRAMES] == 1.0) and np.all(rec.oracle_strengths[:LOOKAHEAD_FRAMES] == 0)
    by_name = {name: gain_map for name, gain_map, _ in MAPS}
    both = replay(noisy, rec, by_name["oracle"], ORACLE_SETTINGS)
    assert np.max(np.abs(both - oracle_enhance(speech, noisy))) < 1e-12
    gains, strengths = by_name["oracle strengths, model gains"](rec)
    assert gains is rec.gains and strengths is rec.oracle_strengths
    assert not np.any(by_name["no pitch filter (strength 0)"](rec)[1])


def test_taking_the_reference_floor_out_only_lowers_oracle_gains_and_most_where_the_reference_is_quiet(recorded):
    from evaluation.gain_maps import MAPS, with_oracle
    noisy, _, replayable, speech = recorded
    rec = with_oracle(replayable, speech, noisy)
    by_name = {name: gain_map for name, gain_map, _ in MAPS}
    gains, strengths = by_name["oracle, reference floor x4 removed"](rec)
    assert strengths is rec.oracle_strengths
    assert np.all(gains <= rec.oracle_gains + 1e-12)
    quiet = rec.clean_energy <= np.percentile(rec.clean_energy, 20, axis=0)
    assert not np.any(gains[quiet])                               # at or below 4 x its floor: nothing kept
    loud = rec.clean_energy > 100 * np.percentile(rec.clean_energy, 20, axis=0)
    assert np.allclose(gains[loud], rec.oracle_gains[loud], rtol=0.03)


def test_the_split_oracle_maps_partition_the_band_frames_between_oracle_and_model(recorded):
    """Each pair of split maps puts the oracle's gains on complementary band-frames: together they are the
    oracle's gains; apart, each is the model's wherever it does not take the oracle's."""
    from edge.dsp import HOP_SAMPLES, LOOKAHEAD_FRAMES
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import MAPS, REMOVED_GAIN, record, speech_free_frames, with_oracle
    noisy, _, _, speech = recorded
    # Half a second on each side of the talker: silent in the reference, noise 15 dB under the talker in the
    # input, so that only the reference's energy calls those frames speech-free.
    silence, background = np.zeros(SAMPLE_RATE_HZ // 2), set_level(noise("pink", 0.5, seed=3), -26.0 - 15.0)
    speech, noisy = np.concatenate([silence, speech, silence]), np.concatenate([background, noisy, background])
    _, replayable = record(ModelRunner(DEFAULT_MODEL_PATH), noisy)
    rec = with_oracle(replayable, speech, noisy)
    by_name = {name: gain_map for name, gain_map, _ in MAPS}
    pairs = (("oracle gains where it removes the band", "oracle gains where it keeps the band",
              rec.oracle_gains <= REMOVED_GAIN),
             ("oracle gains in speech-free frames", "oracle gains in speech frames",
              np.broadcast_to(speech_free_frames(rec)[:, None], rec.gains.shape)))
    for first, second, part in pairs:
        a, strengths_a = by_name[first](rec)
        b, strengths_b = by_name[second](rec)
        assert strengths_a is rec.strengths and strengths_b is rec.strengths
        assert 0 < part.sum() < part.size                       # both parts hold band-frames
        assert np.array_equal(np.where(part, a, b), rec.oracle_gains)
        assert np.array_equal(a[~part], rec.gains[~part]) and np.array_equal(b[part], rec.gains[part])
    free = speech_free_frames(rec)
    seconds = np.arange(free.size) * 0.01                    # the calls, 10 ms apart
    assert np.all(free[(seconds > 0.05) & (seconds < 0.45)])            # the leading silence
    # The call's frame's clean energy (its gains apply LOOKAHEAD_FRAMES frames back): within 10 dB of the talker's
    # loudest frames is speech, never speech-free.
    frame_db = np.full(free.size, -np.inf)
    for k in range(LOOKAHEAD_FRAMES, free.size):
        start = (k - LOOKAHEAD_FRAMES) * HOP_SAMPLES
        if start + HOP_SAMPLES <= speech.size:
            frame_db[k] = 10 * np.log10(np.mean(speech[start:start + HOP_SAMPLES] ** 2) + 1e-20)
    loud = frame_db > np.max(frame_db) - 10
    assert loud.sum() > 20 and not np.any(free[loud])


def test_real_recordings_without_a_reference_score_only_the_maps_that_need_none_by_input_level(recorded):
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import MAPS, NEEDS_REFERENCE, score_maps, table_without_reference
    from edge.errors import UsageError
    from evaluation.inputs import Clip
    noisy, output, _, _ = recorded
    heard = []

    def energy_meter(signal):             # stands in for DNSMOS: what each map's output sounds like, as energy
        heard.append(signal)
        return {"ovrl": float(np.mean(signal ** 2)), "sig": 0.0, "bak": 0.0}

    assert NEEDS_REFERENCE < {name for name, _, _ in MAPS}
    names = [name for name, _, _ in MAPS if name not in NEEDS_REFERENCE]
    with pytest.raises(UsageError, match="no clean reference"):
        score_maps(ModelRunner(DEFAULT_MODEL_PATH), [Clip("real", noisy)], energy_meter, say=lambda m: None,
                   names=["as shipped", "oracle"])
    rows = score_maps(ModelRunner(DEFAULT_MODEL_PATH), [Clip("real", noisy)], energy_meter, say=lambda m: None,
                      names=names)
    assert list(rows) == names and rows["as shipped"][0]["level_band"].startswith("normal")   # speech at -26 dBFS
    assert rows["gain ** 2"][0]["dnsmos_ovrl"] < rows["as shipped"][0]["dnsmos_ovrl"]
    from evaluation.metrics import to_metric_rate
    assert np.allclose(heard[0], to_metric_rate(output))             # 'as shipped' is the model's own output
    assert table_without_reference(rows).startswith("1 of 1 clips at normal level")


def test_the_table_pairs_each_map_with_the_baseline_clip_by_clip_and_reprints_from_a_saved_run(tmp_path, capsys):
    import json
    from evaluation.gain_maps import main, table_without_reference
    from evaluation.levels import NORMAL
    rng = np.random.default_rng(1)
    base = rng.uniform(2.0, 3.5, 40)
    row = lambda name, ovrl, band=NORMAL: {"clip": name, "level_band": band, "dnsmos_ovrl": float(ovrl),
                                           "dnsmos_sig": 3.0, "dnsmos_bak": 3.5}
    # 'better' gains 0.05 on every clip, 'mixed' +-0.5 in turn (mean 0); a quiet clip stays out of the pairs.
    rows = {"as shipped": [row(f"c{i}", v) for i, v in enumerate(base)] + [row("q", 1.0, "quiet (< -40 dBFS)")],
            "better": [row(f"c{i}", v + 0.05) for i, v in enumerate(base)] + [row("q", 3.0, "quiet (< -40 dBFS)")],
            "mixed": [row(f"c{i}", v + (0.5 if i % 2 else -0.5)) for i, v in enumerate(base)]
            + [row("q", 1.0, "quiet (< -40 dBFS)")]}
    lines = {line.split("|")[1].strip(): line for line in table_without_reference(rows).splitlines()
             if line.startswith("| ") and "---" not in line and "map" not in line}
    assert lines["as shipped"].rstrip().endswith("|  |")
    assert "+0.050 (+0.050 .. +0.050)" in lines["better"]
    mean = float(lines["mixed"].split("|")[6].split("(")[0])
    low, high = (float(v) for v in lines["mixed"].split("(")[1].split(")")[0].split(" .. "))
    assert low < -0.1 and high > 0.1 and abs(mean) < 1e-9
    saved = tmp_path / "maps.json"
    saved.write_text(json.dumps(rows))
    assert main(["--table", str(saved)]) == 0
    assert capsys.readouterr().out.strip() == table_without_reference(rows).strip()
    rows["better"][0]["clip"] = rows["as shipped"][0]["clip"] = "src/c0"             # one clip of another source
    rows["better"][0]["dnsmos_ovrl"] += 1.0
    saved.write_text(json.dumps(rows))
    assert main(["--table", str(saved), "--without", "src"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("39 of 40 clips at normal level") and "without src" in out
    assert "+0.050 (+0.050 .. +0.050)" in out
    assert main(["--table", str(saved), "--without", "apollo"]) == 2
    assert "no clips of apollo to leave out; the sources are c0, c1" in capsys.readouterr().err
    without_baseline = {name: scores for name, scores in rows.items() if name != "as shipped"}
    assert "(no 'as shipped' map to pair with)" in table_without_reference(without_baseline)
    for broken in ("[1, 2]", '{"as shipped": [{"clip": "c0"}]}', "{"):
        saved.write_text(broken)
        assert main(["--table", str(saved)]) == 2 and "--realrec ... --out wrote" in capsys.readouterr().err
    assert main([]) == 2 and "give a MODEL" in capsys.readouterr().err
    assert main(["m.tflite", "--without", "src"]) == 2 and "give --table" in capsys.readouterr().err


class _ScalingTeacher:
    """A stand-in teacher whose output is its input times ``factor`` (DeepFilterNet3's place in the real run)."""

    lag = 0

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, signal):
        return self.factor * np.asarray(signal)


def test_a_teacher_stands_in_for_the_missing_reference_of_real_recordings(recorded):
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import score_maps
    from evaluation.inputs import Clip
    from evaluation.metrics import to_metric_rate
    noisy, _, _, _ = recorded
    energy = lambda signal: {"ovrl": float(np.mean(signal ** 2)), "sig": 0.0, "bak": float(np.mean(signal ** 2))}
    scored = {factor: score_maps(ModelRunner(DEFAULT_MODEL_PATH), [Clip("real", noisy)], energy, say=lambda m: None,
                                 names=["as shipped", "oracle"], teacher=_ScalingTeacher(factor))
              for factor in (1.0, 0.1)}
    kept, lowered = scored[1.0]["oracle"][0]["dnsmos_ovrl"], scored[0.1]["oracle"][0]["dnsmos_ovrl"]
    # A teacher that keeps everything: oracle gains of 1, more energy left than the model leaves in 0 dB noise;
    # one 20 dB lower: about 1 % of the energy. The input's own score rides along for the noisiness breakdown.
    assert kept > scored[1.0]["as shipped"][0]["dnsmos_ovrl"]
    assert 0.003 < lowered / kept < 0.03
    assert scored[1.0]["oracle"][0]["input_bak"] == pytest.approx(np.mean(to_metric_rate(noisy) ** 2))


def test_a_joint_echo_model_is_recorded_as_it_runs_without_a_far_end(tiny_echo_model):
    """A joint model reads 138 features; with no reference the recorder passes its 68 far-end inputs as 0."""
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import record, replay
    runner = ModelRunner(tiny_echo_model["out"])
    assert runner.far_end_inputs
    noisy = mix_at_snr(set_level(speech_like(1.0, seed=8), -26.0), noise("pink", 1.0, seed=9), 0.0)
    output, replayable = record(runner, noisy)
    assert output.shape == noisy.shape and np.isfinite(output).all()
    assert np.max(np.abs(replay(noisy, replayable) - output)) < 1e-12


def test_the_recorded_band_energies_are_the_input_frames_the_gains_apply_to(recorded):
    """noisy_energy row k is the band energy of the frame call k's gains apply to (two frames back)."""
    from edge.dsp import LOOKAHEAD_FRAMES, analyse_signal
    noisy, _, replayable, _ = recorded
    analysis = analyse_signal(noisy)
    n = min(analysis.energy.shape[0], replayable.noisy_energy.shape[0] - LOOKAHEAD_FRAMES)
    assert np.all(replayable.noisy_energy[:LOOKAHEAD_FRAMES] == 0.0)
    # the features carry log10(E + 1e-9) in float32 through the model's input: equal to a few parts in 1e6
    np.testing.assert_allclose(replayable.noisy_energy[LOOKAHEAD_FRAMES:LOOKAHEAD_FRAMES + n],
                               analysis.energy[:n], rtol=1e-4, atol=1e-9)


def test_the_background_wiener_bound_only_lowers_gains_and_mostly_in_bands_at_the_background():
    """Stationary noise in every band, a talker-like on-off tone in one: after the tracker's 1.8 s of learning the
    bound takes the noise-only bands towards its floor and leaves the tone whole while it sounds; before, it
    changes nothing. (A steady tone would be taken for background and suppressed: a stationary-noise
    suppressor's known weakness, and one reason this is a study, not a default.)"""
    from edge.dsp.comfort import LEARN_FRAMES
    from evaluation.gain_maps import MAPS, Recorded
    rng = np.random.default_rng(3)
    n_calls, tone_band = 400, 12
    energy = rng.exponential(1e-6, size=(n_calls, 34))           # noise: one band-frame's energy scatters
    sounding = (np.arange(n_calls) // 30) % 2 == 1                 # 300 ms on, 300 ms off
    energy[sounding, tone_band] = 1e-2                             # 40 dB above the noise
    rec = Recorded(np.ones((n_calls, 34)), np.zeros((n_calls, 34)), np.zeros(n_calls), noisy_energy=energy)
    bound = {name: gain_map for name, gain_map, _ in MAPS}["background Wiener bound, floor -15 dB"]
    gains, strengths = bound(rec)
    assert strengths is rec.strengths and np.all(gains <= 1.0)
    assert np.all(gains[:LEARN_FRAMES] == 1.0)
    settled = gains[LEARN_FRAMES + 20:]
    noise_bands = np.delete(settled, tone_band, axis=1)
    assert np.median(noise_bands) < 0.3 and noise_bands.min() >= 10 ** (-15 / 20) - 1e-12
    onset = np.r_[False, sounding[1:] & ~sounding[:-1]]
    assert gains[LEARN_FRAMES:][(sounding & ~onset)[LEARN_FRAMES:], tone_band].min() > 0.95


@pytest.mark.parametrize("share", [1.0, 0.1, 0.0])
def test_the_bin_oracle_keeps_the_reference_magnitude_of_every_bin_down_to_the_floor(share):
    """A reference that is the input times ``share``: every bin's gain is ``share`` (the floor, 30 dB, below it),
    so the output is the high-passed input times that; at 1 the window's overlap-add gives the input back."""
    from edge.dsp import highpass_signal
    from edge.dsp.gains import MAX_ATTENUATION_DB, attenuation_floor
    from evaluation.gain_maps import bin_oracle
    noisy = mix_at_snr(set_level(speech_like(1.0, seed=4), -26.0), noise("pink", 1.0, seed=5), 5.0)
    out = bin_oracle(noisy, share * noisy)
    expected = max(share, attenuation_floor(MAX_ATTENUATION_DB)) * highpass_signal(noisy)
    assert out.shape == noisy.shape
    np.testing.assert_allclose(out, expected, atol=1e-9 * np.max(np.abs(noisy)))


def test_the_bin_oracle_removes_noise_between_harmonics_that_a_band_gain_keeps():
    """A 3.2 kHz tone in white noise, the tone the reference: the bins beside it fall to the floor, so the output
    is nearer the reference than the band oracle's without its comb filter, whose band there (2.8-3.65 kHz) keeps
    the noise beside the tone (the comb filter is what removes it there)."""
    from edge.dsp import ORACLE_SETTINGS, FrameGains, enhance_signal, highpass_signal, oracle_gains
    from evaluation.gain_maps import bin_oracle
    t = np.arange(48_000) / 48_000
    tone = 0.05 * np.sin(2 * np.pi * 3200.0 * t)
    noisy = tone + 0.01 * np.random.default_rng(6).standard_normal(t.size)
    reference = highpass_signal(tone)
    error = lambda out: float(np.mean((out[4800:-4800] - reference[4800:-4800]) ** 2))
    gains, strengths, _, _ = oracle_gains(tone, noisy)
    band_oracle = enhance_signal(noisy, FrameGains(gains, np.zeros_like(strengths)), ORACLE_SETTINGS)
    assert error(bin_oracle(noisy, tone)) < 0.5 * error(band_oracle)
    assert error(bin_oracle(noisy, tone)) < 0.05 * error(highpass_signal(noisy))


class _LevelTeacher:
    """A stand-in teacher that keeps its input and notes the RMS level (dBFS) it heard."""

    lag = 0

    def __init__(self):
        self.heard_dbfs = []

    def __call__(self, signal):
        signal = np.asarray(signal)
        self.heard_dbfs.append(10 * np.log10(np.mean(signal ** 2)))
        return signal


@pytest.mark.parametrize("level_dbfs", ["default", None, -20.0])
def test_the_teacher_hears_real_recordings_at_the_level_asked_and_its_output_is_the_reference(recorded, level_dbfs):
    from edge.dsp import highpass_signal
    from edge.model.engine import ModelRunner
    from evaluation.gain_maps import score_maps
    from evaluation.inputs import Clip
    from evaluation.metrics import MAX_LAG, to_metric_rate
    from training.teacher import TEACHER_LEVEL_DBFS
    noisy, _, _, _ = recorded
    energy = lambda signal: {"ovrl": float(np.mean(signal ** 2)), "sig": 0.0, "bak": 0.0}
    teacher = _LevelTeacher()
    rows = score_maps(ModelRunner(DEFAULT_MODEL_PATH), [Clip("real", noisy)], energy, say=lambda m: None,
                      names=["reference itself"], teacher=teacher, teacher_level_dbfs=level_dbfs)
    # the teacher hears the clip followed by the harness's maximum lag of zeros
    as_recorded = 10 * np.log10(np.mean(noisy ** 2) * noisy.size / (noisy.size + MAX_LAG))
    shift = 0.0 if level_dbfs is None else (TEACHER_LEVEL_DBFS if level_dbfs == "default" else level_dbfs) - \
        10 * np.log10(np.mean(noisy ** 2))
    assert teacher.heard_dbfs == [pytest.approx(as_recorded + shift, abs=0.01)]
    # a teacher that keeps everything, scaled back: the reference is the (high-passed) input
    assert rows["reference itself"][0]["dnsmos_ovrl"] == pytest.approx(
        np.mean(to_metric_rate(highpass_signal(noisy)) ** 2), rel=1e-6)
