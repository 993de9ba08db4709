"""Combine evaluation runs made on the same clips: ``python -m evaluation.combine A.json B.json --out DIR``.

A new model is compared with the peers without running them again: run
``python -m evaluation ... --methods model --model NEW.tflite`` with the same
input options (same clips, seed and corpus) as an earlier full run, then
combine the two. The runs must name the same clips with the same SNRs, lengths,
levels and samples (``audio_sha256``, in runs made since 2026-12-08; a run
without it is combined on the rest, and the report says its audio was not
compared), score DNSMOS with the same backend, and a method may appear in only
one of them; anything else is refused, since the averages would then cover
different material or another scale. CPU figures of methods from different
runs are marked as such: a busy machine slows one run and not the other.
"""

import argparse
import json
import sys
from pathlib import Path

from edge.errors import PercepnetError

from . import report

CLIP_KEYS = ("name", "snr_db", "snr_bucket", "family", "group")
#: Compared where every run has them (runs made before they were recorded lack them): the clip's length, its
#: measured level and a digest of its samples. A clip of the same name read from other audio differs in these.
CHECKED_WHERE_RECORDED = ("seconds", "level_dbfs", "audio_sha256")
#: DNSMOS backends that compute OVRL, SIG and BAK with the same model and mapping (evaluation.metrics.Dnsmos).
SAME_DNSMOS_SCALE = {"speechmos.dnsmos.run", "speechmos ONNX model via onnxruntime"}
#: How far the same clip's measured level may differ between runs (float sums differ in their last bits).
LEVEL_TOLERANCE_DB = 0.01


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
    unchecked = _compare_recorded(runs)
    # The fallback's name carries its import error; it runs speechmos's own ONNX model, windows and mapping, so the
    # two share one scale for OVRL, SIG and BAK (only P.808 is the official backend's alone).
    backends = {run["dnsmos_backend"].split(" (", 1)[0] for run in runs if run.get("dnsmos_backend")}
    if len(backends) > 1 and not backends <= SAME_DNSMOS_SCALE:
        raise CombineError(f"the runs scored DNSMOS with different models ({', '.join(sorted(backends))}): their "
                           "scores are not on one scale; run both with the same (speechmos installed in both)")
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
        for key in unchecked:                 # not checked against every run: a later combine must not trust it
            merged.pop(key, None)
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
        "timed_together": [group for run in runs for group in run.get("timed_together", [list(run["methods"])])],
    })
    combined["combined_notes"] = _notes(runs, unchecked, combined["timed_together"])
    report.summarise(combined)
    return combined


def _compare_recorded(runs):
    """Refuse a clip whose length, level or samples differ between runs; returns the keys some run lacks."""
    unchecked = set()
    for index, clips in enumerate(zip(*(run["clips"] for run in runs))):
        for key in CHECKED_WHERE_RECORDED:
            values = [clip.get(key) for clip in clips]
            if any(value is None for value in values):
                unchecked.add(key)
                continue
            if key == "level_dbfs":
                finite = [value for value in values if abs(value) != float("inf")]
                spread = max(finite) - min(finite) if finite else 0.0
                differ = len(finite) not in (0, len(values)) or spread > LEVEL_TOLERANCE_DB
            else:
                differ = len(set(values)) > 1
            if differ:
                raise CombineError(f"clip {clips[0]['name']} (number {index + 1}) differs between the runs in {key} "
                                   f"({', '.join(map(str, values))}): the same name, other audio (a rebuilt corpus, "
                                   "another --seed or --seconds); run both on the same clips")
    return sorted(unchecked)


def _notes(runs, unchecked, timed_together):
    """What the combined report cannot promise, in words (report.markdown prints them); an input run's own notes
    are carried forward, but for its CPU note, which is made anew from every run's timing groups."""
    notes = [note for run in runs for note in run.get("combined_notes", []) if not note.startswith(CPU_NOTE)]
    if unchecked:
        notes.append(f"Not compared between the runs, since some run did not record it: {', '.join(unchecked)}.")
    notes.append(CPU_NOTE + ": a busy machine slows one run and not the other, so compare CPU only between methods "
                 "timed together (" + "; ".join(", ".join(group) for group in timed_together) + ").")
    return list(dict.fromkeys(notes))


CPU_NOTE = "CPU s / audio s of methods from different runs were timed in different runs"


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
