"""Combine evaluation runs made on the same clips: ``python -m evaluation.combine A.json B.json --out DIR``.

A new model is compared with the peers without running them again: run
``python -m evaluation ... --methods model --model NEW.tflite`` with the same
input options (same clips, seed and corpus) as an earlier full run, then
combine the two. The runs must name the same clips with the same SNRs, and a
method may appear in only one of them; anything else is refused, since the
averages would then cover different material.
"""

import argparse
import json
import sys
from pathlib import Path

from edge.errors import PercepnetError

from . import report

CLIP_KEYS = ("name", "snr_db", "snr_bucket", "family", "group")


class CombineError(PercepnetError, ValueError):
    """The runs cannot be combined; the message says why."""


def combine(runs):
    """One run holding every method of ``runs`` (dicts as written by ``python -m evaluation``)."""
    if len(runs) < 2:
        raise CombineError("combine needs at least two runs")
    first = runs[0]
    for key in ("source", "has_reference", "reference"):
        values = {json.dumps(run.get(key)) for run in runs}
        if len(values) > 1:
            raise CombineError(f"the runs differ in {key!r} ({sorted(values)}): they were made on different inputs")
    identities = [[tuple(clip.get(k) for k in CLIP_KEYS) for clip in run["clips"]] for run in runs]
    if any(ids != identities[0] for ids in identities[1:]):
        raise CombineError("the runs hold different clips (names, SNRs or groups differ): use the same input "
                           "options and seed for both")
    methods = {}
    for run in runs:
        for name, info in run["methods"].items():
            if name in methods:
                raise CombineError(f"method {name!r} is in more than one run: keep it in one (rename the model "
                                   "file to compare two versions of the same model)")
            methods[name] = info
    clips = []
    for index in range(len(first["clips"])):
        merged = {"results": {}}
        for run in runs:                      # a run written before levels were measured lacks level_*
            clip = run["clips"][index]
            merged.update({k: v for k, v in clip.items() if k != "results" and v is not None})
            merged["results"].update(clip["results"])
        clips.append(merged)
    combined = {key: value for key, value in first.items() if key not in ("summary", "below_input")
                and not key.startswith("by_")}
    combined.update({
        "clips": clips, "methods": methods,
        "command": [run["command"] for run in runs],
        "created": [run.get("created") for run in runs],
        "skipped": {k: v for run in runs for k, v in run.get("skipped", {}).items() if k not in methods},
        "failed": {k: v for run in runs for k, v in run.get("failed", {}).items()},
        "metrics_skipped": {k: v for run in runs for k, v in run.get("metrics_skipped", {}).items()},
    })
    report.summarise(combined)
    return combined


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.combine", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results.json of each run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the combined results.md and .json")
    args = parser.parse_args(argv)
    try:
        runs = [json.loads(path.read_text()) for path in args.runs]
        combined = combine(runs)
    except (OSError, ValueError, KeyError) as exc:
        print(f"evaluation.combine: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(combined)
    (args.out / "results.md").write_text(text)
    report.write_json(combined, args.out / "results.json")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
