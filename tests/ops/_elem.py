"""Whole-path checks shared by the reach-elem op modules (mul, prelu, add's sub and
broadcasting, the lut activations): one float layer captured from torch.export AND from the
ONNX file torch.onnx writes, quantized, run by the interpreter, against float PyTorch. Also the
U-Net up path (:class:`UNetUp`) that the upsample and conv_transpose tests take as written.

The reference is the float module (float64) applied to the *dequantized integer input*, so the
error measured is what the integer graph adds (its roundings, and those of any intermediate
activation), in output LSB. Tolerances are measured (stated next to each case with the measured
value) with a margin far above any CPU's float rounding of the reference (< 1e-6 LSB).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

import intquant
from intquant.graph.onnx_import import from_onnx
from intquant.intgraph import ACTIVATION_DTYPES

VIAS = ("torch.export", "onnx")


class UNetUp(nn.Module):
    """The up path of a U-Net as written: conv down, ReLU, ``up`` (an nn.Upsample or a
    ConvTranspose back to the input's size), concat with the skip, conv."""

    def __init__(self, up: nn.Module):
        super().__init__()
        self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.up = up
        self.out = nn.Conv2d(6, 2, 3, padding=1)

    def forward(self, x):
        return self.out(torch.cat([self.up(torch.relu(self.down(x))), x], dim=1))


def onnx_module(module: nn.Module, x: torch.Tensor, opset: int = 17) -> nn.Module:
    """The module as torch.onnx (TorchScript exporter) writes it, imported by intquant."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x[:1],), buf, dynamo=False, opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}}, input_names=["input"])
    return from_onnx(onnx.load_from_string(buf.getvalue()))


def quantized(module: nn.Module, x: torch.Tensor, act_bits: int, via: str,
              opset: int = 17) -> intquant.QuantizedModel:
    """minmax calibration, no bias correction: the op's own error, not a calibration trade-off."""
    module.eval()
    src = module if via == "torch.export" else onnx_module(module, x, opset)
    cfg = intquant.Config(act_bits=act_bits, weight_bits=8 if act_bits == 8 else 16,
                          calibration="minmax", bias_correction=False)
    return intquant.quantize(src, x, cfg, progress=False)


def error_lsb(module: nn.Module, x: torch.Tensor, q) -> float:
    """max |integer output − float module(dequantized integer input)| in output LSB, the
    reference clamped to the output format's range."""
    xq = q.quantize_input(x)
    info = q.input_info
    x_deq = torch.from_numpy(info.scale * (xq.astype(np.float64) - info.zero_point))
    with torch.no_grad():
        ref = module.double()(x_deq).numpy()
    module.float()
    o = q.output_info
    lo, hi = ACTIVATION_DTYPES[o.dtype]
    codes = q.run(xq).astype(np.float64)
    assert codes.shape == ref.shape
    # the output format's range is calibration's choice (minmax on float inputs): clamp to it
    return float(np.abs(codes - np.clip(ref / o.scale + o.zero_point, lo, hi)).max())


def assert_layer_matches_float(module: nn.Module, shape: tuple[int, ...], act_bits: int,
                               tol_lsb: float, kind: str, via: str, opset: int = 17,
                               input_scale: float = 1.0) -> None:
    """Captured ``via`` torch.export or ONNX, the graph holds ``kind`` and its output is within
    ``tol_lsb`` of the float module on the dequantized input."""
    x = torch.randn((64, *shape), generator=torch.Generator().manual_seed(1)) * input_scale
    q = quantized(module, x, act_bits, via, opset)
    kinds = {op.kind for op in q.graph.ops}
    assert kind in kinds, (via, kinds)
    err = error_lsb(module, x, q)
    assert err <= tol_lsb, f"{via}, {act_bits} bits: max error {err:.3f} LSB > {tol_lsb}"
