"""Summaries of a run: averages per method and per breakdown, markdown, JSON, and the figure."""

import json
import zlib
from pathlib import Path

import numpy as np

from .levels import band_sort_key

METRICS = ("pesq_wb", "stoi", "si_sdr_db", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")
HEADINGS = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "si_sdr_db": "SI-SDR (dB)", "dnsmos_ovrl": "DNSMOS OVRL",
            "dnsmos_sig": "SIG", "dnsmos_bak": "BAK", "dnsmos_p808": "P.808"}
BREAKDOWNS = {"snr_bucket": "input SNR (dB)", "family": "noise family", "group": "source group",
              "input_noise": "input noisiness (DNSMOS BAK of the input)"}
#: Metrics shown per breakdown (the first found are shown when none of these was computed).
BREAKDOWN_METRICS = {"snr_bucket": ("pesq_wb", "si_sdr_db"), "family": ("pesq_wb",),
                     "group": ("pesq_wb", "stoi", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"),
                     "input_noise": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")}
#: Bands of the input's own DNSMOS BAK: real recordings carry no SNR, and their noisiness is what a gap to a peer
#: follows (docs/eval-realrec.md). Upper edges, exclusive.
INPUT_NOISE_BANDS = ((3.0, "noisy (input BAK < 3.0)"), (3.8, "some noise (3.0-3.8)"),
                     (float("inf"), "nearly clean (>= 3.8)"))


def _breakdown_order(key):
    """Sort key of a breakdown's group values: the noisiness bands noisiest first, the rest as they sort."""
    if key == "input_noise":
        labels = [label for _, label in INPUT_NOISE_BANDS]
        return lambda group: labels.index(group) if group in labels else len(labels)
    if key == "snr_bucket":
        return float
    return lambda group: group


def _noisy_method(run):
    """The name of the run's untouched-input method, or None."""
    return next((name for name, info in run["methods"].items() if info.get("kind") == "noisy"), None)


def _tag_input_noise(run):
    """Give each clip ``input_noise``, the band of the noisy input's DNSMOS BAK, when the run scored the input."""
    noisy = _noisy_method(run)
    for clip in run["clips"]:
        bak = clip["results"].get(noisy, {}).get("dnsmos_bak") if noisy else None
        clip["input_noise"] = None if bak is None else next(label for edge, label in INPUT_NOISE_BANDS if bak < edge)


def _mean(rows, key):
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else None


def _averages(rows):
    return {"n_clips": len(rows), **{key: _mean(rows, key) for key in METRICS}}


def _is_clean(clip):
    bucket = clip.get("snr_bucket")
    return bucket is not None and float(bucket) == float("inf")


def _averaged(run):
    """The clips the means and the groups are over: the noisy ones, or every clip of a clean-only run."""
    return [clip for clip in run["clips"] if not _is_clean(clip)] or run["clips"]


#: Breakdown by input level (:mod:`.levels`), computed over the same clips as the means; shown as one
#: full table per band, and every other breakdown is repeated per band.
LEVEL_KEY = "level_band"
LEVEL_METRICS = ("pesq_wb", "stoi", "si_sdr_db", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")
#: Kinds of method that count as denoisers one can run (the floor and the upper bounds do not).
RUNNABLE_KINDS = ("model", "rnnoise", "deepfilternet", "webrtc")


def _grouped(clips, name, key):
    """``{group value: [result rows of method name]}`` over ``clips`` that have a value for ``key``."""
    groups = {}
    for clip in clips:
        if name in clip["results"] and clip.get(key) is not None:
            groups.setdefault(clip[key], []).append(clip["results"][name])
    return groups


def _sorted_groups(groups, key):
    order = (lambda item: band_sort_key(item[0])) if key == LEVEL_KEY else (lambda item: _breakdown_order(key)(item[0]))
    return {str(group): _averages(rows) for group, rows in sorted(groups.items(), key=order)}


def _by_level(run, averaged):
    """``by_level_band`` ({method: {band: averages}}) and, per other breakdown, ``{method: {band: {group: ...}}}``."""
    by_band, per_breakdown = {}, {key: {} for key in BREAKDOWNS}
    for name in run["summary"]:
        by_band[name] = _sorted_groups(_grouped(averaged, name, LEVEL_KEY), LEVEL_KEY)
        for key in BREAKDOWNS:
            clips = averaged if key == "group" else run["clips"]
            bands = {}
            for clip in clips:
                if clip.get(LEVEL_KEY) is not None:
                    bands.setdefault(clip[LEVEL_KEY], []).append(clip)
            per_breakdown[key][name] = {band: _sorted_groups(_grouped(members, name, key), key)
                                        for band, members in sorted(bands.items(),
                                                                    key=lambda item: band_sort_key(item[0]))}
    return by_band, per_breakdown


def below_input(run):
    """Where a runnable method scores below the noisy input: ``[(method, where, metric, value, input's)]``.

    Checked on the means, per level band and per source group (within each
    band too). Such a cell is a condition where that method fails (a level
    gate, a band limit): it is reported, and it is never counted as a win
    for anyone else.
    """
    noisy = _noisy_method(run)
    if noisy is None or noisy not in run.get("summary", {}):
        return []
    tables = [("all clips", {name: row for name, row in run["summary"].items()})]
    for band in _bands(run):
        tables.append((band, {name: groups.get(band, {}) for name, groups in run["by_level_band"].items()}))
    for band, groups in _group_cells(run):
        tables += [(f"{group}, {band}" if band else group, cells) for group, cells in groups.items()]
    found = []
    for where, cells in tables:
        floor = cells.get(noisy, {})
        for name, row in cells.items():
            if run["methods"].get(name, {}).get("kind") not in RUNNABLE_KINDS:
                continue
            for metric in METRICS:
                value, reference = row.get(metric), floor.get(metric)
                if value is not None and reference is not None and value < reference - 0.005:
                    found.append((name, where, metric, value, reference))
    return found


#: Metrics whose per-clip differences are given with a confidence interval (the headline ones).
PAIRED_METRICS = ("pesq_wb", "dnsmos_ovrl")
PAIRED_RESAMPLES = 10_000
#: Below this many clips a paired interval is marked as indicative only.
FEW_CLIPS = 10


def bootstrap_interval(diffs, rng, resamples=PAIRED_RESAMPLES):
    """The 95 % bootstrap interval ``(low, high)`` of the mean of per-clip differences ``diffs`` (clips resampled)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_differences(run, resamples=PAIRED_RESAMPLES, seed=0):
    """Per runnable method against each other one, per level band and over all clips: the mean per-clip
    difference of each :data:`PAIRED_METRICS` metric with its 95 % paired bootstrap interval.

    Why: the sets are small (15 real recordings at normal level), and a mean that trails a peer by 0.03 says
    nothing until one knows whether the clips could as easily have put it ahead. The interval resamples
    clips (the same clips for both methods, so what the clips share cancels); seeded per pair, place and metric,
    so an interval is the same in every report that holds that pair (a combined one too). Our models come first,
    so their rows read "ours - peer" whatever the order of the runs combined.
    ``[{"a", "b", "where", "metric", "n", "mean", "low", "high"}]``, ``a - b``.
    """
    runnable = sorted((name for name, info in run["methods"].items()
                       if info.get("kind") in RUNNABLE_KINDS and name in run.get("summary", {})),
                      key=lambda name: run["methods"][name].get("kind") != "model")      # stable: models first
    averaged = _averaged(run)
    places = [("all clips", averaged)] + [(band, [c for c in averaged if c.get(LEVEL_KEY) == band])
                                           for band in _bands(run)]
    found = []
    for i, a in enumerate(runnable):
        for b in runnable[i + 1:]:
            for where, clips in places:
                for metric in PAIRED_METRICS:
                    diffs = np.array([clip["results"][a][metric] - clip["results"][b][metric] for clip in clips
                                      if a in clip["results"] and b in clip["results"]
                                      and clip["results"][a].get(metric) is not None
                                      and clip["results"][b].get(metric) is not None])
                    if diffs.size < 2:
                        continue
                    rng = np.random.default_rng([seed, zlib.crc32(f"{a}|{b}|{where}|{metric}".encode())])
                    low, high = bootstrap_interval(diffs, rng, resamples)
                    found.append({"a": a, "b": b, "where": where, "metric": metric, "n": int(diffs.size),
                                  "mean": float(diffs.mean()), "low": float(low), "high": float(high)})
    return found


def _paired_lines(run):
    rows = run.get("paired", [])
    if not rows:
        return []
    lines = ["", "### Paired differences (a - b), with 95 % bootstrap intervals over clips", "",
             "An interval that holds 0 means these clips cannot tell the two apart."]
    table = [[row["a"], row["b"], row["where"], HEADINGS[row["metric"]],
              str(row["n"]) + ("*" if row["n"] < FEW_CLIPS else ""),
              f"{row['mean']:+.3f}", f"{row['low']:+.3f} .. {row['high']:+.3f}"] for row in rows]
    lines += [""] + _table(["a", "b", "where", "metric", "clips", "mean", "95 % interval"], table)
    if any(row["n"] < FEW_CLIPS for row in rows):
        lines += ["", f"\\* fewer than {FEW_CLIPS} clips: a percentile interval over so few covers poorly; "
                      "indicative only."]
    return lines


def _bands(run):
    """The level bands present in a summarised run, in report order."""
    present = {band for groups in run.get("by_level_band", {}).values() for band in groups}
    return sorted(present, key=band_sort_key)


def _group_cells(run):
    """``[(band or None, {group: {method: averages}})]`` of the source-group breakdown (per band when several)."""
    if len({clip.get("group") for clip in run["clips"]}) < 2:
        return []
    per_band = run.get("by_group_by_level_band", {})
    bands = _bands(run)
    cells = []
    for band in ([None] + bands if len(bands) > 1 else [None]):
        groups = {}
        source = run["by_group"] if band is None else {name: by_band.get(band, {})
                                                       for name, by_band in per_band.items()}
        for name, by_group in source.items():
            for group, row in by_group.items():
                groups.setdefault(group, {})[name] = row
        cells.append((band, groups))
    return cells


def summarise(run):
    """Add ``summary`` (per method) and ``by_snr_bucket`` / ``by_family`` (per method, per group) to ``run``.

    Also ``by_level_band`` (per method, per input-level band of
    :mod:`.levels`), ``by_<breakdown>_by_level_band`` (every breakdown within
    each band) and ``below_input`` (:func:`below_input`). Clips without a
    level (runs written before levels were measured) are in no band.

    Beside noisy clips, the clean-speech ones measure harm, not suppression:
    they have their own SNR column and stay out of the means and the groups.
    A run of clean speech only (``--clean-speech``) is summarised over all its clips.
    """
    _tag_input_noise(run)
    summary, breakdowns = {}, {key: {} for key in BREAKDOWNS}
    averaged = _averaged(run)
    for name, info in run["methods"].items():
        rows = [clip["results"][name] for clip in averaged if name in clip["results"]]
        if not rows:
            continue
        audio = sum(row["audio_s"] for row in rows)
        lags = np.array([row["lag_ms"] for row in rows])
        measured = info["latency_ms"] is None
        summary[name] = {
            **_averages(rows),
            "cpu_s_per_audio_s": sum(row["cpu_s"] for row in rows) / audio,
            "process_cpu_s_per_audio_s": sum(row["process_cpu_s"] for row in rows) / audio,
            "latency_ms": float(np.median(lags)) if measured else info["latency_ms"],
            "latency_source": "measured lag (median)" if measured else "algorithmic",
            "lag_ms_median": float(np.median(lags)), "lag_ms_min": float(lags.min()),
            "lag_ms_max": float(lags.max()),
        }
        for key in BREAKDOWNS:
            groups = {}
            for clip in averaged if key == "group" else run["clips"]:
                if name in clip["results"] and clip.get(key) is not None:
                    groups.setdefault(clip[key], []).append(clip["results"][name])
            breakdowns[key][name] = {str(group): _averages(rows)
                                     for group, rows in sorted(groups.items(),
                                                               key=lambda item: _breakdown_order(key)(item[0]))}
    run["summary"] = summary
    for key, table in breakdowns.items():
        run[f"by_{key}"] = table
    run["by_level_band"], per_breakdown = _by_level(run, averaged)
    for key, table in per_breakdown.items():
        run[f"by_{key}_by_level_band"] = table
    run["below_input"] = below_input(run)
    run["paired"] = paired_differences(run)
    return run


DIGITS = {"si_sdr_db": 1, "stoi": 3}


def _cell(value, metric=None):
    return "n/a" if value is None else f"{value:.{DIGITS.get(metric, 2)}f}"


def _table(head, rows):
    return (["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"] +
            ["| " + " | ".join(row) + " |" for row in rows])


def _lag_cell(row):
    low, mid, high = row["lag_ms_min"], row["lag_ms_median"], row["lag_ms_max"]
    return f"{mid:.1f}" if high - low < 0.05 else f"{mid:.1f} ({low:.1f}..{high:.1f})"


def _main_table(summary, shown):
    head = ["method"] + [HEADINGS[key] for key in shown] + ["CPU s / audio s", "latency (ms)", "lag found (ms)"]
    rows = []
    for name, row in summary.items():
        latency = f"{row['latency_ms']:.0f}" + ("" if row["latency_source"] == "algorithmic" else " (measured)")
        rows.append([name] + [_cell(row[key], key) for key in shown] +
                    [f"{row['cpu_s_per_audio_s']:.4f}", latency, _lag_cell(row)])
    return _table(head, rows)


def _breakdown_tables(run, shown, band=None):
    """The breakdown tables (SNR, noise family, source group); within one level ``band`` when given."""
    lines = []
    for key, label in BREAKDOWNS.items():
        table = run[f"by_{key}"] if band is None else {
            name: by_band.get(band, {}) for name, by_band in run.get(f"by_{key}_by_level_band", {}).items()}
        metrics = [m for m in BREAKDOWN_METRICS[key] if m in shown] or \
                  [m for m in ("dnsmos_ovrl",) if m in shown]
        groups = sorted({group for by_group in table.values() for group in by_group},
                        key=_breakdown_order(key))
        if len(groups) < 2:
            continue
        counts = {g: max(by_group.get(g, {}).get("n_clips", 0) for by_group in table.values()) for g in groups}
        head = ["method"] + [("clean" if float(g) == float("inf") else f"{float(g):+.0f}")
                             if key == "snr_bucket" else g for g in groups]
        head = [head[0]] + [f"{title} (n={counts[g]})" for title, g in zip(head[1:], groups)]
        for metric in metrics:
            rows = [[name] + [_cell(by_group.get(g, {}).get(metric), metric) for g in groups]
                    for name, by_group in table.items()]
            within = "" if band is None else f", input level {band}"
            lines += ["", f"**{HEADINGS[metric]} by {label}{within}**", ""] + _table(head, rows)
    return lines


def _level_tables(run, shown):
    """One table per input-level band (normal first: models are chosen there), then the breakdowns per band."""
    bands = _bands(run)
    if not bands:
        return []
    metrics = [m for m in LEVEL_METRICS if m in shown]
    counts = {band: max(groups.get(band, {}).get("n_clips", 0) for groups in run["by_level_band"].values())
              for band in bands}
    lines = ["", "### By input level (active speech level of the reference, else of the input)", "",
             "Models are chosen on the normal band first (issue 25). Bands present: " +
             ", ".join(f"{band} n={counts[band]}" for band in bands) + "."]
    for band in bands:
        rows = [[name] + [_cell(groups.get(band, {}).get(m), m) for m in metrics]
                for name, groups in run["by_level_band"].items() if band in groups]
        lines += ["", f"**Input level {band}, {counts[band]} clips**", ""] + \
            _table(["method"] + [HEADINGS[m] for m in metrics], rows)
    if len(bands) > 1:
        for band in bands:
            lines += _breakdown_tables(run, shown, band)
    return lines


def _notes(run):
    summary = run["summary"]
    notes = [f"- skipped {name}: {reason}" for name, reason in run.get("skipped", {}).items()]
    notes += [f"- failed {name}: {reason}" for name, reason in run["failed"].items()]
    notes += [f"- metric {name} not computed: {reason}" for name, reason in run["metrics_skipped"].items()]
    if run.get("dnsmos_backend"):
        notes.append(f"- DNSMOS through {run['dnsmos_backend']}")
    notes += [f"- {note}" for note in run.get("combined_notes", [])]
    notes.append("- CPU s / audio s: time.thread_time around the processing call only, summed over clips, "
                 "over the audio processed (each clip plus 100 ms of zero tail); one thread.")
    threaded = [name for name, row in summary.items()
                if row["process_cpu_s_per_audio_s"] > 1.2 * row["cpu_s_per_audio_s"] + 1e-3]
    if threaded:
        notes.append(f"- computes on other threads too (process CPU > thread CPU): {', '.join(threaded)}")
    notes.append("- latency: algorithmic for our DSP (30 ms, already compensated inside enhance_signal, hence "
                 "a found lag near 0); for peers, the lag measured on their raw output.")
    for name, row in summary.items():
        median = row["lag_ms_median"]
        odd = [f"{clip['name']} ({clip['results'][name]['lag_ms']:.1f} ms)" for clip in run["clips"]
               if name in clip["results"] and abs(clip["results"][name]["lag_ms"] - median) > 1.0]
        if odd:
            notes.append(f"- {name}: lag more than 1 ms off its median {median:.1f} ms on {', '.join(odd)}; "
                         "the output hardly correlates with the reference there, so its alignment is doubtful")
    notes += [f"- {name}: {info['note']}" for name, info in run["methods"].items() if info.get("note")]
    notes += _below_input_notes(run)
    return notes


def _below_input_notes(run):
    """One note per method that scores below the noisy input somewhere: such cells are not wins for anyone."""
    by_method = {}
    for name, where, metric, value, reference in run.get("below_input", []):
        by_method.setdefault(name, []).append(f"{HEADINGS[metric]} in {where} ({value:.2f} < {reference:.2f})")
    return [f"- below the noisy input (a condition where it fails, e.g. a level gate or a band limit; "
            f"not a win for anyone): {name}: {'; '.join(cells)}" for name, cells in by_method.items()]


def markdown(run, title="Denoiser comparison"):
    """The report as markdown: the main table, the breakdowns, then what was skipped and why."""
    summary = run["summary"]
    shown = [key for key in METRICS if any(row[key] is not None for row in summary.values())]
    seconds = sum(clip["seconds"] for clip in run["clips"])
    against = ("to the reference, " + run["reference"] + " (lag searched within +-100 ms)" if run["has_reference"]
               else "by each method's lag measured once on its warm-up run (no reference to search against)")
    clean = len(run["clips"]) - len(_averaged(run))
    intro = (f"{len(run['clips'])} clips, {seconds:.0f} s of audio ({run.get('source', '')}); outputs aligned "
             f"{against}; metrics are means over clips"
             + (f", the main table over the {len(run['clips']) - clean} noisy ones (the {clean} clean-speech "
                "clips, no noise added, have their own 'clean' column below)." if clean else "."))
    lines = [f"## {title}", "", intro, ""] + _main_table(summary, shown)
    lines += _level_tables(run, shown)
    lines += [""] + (["### All levels together"] if _bands(run) else []) + _breakdown_tables(run, shown)
    lines += _paired_lines(run)
    return "\n".join(lines + ["", "Notes:"] + _notes(run)) + "\n"


JSON_FIRST = ("schema", "created", "command", "source", "has_reference", "reference", "environment", "methods",
              "skipped", "failed", "metrics_skipped", "dnsmos_backend", "combined_notes", "timed_together",
              "summary", "below_input", "by_level_band",
              "by_snr_bucket", "by_family", "by_group")


def write_json(run, path):
    """The whole run as indented JSON: what ran and the summaries first, the per-clip rows last."""
    ordered = {key: run[key] for key in JSON_FIRST if key in run}
    ordered.update({key: value for key, value in run.items() if key not in ordered})
    Path(path).write_text(json.dumps(ordered, indent=2, default=float) + "\n")


def write_figure(run, path, say=print):
    """PESQ-WB (DNSMOS OVRL without a reference) against CPU s per audio s, one labelled point per method."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        say(f"no figure: matplotlib is not installed ({exc}); pip install matplotlib")
        return None
    summary = run["summary"]
    metric = next((key for key in ("pesq_wb", "dnsmos_ovrl")
                   if any(row[key] is not None for row in summary.values())), None)
    if metric is None:
        say("no figure: neither PESQ-WB nor DNSMOS was computed")
        return None
    points = sorted(((row["cpu_s_per_audio_s"], row[metric], name) for name, row in summary.items()
                     if row[metric] is not None))
    figure, axes = plt.subplots(figsize=(8.0, 5.2), dpi=120)
    markers = "osD^vP*Xh<>"
    for index, (x, y, name) in enumerate(points):
        hollow = run["methods"][name]["kind"] in ("oracle", "reference")      # not methods one can run
        color = f"C{index % 10}"
        axes.scatter([x], [y], s=70, marker=markers[index % len(markers)], zorder=3,
                     facecolors="none" if hollow else color, edgecolors=color,
                     label=f"{name}, {summary[name]['latency_ms']:.0f} ms, {x:.3f} CPU s/s, {y:.2f}")
        short = name if run["methods"][name]["kind"] == "model" else name.split(" (")[0]
        axes.annotate(short, (x, y), textcoords="offset points", fontsize=8, color=color,
                      xytext=(6, 6) if index % 2 == 0 else (6, -13))        # alternate to limit overlaps
    low, high = min(p[1] for p in points), max(p[1] for p in points)
    margin = 0.12 * max(high - low, 0.2)
    axes.set_ylim(low - margin, high + margin)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    axes.set_xlabel("CPU seconds per audio second (one thread, this host)")
    counted = _averaged(run)
    kind = "clean-speech" if all(_is_clean(clip) for clip in counted) else "noisy"
    axes.set_ylabel(f"{HEADINGS[metric]} (mean over {len(counted)} {kind} clips)")
    axes.set_title("Quality vs cost" + ("" if metric == "pesq_wb" else " (no reference: DNSMOS)"))
    axes.grid(True, alpha=0.3)
    axes.set_xlim(left=-0.005, right=max(p[0] for p in points) * 1.3 + 0.01)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
