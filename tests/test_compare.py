"""percepnet-train compare: runs side by side at equal CPU, from the histories fit writes."""

import pytest

from edge.errors import UsageError
from training.cli import main
from training.compare import best_within, budgets_for, read_history, table

HEADER = "epoch,cpu_s,loss,val_loss,wall_s\n"


def _run(tmp_path, name, rows):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "history.csv").write_text(HEADER + "".join(f"{i},{cpu},1.0,{val},1.0\n"
                                                          for i, (cpu, val) in enumerate(rows)))
    return folder


def test_cpu_accumulates_and_the_best_is_a_step_function_of_finished_epochs(tmp_path):
    points = read_history(_run(tmp_path, "lite", [(600, 15.0), (600, 12.0), (600, 13.0)]))
    assert points == [(600.0, 15.0), (1200.0, 12.0), (1800.0, 13.0)]
    assert best_within(points, 599) is None                   # no epoch finished yet
    assert best_within(points, 1199) == 15.0                  # never interpolated towards 12
    assert best_within(points, 1800) == 12.0                  # a worse later epoch does not undo the best


def test_the_table_compares_at_equal_cpu_not_equal_epochs(tmp_path):
    histories = {"lite": read_history(_run(tmp_path, "lite", [(600, 15.0), (600, 12.0), (600, 11.0)])),
                 "mid": read_history(_run(tmp_path, "mid", [(1500, 13.0), (1500, 10.0)]))}
    budgets = budgets_for(histories, count=2)
    assert budgets == [900.0, 1800.0]                         # up to the shorter run's 1800 CPU-s
    lines = table(histories, budgets).splitlines()
    assert lines[2] == "| 0.25 | 15.000 |  |"                 # mid has not finished an epoch at 900 s
    assert lines[3] == "| 0.50 | 11.000 | 13.000 |"           # lite's 3 epochs against mid's first


def test_unusable_histories_say_why(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_history(tmp_path / "nothing")
    old = tmp_path / "old"
    old.mkdir()
    (old / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,2.0\n")
    with pytest.raises(UsageError, match="cpu_s"):
        read_history(old)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "history.csv").write_text(HEADER)
    with pytest.raises(UsageError, match="no finished epoch"):
        read_history(empty)


def test_the_command_prints_the_table_and_refuses_a_malformed_run(tmp_path, capsys):
    _run(tmp_path, "a", [(100, 3.0)])
    assert main(["compare", "--run", f"a={tmp_path / 'a'}", "--budgets", "1"]) == 0
    assert "| 0.03 | 3.000 |" in capsys.readouterr().out
    assert main(["compare", "--run", str(tmp_path / "a")]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err
