"""Training curves of a line of models: ``python -m training.curves [--ledger L] --out curves.png``.

Plots each epoch's training and validation loss against the line's cumulative CPU-hours, from the ledger that
``python -m training.ledger`` keeps (``models/lite/history.csv``), one colour a stage. The stages validate on
different examples (a new corpus, a new noise corpus, the echo caches), so a validation loss compares within a
stage only; where a stage starts is marked. Needs matplotlib (the ``plot`` extra)::

    python -m training.curves --out models/lite/curves.png
"""

import argparse
import sys
from pathlib import Path

from edge.errors import PercepnetError

from .ledger import DEFAULT_LEDGER, LedgerError, finite_number, read_rows


def stages(rows):
    """``[(stage, hours, train_losses, val_losses)]`` in ledger order: ``hours`` is the cumulative CPU-hours at
    the end of each of the stage's epochs, counted over the whole line; a missing loss is None."""
    spans, spent_s = [], 0.0
    for number, row in enumerate(rows, 2):
        try:
            spent_s += float(row["cpu_s"])
        except (KeyError, TypeError, ValueError):
            raise LedgerError(f"ledger row {number}: cpu_s={row.get('cpu_s')!r} is not a number") from None
        if not spans or spans[-1][0] != row["stage"]:
            spans.append((row["stage"], [], [], []))
        spans[-1][1].append(spent_s / 3600)
        spans[-1][2].append(finite_number(row.get("loss")))
        spans[-1][3].append(finite_number(row.get("val_loss")))
    return spans


def plot(rows, out_path):
    """Write the curves of ledger ``rows`` to ``out_path`` (PNG); returns the stages plotted."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise LedgerError("plotting needs matplotlib: install the plot extra "
                          "(.venv/bin/pip install -e '.[plot]')") from exc
    spans = stages(rows)
    figure, axis = plt.subplots(figsize=(10, 4.5), dpi=100)
    colours = plt.get_cmap("tab10")
    for index, (stage, hours, train, val) in enumerate(spans):
        colour = colours(index % 10)
        axis.plot(hours, [float("nan") if v is None else v for v in val], "-", color=colour, lw=1.4,
                  marker="o" if len(hours) == 1 else None, ms=3, label=f"{stage}: validation")   # one epoch: a dot
        axis.plot(hours, [float("nan") if v is None else v for v in train], ":", color=colour, lw=1.0)
        axis.axvline(hours[0], color=colour, lw=0.6, ls="--", alpha=0.6)
    axis.set_xlabel("cumulative training CPU-hours of the line")
    axis.set_ylabel("loss (dotted: training)")
    axis.set_title("Training curves; a stage's validation examples are its own: compare within a stage", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return [stage for stage, *_ in spans]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default=str(DEFAULT_LEDGER), help="the line's history (default: %(default)s)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        _, rows = read_rows(args.ledger, "give the line's ledger (--ledger)")
        if not rows:
            raise LedgerError(f"{args.ledger} has no epochs to plot")
        plotted = plot(rows, Path(args.out))
    except PercepnetError as exc:
        print(f"curves: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(rows)} epochs in {len(plotted)} stages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
