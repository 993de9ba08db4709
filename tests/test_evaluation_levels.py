"""Input-level bands of the evaluation (issue 25): the P.56 active level, the bands, and the report per band."""

import numpy as np
import pytest

from edge.dsp import SAMPLE_RATE_HZ
from edge.io.synthetic import set_level, speech_like
from evaluation import levels, report
from evaluation.combine import combine
from evaluation.inputs import Clip

RATE = SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def speech():
    return set_level(speech_like(1.5, seed=3), -26.0)


def test_active_level_follows_gain_and_ignores_pauses(speech):
    level = levels.active_level_dbfs(speech, RATE)
    assert -30.0 < level < -24.0
    assert levels.active_level_dbfs(speech * 10 ** (-20 / 20), RATE) == pytest.approx(level - 20.0, abs=0.2)
    paused = np.concatenate([speech, np.zeros(speech.size)])          # RMS drops 3 dB, the active level not
    assert levels.active_level_dbfs(paused, RATE) == pytest.approx(level, abs=1.0)     # 200 ms hangover


def test_active_level_of_silence_and_bad_input():
    assert levels.active_level_dbfs(np.zeros(4800), RATE) == float("-inf")
    with pytest.raises(ValueError, match="empty"):
        levels.active_level_dbfs(np.zeros(0), RATE)
    with pytest.raises(ValueError, match="rate_hz"):
        levels.active_level_dbfs(np.ones(10), 0)


@pytest.mark.parametrize("level_dbfs, band", [
    (-60.0, levels.QUIET), (-40.01, levels.QUIET), (-40.0, levels.BETWEEN), (-35.01, levels.BETWEEN),
    (-35.0, levels.NORMAL), (-26.0, levels.NORMAL), (-15.0, levels.NORMAL), (-14.99, levels.LOUD),
    (float("-inf"), levels.SILENT), (None, levels.SILENT)])
def test_level_band_boundaries(level_dbfs, band):
    assert levels.level_band(level_dbfs) == band


def test_bands_sort_normal_first():
    shuffled = [levels.LOUD, "odd", levels.QUIET, levels.NORMAL, levels.BETWEEN]
    assert sorted(shuffled, key=levels.band_sort_key) == [levels.NORMAL, levels.QUIET, levels.BETWEEN,
                                                          levels.LOUD, "odd"]


def test_clip_level_reads_the_reference_else_the_input(speech):
    loud_input = speech * 10.0                                          # +20 dB: what the noisy input holds
    level, measured = levels.clip_level(Clip("a", loud_input, clean=speech), RATE)
    assert measured == "clean reference" and level < -24.0
    level, measured = levels.clip_level(Clip("b", loud_input), RATE)
    assert measured == "input (no reference)" and level > -10.0


def _row(ovrl):
    return {"dnsmos_ovrl": ovrl, "lag_ms": 0.0, "cpu_s": 0.0, "process_cpu_s": 0.0, "audio_s": 1.0}


def _clip(name, band, group, noisy, peer):
    return {"name": name, "snr_db": None, "snr_bucket": None, "family": group, "group": group,
            "seconds": 1.0, "level_dbfs": None, "level_band": band,
            "results": {"noisy input": _row(noisy), "peer": _row(peer)}}


def _run(clips):
    return {"clips": clips, "skipped": {}, "failed": {}, "metrics_skipped": {}, "has_reference": False,
            "reference": "none", "source": "fixture", "command": ["fixture"],
            "methods": {"noisy input": {"kind": "noisy", "latency_ms": 0.0, "note": ""},
                        "peer": {"kind": "rnnoise", "latency_ms": 0.0, "note": ""}}}


@pytest.fixture
def run():
    """Two normal clips in two groups, two quiet ones where the peer falls below the input, one loud."""
    return report.summarise(_run([
        _clip("a", levels.NORMAL, "g1", 2.0, 3.0), _clip("b", levels.NORMAL, "g2", 2.2, 3.2),
        _clip("c", levels.QUIET, "g1", 1.6, 1.2), _clip("d", levels.QUIET, "g2", 1.4, 1.2),
        _clip("e", levels.LOUD, "g1", 2.5, 2.9)]))


def test_summary_groups_by_band(run):
    by_band = run["by_level_band"]["peer"]
    assert list(by_band) == [levels.NORMAL, levels.QUIET, levels.LOUD]
    assert by_band[levels.NORMAL]["dnsmos_ovrl"] == pytest.approx(3.1)
    assert by_band[levels.QUIET]["n_clips"] == 2 and by_band[levels.QUIET]["dnsmos_ovrl"] == pytest.approx(1.2)
    within = run["by_group_by_level_band"]["noisy input"]
    assert within[levels.QUIET]["g1"]["dnsmos_ovrl"] == pytest.approx(1.6)
    assert within[levels.NORMAL]["g2"]["dnsmos_ovrl"] == pytest.approx(2.2)


def test_below_input_flags_the_failing_band_only(run):
    where = {(name, place) for name, place, metric, *_ in run["below_input"]}
    assert ("peer", levels.QUIET) in where
    assert ("peer", f"g1, {levels.QUIET}") in where and ("peer", f"g2, {levels.QUIET}") in where
    assert not any(levels.NORMAL in place or levels.LOUD in place or place == "all clips" for _, place in where)
    assert all(name == "peer" for name, _ in where)                 # the input itself is never flagged


def test_markdown_shows_every_band_normal_first(run):
    text = report.markdown(run)
    normal = text.index(f"**Input level {levels.NORMAL}, 2 clips**")
    quiet = text.index(f"**Input level {levels.QUIET}, 2 clips**")
    loud = text.index(f"**Input level {levels.LOUD}, 1 clips**")
    assert normal < quiet < loud
    assert "chosen on the normal band first" in text
    assert f"**DNSMOS OVRL by source group, input level {levels.QUIET}**" in text
    assert "below the noisy input" in text and f"DNSMOS OVRL in {levels.QUIET} (1.20 < 1.50)" in text


def test_a_run_without_levels_has_no_band_tables():
    clip = _clip("a", None, "g1", 2.0, 3.0)
    text = report.markdown(report.summarise(_run([clip, _clip("b", None, "g2", 2.0, 3.0)])))
    assert "By input level" not in text and "**DNSMOS OVRL by source group**" in text


def test_combine_takes_levels_from_the_run_that_has_them(run):
    old = _run([{**clip, "level_band": None, "level_dbfs": None,
                 "results": {"old model": clip["results"]["peer"]}} for clip in run["clips"]])
    old["methods"] = {"old model": {"kind": "model", "latency_ms": 30.0, "note": ""}}
    new = _run([{k: v for k, v in clip.items()} for clip in run["clips"]])
    combined = combine([old, new])
    assert [clip["level_band"] for clip in combined["clips"]] == [clip["level_band"] for clip in run["clips"]]
    assert set(combined["by_level_band"]) == {"old model", "noisy input", "peer"}


def test_evaluate_records_each_clip_level_and_band(speech):
    from evaluation import evaluate
    from evaluation.methods import noisy_input
    quiet = speech * 10 ** (-20 / 20)
    clips = [Clip("normal", speech + 1e-4, clean=speech), Clip("quiet", quiet + 1e-5, clean=quiet)]
    run = evaluate(clips, [noisy_input()], use_dnsmos=False, say=lambda message: None)
    assert [clip["level_band"] for clip in run["clips"]] == [levels.NORMAL, levels.QUIET]
    assert all(clip["level_of"] == "clean reference" for clip in run["clips"])
    assert run["clips"][0]["level_dbfs"] - run["clips"][1]["level_dbfs"] == pytest.approx(20.0, abs=0.2)
    digests = [clip["audio_sha256"] for clip in run["clips"]]
    assert len(set(digests)) == 2 and len(digests[0]) == 64
    from evaluation.harness import audio_sha256
    assert audio_sha256(Clip("normal", speech + 1e-4, clean=quiet)) != digests[0]     # the reference counts too
    again = evaluate([Clip("normal", speech + 1e-4, clean=speech)], [noisy_input()], use_dnsmos=False,
                     say=lambda message: None)
    assert again["clips"][0]["audio_sha256"] == digests[0]


def _recorded(run, **fields):
    """A copy of ``run`` whose clips carry ``fields`` (name -> one value per clip)."""
    copy = {**run, "clips": [dict(clip) for clip in run["clips"]]}
    for key, values in fields.items():
        for clip, value in zip(copy["clips"], values):
            clip[key] = value
    return copy


def test_combine_refuses_the_same_clip_names_read_from_other_audio(run):
    """Names alone were compared: runs over a rebuilt corpus, or another --seed or --seconds, were paired."""
    from evaluation.combine import CombineError
    old = _run([{**clip, "results": {"old model": clip["results"]["peer"]}} for clip in run["clips"]])
    old["methods"] = {"old model": {"kind": "model", "latency_ms": 30.0, "note": ""}}
    new = _run([dict(clip) for clip in run["clips"]])
    digests = [f"{i:064x}" for i in range(5)]
    combined = combine([_recorded(old, audio_sha256=digests), _recorded(new, audio_sha256=digests)])
    assert not any("audio_sha256" in note for note in combined["combined_notes"])     # compared, and equal
    with pytest.raises(CombineError, match="clip c .* differs between the runs in audio_sha256 .*other audio"):
        combine([_recorded(old, audio_sha256=digests), _recorded(new, audio_sha256=digests[:2] + ["f" * 64] * 3)])
    with pytest.raises(CombineError, match="clip a .* differs between the runs in level_dbfs \\(-26.0, -45.0\\)"):
        combine([_recorded(old, level_dbfs=[-26.0] * 5), _recorded(new, level_dbfs=[-45.0] * 5)])
    with pytest.raises(CombineError, match="differs between the runs in seconds"):
        combine([old, _recorded(new, seconds=[1.0, 1.0, 2.0, 1.0, 1.0])])
    loose = combine([old, _recorded(new, audio_sha256=digests)])          # an old run without digests
    assert "Not compared between the runs, since some run did not record it: audio_sha256, level_dbfs." \
        in loose["combined_notes"]
    text = report.markdown(loose)
    assert "- Not compared between the runs" in text and "timed in different runs" in text
    # speechmos's own call and the fallback through its ONNX model are one scale; another model is not
    old["dnsmos_backend"] = "speechmos.dnsmos.run"
    new["dnsmos_backend"] = "speechmos ONNX model via onnxruntime (speechmos.dnsmos import failed: No module 'x')"
    assert combine([old, new])["summary"]
    new["dnsmos_backend"] = "another DNSMOS model"
    with pytest.raises(CombineError, match="scored DNSMOS with different models"):
        combine([old, new])


def test_combine_takes_a_level_a_float_step_apart_as_the_same(run):
    old = _run([{**clip, "results": {"old model": clip["results"]["peer"]}} for clip in run["clips"]])
    old["methods"] = {"old model": {"kind": "model", "latency_ms": 30.0, "note": ""}}
    new = _run([dict(clip) for clip in run["clips"]])
    assert combine([_recorded(old, level_dbfs=[-26.004999999999995] * 5),
                    _recorded(new, level_dbfs=[-26.005000000000003] * 5)])["summary"]


def test_a_combined_run_combined_again_keeps_its_caveats(run):
    """Base (no digests) + new gave C with the new run's digests on every clip; C + a newer run then compared
    them as if all were checked, and said the base's methods were timed with the new one."""
    old = _run([{**clip, "results": {"old model": clip["results"]["peer"]}} for clip in run["clips"]])
    old["methods"] = {"old model": {"kind": "model", "latency_ms": 30.0, "note": ""}}
    digests = [f"{i:064x}" for i in range(5)]
    new = _recorded(_run([dict(clip) for clip in run["clips"]]), audio_sha256=digests)
    first = combine([old, new])
    assert all("audio_sha256" not in clip for clip in first["clips"])
    newer = _recorded(_run([{**clip, "results": {"newer model": clip["results"]["peer"]}}
                            for clip in run["clips"]]), audio_sha256=digests)
    newer["methods"] = {"newer model": {"kind": "model", "latency_ms": 30.0, "note": ""}}
    second = combine([first, newer])
    assert second["timed_together"] == [["old model"], ["noisy input", "peer"], ["newer model"]]
    notes = second["combined_notes"]
    assert sum("audio_sha256" in note for note in notes) == 1 and sum(note.startswith("CPU s") for note in notes) == 1
    assert "(old model; noisy input, peer; newer model)" in next(note for note in notes if note.startswith("CPU s"))


def test_a_paired_interval_is_the_same_whatever_else_the_report_holds():
    """One generator was shared in order: the interval of ours - peer moved when a method was added."""
    rng = np.random.default_rng(4)
    peer = rng.uniform(2.5, 3.5, 15)
    alone = _paired_run(peer + rng.normal(0, 0.2, 15), peer)
    crowded = {**alone, "clips": [dict(clip, results={**clip["results"], "other": clip["results"]["peer"]})
                                  for clip in alone["clips"]],
               "methods": {"other": {"kind": "model", "latency_ms": 30.0, "note": ""}, **alone["methods"]}}
    report.summarise(crowded)

    def row(run):
        return next(r for r in run["paired"] if (r["a"], r["b"], r["where"], r["metric"])
                    == ("ours", "peer", "all clips", "dnsmos_ovrl"))
    assert (row(crowded)["low"], row(crowded)["high"]) == (row(alone)["low"], row(alone)["high"])


def _paired_run(model_ovrl, peer_ovrl):
    clips = [{"name": f"c{i}", "snr_db": None, "snr_bucket": None, "family": "g", "group": "g", "seconds": 1.0,
              "level_dbfs": None, "level_band": levels.NORMAL,
              "results": {"noisy input": _row(2.0), "peer": _row(p), "ours": _row(m)}}
             for i, (m, p) in enumerate(zip(model_ovrl, peer_ovrl))]
    run = _run(clips)
    run["methods"]["ours"] = {"kind": "model", "latency_ms": 30.0, "note": ""}
    return report.summarise(run)


def test_paired_differences_hold_zero_for_noise_and_exclude_it_for_a_steady_lead():
    rng = np.random.default_rng(1)
    peer = rng.uniform(2.5, 3.5, 15)
    # clip-to-clip spread 0.2 around a 0.03 lead: these 15 clips cannot tell the two apart
    noisy_lead = [row for row in _paired_run(peer + 0.03 + rng.normal(0, 0.2, 15), peer)["paired"]
                  if row["where"] == levels.NORMAL and row["metric"] == "dnsmos_ovrl"]
    assert len(noisy_lead) == 1 and (noisy_lead[0]["a"], noisy_lead[0]["b"]) == ("ours", "peer")   # ours first
    assert noisy_lead[0]["low"] < 0.0 < noisy_lead[0]["high"] and noisy_lead[0]["n"] == 15
    # the same lead on every clip: the interval is the lead itself
    steady = [row for row in _paired_run(peer + 0.03, peer)["paired"] if row["where"] == "all clips"][0]
    assert steady["mean"] == pytest.approx(0.03) and steady["low"] == pytest.approx(0.03)
    # the input is a floor, not a method: never paired
    assert all("noisy input" not in (row["a"], row["b"]) for row in _paired_run(peer, peer)["paired"])


def test_markdown_lists_paired_differences():
    text = report.markdown(_paired_run([3.0, 3.2, 3.1], [2.9, 3.0, 3.2]))
    assert "### Paired differences (a - b), with 95 % bootstrap intervals over clips" in text
    assert "| ours | peer | all clips | DNSMOS OVRL | 3* | +0.067 |" in text
    assert "\\* fewer than 10 clips: a percentile interval over so few covers poorly; indicative only." in text


def test_real_recordings_are_broken_down_by_the_inputs_noisiness_noisiest_first():
    def clip(name, input_bak, peer_ovrl):
        return {"name": name, "snr_db": None, "snr_bucket": None, "family": "g", "group": "g", "seconds": 1.0,
                "level_dbfs": None, "level_band": levels.NORMAL,
                "results": {"noisy input": {**_row(2.0), "dnsmos_bak": input_bak}, "peer": _row(peer_ovrl)}}
    run = report.summarise(_run([clip("a", 2.1, 2.5), clip("b", 2.9, 2.7), clip("c", 3.5, 3.0), clip("d", 4.0, 3.3)]))
    bands = run["by_input_noise"]["peer"]
    assert list(bands) == [label for _, label in report.INPUT_NOISE_BANDS]          # noisiest first
    assert bands["noisy (input BAK < 3.0)"]["n_clips"] == 2
    assert bands["noisy (input BAK < 3.0)"]["dnsmos_ovrl"] == pytest.approx(2.6)
    assert bands["nearly clean (>= 3.8)"]["dnsmos_ovrl"] == pytest.approx(3.3)
    assert "**DNSMOS OVRL by input noisiness (DNSMOS BAK of the input)**" in report.markdown(run)
    # without the input's BAK (no DNSMOS, or no input scored) there is no such breakdown
    assert not any(report.summarise(_run([_clip("a", levels.NORMAL, "g1", 2.0, 3.0)]))["by_input_noise"].values())


def test_webrtc_ns_at_its_high_level_is_a_method_of_its_own():
    """Some applications set WebRTC NS to high (2); the package's default is moderate (1). Both are run as peers
    on request; on these recordings the level changes almost nothing (docs/eval-realrec.md)."""
    pytest.importorskip("pywebrtc_audio", reason="pywebrtc-audio is not installed (the WebRTC NS peer)")
    from edge.io.synthetic import noise
    from evaluation.methods import ALL_METHODS, build
    assert "webrtc-high" not in ALL_METHODS                  # run only when named
    chosen, skipped = build(["webrtc", "webrtc-high"])
    assert not skipped and [m.name for m in chosen] == ["WebRTC NS (pywebrtc-audio)",
                                                         "WebRTC NS level 2 (pywebrtc-audio)"]
    assert "ns_level 2 of 0-3 (high)" in chosen[1].note
    hiss = set_level(noise("white", 3.0, seed=5), -30.0)
    outputs = [method.process(hiss, None)[RATE:] for method in chosen]                    # after it settles
    assert not np.allclose(outputs[0], outputs[1])           # the level reaches the suppressor
    for out in outputs:
        assert np.sqrt(np.mean(out ** 2)) < 0.7 * np.sqrt(np.mean(hiss[RATE:] ** 2))      # each removes noise
