"""evaluation.pauses: pause frames are labelled where the talker is silent, and the model's gains are read there."""

import numpy as np
import pytest

from edge.dsp import HOP_SAMPLES, LOOKAHEAD_FRAMES, SAMPLE_RATE_HZ
from edge.io.synthetic import noise, set_level, speech_like


def test_pause_frames_are_silent_with_a_guard_after_the_talker_started_and_speech_frames_hold_the_talker():
    from evaluation.pauses import GUARD_SECONDS, frame_labels
    second = SAMPLE_RATE_HZ
    quiet_tail = 0.05 * np.concatenate([np.ones(second // 2), 1e-3 * np.ones(second // 2)])    # 60 dB down
    speech = np.concatenate([np.zeros(second), 0.05 * np.ones(second), np.zeros(2 * second), quiet_tail])
    n_calls = speech.size // HOP_SAMPLES + LOOKAHEAD_FRAMES
    paused, speaking = frame_labels(speech, n_calls, speech_power=np.mean(0.05 ** 2))
    start_s = (np.arange(n_calls) - LOOKAHEAD_FRAMES) * HOP_SAMPLES / SAMPLE_RATE_HZ   # each call's frame
    guard = GUARD_SECONDS + HOP_SAMPLES / SAMPLE_RATE_HZ
    assert not np.any(paused & speaking)
    assert not np.any(paused[start_s < 1.0])                                     # noise before the talker: no pause
    assert np.all(paused[(start_s > 2.0 + GUARD_SECONDS) & (start_s < 4.0 - guard)])  # the 2 s pause
    assert not np.any(paused[(start_s > 1.0 - GUARD_SECONDS) & (start_s < 2.0)])
    assert np.all(speaking[(start_s >= 1.0) & (start_s < 2.0 - 0.01)])
    assert np.all(speaking[(start_s >= 4.0) & (start_s < 4.5 - 0.01)])
    assert not np.any(speaking[start_s >= 4.5]) and not np.any(paused[start_s >= 4.5 - GUARD_SECONDS])  # faint


def test_a_pause_too_short_to_hold_a_pause_frame_is_refused():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    from evaluation.pauses import ProbeError, pause_trial
    # Talkers without a silent sample (speech_like has gaps between its syllables): with 50 ms pauses no frame
    # is 50 ms from the talker on both sides.
    utterances = [set_level(noise("white", 1.5, seed=seed), -26.0) for seed in (1, 2, 3)]
    with pytest.raises(ProbeError, match="0 pause"):
        pause_trial(ModelRunner(DEFAULT_MODEL_PATH), utterances, noise("pink", 3.0, seed=4), 0.05, snr_db=5.0,
                    lead_s=0.0)


def test_the_shipped_model_removes_stationary_noise_in_pauses_of_any_length_and_keeps_the_talker():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.engine import ModelRunner
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    from evaluation.pauses import pause_trial
    runner = ModelRunner(DEFAULT_MODEL_PATH)
    utterances = [set_level(speech_like(1.5, seed=seed), -26.0) for seed in (1, 2, 3)]
    background = noise("pink", 3.0, seed=4)
    for pause_s in (0.2, 2.0):
        in_pauses, vad, in_speech = pause_trial(runner, utterances, background, pause_s, snr_db=5.0)
        assert in_pauses < 0.5 * in_speech and vad < 0.5, (pause_s, in_pauses, vad, in_speech)


def test_the_probe_draws_validation_speakers_and_noise_from_a_corpus_and_refuses_one_without(tmp_path, capsys):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (the edge extra has it)")
    from edge.model.model_meta import DEFAULT_MODEL_PATH
    from evaluation.pauses import main
    from scipy.io import wavfile
    root = tmp_path / "corpus"
    for actor in range(1, 21):                               # enough actors for the rule to hold some out
        folder = root / "speech" / "ravdess" / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        wavfile.write(folder / "clip.wav", 48_000, set_level(speech_like(1.6, seed=actor), -26.0).astype(np.float32))
    (root / "noise" / "gen").mkdir(parents=True)
    wavfile.write(root / "noise" / "gen" / "n0.wav", 48_000, (0.1 * noise("pink", 2.0, seed=1)).astype(np.float32))
    assert main([str(DEFAULT_MODEL_PATH), "--corpus", str(root), "--trials", "2", "--pauses", "0.3"]) == 2
    assert "validation split holds no speech or no noise" in capsys.readouterr().err
    for index in range(1, 8):
        wavfile.write(root / "noise" / "gen" / f"n{index}.wav", 48_000,
                      (0.1 * noise("pink", 2.0, seed=index + 1)).astype(np.float32))
    assert main([str(DEFAULT_MODEL_PATH), "--corpus", str(root), "--trials", "2", "--pauses", "0.3", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| all |")]
    assert len(rows) == 1
    cells = rows[0].split("|")
    assert int(cells[2]) == 2                                                # both trials measured
    gains = [float(cell.split("/")[0]) for cell in cells[3:5]]
    speech_gains = [float(cell.split("/")[2]) for cell in cells[3:5]]
    assert all(0 <= g < s for g, s in zip(gains, speech_gains))
