"""QuantizedModel: an IntGraph plus the host-edge conversions around it.

Everything in ``run`` is integer (the NumPy interpreter). Floats appear only at the host edge:
``quantize_input`` before, ``dequantize_output`` after. Torch is imported lazily (``simulate``),
so a saved model can be loaded and run with NumPy alone.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import interpreter
from .data import check_labels, shape_hint
from .intgraph import IntGraph, op_macs, weight_bytes
from .intgraph import load as load_graph
from .intgraph import save as save_graph
from .outdir import follow_umask


class QuantizedModel:
    """An integer-only model. ``run`` takes and returns integer arrays (leading batch dim)."""

    def __init__(self, graph: IntGraph, *, float_graph: Any = None, plan: Any = None,
                 config: Any = None):
        self.graph = graph
        self.float_graph = float_graph
        self.plan = plan
        self.config = config
        if plan is not None and plan.input_raw is not None:
            graph.meta["input_raw"] = dict(plan.input_raw)

    # -- host edge ------------------------------------------------------------------------
    @property
    def input_info(self):
        return self.graph.tensors[self.graph.input]

    @property
    def output_info(self):
        return self.graph.tensors[self.graph.output]

    def input_scale(self) -> Fraction:
        """The input scale as an exact rational (what the C header states)."""
        return Fraction(self.input_info.scale)

    def output_scale(self) -> Fraction:
        return Fraction(self.output_info.scale)

    def quantize_input(self, x: Any) -> np.ndarray:
        """Float input batch → the integer array the device receives."""
        x = _to_numpy(x)
        info = self.input_info
        if x.shape[1:] != tuple(info.shape):
            raise ValueError(
                f"input has shape {x.shape[1:]} per sample, the model expects "
                f"{tuple(info.shape)}{shape_hint(x.shape[1:], tuple(info.shape))}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("input contains NaN or inf values")
        raw = self.graph.meta.get("input_raw")
        if raw is not None:
            q = np.rint((x * raw["std"] + raw["mean"]) / raw["raw_scale"])
        else:
            q = np.rint(x / info.scale) + info.zero_point
        lo, hi = _dtype_range(info.dtype)
        return np.clip(q, lo, hi).astype(info.dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        info = self.output_info
        return info.scale * (np.asarray(y).astype(np.int64) - info.zero_point)

    def run(self, x_int: np.ndarray) -> np.ndarray:
        """Integer in, integer out: the reference semantics (NumPy interpreter)."""
        return interpreter.run(self.graph, x_int)

    def predict(self, x: Any) -> np.ndarray:
        """Float in, float out: dequantize_output(run(quantize_input(x)))."""
        return self.dequantize_output(self.run(self.quantize_input(x)))

    def accuracy(self, x: Any, y: Any) -> float:
        """Top-1 accuracy of the integer model; warns (DataWarning) on labels it cannot output."""
        out = self.run(self.quantize_input(x))
        logits = out.reshape(len(out), -1)
        y = _to_numpy(y)
        check_labels(y, logits.shape[1], "accuracy")
        return float((logits.argmax(1) == y).mean())

    # -- files and back ends --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the .iqm file (.npz arrays + JSON manifest, no pickle), with the permissions
        the user's umask gives (like any file they create)."""
        save_graph(self.graph, path)
        follow_umask(path)
        return Path(path)

    def export_c(self, out_dir: str | Path, name: str = "model", *, overwrite: bool = False,
                 **kw: Any):
        """Write a self-contained C99 project (see ``intquant.codegen.export_c``).

        ``out_dir`` must be new or empty; one intquant wrote before is replaced only with
        ``overwrite=True``; any other folder is refused (nothing is ever deleted).
        """
        from .codegen import export_c

        return export_c(self.graph, out_dir, name=name, overwrite=overwrite, **kw)

    def to_onnx(self, path: str | Path, **kw: Any) -> Path:
        """An ONNX model of the integer graph, for ONNX Runtime cross-checks.

        Default ``requant="integer"``: every requantization as exact integer ONNX ops, so ONNX
        Runtime reproduces ``run`` bit for bit; ``requant="float"``: a plain QDQ model (ONNX
        Runtime then requantizes in float and differs by about 1 LSB on some elements).
        """
        from .onnx_export import intgraph_to_onnx

        return intgraph_to_onnx(self.graph, path, **kw)

    def simulate(self):
        """A torch module of the same plan: in eval mode it runs this integer model (output
        equal to ``predict``, re-lowered when its weights change); in training mode the
        fake-quant network with float weights and STE rounding, for fine-tuning."""
        if self.plan is None:
            raise ValueError(
                "simulate() needs the plan, which a loaded .iqm does not keep; "
                "use the QuantizedModel returned by intquant.quantize"
            )
        from .simulate import SimulatedModel

        return SimulatedModel(self.plan)

    # -- inspection -----------------------------------------------------------------------
    def weight_bytes(self) -> int:
        return weight_bytes(self.graph)

    def macs(self) -> int:
        return sum(op_macs(op, self.graph) for op in self.graph.ops)

    def summary(self) -> str:
        rows = [f"{'op':28s} {'kind':16s} {'out shape':16s} {'dtype':6s} {'scale':>12s} {'zp':>6s}"]
        for op in self.graph.ops:
            t = self.graph.tensors[op.output]
            rows.append(f"{op.name:28s} {op.kind:16s} {str(t.shape):16s} {t.dtype:6s} "
                        f"{t.scale:12.6g} {t.zero_point:6d}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"QuantizedModel({len(self.graph.ops)} ops, {self.weight_bytes()} weight bytes, "
                f"input {self.input_info.dtype}{list(self.input_info.shape)}, output "
                f"{self.output_info.dtype}{list(self.output_info.shape)})")


def load(path: str | Path) -> QuantizedModel:
    """Load a .iqm file, validating every field."""
    return QuantizedModel(load_graph(path))


def _dtype_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
