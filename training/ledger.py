"""The CPU ledger of a line of models: ``python -m training.ledger RUN/history.csv --stage NAME``.

A line of models (``models/lite/history.csv``) is several runs, each a stage that started from the one
before; its rows are each run's ``history.csv`` rows with the stage's name in front. The model cards quote
the line's cumulative CPU-hours, so a run that goes on (every session) is copied into its stage again::

    python -m training.ledger models/lite_echo/run-v2/history.csv --stage 6-lite_echo-run-v2 \\
        --ledger models/lite/history.csv --since 214 --write

prints the model card's rows (epochs counted from 1, as the cards count them; history.csv counts from 0),
the run's CPU seconds and hours and the line's hours, and with ``--write`` replaces the stage's rows in the
ledger. The run's columns must be the ledger's, so that no column is lost or shifted.
"""

import argparse
import csv
import io
import math
import os
import sys
from pathlib import Path

from edge.errors import PercepnetError

DEFAULT_LEDGER = Path(__file__).resolve().parent.parent / "models" / "lite" / "history.csv"


class LedgerError(PercepnetError, ValueError):
    """A history or ledger that cannot be read or merged; the message says which and why."""


def read_rows(path, advice):
    """``(columns, rows)`` of a CSV file, rows as dicts; a missing or headerless file is a LedgerError ending in
    ``advice``, and so is a row with more fields than the header."""
    try:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows, columns = list(reader), reader.fieldnames      # an empty file's header is read here, open
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read it ({exc.strerror or exc}); {advice}") from exc
    if not columns:
        raise LedgerError(f"{path} is empty; {advice}")
    for number, row in enumerate(rows, 2):
        if None in row:
            raise LedgerError(f"{path}, row {number}: more fields than the header names; {advice}")
    return list(columns), rows


def _cpu_s(path, row, number):
    try:
        return float(row["cpu_s"])
    except (KeyError, TypeError, ValueError):
        raise LedgerError(f"{path}, row {number}: cpu_s={row.get('cpu_s')!r} is not a number; "
                          "the ledger counts CPU, so every epoch needs it") from None


def merge(history_path, stage, ledger_path, new_stage=False):
    """``(run_rows, ledger_text, run_cpu_s, line_cpu_s)``: the ledger with ``stage``'s rows replaced by the run's
    (written in the ledger's column order).

    The stage's rows keep their place. A stage the ledger lacks is appended only with ``new_stage``: a mistyped
    name would otherwise count the run twice."""
    run_columns, run_rows = read_rows(history_path, "give a fit run's history.csv")
    ledger_columns, ledger_rows = read_rows(ledger_path, f"give the line's ledger (--ledger; {DEFAULT_LEDGER})")
    if not run_rows:
        raise LedgerError(f"{history_path}: no epochs yet; nothing to record")
    if ledger_columns[:1] != ["stage"] or sorted(ledger_columns[1:]) != sorted(run_columns):
        raise LedgerError(f"{history_path}'s columns ({','.join(run_columns)}) are not {ledger_path}'s after its "
                          f"'stage' ({','.join(ledger_columns[1:])}); a ledger holds runs of one kind of fit only")
    run_cpu_s = sum(_cpu_s(history_path, row, n) for n, row in enumerate(run_rows, 2))
    merged, placed = [], False
    for row in ledger_rows:
        if row["stage"] != stage:
            merged.append(row)
        elif not placed:
            merged.extend({"stage": stage, **r} for r in run_rows)
            placed = True
    if not placed:
        if not new_stage:
            known = ", ".join(dict.fromkeys(row["stage"] for row in ledger_rows))
            raise LedgerError(f"{ledger_path} has no stage {stage!r} (it has: {known}); check the name, or give "
                              "--new-stage to append a new one")
        merged.extend({"stage": stage, **r} for r in run_rows)
    line_cpu_s = sum(_cpu_s(ledger_path, row, n) for n, row in enumerate(merged, 2))
    text = io.StringIO()
    writer = csv.DictWriter(text, ledger_columns)      # "\r\n", as keras' CSVLogger writes history.csv
    writer.writeheader()
    writer.writerows(merged)
    return run_rows, text.getvalue(), run_cpu_s, line_cpu_s


def finite_number(text):
    """``text`` as a float, or None when it is blank, missing or not a finite number (fit logs NaN as "nan")."""
    try:
        number = float(text or "nan")
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def card_rows(run_rows, since_epoch=0):
    """Model card rows ``| epoch | CPU s | validation loss |`` from card epoch ``since_epoch`` on (counted from 1);
    the best finite loss is marked, and a missing one is printed as "–"."""
    losses = [finite_number(row.get("val_loss")) for row in run_rows]
    best = min((loss for loss in losses if loss is not None), default=None)
    lines = []
    for row, loss in zip(run_rows, losses):
        epoch = int(row["epoch"]) + 1
        if epoch >= since_epoch:
            shown = "–" if loss is None else f"{loss:.3f}"
            mark = " (best)" if loss is not None and loss == best else ""
            lines.append(f"| {epoch}{mark} | {float(row['cpu_s']):.0f} | {shown} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("history", help="the run's history.csv (as fit writes it)")
    parser.add_argument("--stage", required=True, help="the run's stage name in the ledger, e.g. 6-lite_echo-run-v2")
    parser.add_argument("--ledger", default=str(DEFAULT_LEDGER), help="the line's history (default: %(default)s)")
    parser.add_argument("--since", type=int, default=0, metavar="EPOCH",
                        help="print the card rows from this epoch on (counted from 1; default: all)")
    parser.add_argument("--write", action="store_true", help="replace the stage's rows in the ledger")
    parser.add_argument("--new-stage", action="store_true",
                        help="append the stage when the ledger does not have it yet (default: refused, so that a "
                             "mistyped name does not count a run twice)")
    args = parser.parse_args(argv)
    try:
        run_rows, text, run_cpu_s, line_cpu_s = merge(args.history, args.stage, args.ledger, args.new_stage)
    except PercepnetError as exc:
        print(f"ledger: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(card_rows(run_rows, args.since)))
    print(f"{args.stage}: {len(run_rows)} epochs, {run_cpu_s:,.0f} CPU s ({run_cpu_s / 3600:.2f} h); "
          f"the line: {line_cpu_s / 3600:.2f} CPU-hours")
    if args.write:
        partial = Path(f"{args.ledger}.part")           # replaced whole: an interrupted write loses nothing
        partial.write_text(text, newline="")
        os.replace(partial, args.ledger)
        print(f"written: {args.ledger}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
