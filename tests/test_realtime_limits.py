"""realtime.sched_fifo_priority against the limit the service runs within: the daemon names it when refused, and
`check` (run as root, whom no limit binds) compares the priority with the installed units' LimitRTPRIO."""

import logging
import os
import re
import resource
import types
from pathlib import Path

from edge.commands.run import check_priority, service_rtprio_limits, unit_limits_for, units_refusing_priority
from edge.daemon.config import parse
from edge.daemon.loop import apply_realtime

REPO = Path(__file__).resolve().parents[1]


def test_a_refused_priority_is_said_with_the_processs_rtprio_limit(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (70, 70))
    said = []
    problems = apply_realtime(parse("realtime: {sched_fifo_priority: 80}").realtime, said.append)
    assert problems == ["realtime.sched_fifo_priority 80: not permitted, this process's rtprio limit is 70; use "
                        "1..70, or raise LimitRTPRIO= in the systemd unit (70 as shipped) or the user's rtprio limit"]
    assert said == [f"warning: {problems[0]}"]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (95, 95))         # refused for another reason
    assert apply_realtime(parse("realtime: {sched_fifo_priority: 80}").realtime, logging.info) == [
        "realtime.sched_fifo_priority 80: not permitted; grant it with LimitRTPRIO= in the systemd unit or an rtprio "
        "limit for the user"]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (0, 0))
    assert apply_realtime(parse("realtime: {sched_fifo_priority: 10}").realtime, logging.info) == [
        "realtime.sched_fifo_priority 10: not permitted; grant it with LimitRTPRIO= in the systemd unit or an rtprio "
        "limit for the user"]


def test_the_shipped_units_limit_is_the_one_the_message_quotes():
    for unit in ("percepnet-edge.service", "percepnet-edge@.service"):
        assert re.findall(r"^LimitRTPRIO=(\d+)$", (REPO / "systemd" / unit).read_text(), re.M) == ["70"], unit


def test_check_reads_the_installed_units_limits_drop_ins_included():
    shown = {"percepnet-edge.service": "LoadState=loaded\nLimitRTPRIO=70\n",
             "percepnet-edge@check.service": "LoadState=loaded\nLimitRTPRIO=90\n"}   # a drop-in raised it
    asked = []

    def systemctl(argv, **kwargs):
        asked.append(argv)
        return types.SimpleNamespace(stdout=shown[argv[-1]], returncode=0)
    limits = service_rtprio_limits(systemctl)
    assert limits == {"percepnet-edge.service": 70, "percepnet-edge@.service": 90}
    assert asked[0] == ["systemctl", "show", "--property=LoadState,LimitRTPRIO", "percepnet-edge.service"]
    assert units_refusing_priority(80, limits) == [("percepnet-edge.service", 70)]
    assert units_refusing_priority(70, limits) == []
    shown["percepnet-edge.service"] = "LoadState=not-found\nLimitRTPRIO=0\n"               # not installed
    assert service_rtprio_limits(systemctl) == {"percepnet-edge@.service": 90}


def test_no_systemd_means_no_units_to_compare_with():
    def missing(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "systemctl")
    assert service_rtprio_limits(missing) == {}


def test_check_fails_a_priority_the_installed_unit_would_refuse(monkeypatch):
    """Root (or a user with a generous rtprio limit) may take priority 80; the service, within LimitRTPRIO=70,
    could not, and ran without it."""
    monkeypatch.setattr(os, "sched_setscheduler", lambda *args: None)       # permitted here
    monkeypatch.setattr(os, "geteuid", lambda: 1000)                       # not root: compared all the same
    said = []

    def item(name, ok, detail):
        said.append((name, ok, detail))
    check_priority(80, item, limits=lambda: {"percepnet-edge.service": 70, "percepnet-edge@.service": 90})
    assert said == [("realtime", False, "SCHED_FIFO priority 80 is permitted here, but percepnet-edge.service allows "
                                        "at most 70 (LimitRTPRIO=70): the service would run without it; use 1..70, or "
                                        "raise LimitRTPRIO= with `systemctl edit percepnet-edge.service`")]
    said.clear()
    check_priority(80, item, limits=lambda: {"percepnet-edge.service": 0})      # a unit without LimitRTPRIO=
    assert said[0][1] is False and said[0][2].endswith(
        "allows at most 0 (LimitRTPRIO=0): the service would run without it; add LimitRTPRIO=80 with "
        "`systemctl edit percepnet-edge.service`")
    said.clear()
    check_priority(60, item, limits=lambda: {"percepnet-edge.service": 70})
    check_priority(60, item, limits=lambda: {})                                  # no unit installed
    assert said == [("realtime", True, "SCHED_FIFO priority 60 permitted")] * 2


def test_check_fails_a_priority_this_process_may_not_take(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    said = []
    check_priority(50, lambda *line: said.append(line), limits=lambda: {})
    assert said == [("realtime", False, "SCHED_FIFO priority 50 not permitted (LimitRTPRIO= in the unit)")]


def test_the_pipewire_set_up_is_not_held_to_the_system_units_limit():
    """It runs as the user's unit, which sets no LimitRTPRIO: the user's own limit, met by check's own test."""
    assert unit_limits_for(parse("audio: {capture_device: 'pipewire:NODE=mic', playback_device: pipewire}").audio) \
        is dict
    assert unit_limits_for(parse("audio: {capture_device: 'hw:1,0'}").audio) is service_rtprio_limits
