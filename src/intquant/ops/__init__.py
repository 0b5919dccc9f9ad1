"""One module per IntGraph op kind: spec, reference, lowering, C binding and ONNX export together.

Importing this package imports every op module (``<kind>.py``; helper modules start with ``_``),
each of which registers itself in :mod:`intquant.ops.registry`. The interpreter, validation,
lowering, the planner, the C emitter and the exporters dispatch through ``OPS`` / ``FLOAT_OPS``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._packed import weight_codes
from .registry import FLOAT_OPS, OPS, FloatOpDef, OpDef, float_op, op_def, register


def _import_op_modules() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__name__}.{info.name}")


_import_op_modules()

__all__ = ["FLOAT_OPS", "OPS", "FloatOpDef", "OpDef", "float_op", "op_def", "register",
           "weight_codes"]
