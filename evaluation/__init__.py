"""Side-by-side quality and cost evaluation of speech denoisers, on the host.

``python -m evaluation`` runs every available method (the noisy input, the
oracle upper bound, our converted models, RNNoise, DeepFilterNet3, WebRTC NS)
on the same inputs in one run and writes a markdown table, a JSON file and a
quality-versus-cost figure. See ``python -m evaluation --help``.

Modules: :mod:`.inputs` (clips from the corpus validation split, clean/noisy
pairs, or noisy-only files), :mod:`.methods` (the denoisers behind one call
signature), :mod:`.metrics` (alignment, PESQ, STOI, SI-SDR, DNSMOS, CPU time),
:mod:`.harness` (the loop), :mod:`.report` (tables, JSON, figure).
"""

from .harness import evaluate

__all__ = ["evaluate"]
