"""The TFLite interpreter's op list and signatures, read in one place.

LiteRT has no public call for either: the op list (to see whether XNNPACK
really runs: a DELEGATE node) and the signatures with tensor indices (to bind
the ``tensor()`` accessors once) come from the private
``_get_ops_details()`` and ``_get_full_signature_list()``, which TensorFlow
Lite, tflite-runtime and ai-edge-litert have all kept. :func:`graph_of` is the
only caller. If a runtime upgrade renames or reshapes them, loading a model
fails at start-up with a :class:`~edge.errors.ModelError` naming the runtime
and what to do, instead of a daemon that silently misreads its model.
"""

from dataclasses import dataclass
from importlib import metadata

from edge.errors import ModelError

#: The distributions that provide an interpreter, for the error message.
RUNTIME_DISTRIBUTIONS = ("ai-edge-litert", "tflite-runtime", "tensorflow-cpu", "tensorflow")
#: The runtime this build was tested with, here and on the arm64 check (scripts/arm64-check).
TESTED_LITERT = "2.3.0"


@dataclass(frozen=True)
class Graph:
    """What a loaded interpreter runs: op names, and per signature ``{"inputs"|"outputs": {name: tensor index}}``."""

    ops: frozenset
    signatures: dict


def graph_of(interpreter):
    """The :class:`Graph` of an interpreter whose tensors are allocated; ModelError if the runtime changed."""
    try:
        ops = frozenset(op["op_name"] for op in interpreter._get_ops_details())
        signatures = interpreter._get_full_signature_list()
        checked = {name: {part: {str(tensor): int(index) for tensor, index in signature[part].items()}
                          for part in ("inputs", "outputs")}
                   for name, signature in signatures.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"the installed TFLite runtime ({_installed_runtimes()}) no longer describes its graph "
                         f"as this build expects ({type(exc).__name__}: {exc}); install the tested one: "
                         f"pip install 'ai-edge-litert=={TESTED_LITERT}'") from None
    return Graph(ops, checked)


def _installed_runtimes():
    found = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found) or "unknown version"
