"""Resource bounds every IntGraph must satisfy before anything is allocated for it.

An ``.iqm`` file is untrusted input: a few kilobytes can declare tensors of billions of elements
or windows of a billion taps. Validation checks these bounds from the manifest and attrs alone
(nothing is allocated or looped over in proportion to a declared size first); everything later —
the interpreter, the memory planner, the C generator, the emulators — then works in proportion
to what validation allowed. The defaults are generous for microcontroller models (the largest
zoo and ONNX test models use well under 1 % of each) and large enough for VGG-19 on a host;
pass your own ``Limits`` to ``IntGraph.validate`` / ``intgraph.load`` / ``export_c`` to change
them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one IntGraph (all inclusive)."""

    max_ops: int = 16_384
    max_tensors: int = 32_768
    # Elements of one activation tensor (batch 1). Also keeps every C index within int32.
    max_tensor_elements: int = 2**26
    # Sum of all activation tensors' bytes: an upper bound of any memory plan's arena.
    max_activation_bytes: int = 2**31 - 1
    # Bytes of all constants (weights, tables): flash.
    max_const_bytes: int = 2**30
    # Multiply-accumulates of one inference.
    max_macs: int = 2**36
    # Any geometric attr (kernel, stride, padding, dilation) and pooling windows.
    max_window: int = 2**16
    # Bytes of the JSON manifest of an .iqm file.
    max_manifest_bytes: int = 64 * 2**20


DEFAULT_LIMITS = Limits()
