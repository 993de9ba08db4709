"""`soak`'s figures (issue 26 item 8): the end column is the end of the run, not the last once-a-second sample."""
import pytest


def test_the_end_figures_count_every_frame_of_the_run():
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from edge.commands.soak import FRAMES_PER_MINUTE, run_soak
    lines = []
    figures = run_soak(audio_minutes=1.5, loss_every_min=1.0, outage_opens=1, sighup_every_min=0, say=lines.append)
    assert figures["end"]["frames"] == int(1.5 * FRAMES_PER_MINUTE)           # 9,000: all of them
    if figures["start"] is not None:                                         # a run faster than 1 s has no start
        assert figures["start"]["frames"] < figures["end"]["frames"]
    frames_row = next(row for row in lines[0].splitlines() if row.startswith("| frames"))
    assert frames_row.rstrip().endswith("9000 |")


def test_the_soak_under_http_load_reports_scrapes_and_whole_run_frame_times():
    """Issue 24: the soak with the metrics endpoint under slow and idle clients (a separate process, loopback)."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from edge.commands.soak import run_soak
    lines = []
    figures = run_soak(audio_minutes=2.0, loss_every_min=5.0, outage_opens=0, sighup_every_min=0, say=lines.append,
                       http_load=True)
    load = figures["http_load"]
    assert load is not None and load["scrapes"] >= 1 and load["scrape_failures"] == 0, load
    assert figures["frame_ms_whole_run"]["p999"] > 0
    assert "http load (4 slow + 30 idle clients, loopback)" in lines[0] and "p99.9" in lines[0]


def test_a_soak_stopped_before_its_loop_started_says_so(monkeypatch):
    """A signal during the daemon's start-up returns before the loop exists: that was an AttributeError."""
    pytest.importorskip("alsaaudio", reason="pyalsaaudio is not installed")
    from edge.commands import run as daemon_commands
    from edge.commands.soak import run_soak
    from edge.errors import PercepnetError

    def stopped_during_start_up(config_path, say, control, **kwargs):
        control.stop.set()                             # as the signal handler does; _serve then returns 0
        return 0
    monkeypatch.setattr(daemon_commands, "run", stopped_during_start_up)
    with pytest.raises(PercepnetError, match=r"soak: the daemon ended before its audio loop started \(stopped by a "
                                             r"signal during the daemon's start-up\); nothing to report"):
        run_soak(audio_minutes=0.05, say=lambda *_: None)
