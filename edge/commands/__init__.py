"""The ``percepnet-edge`` command line: one module per command family.

``cli`` parses and dispatches; ``run`` (run, check, run --demo), ``files`` (denoise, oracle), ``bench``
(bench, bench-model), ``profile`` and ``soak``. The top floor: it may import every layer below it.
"""
