"""intquant: float PyTorch / ONNX networks to integer-only networks for targets with no FPU.

The one-call API::

    qmodel = intquant.quantize(model, calib_x, intquant.Config(weight_bits=8, act_bits=8))
    y_int = qmodel.run(qmodel.quantize_input(x))      # integer-only reference interpreter
    qmodel.export_c("out/c")                           # C99, no float, static arena

Heavy imports (torch) happen lazily so that ``intquant.numerics``, ``intquant.intgraph`` and
``intquant.interpreter`` stay usable with NumPy alone.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Config": ("intquant.config", "Config"),
    "InputSpec": ("intquant.config", "InputSpec"),
    "quantize": ("intquant.ptq", "quantize"),
    "QuantizedModel": ("intquant.qmodel", "QuantizedModel"),
    "load": ("intquant.qmodel", "load"),
    "train": ("intquant.training", "train"),
    "evaluate": ("intquant.training", "evaluate"),
    "from_onnx": ("intquant.graph.onnx_import", "from_onnx"),
    "analyze": ("intquant.analysis", "analyze"),
    "search_bits": ("intquant.analysis.mixed", "search_bits"),
    "recommend": ("intquant.analysis.recommend", "recommend"),
    "DataWarning": ("intquant.data", "DataWarning"),
    "OutputError": ("intquant.outdir", "OutputError"),
}

# Submodules reachable as attributes without importing them by name: ``intquant.qat.prepare``.
_SUBMODULES = ("qat", "regularizers", "analysis", "codegen", "data", "zoo", "numerics",
               "intgraph", "interpreter", "observers", "graph", "outdir")

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    if name in _SUBMODULES:
        return import_module(f"intquant.{name}")
    raise AttributeError(f"module 'intquant' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
