"""The echo set's pieces and the echo metrics (evaluation/echo_set.py, evaluation/echo_eval.py), without the corpus."""
import numpy as np
import pytest

from edge.errors import DataError
from evaluation import echo_eval, echo_set

FS = 48_000


def test_the_loudspeaker_high_passes_and_clips():
    rng = np.random.default_rng(0)
    t = np.arange(FS) / FS
    x = 0.3 * np.sin(2 * np.pi * 60 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t)
    y, recipe = echo_set.loudspeaker(x, rng)
    spectrum = np.abs(np.fft.rfft(y[FS // 4:]))
    bins = np.fft.rfftfreq(y[FS // 4:].size, 1 / FS)
    low, mid = spectrum[np.argmin(np.abs(bins - 60))], spectrum[np.argmin(np.abs(bins - 1000))]
    assert low < 0.25 * mid                                           # the small driver's high-pass
    assert 150 <= recipe["driver_highpass_hz"] <= 400 and 3 <= recipe["overdrive_db"] <= 9
    assert np.max(np.abs(y)) < np.percentile(np.abs(x), 99.9)         # the amplifier's rail
    linear, recipe = echo_set.loudspeaker(x, rng, (0.0, 0.0))
    assert recipe["overdrive_db"] == 0.0 and np.max(np.abs(linear)) > np.max(np.abs(y))


def test_held_out_speakers_are_refused(tmp_path):
    (tmp_path / "manifest.csv").write_text(
        "path,source,speaker,language,split,group\n"
        "speech/ravdess/actor-22/x.flac,ravdess,actor-22,en,validation,acted-en-48k\n")
    with pytest.raises(DataError, match="held-out speaker actor-22"):
        echo_set.Sources(tmp_path, tmp_path)


def test_erle_and_convergence_time():
    rng = np.random.default_rng(1)
    echo = rng.standard_normal(4 * FS) * 0.1
    out = echo.copy()
    out[2 * FS:] *= 0.01                                              # 40 dB less from 2 s on
    assert echo_eval.erle_db(echo, out, 2.0) == pytest.approx(40, abs=0.1)
    assert echo_eval.erle_db(echo, echo, 0.0) == pytest.approx(0)
    assert echo_eval.convergence_s(echo, out, echo) == pytest.approx(2.5, abs=0.11)
    assert echo_eval.convergence_s(echo, echo, echo) is None
    assert echo_eval.convergence_s(echo, out, echo, after_s=1.0) == pytest.approx(1.5, abs=0.11)


def test_cost_summary_reports_the_tail_in_microseconds_and_the_report_shows_it():
    seconds = np.full(1000, 100e-6)
    seconds[-1] = 5e-3                       # one slow frame in a thousand: p99.9 sees it, the median does not
    cost = echo_eval.cost_summary(seconds)
    assert cost["frames"] == 1000 and cost["p50"] == pytest.approx(100) and cost["max"] == pytest.approx(5000)
    assert cost["p99"] == pytest.approx(100) and 100 < cost["p99.9"] <= 5000
    assert cost["mean"] == pytest.approx(100 + 4900 / 1000)
    text = echo_eval.report({}, {"WebRTC APM (AEC3 + NS)": cost}, 0, "cmd")
    assert "| WebRTC APM (AEC3 + NS) | 105 | 100 | 100 | " in text and "1000 frames" in text


@pytest.mark.parametrize("method", ["oracle", "oracle_bins"])
def test_the_oracles_remove_an_echo_keep_a_talker_and_separate_the_two_in_double_talk(method):
    from edge.echo import speex_mdf
    from edge.io.synthetic import set_level, speech_like
    if not speex_mdf.available():
        pytest.skip("libspeexdsp.so.1 is not installed (sudo apt-get install libspeexdsp1; .ci/run installs it)")
    oracle = getattr(echo_eval, method)
    talker = set_level(speech_like(3.0, seed=4), -26.0)
    far = set_level(speech_like(3.0, seed=5), -20.0)
    echo = 0.5 * np.concatenate([np.zeros(480), far[:-480]])                  # 10 ms later, -6 dB
    silence = np.zeros_like(far)
    far_alone = oracle({"mic": echo, "far": far, "near": silence})
    assert echo_eval.erle_db(echo, far_alone, 1.0) > 30.0
    talker_alone = oracle({"mic": talker, "far": silence, "near": talker})
    from edge.dsp import highpass_signal
    heard = highpass_signal(talker) if method == "oracle" else talker            # our DSP's DC/rumble high-pass
    assert np.corrcoef(talker_alone[4800:], heard[4800:])[0, 1] > 0.98
    mic = talker + echo                                                        # double talk: echo 0 dB above
    both = oracle({"mic": mic, "far": far, "near": talker})
    kept, before = (np.corrcoef(x[4800:], heard[4800:])[0, 1] for x in (both, mic))
    assert kept > before + 0.1 and kept > 0.85


def test_a_dsp_setting_out_of_range_is_refused_before_any_clip_is_read_and_leaves_nothing_behind(tmp_path, capsys):
    echo_eval.DSP_OVERRIDES.update(gain_exponent=2.0)             # as an earlier run in this process left them
    with pytest.raises(SystemExit) as stopped:
        echo_eval.main([str(tmp_path / "no-set"), str(tmp_path / "out"), "--gain-exponent", "0.5"])
    assert stopped.value.code == 2 and "gain_exponent must be in 1..3" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):                        # no set there: stopped after the settings
        echo_eval.main([str(tmp_path / "no-set"), str(tmp_path / "out")])
    assert echo_eval.DSP_OVERRIDES == {} and echo_eval.ECHO_OVERRIDES == {}
