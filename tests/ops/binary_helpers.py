"""What the binary-op tests share: ±1 references in exact float64 PyTorch, and C runs.

The references here never call intquant's binary code: a ±1 tensor is ``where(x >= z, 1, -1)``
of the integer input, convolutions are float64 ``F.conv1d/2d`` / ``F.linear`` on ±1 (or x − z)
values — exact, every partial sum is an integer far below 2^53 — with zero padding (the float
model's padding), and the output stage is the threshold comparison or the contract's
requantization (``numerics.requantize``) of that exact accumulator.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from intquant.codegen import export_c
from intquant.codegen.toolchain import compile_and_run_host, run_on_m0
from intquant.interpreter import run
from intquant.intgraph import IntGraph, Op
from intquant.numerics import requantize


def require_arm() -> None:
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.fail("arm-none-eabi-gcc / qemu-system-arm missing: run scripts/install_toolchain.sh")


def pm1(x: np.ndarray, threshold: int) -> torch.Tensor:
    """±1 float64 values: +1 where the raw value reaches the threshold."""
    return torch.where(torch.as_tensor(x.astype(np.int64)) >= threshold, 1.0, -1.0).double()


def float_conv(x: torch.Tensor, w: np.ndarray, attrs: dict, groups: int = 1) -> torch.Tensor:
    """Exact float64 conv (1-D when x is (N, C, L)) with zero padding [top, left, bottom, right]."""
    t, left, b, r = attrs["padding"]
    wt = torch.as_tensor(w.astype(np.float64))
    if x.dim() == 3:
        xp = F.pad(x, (left, r))
        return F.conv1d(xp, wt[:, :, 0, :], stride=attrs["stride"][1],
                        dilation=attrs["dilation"][1], groups=groups)
    xp = F.pad(x, (left, r, t, b))
    return F.conv2d(xp, wt, stride=attrs["stride"], dilation=attrs["dilation"], groups=groups)


def output_stage(acc: torch.Tensor, op: Op, out_dtype: str) -> np.ndarray:
    """±1 where acc ≥ threshold (bit output), else the contract's requantization."""
    acc_i = np.rint(acc.numpy()).astype(np.int64)
    view = (1, -1) + (1,) * (acc_i.ndim - 2)
    if out_dtype == "bit":
        thr = op.consts["threshold"].astype(np.int64).reshape(view)
        return np.where(acc_i >= thr, 1, -1).astype(np.int8)
    a = op.attrs
    acc_i = acc_i + op.consts["bias"].astype(np.int64).reshape(view)
    return requantize(acc_i, op.consts["multiplier"], op.consts["shift"], a["output_zero_point"],
                      a["act_min"], a["act_max"], rounding=a.get("rounding", "double"),
                      axis=1).astype(out_dtype)


def assert_c_equals_interpreter(graph: IntGraph, x: np.ndarray, out_dir, *, sanitize: bool = False,
                                m0: bool = False) -> None:
    """Export, then host -O2 (and ASan/UBSan -O1, and the emulated Cortex-M0) == interpreter."""
    ref = run(graph, x)
    res = export_c(graph, out_dir, name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x), ref)
    if sanitize:
        y = compile_and_run_host(res.out_dir, x, opt="-O1", sanitize=True)
        np.testing.assert_array_equal(y, ref)
    if m0:
        require_arm()
        np.testing.assert_array_equal(run_on_m0(res.out_dir, x[:4]), ref[:4])
