"""``percepnet-train compare``: training runs side by side, per CPU-hour.

Each run's ``history.csv`` (written by ``fit``) holds one row per epoch with
its validation loss and the process CPU seconds the epoch cost (``cpu_s``,
training, feed and validation together, all threads). A fair comparison of
two model sizes asks which reaches the lower validation loss *for the same
CPU spent*, not per epoch (a mid epoch costs about twice a lite one). This
prints, at a row of CPU budgets, the best validation loss each run had reached
within that budget: a step function of the epochs that actually ran, never an
interpolation, and blank where a run had not yet finished an epoch.

Runs are only comparable on the same cache (the same validation examples) and
the same loss; resumed runs count the CPU of every session, since ``fit``
appends to the same history.
"""

import csv
from pathlib import Path

from edge.errors import UsageError

#: Columns a history needs: without ``cpu_s`` (histories before it was logged) there is no CPU axis.
REQUIRED_COLUMNS = ("cpu_s", "val_loss")


def read_history(run_dir):
    """``[(cumulative CPU seconds, validation loss)]`` per epoch of a ``fit`` run, in order."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise UsageError(f"{path} does not exist: give the --out folder of a `percepnet-train fit` run")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise UsageError(f"{path} has no finished epoch yet; wait for one, or compare other runs")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise UsageError(f"{path} lacks the column(s) {', '.join(missing)}: it was written before fit logged "
                         "CPU time per epoch, so it cannot be compared per CPU-hour")
    points, spent = [], 0.0
    for number, row in enumerate(rows, start=1):
        try:
            spent += float(row["cpu_s"])
            points.append((spent, float(row["val_loss"])))
        except ValueError:
            raise UsageError(f"{path}, epoch row {number}: cpu_s={row['cpu_s']!r}, val_loss={row['val_loss']!r} "
                             "are not numbers; the file is damaged") from None
    return points


def best_within(points, budget_cpu_s):
    """Lowest validation loss among the epochs finished within ``budget_cpu_s``; None before the first."""
    losses = [loss for spent, loss in points if spent <= budget_cpu_s]
    return min(losses) if losses else None


def budgets_for(histories, count=8):
    """``count`` evenly spaced CPU budgets up to the CPU the shortest run has spent (so every column fills)."""
    shortest = min(points[-1][0] for points in histories.values())
    return [shortest * (k + 1) / count for k in range(count)]


def table(histories, budgets_cpu_s):
    """Markdown: one row per budget (CPU-hours), one column per run: best validation loss by then."""
    names = list(histories)
    lines = ["| CPU-hours | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for budget in budgets_cpu_s:
        cells = []
        for name in names:
            best = best_within(histories[name], budget)
            cells.append("" if best is None else f"{best:.3f}")
        lines.append(f"| {budget / 3600:.2f} | " + " | ".join(cells) + " |")
    ends = ", ".join(f"{name}: {len(points)} epochs, {points[-1][0] / 3600:.2f} CPU-h, "
                     f"best {min(loss for _, loss in points):.3f}" for name, points in histories.items())
    return "\n".join(lines) + f"\n\nIn all: {ends}."


def run(named_runs, count=8, say=print):
    """Print the comparison of ``{name: run folder}``; returns ``{name: [(cpu_s, val_loss)]}``."""
    if count < 1:
        raise UsageError(f"--budgets {count}: give a whole number of budgets, 1 or more")
    histories = {name: read_history(folder) for name, folder in named_runs.items()}
    say(table(histories, budgets_for(histories, count)))
    return histories
