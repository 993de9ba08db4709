"""Is a method's failure on a clip a level gate? ``python -m evaluation.level_probe --realrec DIR --clips A,B``.

Each method runs twice on each clip: on the clip as recorded, and on the clip
brought to an active speech level of :data:`PROBE_LEVEL_DBFS` (normal), its
output scaled back by the same gain, so that both outputs are heard at the
recorded level. DNSMOS (OVRL/SIG/BAK) of both is printed beside the input's.
A method whose output gains clearly when only its input level changes has a
level-dependent stage (a gate, a VAD threshold, a fixed noise floor); one
that scores the same is limited by something else (the band, the noise).
"""

import argparse
import sys

import numpy as np

from edge.dsp import SAMPLE_RATE_HZ
from edge.errors import PercepnetError
from edge.model.model_meta import DEFAULT_MODEL_PATH

from . import levels, methods, metrics, realrec

PROBE_LEVEL_DBFS = -26.0
PROBE_MAX_PEAK = 0.99


def probe_gain(signal):
    """Linear gain bringing ``signal``'s active level to :data:`PROBE_LEVEL_DBFS`, capped so its peak stays
    below :data:`PROBE_MAX_PEAK`."""
    level_dbfs = levels.active_level_dbfs(signal, SAMPLE_RATE_HZ)
    if not np.isfinite(level_dbfs):
        raise ValueError("the clip holds no speech above -90 dBFS")
    gain = 10.0 ** ((PROBE_LEVEL_DBFS - level_dbfs) / 20.0)
    return min(gain, PROBE_MAX_PEAK / max(float(np.abs(signal).max()), 1e-12))


def probe(method, signal, dnsmos):
    """``{"as recorded": scores, "at -26 dBFS": scores}`` of ``method`` on ``signal`` (outputs at the recorded
    level)."""
    gain = probe_gain(signal)
    scores = {}
    for label, scale in (("as recorded", 1.0), (f"at {PROBE_LEVEL_DBFS:g} dBFS", gain)):
        method.reset()
        output = np.asarray(method.process(signal * scale, None), dtype=np.float64).reshape(-1) / scale
        scores[label] = dnsmos(metrics.to_metric_rate(output))
    return scores, 20.0 * np.log10(gain)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evaluation.level_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--realrec", required=True, help="a set built by python -m evaluation.realrec build")
    parser.add_argument("--clips", required=True, help="comma-separated clip names (as in its manifest.csv)")
    parser.add_argument("--methods", default="rnnoise,deepfilternet,webrtc,model",
                        help="methods to probe (default rnnoise,deepfilternet,webrtc,model)")
    args = parser.parse_args(argv)
    dnsmos, reason = metrics.Dnsmos.load()
    if dnsmos is None:
        print(f"evaluation.level_probe: DNSMOS cannot run: {reason}", file=sys.stderr)
        return 2
    wanted = [name.strip() for name in args.methods.split(",") if name.strip()]
    try:
        chosen, skipped = methods.build(wanted, [DEFAULT_MODEL_PATH] if "model" in wanted else [])
        clips = {clip.name: clip for clip in realrec.load_clips(args.realrec, say=lambda message: None)}
    except PercepnetError as exc:
        print(f"evaluation.level_probe: {exc}", file=sys.stderr)
        return 2
    print("| clip | method | gain to -26 dBFS (dB) | OVRL/SIG/BAK as recorded | at -26 dBFS | input |")
    print("|---|---|---:|---|---|---|")
    for name in [n.strip() for n in args.clips.split(",") if n.strip()]:
        if name not in clips:
            print(f"evaluation.level_probe: no clip {name!r} in {args.realrec}", file=sys.stderr)
            return 2
        signal = clips[name].noisy
        heard = dnsmos(metrics.to_metric_rate(signal))
        for method in chosen:
            scores, gain_db = probe(method, signal, dnsmos)
            cells = [" / ".join(f"{row[k]:.2f}" for k in ("ovrl", "sig", "bak"))
                     for row in (*scores.values(), heard)]
            print(f"| {name} | {method.name} | {gain_db:+.1f} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
