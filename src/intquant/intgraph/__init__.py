"""IntGraph: the integer-only model every back end consumes, its validation and its file format.

- ``types``: TensorInfo, Op, IntGraph and the size helpers;
- ``check``: the validation vocabulary op modules use; ``validate``: the whole-graph checks;
- ``fileformat``: ``.iqm`` save/load (``.npz`` without pickles + a JSON manifest);
- ``limits``: the resource bounds validation enforces before anything is allocated.

The semantics of each op kind live in ``intquant.ops.<kind>``; ``docs/intgraph.md`` states the
contract. NumPy only (never torch): a deployable graph can be inspected and run without PyTorch.
"""

from .fileformat import FORMAT_NAME, FORMAT_VERSION, MANIFEST_KEY, load, save
from .limits import DEFAULT_LIMITS, Limits
from .types import (
    ACTIVATION_DTYPES,
    ROUNDINGS,
    IntGraph,
    IntGraphError,
    Op,
    TensorInfo,
    op_macs,
    tensor_nbytes,
    weight_bytes,
)

__all__ = [
    "ACTIVATION_DTYPES", "DEFAULT_LIMITS", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_KEY",
    "ROUNDINGS", "IntGraph", "IntGraphError", "Limits", "Op", "TensorInfo", "load", "op_macs",
    "save", "tensor_nbytes", "weight_bytes",
]
