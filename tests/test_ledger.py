"""The CPU ledger of a line of models: a run's history copied into its stage, the CPU-hours summed."""

import pytest

from training.ledger import LedgerError, card_rows, main, merge

COLUMNS = "epoch,cpu_s,loss,val_loss,wall_s"


def _history(path, rows):
    path.write_text(COLUMNS + "\r\n" + "".join(f"{e},{cpu},1.0,{val},10.0\r\n" for e, cpu, val in rows))
    return path


def _ledger(path, rows):
    path.write_text("stage," + COLUMNS + "\r\n"
                    + "".join(f"{stage},{e},{cpu},1.0,{val},10.0\r\n" for stage, e, cpu, val in rows))
    return path


def test_a_run_replaces_its_stage_in_place_and_the_hours_add_up(tmp_path):
    ledger = _ledger(tmp_path / "line.csv", [("1-a", 0, 3600, 9.0), ("2-b", 0, 100, 8.0), ("3-c", 0, 1800, 7.0)])
    history = _history(tmp_path / "history.csv", [(0, 1000, 8.5), (1, 2600, 8.4)])
    rows, text, run_cpu_s, line_cpu_s = merge(history, "2-b", ledger)
    assert len(rows) == 2 and run_cpu_s == 3600
    assert line_cpu_s == 3600 + 3600 + 1800                     # the stage's old 100 s are replaced, not added
    stages = [line.split(",")[0] for line in text.splitlines()[1:]]
    assert stages == ["1-a", "2-b", "2-b", "3-c"]                # in its place, before the later stage
    assert text.count("\r\n") == 5                               # the line endings fit itself writes


def test_a_new_stage_is_appended(tmp_path):
    ledger = _ledger(tmp_path / "line.csv", [("1-a", 0, 3600, 9.0)])
    history = _history(tmp_path / "history.csv", [(0, 900, 8.5)])
    with pytest.raises(LedgerError, match=r"has no stage '2-new' \(it has: 1-a\); check the name, or give --new-stage"):
        merge(history, "2-new", ledger)                           # a typo would count the run twice
    _, text, _, line_cpu_s = merge(history, "2-new", ledger, new_stage=True)
    assert text.splitlines()[-1].startswith("2-new,0,900") and line_cpu_s == 4500


def test_other_columns_or_a_missing_cpu_figure_are_refused_by_name(tmp_path):
    ledger = _ledger(tmp_path / "line.csv", [("1-a", 0, 3600, 9.0)])
    other = tmp_path / "other.csv"
    other.write_text("epoch,val_loss\r\n0,8.0\r\n")
    with pytest.raises(LedgerError, match="other.csv's columns"):
        merge(other, "2-b", ledger)
    blank = _history(tmp_path / "blank.csv", [(0, "", 8.0)])
    with pytest.raises(LedgerError, match="blank.csv, row 2: cpu_s=''"):
        merge(blank, "2-b", ledger)
    with pytest.raises(LedgerError, match="nothing to record"):
        merge(_history(tmp_path / "empty.csv", []), "2-b", ledger)
    with pytest.raises(LedgerError, match="missing.csv: cannot read it"):
        merge(tmp_path / "missing.csv", "2-b", ledger)


def test_an_empty_ledger_or_a_ragged_row_is_refused_with_what_to_give(tmp_path):
    history = _history(tmp_path / "history.csv", [(0, 900, 8.5)])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LedgerError, match=r"empty.csv is empty; give the line's ledger \(--ledger"):
        merge(history, "1-a", tmp_path / "empty.csv")
    ragged = _ledger(tmp_path / "ragged.csv", [("1-a", 0, 3600, 9.0)])
    ragged.write_text(ragged.read_text() + "1-a,1,10,1.0,9.0,10.0,extra\r\n")
    with pytest.raises(LedgerError, match="ragged.csv, row 3: more fields than the header names"):
        merge(history, "1-a", ragged)


def test_a_ledger_with_its_columns_in_another_order_keeps_its_order(tmp_path):
    ledger = tmp_path / "line.csv"
    ledger.write_text("stage,cpu_s,epoch,val_loss,loss,wall_s\r\n1-a,3600,0,9.0,1.0,10.0\r\n")
    _, text, _, line_cpu_s = merge(_history(tmp_path / "h.csv", [(0, 900, 8.5)]), "1-a", ledger)
    assert text.splitlines()[1] == "1-a,900,0,8.5,1.0,10.0" and line_cpu_s == 900


def test_card_rows_show_a_missing_loss_as_a_dash_and_never_mark_it_best():
    rows = [{"epoch": "0", "cpu_s": "500", "val_loss": ""}, {"epoch": "1", "cpu_s": "510", "val_loss": "nan"},
            {"epoch": "2", "cpu_s": "505", "val_loss": "9.0"}]
    assert card_rows(rows) == ["| 1 | 500 | – |", "| 2 | 510 | – |", "| 3 (best) | 505 | 9.000 |"]


def test_card_rows_count_epochs_from_one_and_mark_the_best():
    rows = [{"epoch": "0", "cpu_s": "500.4", "val_loss": "9.1"}, {"epoch": "1", "cpu_s": "510", "val_loss": "8.9"},
            {"epoch": "2", "cpu_s": "505", "val_loss": "9.0"}]
    assert card_rows(rows) == ["| 1 | 500 | 9.100 |", "| 2 (best) | 510 | 8.900 |", "| 3 | 505 | 9.000 |"]
    assert card_rows(rows, since_epoch=3) == ["| 3 | 505 | 9.000 |"]


def test_the_command_writes_only_when_asked(tmp_path, capsys):
    ledger = _ledger(tmp_path / "line.csv", [("1-a", 0, 3600, 9.0)])
    before = ledger.read_bytes()
    history = _history(tmp_path / "history.csv", [(0, 7200, 8.5)])
    assert main([str(history), "--stage", "2-b", "--ledger", str(ledger)]) == 2      # not in the ledger yet
    assert "--new-stage" in capsys.readouterr().err
    assert main([str(history), "--stage", "2-b", "--ledger", str(ledger), "--new-stage"]) == 0
    assert ledger.read_bytes() == before
    assert "2-b: 1 epochs, 7,200 CPU s (2.00 h); the line: 3.00 CPU-hours" in capsys.readouterr().out
    assert main([str(history), "--stage", "2-b", "--ledger", str(ledger), "--write", "--new-stage"]) == 0
    assert main([str(history), "--stage", "2-b", "--ledger", str(ledger), "--write"]) == 0      # now it has it
    assert ledger.read_text().count("2-b,0,7200") == 1 and not (tmp_path / "line.csv.part").exists()
    assert main([str(tmp_path / "nope.csv"), "--stage", "2-b", "--ledger", str(ledger)]) == 2
    assert "ledger: error:" in capsys.readouterr().err
