"""Training curves of a line of models: stages in ledger order on one CPU-hour axis, a PNG written."""

import pytest

from training.curves import main, stages
from training.ledger import LedgerError


def _row(stage, cpu_s, loss, val_loss):
    return {"stage": stage, "epoch": "0", "cpu_s": str(cpu_s), "loss": str(loss), "val_loss": str(val_loss)}


def test_stages_share_one_cumulative_cpu_axis_and_keep_their_order():
    rows = [_row("1-a", 1800, 9.0, 9.5), _row("1-a", 1800, 8.0, 9.0), _row("2-b", 3600, 7.0, ""),
            _row("2-b", 1800, 6.5, "nan")]
    spans = stages(rows)
    assert [name for name, *_ in spans] == ["1-a", "2-b"]
    assert spans[0][1] == [0.5, 1.0] and spans[1][1] == [2.0, 2.5]    # hours at each epoch's end, over the line
    assert spans[0][2] == [9.0, 8.0] and spans[0][3] == [9.5, 9.0]
    assert spans[1][3] == [None, None]                                 # a missing loss is a gap, not a zero


def test_a_row_without_cpu_is_refused_by_number():
    with pytest.raises(LedgerError, match="ledger row 3: cpu_s=''"):
        stages([_row("1-a", 10, 1, 1), _row("1-a", "", 1, 1)])


def test_the_command_writes_a_png_and_refuses_an_empty_ledger(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    ledger = tmp_path / "line.csv"
    ledger.write_text("stage,epoch,cpu_s,loss,val_loss\r\n1-a,0,3600,9.0,9.5\r\n2-b,0,3600,8.0,9.0\r\n")
    out = tmp_path / "curves.png"
    assert main(["--ledger", str(ledger), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "2 epochs in 2 stages" in capsys.readouterr().out
    (tmp_path / "empty.csv").write_text("stage,epoch,cpu_s,loss,val_loss\r\n")
    assert main(["--ledger", str(tmp_path / "empty.csv"), "--out", str(out)]) == 2
    assert "has no epochs to plot" in capsys.readouterr().err
