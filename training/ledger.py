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
import sys
from pathlib import Path

from edge.errors import PercepnetError

DEFAULT_LEDGER = Path(__file__).resolve().parent.parent / "models" / "lite" / "history.csv"


class LedgerError(PercepnetError, ValueError):
    """A history or ledger that cannot be read or merged; the message says which and why."""


def _rows(path):
    """``(columns, rows)`` of a CSV file, rows as dicts; a missing or empty file is a LedgerError."""
    try:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or ()), rows
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read it ({exc.strerror or exc}); give a fit run's history.csv") from exc


def _cpu_s(path, row, number):
    try:
        return float(row["cpu_s"])
    except (KeyError, TypeError, ValueError):
        raise LedgerError(f"{path}, row {number}: cpu_s={row.get('cpu_s')!r} is not a number; "
                          "the ledger counts CPU, so every epoch needs it") from None


def merge(history_path, stage, ledger_path):
    """``(run_rows, ledger_text, run_cpu_s, line_cpu_s)``: the ledger with ``stage``'s rows replaced by the run's.

    The stage's rows keep their place when the ledger has them, and are appended otherwise."""
    run_columns, run_rows = _rows(history_path)
    ledger_columns, ledger_rows = _rows(ledger_path)
    if not run_rows:
        raise LedgerError(f"{history_path}: no epochs yet; nothing to record")
    if ledger_columns[:1] != ["stage"] or ledger_columns[1:] != run_columns:
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
        merged.extend({"stage": stage, **r} for r in run_rows)
    line_cpu_s = sum(_cpu_s(ledger_path, row, n) for n, row in enumerate(merged, 2))
    text = io.StringIO()
    writer = csv.DictWriter(text, ledger_columns)      # "\r\n", as keras' CSVLogger writes history.csv
    writer.writeheader()
    writer.writerows(merged)
    return run_rows, text.getvalue(), run_cpu_s, line_cpu_s


def card_rows(run_rows, since_epoch=0):
    """Model card rows ``| epoch | CPU s | validation loss |`` from card epoch ``since_epoch`` on (counted from 1)."""
    best = min(float(row["val_loss"]) for row in run_rows)
    lines = []
    for row in run_rows:
        epoch = int(row["epoch"]) + 1
        if epoch >= since_epoch:
            loss = float(row["val_loss"])
            lines.append(f"| {epoch}{' (best)' if loss == best else ''} | {float(row['cpu_s']):.0f} | {loss:.3f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("history", help="the run's history.csv (as fit writes it)")
    parser.add_argument("--stage", required=True, help="the run's stage name in the ledger, e.g. 6-lite_echo-run-v2")
    parser.add_argument("--ledger", default=str(DEFAULT_LEDGER), help="the line's history (default: %(default)s)")
    parser.add_argument("--since", type=int, default=0, metavar="EPOCH",
                        help="print the card rows from this epoch on (counted from 1; default: all)")
    parser.add_argument("--write", action="store_true", help="replace the stage's rows in the ledger")
    args = parser.parse_args(argv)
    try:
        run_rows, text, run_cpu_s, line_cpu_s = merge(args.history, args.stage, args.ledger)
    except PercepnetError as exc:
        print(f"ledger: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(card_rows(run_rows, args.since)))
    print(f"{args.stage}: {len(run_rows)} epochs, {run_cpu_s:,.0f} CPU s ({run_cpu_s / 3600:.2f} h); "
          f"the line: {line_cpu_s / 3600:.2f} CPU-hours")
    if args.write:
        Path(args.ledger).write_text(text, newline="")
        print(f"written: {args.ledger}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
