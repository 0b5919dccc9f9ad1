"""Random but valid IntGraphs for tests: one builder per op kind, and random multi-op chains.

Used by the per-op tests (tests/ops), the interpreter tests and the C back-end tests
(bit-exactness across back ends needs many small graphs that exercise every op and attr), and by
the validation tests (``set_field``, ``edit_const``, ...: mutations of a valid graph).
Constants are random but chosen so the outputs actually vary (multipliers scaled to the
accumulator spread, not saturating everything). Scales are nominal metadata: no op reads them.

    g = conv_graph(rng, dims=2, cin=4, cout=6, groups=2)
    x = random_input(rng, g, n=8)
    for kind, build in ONE_OP_BUILDERS.items(): g = build(rng)
    g = random_chain(rng, n_ops=8, dims=1)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from intquant.intgraph import ACTIVATION_DTYPES, IntGraph, Op, TensorInfo
from intquant.numerics import quantize_multiplier, quantize_multipliers
from intquant.ops import _packed
from intquant.ops._bits import pack_weights

LEFT_SHIFT = {"int8": 20, "uint8": 20, "int16": 15}
# Weight "dtypes" that the builders store packed (ops/_packed.py), with the codes drawn.
PACKED_LEVELS = {
    "int4": np.arange(-8, 8),
    "int2": np.arange(-2, 2),
    "ternary": np.array([-1, 0, 1]),
    "binary": np.array([-1, 1]),
    "pow2": _packed.pow2_codes(),
}
PACKED_FORMAT = {"int4": "int4", "int2": "int2", "ternary": "int2", "binary": "binary",
                 "pow2": "pow2"}


def _pack_weight(consts: dict[str, np.ndarray], w_dtype: str) -> dict:
    """Store consts['weight'] packed when ``w_dtype`` names a packed format; its attrs.
    (``"<format>:int8"``: the format's codes, kept unpacked in int8.)"""
    if w_dtype not in PACKED_FORMAT:
        if w_dtype.endswith(":int8"):
            consts["weight"] = consts["weight"].astype(np.int8)
        return {}
    codes = consts["weight"]
    fmt = PACKED_FORMAT[w_dtype]
    consts["weight"] = _packed.pack(codes, fmt)
    return {"weight_format": fmt, "weight_shape": [int(s) for s in codes.shape]}


def random_zero_point(rng: np.random.Generator, dtype: str) -> int:
    """int8: small asymmetric offsets; uint8: around 128; int16: 0 (TFLM's symmetric 16x8)."""
    if dtype == "int8":
        return int(rng.integers(-20, 21))
    if dtype == "uint8":
        return int(rng.integers(100, 156))
    return 0


def random_input(rng: np.random.Generator, graph: IntGraph, n: int = 4) -> np.ndarray:
    """A full-range random batch for the graph input."""
    info = graph.tensors[graph.input]
    lo, hi = ACTIVATION_DTYPES[info.dtype]
    return rng.integers(lo, hi + 1, size=(n, *info.shape)).astype(info.dtype)


def _dtype_spread(dtype: str) -> float:
    """Std of a uniform value over the dtype's range (the expected input spread)."""
    lo, hi = ACTIVATION_DTYPES[dtype]
    return (hi - lo) / math.sqrt(12.0)


class GraphBuilder:
    """Append ops to a graph under construction; each method returns the output tensor name."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: str = "int8"):
        self.rng = rng
        self.tensors: dict[str, TensorInfo] = {}
        self.ops: list[Op] = []
        self.input = self.new_tensor(shape, dtype)

    # -- plumbing ------------------------------------------------------------------------------
    def new_tensor(
        self,
        shape: tuple[int, ...],
        dtype: str,
        zero_point: int | None = None,
        scale: float | None = None,
    ) -> str:
        name = f"t{len(self.tensors)}"
        zp = random_zero_point(self.rng, dtype) if zero_point is None else zero_point
        s = float(np.float32(self.rng.uniform(0.01, 0.1))) if scale is None else scale
        self.tensors[name] = TensorInfo(name, tuple(shape), dtype, s, zp)
        return name

    def like(self, src: str, shape: tuple[int, ...] | None = None) -> str:
        """A new tensor with the same dtype and qparams as ``src`` (pass-through ops)."""
        t = self.tensors[src]
        return self.new_tensor(t.shape if shape is None else shape, t.dtype, t.zero_point, t.scale)

    def op(self, kind: str, inputs: list[str], output: str, attrs: dict, consts=None) -> str:
        self.ops.append(Op(f"{kind}_{len(self.ops)}", kind, inputs, output, attrs, consts or {}))
        return output

    def graph(self, output: str | None = None) -> IntGraph:
        out = output or self.ops[-1].output
        return IntGraph(dict(self.tensors), list(self.ops), self.input, out).validate()

    def info(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def act_range(self, dtype: str, zero_point: int, relu: bool) -> tuple[int, int]:
        lo, hi = ACTIVATION_DTYPES[dtype]
        return (max(lo, zero_point) if relu else lo), hi

    # -- weight layers -------------------------------------------------------------------------
    def _requant_consts(
        self,
        weight: np.ndarray,
        x: TensorInfo,
        out_dtype: str,
        acc_bits: int | None,
        rounding: str,
    ) -> tuple[dict[str, np.ndarray], int]:
        """bias/multiplier/shift that spread the accumulator over ~1/6 of the output range."""
        rng = self.rng
        cout = weight.shape[0]
        w = weight.astype(np.int64).reshape(cout, -1)
        sx = _dtype_spread(x.dtype)
        acc_std = np.sqrt((w.astype(np.float64) ** 2).sum(axis=1)) * sx + 1.0
        bias = np.round(rng.normal(0.0, 0.5, cout) * acc_std).astype(np.int64)
        lo, hi = ACTIVATION_DTYPES[out_dtype]
        real = (hi - lo) / 6.0 / acc_std * rng.uniform(0.7, 1.4, cout)
        real = np.minimum(real, 32.0)  # keeps shift <= 6 (the int64 path allows at most 7)
        max_dx = max(
            x.zero_point - ACTIVATION_DTYPES[x.dtype][0],
            ACTIVATION_DTYPES[x.dtype][1] - x.zero_point,
        )
        bound = int((np.abs(w).sum(axis=1) * max_dx + np.abs(bias)).max())
        if acc_bits is None:
            acc_bits = 32 if bound < 2**31 else 64
        if rounding == "pow2":
            shift = (np.round(np.log2(real)) + 1).astype(np.int32)
            mult = np.full(cout, 2**30, dtype=np.int32)
        else:
            mult, shift = quantize_multipliers(real)
        consts = {
            "bias": bias.astype(np.int32 if acc_bits == 32 else np.int64),
            "multiplier": mult.astype(np.int32),
            "shift": shift.astype(np.int32),
        }
        return consts, acc_bits

    def _random_weight(self, shape: tuple[int, ...], w_dtype: str) -> np.ndarray:
        levels = w_dtype.removesuffix(":int8")  # "int4:int8": int4 codes kept in int8
        if levels in PACKED_LEVELS:
            return self.rng.choice(PACKED_LEVELS[levels], size=shape).astype(np.int8)
        wmax = 127 if w_dtype == "int8" else 32767
        w = np.round(self.rng.normal(0, wmax / 3, size=shape))
        return np.clip(w, -wmax, wmax).astype(w_dtype)

    def conv(
        self,
        x: str,
        cout: int,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int, int, int] = (0, 0, 0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        w_dtype: str = "int8",
        out_dtype: str | None = None,
        acc_bits: int | None = None,
        rounding: str = "double",
        relu: bool = False,
    ) -> str:
        xi = self.info(x)
        one_d = len(xi.shape) == 2
        cin = xi.shape[0]
        if one_d:
            kernel, stride, dilation = (1, kernel[-1]), (1, stride[-1]), (1, dilation[-1])
            padding = (0, padding[1], 0, padding[3])
        h, w = (1, xi.shape[1]) if one_d else xi.shape[1:]
        weight = self._random_weight((cout, cin // groups, *kernel), w_dtype)
        out_dtype = out_dtype or xi.dtype
        consts, acc_bits = self._requant_consts(weight, xi, out_dtype, acc_bits, rounding)
        consts["weight"] = weight
        packed_attrs = _pack_weight(consts, w_dtype)
        ho = (h + padding[0] + padding[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wo = (w + padding[1] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        y = self.new_tensor((cout, wo) if one_d else (cout, ho, wo), out_dtype)
        zo = self.info(y).zero_point
        amin, amax = self.act_range(out_dtype, zo, relu)
        attrs = {
            "stride": list(stride),
            "padding": list(padding),
            "dilation": list(dilation),
            "groups": groups,
            "input_zero_point": xi.zero_point,
            "output_zero_point": zo,
            "act_min": amin,
            "act_max": amax,
            "acc_bits": acc_bits,
            "rounding": rounding,
            **packed_attrs,
        }
        return self.op("conv", [x], y, attrs, consts)

    def conv_transpose(
        self,
        x: str,
        cout: int,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (2, 2),
        padding: tuple[int, int, int, int] = (0, 0, 0, 0),
        output_padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        w_dtype: str = "int8",
        acc_bits: int | None = None,
        rounding: str = "double",
        relu: bool = False,
    ) -> str:
        """A conv_transpose (weights [Cout, Cin/groups, kh, kw]); 1-D keeps the w entries."""
        xi = self.info(x)
        one_d = len(xi.shape) == 2
        cin = xi.shape[0]
        if one_d:
            kernel, stride, dilation = (1, kernel[-1]), (1, stride[-1]), (1, dilation[-1])
            padding, output_padding = (0, padding[1], 0, padding[3]), (0, output_padding[-1])
        h, w = (1, xi.shape[1]) if one_d else xi.shape[1:]
        weight = self._random_weight((cout, cin // groups, *kernel), w_dtype)
        consts, acc_bits = self._requant_consts(weight, xi, xi.dtype, acc_bits, rounding)
        consts["weight"] = weight
        ho, wo = ((n - 1) * s + d * (k - 1) + 1 - p0 - p1 + e for n, s, d, k, p0, p1, e in zip(
            (h, w), stride, dilation, kernel, padding[:2], padding[2:], output_padding,
            strict=True))
        y = self.new_tensor((cout, wo) if one_d else (cout, ho, wo), xi.dtype)
        zo = self.info(y).zero_point
        amin, amax = self.act_range(xi.dtype, zo, relu)
        attrs = {
            "stride": list(stride),
            "padding": list(padding),
            "output_padding": list(output_padding),
            "dilation": list(dilation),
            "groups": groups,
            "input_zero_point": xi.zero_point,
            "output_zero_point": zo,
            "act_min": amin,
            "act_max": amax,
            "acc_bits": acc_bits,
            "rounding": rounding,
        }
        return self.op("conv_transpose", [x], y, attrs, consts)

    def fully_connected(
        self,
        x: str,
        cout: int,
        w_dtype: str = "int8",
        out_dtype: str | None = None,
        acc_bits: int | None = None,
        rounding: str = "double",
        relu: bool = False,
    ) -> str:
        xi = self.info(x)
        weight = self._random_weight((cout, xi.shape[-1]), w_dtype)
        out_dtype = out_dtype or xi.dtype
        consts, acc_bits = self._requant_consts(weight, xi, out_dtype, acc_bits, rounding)
        consts["weight"] = weight
        packed_attrs = _pack_weight(consts, w_dtype)
        y = self.new_tensor(xi.shape[:-1] + (cout,), out_dtype)
        zo = self.info(y).zero_point
        amin, amax = self.act_range(out_dtype, zo, relu)
        attrs = {
            "input_zero_point": xi.zero_point,
            "output_zero_point": zo,
            "act_min": amin,
            "act_max": amax,
            "acc_bits": acc_bits,
            "rounding": rounding,
            **packed_attrs,
        }
        return self.op("fully_connected", [x], y, attrs, consts)

    # -- elementwise requantizing ops ----------------------------------------------------------
    def add(self, a: str, b: str, rounding: str = "double", relu: bool = False) -> str:
        """TFLM's offline parameters: common scale 2·max(s_a, s_b), left shift 20 (15 int16)."""
        ai, bi = self.info(a), self.info(b)
        y = self.new_tensor(ai.shape, ai.dtype)
        yi = self.info(y)
        ls = LEFT_SHIFT[ai.dtype]
        twice_max = 2 * max(ai.scale, bi.scale)
        am, ash = quantize_multiplier(ai.scale / twice_max)
        bm, bsh = quantize_multiplier(bi.scale / twice_max)
        om, osh = quantize_multiplier(twice_max / (2**ls * yi.scale))
        amin, amax = self.act_range(yi.dtype, yi.zero_point, relu)
        attrs = {
            "a_zero_point": ai.zero_point,
            "b_zero_point": bi.zero_point,
            "left_shift": ls,
            "a_multiplier": am,
            "a_shift": ash,
            "b_multiplier": bm,
            "b_shift": bsh,
            "output_multiplier": om,
            "output_shift": osh,
            "output_zero_point": yi.zero_point,
            "act_min": amin,
            "act_max": amax,
            "rounding": rounding,
        }
        return self.op("add", [a, b], y, attrs)

    def rescale(
        self,
        x: str,
        out_dtype: str | None = None,
        input_zero_point: float | None = None,
        rounding: str = "double",
    ) -> str:
        """Requantize to new qparams; ``input_zero_point`` may be fractional (raw-input edge)."""
        xi = self.info(x)
        out_dtype = out_dtype or xi.dtype
        # Output spread similar to the input's: s_out ≈ s_in · range_in / range_out.
        ratio = _dtype_spread(xi.dtype) / _dtype_spread(out_dtype) * self.rng.uniform(0.5, 1.5)
        y = self.new_tensor(xi.shape, out_dtype, scale=float(np.float32(xi.scale * ratio)))
        yi = self.info(y)
        ls = LEFT_SHIFT[xi.dtype]
        z_in = xi.zero_point if input_zero_point is None else input_zero_point
        zps = int(round(z_in * 2**ls))
        m, sh = quantize_multiplier(xi.scale / (2**ls * yi.scale))
        amin, amax = ACTIVATION_DTYPES[out_dtype]
        attrs = {
            "input_zero_point_shifted": zps,
            "left_shift": ls,
            "multiplier": m,
            "shift": sh,
            "output_zero_point": yi.zero_point,
            "act_min": amin,
            "act_max": amax,
            "rounding": rounding,
        }
        return self.op("rescale", [x], y, attrs)

    # -- pooling -------------------------------------------------------------------------------
    def _pool_out(self, x: str, kernel, stride, padding, dilation) -> tuple[str, list, list, list]:
        xi = self.info(x)
        one_d = len(xi.shape) == 2
        if one_d:
            kernel, stride, dilation = (1, kernel[-1]), (1, stride[-1]), (1, dilation[-1])
            padding = (0, padding[1], 0, padding[3])
        h, w = (1, xi.shape[1]) if one_d else xi.shape[1:]
        ho = (h + padding[0] + padding[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wo = (w + padding[1] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        c = xi.shape[0]
        y = self.like(x, (c, wo) if one_d else (c, ho, wo))
        return y, list(kernel), list(stride), list(padding), list(dilation)

    def max_pool(
        self,
        x: str,
        kernel=(2, 2),
        stride=(2, 2),
        padding=(0, 0, 0, 0),
        dilation=(1, 1),
        relu: bool = False,
    ) -> str:
        y, k, s, p, d = self._pool_out(x, kernel, stride, padding, dilation)
        yi = self.info(y)
        amin, amax = self.act_range(yi.dtype, yi.zero_point, relu)
        attrs = {
            "kernel": k,
            "stride": s,
            "padding": p,
            "dilation": d,
            "act_min": amin,
            "act_max": amax,
        }
        return self.op("max_pool", [x], y, attrs)

    def avg_pool(
        self,
        x: str,
        kernel=(2, 2),
        stride=(2, 2),
        padding=(0, 0, 0, 0),
        count_include_pad: bool = False,
    ) -> str:
        y, k, s, p, _ = self._pool_out(x, kernel, stride, padding, (1, 1))
        yi = self.info(y)
        lo, hi = ACTIVATION_DTYPES[yi.dtype]
        attrs = {
            "kernel": k,
            "stride": s,
            "padding": p,
            "count_include_pad": int(count_include_pad),
            "zero_point": yi.zero_point,
            "act_min": lo,
            "act_max": hi,
        }
        return self.op("avg_pool", [x], y, attrs)

    def global_avg_pool(self, x: str) -> str:
        xi = self.info(x)
        k = (1, xi.shape[1]) if len(xi.shape) == 2 else xi.shape[1:]
        return self.avg_pool(x, kernel=k, stride=(1, 1))

    # -- data movement -------------------------------------------------------------------------
    def concat(self, xs: list[str], axis: int = 0) -> str:
        shape = list(self.info(xs[0]).shape)
        shape[axis] = sum(self.info(t).shape[axis] for t in xs)
        y = self.like(xs[0], tuple(shape))
        return self.op("concat", list(xs), y, {"axis": axis})

    def pad(self, x: str, pads: list[int], value: int | None = None) -> str:
        xi = self.info(x)
        shape = tuple(s + pads[2 * d] + pads[2 * d + 1] for d, s in enumerate(xi.shape))
        y = self.like(x, shape)
        v = xi.zero_point if value is None else value
        return self.op("pad", [x], y, {"pads": list(pads), "value": v})

    def reshape(self, x: str, shape: tuple[int, ...]) -> str:
        return self.op("reshape", [x], self.like(x, tuple(shape)), {"shape": list(shape)})

    def flatten(self, x: str) -> str:
        return self.reshape(x, (math.prod(self.info(x).shape),))

    def transpose(self, x: str, perm: list[int]) -> str:
        shape = tuple(self.info(x).shape[p] for p in perm)
        return self.op("transpose", [x], self.like(x, shape), {"perm": list(perm)})

    # -- activations ---------------------------------------------------------------------------
    def clamp(self, x: str, act_min: int | None = None, act_max: int | None = None) -> str:
        xi = self.info(x)
        lo, hi = ACTIVATION_DTYPES[xi.dtype]
        amin = xi.zero_point if act_min is None else act_min
        amax = min(hi, xi.zero_point + (hi - lo) // 3) if act_max is None else act_max
        return self.op("clamp", [x], self.like(x), {"act_min": amin, "act_max": amax})

    def lut(self, x: str, table: np.ndarray | None = None, out_dtype: str | None = None) -> str:
        """Random monotone table (8-bit: 256 output-dtype entries; int16: 513 int32 entries)."""
        xi = self.info(x)
        out_dtype = out_dtype or xi.dtype
        lo, hi = ACTIVATION_DTYPES[out_dtype]
        n = 256 if xi.dtype in ("int8", "uint8") else 513
        if table is None:
            steps = self.rng.integers(0, 3, size=n)
            t = np.cumsum(steps) * (hi - lo) // max(1, int(steps.sum())) + lo
            table = np.clip(t, lo, hi).astype(out_dtype if n == 256 else np.int32)
        y = self.new_tensor(xi.shape, out_dtype)
        return self.op("lut", [x], y, {"act_min": lo, "act_max": hi}, {"table": table})

    def softmax(self, x: str, out_dtype: str | None = None, axis: int | None = None) -> str:
        """exp table for a random input scale; int8 output s = 1/256, z = −128 as TFLM;
        ``axis``: the rows' axis (None: the last, without the attr)."""
        xi = self.info(x)
        out_dtype = out_dtype or ("int16" if xi.dtype == "int16" else "int8")
        lut_shift = 0 if xi.dtype in ("int8", "uint8") else 7
        s_in = xi.scale
        lo_in, hi_in = ACTIVATION_DTYPES[xi.dtype]
        table = exp_table(s_in, lut_shift, max_d=hi_in - lo_in)
        rng_out, zo = (32768, 0) if out_dtype == "int16" else (256, -128)
        y = self.new_tensor(xi.shape, out_dtype, zo, 1.0 / rng_out)
        lo, hi = ACTIVATION_DTYPES[out_dtype]
        attrs = {
            "lut_shift": lut_shift,
            "output_zero_point": zo,
            "output_range": rng_out,
            "act_min": lo,
            "act_max": hi,
        }
        if axis is not None:
            attrs["axis"] = axis
        return self.op("softmax", [x], y, attrs, {"exp_table": table})

    def lrn(
        self,
        x: str,
        size: int | None = None,
        strength: float | None = None,
        beta: float = 0.75,
        k: float = 1.0,
        out_dtype: str | None = None,
    ) -> str:
        """Offline constants written from docs/intgraph.md (``lrn``), independent of ``lower``.

        ``strength`` = α·s_in²·D²: how strongly the largest input is normalised (α follows).
        """
        xi = self.info(x)
        size = size or int(self.rng.integers(1, 6))
        strength = float(self.rng.uniform(0.2, 4.0)) if strength is None else strength
        out_dtype = out_dtype or xi.dtype
        lo, hi = ACTIVATION_DTYPES[xi.dtype]
        d_max = max(hi - xi.zero_point, xi.zero_point - lo)
        alpha = strength / (xi.scale**2 * d_max**2)
        lut_shift = max(0, (size * d_max * d_max).bit_length() - 9)
        left_shift = 30 - d_max.bit_length()
        phi, phi_ref = lrn_factor(size, alpha, beta, k, xi.scale, lut_shift)
        table = np.round(phi / phi_ref * 2**30).astype(np.int32)
        ratio = _dtype_spread(xi.dtype) / _dtype_spread(out_dtype) * self.rng.uniform(0.4, 0.9)
        y = self.new_tensor(xi.shape, out_dtype, scale=float(np.float32(xi.scale * ratio)))
        yi = self.info(y)
        m, sh = quantize_multiplier(xi.scale * phi_ref / (2.0 ** (left_shift - 1) * yi.scale))
        amin, amax = ACTIVATION_DTYPES[out_dtype]
        attrs = {
            "size": size,
            "input_zero_point": xi.zero_point,
            "lut_shift": lut_shift,
            "left_shift": left_shift,
            "multiplier": m,
            "shift": sh,
            "output_zero_point": yi.zero_point,
            "act_min": amin,
            "act_max": amax,
        }
        return self.op("lrn", [x], y, attrs, {"table": table})


    # -- binary (packed ±1) layers ---------------------------------------------------------------
    def sign(self, x: str, threshold: int | None = None) -> str:
        """int → packed ±1 (+1 where x ≥ threshold; default: the zero point, i.e. real ≥ 0)."""
        xi = self.info(x)
        y = self.new_tensor(xi.shape, "bit", zero_point=0, scale=1.0)
        thr = xi.zero_point if threshold is None else threshold
        return self.op("sign", [x], y, {"threshold": int(thr)})

    def unpack_bits(self, x: str) -> str:
        xi = self.info(x)
        y = self.new_tensor(xi.shape, "int8", zero_point=0, scale=xi.scale)
        return self.op("unpack_bits", [x], y, {})

    def _binary_stage(self, field: int, cout: int, spread: float, out_dtype: str,
                      rounding: str, relu: bool, out_shape: tuple[int, ...]):
        """Output stage consts/attrs: thresholds (bit output) or a requantization spreading the
        accumulator (std ``spread``) over ~1/6 of the output range; and the output tensor."""
        rng = self.rng
        if out_dtype == "bit":
            y = self.new_tensor(out_shape, "bit", zero_point=0, scale=1.0)
            lim = max(1, int(spread))
            thr = rng.integers(-lim, lim + 1, size=cout)
            return {"threshold": thr.astype(np.int32)}, {}, y
        y = self.new_tensor(out_shape, out_dtype)
        zo = self.info(y).zero_point
        lo, hi = ACTIVATION_DTYPES[out_dtype]
        real = (hi - lo) / 6.0 / max(spread, 1.0) * rng.uniform(0.7, 1.4, cout)
        if rounding == "pow2":
            shift = (np.round(np.log2(real)) + 1).astype(np.int32)
            mult = np.full(cout, 2**30, dtype=np.int32)
        else:
            mult, shift = quantize_multipliers(real)
        bias = rng.integers(-int(spread) - 1, int(spread) + 2, size=cout)
        amin, amax = self.act_range(out_dtype, zo, relu)
        consts = {"bias": bias.astype(np.int32), "multiplier": mult.astype(np.int32),
                  "shift": shift.astype(np.int32)}
        attrs = {"output_zero_point": zo, "act_min": amin, "act_max": amax, "rounding": rounding}
        return consts, attrs, y

    def _window(self, x: str, kernel, stride, padding, dilation):
        xi = self.info(x)
        one_d = len(xi.shape) == 2
        if one_d:
            kernel, stride, dilation = (1, kernel[-1]), (1, stride[-1]), (1, dilation[-1])
            padding = (0, padding[1], 0, padding[3])
        h, w = (1, xi.shape[1]) if len(xi.shape) == 2 else xi.shape[1:]
        ho = (h + padding[0] + padding[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        wo = (w + padding[1] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        geometry = {"stride": list(stride), "padding": list(padding),
                    "dilation": list(dilation)}
        return list(kernel), geometry, (ho, wo), one_d

    def binary_conv(self, x: str, cout: int, kernel=(3, 3), stride=(1, 1),
                    padding=(0, 0, 0, 0), dilation=(1, 1), out_dtype: str = "bit",
                    rounding: str = "double", relu: bool = False) -> str:
        """W1A1 conv with random ±1 weights on a packed input."""
        cin = self.info(x).shape[0]
        kernel, geometry, (ho, wo), one_d = self._window(x, kernel, stride, padding, dilation)
        field = cin * kernel[0] * kernel[1]
        w = self.rng.choice(np.array([-1, 1], np.int8), size=(cout, cin, *kernel))
        out_shape = (cout, wo) if one_d else (cout, ho, wo)
        consts, attrs, y = self._binary_stage(field, cout, math.sqrt(field), out_dtype, rounding,
                                              relu, out_shape)
        consts["weight"] = pack_weights(w)
        return self.op("binary_conv", [x], y, {"kernel": kernel, **geometry, **attrs}, consts)

    def binary_fully_connected(self, x: str, cout: int, out_dtype: str = "bit",
                               rounding: str = "double", relu: bool = False) -> str:
        cin = self.info(x).shape[0]
        w = self.rng.choice(np.array([-1, 1], np.int8), size=(cout, cin, 1, 1))
        consts, attrs, y = self._binary_stage(cin, cout, math.sqrt(cin), out_dtype, rounding,
                                              relu, (cout,))
        consts["weight"] = pack_weights(w)
        return self.op("binary_fully_connected", [x], y, attrs, consts)

    def sign_conv(self, x: str, cout: int, kernel=(3, 3), stride=(1, 1),
                  padding=(0, 0, 0, 0), dilation=(1, 1), w_dtype: str = "int8",
                  groups: int = 1) -> str:
        """8/16-bit conv (or, on a (C,) input, linear) with a sign output."""
        xi = self.info(x)
        cin = xi.shape[0] // groups
        if len(xi.shape) == 1:
            kernel, geometry, out_shape = [1, 1], {"stride": [1, 1], "padding": [0, 0, 0, 0],
                                                    "dilation": [1, 1]}, (cout,)
        else:
            kernel, geometry, (ho, wo), one_d = self._window(x, kernel, stride, padding,
                                                             dilation)
            out_shape = (cout, wo) if one_d else (cout, ho, wo)
        weight = self._random_weight((cout, cin, *kernel), w_dtype).astype(np.int64)
        lo, hi = ACTIVATION_DTYPES[xi.dtype]
        limit = (2**31 - 1) // max(xi.zero_point - lo, hi - xi.zero_point)
        while np.abs(weight).sum(axis=(1, 2, 3)).max() > limit:  # int16 x int16: fit int32
            weight //= 2
        weight = weight.astype(w_dtype)
        spread = float(np.abs(weight.astype(np.float64)).sum(axis=(1, 2, 3)).mean()) * \
            _dtype_spread(xi.dtype) / math.sqrt(cin * kernel[0] * kernel[1])
        consts, _, y = self._binary_stage(0, cout, spread, "bit", "double", False, out_shape)
        consts["weight"] = weight
        attrs = {**geometry, "groups": groups, "input_zero_point": xi.zero_point}
        return self.op("sign_conv", [x], y, attrs, consts)

    def binary_max_pool(self, x: str, kernel=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0),
                        dilation=(1, 1)) -> str:
        kernel, geometry, (ho, wo), one_d = self._window(x, kernel, stride, padding, dilation)
        c = self.info(x).shape[0]
        y = self.new_tensor((c, wo) if one_d else (c, ho, wo), "bit", zero_point=0, scale=1.0)
        return self.op("binary_max_pool", [x], y, {"kernel": kernel, **geometry})

def lrn_factor(
    size: int, alpha: float, beta: float, k: float, s_in: float, lut_shift: int
) -> tuple[np.ndarray, float]:
    """φ(S) = (k + α/n·s_in²·S)^(−β) at the 513 knots S = i·2^lut_shift, and max φ."""
    s = np.arange(513, dtype=np.float64) * 2.0**lut_shift
    phi = (k + alpha / size * s_in**2 * s) ** (-beta)
    return phi, float(phi.max())


def exp_table(s_in: float, lut_shift: int, max_d: int = 65535) -> np.ndarray:
    """exp_table[i] = round(2^30·exp(−i·2^lut_shift·s_in)) until it reaches 0; last entry 0."""
    step = 2**lut_shift * s_in
    n = min(max_d // 2**lut_shift + 1, int(math.ceil(31 * math.log(2) / step)) + 2)
    vals = np.round(2.0**30 * np.exp(-np.arange(n) * step)).astype(np.int64)
    vals = vals[: max(1, int(np.count_nonzero(vals)))]
    return np.concatenate([vals, [0]]).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# One-op graphs with random shapes and attrs
# ----------------------------------------------------------------------------------------------


def _spatial_shape(rng: np.random.Generator, dims: int, c: int) -> tuple[int, ...]:
    return (
        (c, int(rng.integers(5, 12)))
        if dims == 1
        else (c, int(rng.integers(4, 9)), int(rng.integers(4, 9)))
    )


def conv_graph(
    rng: np.random.Generator,
    *,
    dims: int = 2,
    dtype: str = "int8",
    cin: int | None = None,
    cout: int | None = None,
    groups: int | None = None,
    depthwise: bool = False,
    kernel: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    padding: tuple[int, int, int, int] | None = None,
    dilation: tuple[int, int] | None = None,
    **kw,
) -> IntGraph:
    """Conv with random shape and attrs (pass any to pin it); ``depthwise`` sets groups = Cin."""
    cin = cin or int(rng.integers(1, 5)) * (2 if groups is None else groups)
    if depthwise:
        groups = cin
    groups = groups or int(rng.choice([g for g in (1, 2) if cin % g == 0]))
    cout = cout or groups * int(rng.integers(1, 4))
    kernel = kernel or (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = stride or (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = dilation or (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = padding or tuple(int(rng.integers(0, 3)) for _ in range(4))
    b = GraphBuilder(rng, _spatial_shape(rng, dims, cin), dtype)
    # Make sure the effective kernel fits the padded input.
    shape = b.info(b.input).shape
    hw = (1, shape[1]) if dims == 1 else shape[1:]
    kernel = tuple(min(k, (s - 1) // d + 1) for k, s, d in zip(kernel, hw, dilation, strict=True))
    if dtype == "int16":
        kw.setdefault("acc_bits", 64)  # TFLM 16x8: int64 accumulator and bias
    b.conv(b.input, cout, kernel, stride, padding, dilation, groups, **kw)
    return b.graph()


def conv_transpose_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                         **kw) -> IntGraph:
    """conv_transpose with random shape and attrs (pass any builder keyword to pin it):
    stride 1-3, padding below the kernel span, output_padding below the stride, dilation
    1-2, groups 1-2."""
    groups = kw.pop("groups", int(rng.integers(1, 3)))
    cin = groups * int(rng.integers(1, 4))
    cout = kw.pop("cout", groups * int(rng.integers(1, 4)))
    kernel = kw.pop("kernel", (int(rng.integers(1, 5)), int(rng.integers(1, 5))))
    stride = kw.pop("stride", (int(rng.integers(1, 4)), int(rng.integers(1, 4))))
    dilation = kw.pop("dilation", (int(rng.integers(1, 3)), int(rng.integers(1, 3))))
    span = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    padding = kw.pop("padding", tuple(int(rng.integers(0, span[i % 2] + 1)) for i in range(4)))
    output_padding = kw.pop("output_padding", tuple(int(rng.integers(0, s)) for s in stride))
    if dtype == "int16":
        kw.setdefault("acc_bits", 64)  # 16x8: int64 accumulator and bias
    b = GraphBuilder(rng, _spatial_shape(rng, dims, cin), dtype)
    b.conv_transpose(b.input, cout, kernel, stride, padding, output_padding, dilation, groups,
                     **kw)
    return b.graph()


def fully_connected_graph(
    rng: np.random.Generator,
    *,
    dtype: str = "int8",
    cin: int | None = None,
    cout: int | None = None,
    rows: tuple[int, ...] = (),
    **kw,
) -> IntGraph:
    """Linear on (Cin,), or on (*rows, Cin) (a token sequence: one product per row)."""
    b = GraphBuilder(rng, (*rows, cin or int(rng.integers(1, 40))), dtype)
    if dtype == "int16":
        kw.setdefault("acc_bits", 64)
    b.fully_connected(b.input, cout or int(rng.integers(1, 12)), **kw)
    return b.graph()


def add_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8", **kw) -> IntGraph:
    """add(x, rescale(x)): two differently quantized views of one input."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    other = b.rescale(b.input)
    b.add(b.input, other, **kw)
    return b.graph()


def rescale_graph(
    rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8", **kw
) -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    b.rescale(b.input, **kw)
    return b.graph()


def _pool_params(rng: np.random.Generator, dims: int, shape: tuple[int, ...], dilated: bool):
    hw = (1, shape[1]) if dims == 1 else shape[1:]
    kernel = [int(rng.integers(1, min(4, s) + 1)) for s in hw]
    stride = [int(rng.integers(1, 3)) for _ in hw]
    dil = [int(rng.integers(1, 3)) if dilated else 1 for _ in hw]
    kernel = [min(k, (s - 1) // d + 1) for k, s, d in zip(kernel, hw, dil, strict=True)]
    pad = [int(rng.integers(0, k // 2 + 1)) for k in kernel]  # PyTorch: pad <= kernel / 2
    padding = (pad[0], pad[1], int(rng.integers(0, pad[0] + 1)), int(rng.integers(0, pad[1] + 1)))
    return tuple(kernel), tuple(stride), padding, tuple(dil)


def max_pool_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    k, s, p, d = _pool_params(rng, dims, b.info(b.input).shape, dilated=True)
    b.max_pool(b.input, k, s, p, d, relu=bool(rng.integers(0, 2)))
    return b.graph()


def avg_pool_graph(
    rng: np.random.Generator,
    *,
    dims: int = 2,
    dtype: str = "int8",
    count_include_pad: bool | None = None,
) -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    k, s, p, _ = _pool_params(rng, dims, b.info(b.input).shape, dilated=False)
    cip = bool(rng.integers(0, 2)) if count_include_pad is None else count_include_pad
    b.avg_pool(b.input, k, s, p, cip)
    return b.graph()


def concat_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    """concat(x, clamp(x), x) along a random axis."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    axis = int(rng.integers(0, dims + 1))
    b.concat([b.input, b.clamp(b.input), b.input], axis=axis)
    return b.graph()


def pad_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    lo, hi = ACTIVATION_DTYPES[dtype]
    pads = [int(v) for v in rng.integers(0, 3, size=2 * (dims + 1))]
    b.pad(b.input, pads, value=int(rng.integers(lo, hi + 1)))
    return b.graph()


def reshape_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    b.flatten(b.input)
    return b.graph()


def transpose_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    perm = [int(p) for p in rng.permutation(dims + 1)]
    b.transpose(b.input, perm)
    return b.graph()


def clamp_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    b.clamp(b.input)
    return b.graph()


def lut_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    b.lut(b.input)
    return b.graph()


def lrn_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 8))), dtype)
    b.lrn(b.input)
    return b.graph()


def softmax_graph(rng: np.random.Generator, *, dtype: str = "int8",
                  axis: int | None = None) -> IntGraph:
    """Softmax of a (rows, length) tensor, or along ``axis`` of a random 3-D tensor."""
    if axis is None:
        b = GraphBuilder(rng, (int(rng.integers(2, 6)), int(rng.integers(2, 12))), dtype)
    else:
        b = GraphBuilder(rng, tuple(int(v) for v in rng.integers(2, 7, size=3)), dtype)
    b.softmax(b.input, axis=axis)
    return b.graph()


# ----------------------------------------------------------------------------------------------
# reach-transformer: layer_norm, matmul, add_const, slice (builders on a GraphBuilder)
# ----------------------------------------------------------------------------------------------


def _spread_multiplier(rng: np.random.Generator, acc_std: float, out_dtype: str) -> tuple[int, int]:
    """(M, shift) mapping an accumulator of spread ``acc_std`` to ~1/6 of the output range."""
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    return quantize_multiplier((hi - lo) / 6.0 / max(acc_std, 1.0) * rng.uniform(0.7, 1.4))


def layer_norm_op(b: GraphBuilder, x: str, out_dtype: str | None = None,
                  eps_term: int | None = None, eps_shift: int | None = None) -> str:
    """Constants from the spec (docs of ops/layer_norm.py): normalised values u have RMS about
    2^30/√C, so gamma ≈ (output range / 6)·2^shift·√C / 2^30 spreads the output."""
    rng = b.rng
    xi = b.info(x)
    c = xi.shape[-1]
    out_dtype = out_dtype or xi.dtype
    y = b.new_tensor(xi.shape, out_dtype)
    yi = b.info(y)
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    shift = int(rng.integers(34, 45))  # gamma of >= ~10 bits: the output is not rounded flat
    target = (hi - lo) / 6.0 * 2.0**shift * math.sqrt(c) / 2.0**30
    gamma = np.clip(np.round(rng.uniform(-1.5, 1.5, c) * target), -(2**31 - 1), 2**31 - 1)
    beta = np.round((rng.uniform(-0.25, 0.25, c) * (hi - lo) + yi.zero_point) * 2.0**shift)
    beta = (beta + 2 ** (shift - 1)).astype(np.int64)
    lo_in, hi_in = ACTIVATION_DTYPES[xi.dtype]
    q_max = c * (c * (hi_in - lo_in)) ** 2
    if eps_shift is None:  # any even shift that leaves room for the epsilon
        eps_shift = 2 * int(rng.integers(0, max(1, (61 - q_max.bit_length()) // 2 + 1)))
    room = 2**62 - 1 - (q_max << eps_shift)
    if eps_term is None:  # small against a typical row's Q (an ε that swamped it: constant)
        eps_term = int(rng.integers(1, max(1, min(room, (q_max << eps_shift) >> 16)) + 1))
    attrs = {"eps_term": eps_term, "eps_shift": eps_shift, "shift": shift, "act_min": lo,
             "act_max": hi}
    consts = {"gamma": gamma.astype(np.int32), "beta": beta}
    return b.op("layer_norm", [x], y, attrs, consts)


def matmul_op(b: GraphBuilder, a: str, bt: str, transpose_b: bool = False,
              out_dtype: str | None = None, rounding: str = "double") -> str:
    rng = b.rng
    ai, bi = b.info(a), b.info(bt)
    k = ai.shape[-1]
    n = bi.shape[-2] if transpose_b else bi.shape[-1]
    out_dtype = out_dtype or ai.dtype
    y = b.new_tensor(ai.shape[:-1] + (n,), out_dtype)
    yi = b.info(y)
    spread = math.sqrt(k) * _dtype_spread(ai.dtype) * _dtype_spread(bi.dtype)
    m, sh = _spread_multiplier(rng, spread, out_dtype)
    za, zb = ai.zero_point, bi.zero_point
    dmax = lambda t, z: max(z - ACTIVATION_DTYPES[t.dtype][0], ACTIVATION_DTYPES[t.dtype][1] - z)  # noqa: E731
    acc_bits = 32 if k * dmax(ai, za) * dmax(bi, zb) < 2**31 else 64
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    attrs = {"a_zero_point": za, "b_zero_point": zb, "transpose_b": int(transpose_b),
             "output_zero_point": yi.zero_point, "multiplier": m, "shift": sh, "act_min": lo,
             "act_max": hi, "acc_bits": acc_bits, "rounding": rounding}
    return b.op("matmul", [a, bt], y, attrs)


def add_const_op(b: GraphBuilder, x: str, out_dtype: str | None = None,
                 rounding: str = "double") -> str:
    """A random constant of about the input's own spread, on the grid s_in / 2^left_shift."""
    rng = b.rng
    xi = b.info(x)
    out_dtype = out_dtype or xi.dtype
    lo_in, hi_in = ACTIVATION_DTYPES[xi.dtype]
    span = max(xi.zero_point - lo_in, hi_in - xi.zero_point)
    ls = int(rng.integers(0, 21))
    while ls and (span << ls) * 2 > 2**31 - 1:
        ls -= 1
    room = 2**31 - 1 - (span << ls)
    addend = np.clip(np.round(rng.normal(0, 0.5, xi.shape) * span * 2.0**ls), -room, room)
    y = b.new_tensor(xi.shape, out_dtype)
    yi = b.info(y)
    m, sh = _spread_multiplier(rng, _dtype_spread(xi.dtype) * 2.0**ls * 1.2, out_dtype)
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    attrs = {"input_zero_point": xi.zero_point, "left_shift": ls, "multiplier": m, "shift": sh,
             "output_zero_point": yi.zero_point, "act_min": lo, "act_max": hi,
             "rounding": rounding}
    return b.op("add_const", [x], y, attrs, {"addend": addend.astype(np.int32)})


def slice_op(b: GraphBuilder, x: str, axis: int, start: int, step: int, count: int) -> str:
    shape = list(b.info(x).shape)
    shape[axis] = count
    return b.op("slice", [x], b.like(x, tuple(shape)), {"axis": axis, "start": start,
                                                        "step": step})


def _sequence_shape(rng: np.random.Generator, dims: int) -> tuple[int, ...]:
    """(T, C) tokens for dims 1, (H, T, C) heads for dims 2."""
    t, c = int(rng.integers(2, 12)), int(rng.integers(2, 24))
    return (t, c) if dims == 1 else (int(rng.integers(1, 4)), t, c)


def layer_norm_graph(rng: np.random.Generator, *, dims: int = 1, dtype: str = "int8",
                     **kw) -> IntGraph:
    b = GraphBuilder(rng, _sequence_shape(rng, dims), dtype)
    layer_norm_op(b, b.input, **kw)
    return b.graph()


def matmul_graph(rng: np.random.Generator, *, dims: int = 1, dtype: str = "int8",
                 transpose_b: bool | None = None, b_dtype: str | None = None,
                 **kw) -> IntGraph:
    """a = x (…, M, K) and b = a rescaled view of x (in ``b_dtype``, default x's): transposed
    by an op, or read transposed."""
    b = GraphBuilder(rng, _sequence_shape(rng, dims), dtype)
    tb = bool(rng.integers(0, 2)) if transpose_b is None else transpose_b
    other = b.rescale(b.input, out_dtype=b_dtype)
    if not tb:
        rank = len(b.info(other).shape)
        other = b.transpose(other, list(range(rank - 2)) + [rank - 1, rank - 2])
    matmul_op(b, b.input, other, transpose_b=tb, **kw)
    return b.graph()


def add_const_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                    **kw) -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    add_const_op(b, b.input, **kw)
    return b.graph()


def slice_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    shape = b.info(b.input).shape
    axis = int(rng.integers(0, len(shape)))
    start = int(rng.integers(0, shape[axis]))
    step = int(rng.integers(1, 4))
    count = int(rng.integers(1, (shape[axis] - 1 - start) // step + 2))
    slice_op(b, b.input, axis, start, step, count)
    return b.graph()


def _window_params(rng: np.random.Generator, dims: int, shape: tuple[int, ...]):
    """Random kernel / stride / padding / dilation whose dilated kernel fits the input."""
    hw = (1, shape[1]) if dims == 1 else shape[1:]
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(2))
    kernel = tuple(min(int(rng.integers(1, 4)), (s - 1) // d + 1)
                   for s, d in zip(hw, dilation, strict=True))
    stride = tuple(int(rng.integers(1, 3)) for _ in range(2))
    padding = tuple(int(rng.integers(0, 3)) for _ in range(4))
    return kernel, stride, padding, dilation


def _bits_out(b: GraphBuilder, y: str) -> str:
    """The graph output may not be packed: unpack a bit tensor."""
    return b.unpack_bits(y) if b.info(y).dtype == "bit" else y


def binary_conv_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                      cin: int | None = None, cout: int | None = None,
                      out_bits: bool | None = None, rounding: str = "double") -> IntGraph:
    """sign → binary_conv (random geometry; channels across word boundaries) → (unpack)."""
    cin = cin or int(rng.choice([1, 5, 31, 32, 33, 48, 70]))
    cout = cout or int(rng.choice([1, 7, 32, 33, 40]))
    b = GraphBuilder(rng, _spatial_shape(rng, dims, cin), dtype)
    kernel, stride, padding, dilation = _window_params(rng, dims, b.info(b.input).shape)
    out_bits = bool(rng.integers(0, 2)) if out_bits is None else out_bits
    y = b.binary_conv(b.sign(b.input), cout, kernel, stride, padding, dilation,
                      out_dtype="bit" if out_bits else dtype, rounding=rounding,
                      relu=bool(rng.integers(0, 2)))
    _bits_out(b, y)
    return b.graph()


def binary_fully_connected_graph(rng: np.random.Generator, *, dtype: str = "int8",
                                 cin: int | None = None, cout: int | None = None,
                                 out_bits: bool | None = None,
                                 rounding: str = "double") -> IntGraph:
    cin = cin or int(rng.choice([1, 9, 32, 33, 64, 100]))
    cout = cout or int(rng.choice([1, 5, 32, 33]))
    b = GraphBuilder(rng, (cin,), dtype)
    out_bits = bool(rng.integers(0, 2)) if out_bits is None else out_bits
    y = b.binary_fully_connected(b.sign(b.input), cout, "bit" if out_bits else dtype,
                                 rounding=rounding)
    _bits_out(b, y)
    return b.graph()


def sign_conv_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                    w_dtype: str = "int8", depthwise: bool = False) -> IntGraph:
    """sign_conv on a (C,) vector (dims 0), a (C, L) or a (C, H, W) input → unpack;
    ``depthwise``: groups = Cin, one or two outputs per group."""
    cin = int(rng.integers(1, 6))
    shape = (int(rng.integers(1, 40)),) if dims == 0 else _spatial_shape(rng, dims, cin)
    b = GraphBuilder(rng, shape, dtype)
    cout = int(rng.choice([1, 6, 32, 35]))
    if dims == 0:
        y = b.sign_conv(b.input, cout, w_dtype=w_dtype)
    else:
        kernel, stride, padding, dilation = _window_params(rng, dims, shape)
        groups = cin if depthwise else 1
        cout = cin * int(rng.integers(1, 3)) if depthwise else cout
        y = b.sign_conv(b.input, cout, kernel, stride, padding, dilation, w_dtype=w_dtype,
                        groups=groups)
    b.unpack_bits(y)
    return b.graph()


def sign_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    """sign (random threshold) → unpack_bits, channel counts across word boundaries."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.choice([1, 31, 32, 33, 65]))),
                     dtype)
    lo, hi = ACTIVATION_DTYPES[dtype]
    b.unpack_bits(b.sign(b.input, int(rng.integers(lo, hi + 2))))
    return b.graph()


def binary_max_pool_graph(rng: np.random.Generator, *, dims: int = 2,
                          dtype: str = "int8") -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.choice([3, 32, 40]))), dtype)
    k, s, p, d = _pool_params(rng, dims, b.info(b.input).shape, dilated=True)
    b.unpack_bits(b.binary_max_pool(b.sign(b.input), k, s, p, d))
    return b.graph()


def binary_chain(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8") -> IntGraph:
    """A small binary network using every binary op kind: sign_conv → binary_conv (bits) →
    binary_max_pool → binary_conv (8/16-bit out) → flatten → sign / sign_conv (vector) →
    binary_fully_connected (bits) → binary_fully_connected (8/16-bit out)."""
    c = int(rng.choice([3, 8, 33]))
    size = int(rng.integers(6, 11))
    b = GraphBuilder(rng, (c, size) if dims == 1 else (c, size, size), dtype)
    t = b.sign_conv(b.input, int(rng.choice([16, 32, 40])), (3, 3), (1, 1), (1, 1, 1, 1))
    t = b.binary_conv(t, int(rng.choice([32, 48])), (3, 3), (1, 1), (1, 1, 1, 1))
    t = b.binary_max_pool(t, (2, 2), (2, 2))
    t = b.binary_conv(t, int(rng.integers(4, 12)), (3, 3), (1, 1), (1, 1, 1, 1),
                      out_dtype=dtype, rounding=str(rng.choice(["double", "single"])))
    flat = b.flatten(t)
    v = b.sign(flat) if rng.integers(0, 2) else b.sign_conv(flat, int(rng.choice([20, 64])))
    v = b.binary_fully_connected(v, int(rng.choice([33, 64])))
    if rng.integers(0, 2):
        v = b.sign(b.unpack_bits(v))  # a round trip through int8
    b.binary_fully_connected(v, 5, out_dtype=dtype)
    return b.graph()

# -- reach-vision: upsampling -------------------------------------------------------------------


def upsample_graph(
    rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8", mode: str | None = None
) -> IntGraph:
    """One upsample (random mode unless given) by random integer factors."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 4))), dtype)
    mode = mode or str(rng.choice(["nearest", "bilinear"]))
    f = [1 if dims == 1 else int(rng.integers(1, 4)), int(rng.integers(2, 5))]
    shape = b.info(b.input).shape
    sp = [n * k for n, k in zip(shape[1:], f[2 - dims:], strict=True)]
    y = b.like(b.input, (shape[0], *sp))
    b.op("upsample", [b.input], y, {"mode": mode, "factor": f})
    return b.graph()


def upsample_step(b: GraphBuilder, x: str, mode: str, factor: int = 2) -> str:
    """Append ``upsample`` of ``x`` (2-D: factor on both axes; 1-D: on the length)."""
    shape = b.info(x).shape
    f = [1, factor] if len(shape) == 2 else [factor, factor]
    sp = [n * k for n, k in zip(shape[1:], f[3 - len(shape):], strict=True)]
    return b.op("upsample", [x], b.like(x, (shape[0], *sp)), {"mode": mode, "factor": f})


# ----------------------------------------------------------------------------------------------
# reach-elem: two-activation ops (add/sub/mul with broadcasting) and per-channel PReLU
# ----------------------------------------------------------------------------------------------


def broadcast_shape(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The shape of a broadcast operand: "same", "channel" (C, 1, ...), "sample" (1, 1, ...),
    "last" (1, ..., W) or "random" (each dim kept or 1)."""
    if kind == "same":
        return shape
    if kind == "channel":
        return (shape[0],) + (1,) * (len(shape) - 1)
    if kind == "sample":
        return (1,) * len(shape)
    if kind == "last":
        return (1,) * (len(shape) - 1) + (shape[-1],)
    return tuple(d if rng.integers(0, 2) else 1 for d in shape)


def add_broadcast(b: GraphBuilder, a: str, other: str, subtract: bool = False,
                  rounding: str = "double", relu: bool = False) -> str:
    """TFLM's add (or sub: negative b multiplier) of a and a broadcast operand."""
    ai, bi = b.info(a), b.info(other)
    out_shape = tuple(max(x, y) for x, y in zip(ai.shape, bi.shape, strict=True))
    y = b.new_tensor(out_shape, ai.dtype)
    yi = b.info(y)
    ls = LEFT_SHIFT[yi.dtype]
    twice_max = 2 * max(ai.scale, bi.scale)
    am, ash = quantize_multiplier(ai.scale / twice_max)
    bm, bsh = quantize_multiplier(bi.scale / twice_max)
    om, osh = quantize_multiplier(twice_max / (2**ls * yi.scale))
    amin, amax = b.act_range(yi.dtype, yi.zero_point, relu)
    attrs = {
        "a_zero_point": ai.zero_point, "b_zero_point": bi.zero_point, "left_shift": ls,
        "a_multiplier": am, "a_shift": ash, "b_multiplier": -bm if subtract else bm,
        "b_shift": bsh, "output_multiplier": om, "output_shift": osh,
        "output_zero_point": yi.zero_point, "act_min": amin, "act_max": amax,
        "rounding": rounding,
    }
    return b.op("add", [a, other], y, attrs)


def mul(b: GraphBuilder, a: str, other: str, out_dtype: str | None = None,
        rounding: str = "double", relu: bool = False) -> str:
    """TFLM's mul; the multiplier spreads the product's typical size over the output range."""
    ai, bi = b.info(a), b.info(other)
    out_shape = tuple(max(x, y) for x, y in zip(ai.shape, bi.shape, strict=True))
    out_dtype = out_dtype or ai.dtype
    y = b.new_tensor(out_shape, out_dtype)
    yi = b.info(y)
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    real = (hi - lo) / 4.0 / (_dtype_spread(ai.dtype) * _dtype_spread(bi.dtype))
    real *= b.rng.uniform(0.5, 2.0)
    if rounding == "pow2":
        m, sh = 2**30, int(np.round(np.log2(real))) + 1
    else:
        m, sh = quantize_multiplier(real)
    amin, amax = b.act_range(yi.dtype, yi.zero_point, relu)
    attrs = {"a_zero_point": ai.zero_point, "b_zero_point": bi.zero_point,
             "output_multiplier": m, "output_shift": sh, "output_zero_point": yi.zero_point,
             "act_min": amin, "act_max": amax, "rounding": rounding}
    return b.op("mul", [a, other], y, attrs)


def prelu(b: GraphBuilder, x: str, slopes: np.ndarray | None = None,
          out_dtype: str | None = None, rounding: str = "double") -> str:
    """Per-channel PReLU; random slopes in [-0.5, 1.5] (negative ones too) unless given."""
    xi = b.info(x)
    out_dtype = out_dtype or xi.dtype
    c = xi.shape[0]
    if slopes is None:
        slopes = b.rng.uniform(-0.5, 1.5, size=c)
    ratio = _dtype_spread(xi.dtype) / _dtype_spread(out_dtype) * b.rng.uniform(0.6, 1.2)
    y = b.new_tensor(xi.shape, out_dtype, scale=float(np.float32(xi.scale * ratio)))
    yi = b.info(y)
    ls = LEFT_SHIFT[xi.dtype]
    pm, psh = quantize_multiplier(xi.scale / (2**ls * yi.scale))
    mags, nsh = quantize_multipliers(np.abs(slopes) * xi.scale / (2**ls * yi.scale))
    neg = np.where(np.asarray(slopes) < 0, -mags.astype(np.int64), mags).astype(np.int32)
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    attrs = {"input_zero_point": xi.zero_point, "left_shift": ls,
             "output_zero_point": yi.zero_point,
             "pos_multiplier": pm, "pos_shift": psh, "act_min": lo, "act_max": hi,
             "rounding": rounding}
    consts = {"neg_multiplier": neg, "neg_shift": nsh.astype(np.int32)}
    return b.op("prelu", [x], y, attrs, consts)


def operand_from(b: GraphBuilder, x: str, shape: tuple[int, ...]) -> str:
    """A second operand of ``shape`` computed from x: x itself for x's shape, else
    reshape(fully_connected(flatten(x))) (a per-channel gate, a per-sample scalar, ...)."""
    xi = b.info(x)
    if tuple(shape) == xi.shape:
        return b.rescale(x)
    acc = {"acc_bits": 64} if xi.dtype == "int16" else {}
    y = b.fully_connected(b.flatten(x), math.prod(shape), **acc)
    return b.reshape(y, shape)


def mul_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
              broadcast: str | None = None, swap: bool | None = None, **kw) -> IntGraph:
    """mul of x and an operand of the same shape or broadcast: squeeze-excitation's
    per-channel gate, a per-sample scalar, a row, or a random pattern (either operand)."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 5))), dtype)
    shape = b.info(b.input).shape
    kind = broadcast or str(rng.choice(["same", "channel", "sample", "last", "random"]))
    other = operand_from(b, b.input, broadcast_shape(rng, shape, kind))
    swap = bool(rng.integers(0, 2)) if swap is None else swap
    mul(b, *((other, b.input) if swap else (b.input, other)), **kw)
    return b.graph()


def add_broadcast_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                        broadcast: str | None = None, subtract: bool | None = None,
                        swap: bool | None = None, **kw) -> IntGraph:
    """add or sub of x and an operand of the same shape or broadcast (either side)."""
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 5))), dtype)
    shape = b.info(b.input).shape
    kind = broadcast or str(rng.choice(["same", "channel", "sample", "last", "random"]))
    other = operand_from(b, b.input, broadcast_shape(rng, shape, kind))
    sub = bool(rng.integers(0, 2)) if subtract is None else subtract
    swap = bool(rng.integers(0, 2)) if swap is None else swap
    add_broadcast(b, *((other, b.input) if swap else (b.input, other)), subtract=sub, **kw)
    return b.graph()


ELEM_STEPS = ("mul", "sub", "prelu")


def elem_step(b: GraphBuilder, x: str, step: str) -> str:
    """A random-chain step: squeeze-excitation (x · lut(global pool(x)), the gate broadcast
    per channel), x − f(x) with f a clamp or a per-channel pool, or a per-channel PReLU."""
    if step == "mul":
        return mul(b, x, b.lut(b.global_avg_pool(x)))
    if step == "sub":
        other = b.clamp(x) if b.rng.integers(0, 2) else b.global_avg_pool(x)
        return add_broadcast(b, x, other, subtract=True)
    return prelu(b, x)


def prelu_graph(rng: np.random.Generator, *, dims: int = 2, dtype: str = "int8",
                **kw) -> IntGraph:
    b = GraphBuilder(rng, _spatial_shape(rng, dims, int(rng.integers(1, 6))), dtype)
    prelu(b, b.input, **kw)
    return b.graph()


# -- recurrent layers --------------------------------------------------------------------------


def recurrent_op(b: GraphBuilder, x: str, kind: str, hidden: int, *, layers: int = 1,
                 sequence: bool = False, rounding: str = "double", out_dtype: str | None = None,
                 initial_state: bool = True, gate_spread: float = 1.2,
                 cell_shift: int | None = None) -> str:
    """A random ``gru`` / ``lstm`` op over x (T, F): int8 weights, biases and per-row
    multipliers that spread each gate term with a std of about ``gate_spread`` (real, Q3.12),
    random initial states (zeros without ``initial_state``), cell formats 2^-10 .. 2^-14
    (or ``cell_shift``)."""
    from intquant.ops import _recurrent as R

    rng = b.rng
    xi = b.info(x)
    steps, features = xi.shape
    rows = R.GATES[kind] * hidden
    attrs: dict = {"hidden_size": hidden, "layers": layers, "sequence": int(sequence),
                   "input_zero_point": xi.zero_point, "rounding": rounding}
    consts: dict[str, np.ndarray] = {"sigmoid": R.gate_table("sigmoid"),
                                     "tanh": R.gate_table("tanh")}
    for layer in range(layers):
        f_in, in_dtype = (features, xi.dtype) if layer == 0 else (hidden, "int16")
        for side, cols, spread in (("x", f_in, _dtype_spread(in_dtype)), ("h", hidden, 12000.0)):
            w = np.clip(np.round(rng.normal(0, 40, size=(rows, cols))), -127, 127)
            acc_std = np.sqrt((w**2).sum(axis=1)) * spread + 1.0
            bias = np.round(rng.normal(0, 0.3, rows) * acc_std)
            real = 2.0**12 * gate_spread / acc_std * rng.uniform(0.7, 1.4, rows)
            mult, shift = quantize_multipliers(real)
            key = "w_ih" if side == "x" else "w_hh"
            consts[f"{key}{layer}"] = w.astype(np.int8)
            consts[f"bias_{side}{layer}"] = bias.astype(np.int32)
            consts[f"mult_{side}{layer}"] = mult
            consts[f"shift_{side}{layer}"] = shift
        h0 = rng.integers(-20000, 20001, hidden) if initial_state else np.zeros(hidden)
        consts[f"h0{layer}"] = h0.astype(np.int16)
        if kind == "lstm":
            cs = int(rng.integers(10, 15)) if cell_shift is None else cell_shift
            attrs.setdefault("cell_shifts", []).append(cs)
            c0 = rng.integers(-(1 << cs), (1 << cs) + 1, hidden) if initial_state else \
                np.zeros(hidden)
            consts[f"c0{layer}"] = c0.astype(np.int16)
    out_dtype = out_dtype or xi.dtype
    lo, hi = ACTIVATION_DTYPES[out_dtype]
    m, sh = quantize_multiplier((hi - lo) / 65534.0 * rng.uniform(1.0, 1.6))
    zp = random_zero_point(rng, out_dtype)
    attrs.update(output_zero_point=zp, act_min=lo, act_max=hi, out_multiplier=m, out_shift=sh)
    out = b.new_tensor((steps, hidden) if sequence else (hidden,), out_dtype, zero_point=zp)
    return b.op(kind, [x], out, attrs, consts)


def _recurrent_graph(kind: str):
    def build(rng: np.random.Generator, *, dtype: str = "int8", steps: int | None = None,
              features: int | None = None, hidden: int | None = None, layers: int | None = None,
              sequence: bool | None = None, rounding: str | None = None) -> IntGraph:
        """A random one-op ``{kind}`` graph (sizes, layers, output mode drawn unless given)."""
        steps = steps or int(rng.integers(1, 9))
        features = features or int(rng.integers(1, 12))
        b = GraphBuilder(rng, (steps, features), dtype)
        recurrent_op(b, b.input, kind, hidden or int(rng.integers(1, 14)),
                     layers=layers or int(rng.integers(1, 3)),
                     sequence=bool(rng.integers(0, 2)) if sequence is None else sequence,
                     rounding=rounding or str(rng.choice(["double", "single"])))
        return b.graph()

    build.__doc__ = build.__doc__.format(kind=kind)
    return build


gru_graph = _recurrent_graph("gru")
lstm_graph = _recurrent_graph("lstm")


ONE_OP_BUILDERS: dict[str, Callable[..., IntGraph]] = {
    "conv": conv_graph,
    "conv_transpose": conv_transpose_graph,
    "fully_connected": fully_connected_graph,
    "add": add_graph,
    "rescale": rescale_graph,
    "max_pool": max_pool_graph,
    "avg_pool": avg_pool_graph,
    "concat": concat_graph,
    "pad": pad_graph,
    "reshape": reshape_graph,
    "transpose": transpose_graph,
    "clamp": clamp_graph,
    "lut": lut_graph,
    "softmax": softmax_graph,
    "lrn": lrn_graph,
    "binary_conv": binary_conv_graph,
    "binary_fully_connected": binary_fully_connected_graph,
    "sign_conv": sign_conv_graph,
    "sign": sign_graph,
    "unpack_bits": sign_graph,
    "binary_max_pool": binary_max_pool_graph,
    # -- reach-elem --
    "mul": mul_graph,
    "prelu": prelu_graph,
    # -- reach-vision --
    "upsample": upsample_graph,
    # -- reach-transformer --
    "layer_norm": layer_norm_graph,
    "matmul": matmul_graph,
    "add_const": add_const_graph,
    "slice": slice_graph,
    # -- recurrent layers --
    "gru": gru_graph,
    "lstm": lstm_graph,
}


# ----------------------------------------------------------------------------------------------
# Multi-op chains
# ----------------------------------------------------------------------------------------------

_CHAIN_STEPS = (
    "conv",
    "depthwise",
    "residual",
    "max_pool",
    "avg_pool",
    "concat",
    "clamp",
    "lut",
    "rescale",
    "pad",
    "transpose",
    "lrn",
    # -- reach-elem --
    "mul",
    "sub",
    "prelu",
    "upsample",  # reach-vision
    # -- reach-transformer --
    "layer_norm",
    "add_const",
    "matmul",
    "slice",
)


def random_chain(
    rng: np.random.Generator,
    n_ops: int = 8,
    *,
    dims: int = 2,
    dtype: str = "int8",
    channels: int = 4,
    size: int = 12,
    classes: int = 5,
    softmax: bool = True,
) -> IntGraph:
    """A random CNN-like graph: ``n_ops`` random feature steps, then flatten → linear → softmax.

    Steps include residual adds and concats (non-chain topologies), so every op kind appears
    across a few seeds. Spatial sizes never shrink below 2.
    """
    shape = (channels, size) if dims == 1 else (channels, size, size)
    b = GraphBuilder(rng, shape, dtype)
    cur = b.input
    kw16 = {"acc_bits": 64} if dtype == "int16" else {}
    for _ in range(n_ops):
        sh = b.info(cur).shape
        small = min(sh[1:]) < 4
        step = str(rng.choice(_CHAIN_STEPS))
        if step == "conv":
            s = 1 if small else int(rng.integers(1, 3))
            cout = int(rng.integers(2, 7))
            cur = b.conv(
                cur, cout, (3, 3), (s, s), (1, 1, 1, 1), relu=bool(rng.integers(0, 2)), **kw16
            )
        elif step == "depthwise":
            cur = b.conv(cur, sh[0], (3, 3), (1, 1), (1, 1, 1, 1), groups=sh[0], **kw16)
        elif step == "residual":
            branch = b.conv(cur, sh[0], (3, 3), (1, 1), (1, 1, 1, 1), **kw16)
            cur = b.add(cur, branch, relu=bool(rng.integers(0, 2)))
        elif step == "max_pool" and not small:
            cur = b.max_pool(cur, (2, 2), (2, 2))
        elif step == "avg_pool" and not small:
            cur = b.avg_pool(cur, (3, 3), (2, 2), (1, 1, 1, 1), bool(rng.integers(0, 2)))
        elif step == "concat":
            cur = b.concat([cur, b.clamp(cur)], axis=0)
        elif step == "clamp":
            cur = b.clamp(cur)
        elif step == "lut":
            cur = b.lut(cur)
        elif step == "rescale":
            cur = b.rescale(cur)
        elif step == "pad":
            nd = len(sh)
            cur = b.pad(cur, [0, 0] + [1] * (2 * (nd - 1)))
        elif step == "transpose" and len(sh) == 3:
            cur = b.transpose(b.transpose(cur, [0, 2, 1]), [0, 2, 1])
        elif step == "lrn":
            cur = b.lrn(cur)
        elif step in ELEM_STEPS:
            cur = elem_step(b, cur, step)
        elif step == "upsample" and max(sh[1:]) <= 8:
            mode = str(rng.choice(["nearest", "bilinear", "transposed"]))
            cur = b.conv_transpose(cur, sh[0], kernel=(2, 2), stride=(2, 2)) \
                if mode == "transposed" else upsample_step(b, cur, mode)
        elif step == "layer_norm":
            cur = layer_norm_op(b, cur)
        elif step == "add_const":
            cur = add_const_op(b, cur)
        elif step == "matmul":  # (C, H, W) x (C, H, W)ᵀ -> (C, H, H); 1-D: (C, L) -> (C, C)
            cur = matmul_op(b, cur, b.rescale(cur), transpose_b=True)
        elif step == "slice" and sh[-1] >= 3:  # every other position: sizes stay >= 2
            cur = slice_op(b, cur, len(sh) - 1, 0, 2, (sh[-1] + 1) // 2)
        elif step == "slice" and sh[0] >= 2:  # drop the first channel
            cur = slice_op(b, cur, 0, 1, 1, sh[0] - 1)
    cur = b.flatten(cur)
    cur = b.fully_connected(cur, classes, **kw16)
    if softmax:
        cur = b.softmax(cur)
    return b.graph(cur)


# ----------------------------------------------------------------------------------------------
# Mutations of a valid graph, for validation tests: each returns ``mutate(graph)``
# ----------------------------------------------------------------------------------------------

Mutation = Callable[[IntGraph], None]


def set_field(op_index: int, field: str, key: str, value) -> Mutation:
    """``graph.ops[op_index].<field>[key] = value`` (field: "attrs" or "consts")."""

    def mutate(g: IntGraph) -> None:
        getattr(g.ops[op_index], field)[key] = value

    return mutate


def cast_const(op_index: int, key: str, dtype) -> Mutation:
    def mutate(g: IntGraph) -> None:
        g.ops[op_index].consts[key] = g.ops[op_index].consts[key].astype(dtype)

    return mutate


def edit_const(op_index: int, key: str, fn: Callable[[np.ndarray], np.ndarray]) -> Mutation:
    """Replace a const by ``fn(copy of it)``."""

    def mutate(g: IntGraph) -> None:
        g.ops[op_index].consts[key] = fn(g.ops[op_index].consts[key].copy())

    return mutate


def set_item(a: np.ndarray, i: int, v: int) -> np.ndarray:
    """``a[i] = v``, returning ``a`` (for edit_const)."""
    a[i] = v
    return a


def del_attr(op_index: int, key: str) -> Mutation:
    def mutate(g: IntGraph) -> None:
        del g.ops[op_index].attrs[key]

    return mutate


def set_inputs(op_index: int, inputs: list[str]) -> Mutation:
    def mutate(g: IntGraph) -> None:
        g.ops[op_index].inputs = inputs

    return mutate


def set_tensor(tensor_index: int, **fields) -> Mutation:
    """Set fields (shape, dtype, scale, zero_point) of the tensor at that position."""

    def mutate(g: IntGraph) -> None:
        t = list(g.tensors.values())[tensor_index]
        for k, v in fields.items():
            setattr(t, k, v)

    return mutate


def every_op_graph(rng: np.random.Generator) -> IntGraph:
    """One small graph with every op kind and every kernel path that reads constants: int8
    conv (4 channels a pass plus a tail of 2), depthwise, uint8-input conv, 16-bit activations
    with int16 weights and int64 biases, int32-bias generic conv, both fully connected paths,
    int8 / uint8 / int16 / int32 lookup tables, the LRN and both softmax exp tables, the int8
    and the generic add, per-channel PReLU, a broadcast mul and sub, 1- and 2-byte transposes,
    double / single / pow2 requantization.
    and the generic add, 1- and 2-byte transposes, double / single / pow2 requantization, a
    two-layer GRU and an LSTM (weights, gate tables, initial states), the three
    conv_transpose kernels (8-bit, 16x8, int16 weights).

    On AVR every constant array lives in program memory, so a kernel that reads one without
    IQ_LOAD_* gets RAM bytes instead: bit-exactness of this graph on AVR is the check. Scales
    are chosen so no layer saturates to a constant (each output depends on every table).
    """
    b = GraphBuilder(rng, (4, 6, 6), "int8")
    c = b.conv(b.input, 6, (3, 3), padding=(1, 1, 1, 1), relu=True)
    d = b.conv(c, 6, (3, 3), padding=(1, 1, 1, 1), groups=6)
    x = b.add(c, d, relu=True)
    # conv_transpose, 8-bit path. Its weights (and the 16x8 ones below) come from streams of
    # their own, so the graph's other constants stay those its scales were chosen for; the
    # seeds are ones whose six test inputs still give six different outputs.
    main_rng, b.rng = b.rng, np.random.default_rng(1)
    x = b.conv_transpose(x, 6, (3, 3), (2, 2), (3, 3, 4, 4), groups=2)  # cropped to 6x6
    b.rng = main_rng
    x = prelu(b, x)
    x = mul(b, x, b.lut(b.global_avg_pool(x)))  # squeeze-excitation: broadcast per channel
    x = add_broadcast(b, x, b.global_avg_pool(x), subtract=True)
    m = b.max_pool(x)
    a = b.avg_pool(m, (3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=True)
    x = b.concat([m, a])
    x = b.pad(x, [0, 0, 1, 1, 1, 1])
    x = b.transpose(x, [0, 2, 1])
    x = b.clamp(x)
    x = b.lrn(x, size=3)
    u = b.lut(x, out_dtype="uint8")
    x = b.conv(u, 5, (1, 1), out_dtype="int8", rounding="single")
    x = b.lut(x, out_dtype="int16")
    a16 = b.conv(x, 4, (3, 3), padding=(1, 1, 1, 1), w_dtype="int16", acc_bits=64)
    # conv_transpose 16x8 (stride 2 along W, cropped back) and with int16 weights
    w16 = b.info(a16).shape[2]
    main_rng, b.rng = b.rng, np.random.default_rng(162)
    a16 = b.conv_transpose(a16, 4, (2, 2), (1, 2), (1, w16 // 2, 0, w16 - w16 // 2),
                           acc_bits=64)
    a16 = b.conv_transpose(a16, 4, (1, 1), (1, 1), w_dtype="int16", acc_bits=64)
    b.rng = main_rng
    x = b.add(a16, b.conv(a16, 4, (1, 1)))
    x = b.lut(upsample_step(b, b.transpose(x, [0, 2, 1]), "bilinear"))  # upsample: reach-vision
    # small softmax input scales: the exp tables span the inputs (no one-hot outputs)
    b.tensors[x] = dataclasses.replace(b.tensors[x], scale=2.0**-11)
    x = b.fully_connected(b.flatten(b.softmax(x)), 16, acc_bits=64)
    x = b.rescale(x, out_dtype="int8", rounding="single")
    x = b.fully_connected(x, 13, rounding="pow2")
    # reach-transformer: the constant tables of layer_norm (int32 gamma, int64 beta) and
    # add_const (int32 addend); matmul and slice read activations only
    t = layer_norm_op(b, b.reshape(x, (1, 13)))
    t = add_const_op(b, t)
    t = matmul_op(b, b.reshape(t, (13, 1)), t)
    x = b.lut(b.flatten(slice_op(b, t, 1, 1, 5, 2)))
    b.tensors[x] = dataclasses.replace(b.tensors[x], scale=2.0**-3)
    # recurrent layers over 16 values as 4 frames of 4: gate tables, h0 / c0 in flash
    x = b.fully_connected(x, 16)
    x = recurrent_op(b, b.reshape(x, (4, 4)), "gru", 5, layers=2, sequence=True)
    x = recurrent_op(b, x, "lstm", 6, rounding="single")
    x = b.lut(b.fully_connected(x, 13, rounding="pow2"))
    b.tensors[x] = dataclasses.replace(b.tensors[x], scale=2.0**-5)
    return b.graph(b.softmax(x))


def packed_chain(rng: np.random.Generator, w_dtype: str, dtype: str = "int8",
                 acc_bits: int | None = None) -> IntGraph:
    """Every layer type with packed weights of one format (``PACKED_LEVELS`` names), shaped so
    that each kernel path of iq_conv_packed_impl.h runs: conv 1-D (K = 40); conv 2-D 3x3 with
    padding (K = 144: several table chunks; 12 channels: an int4 block of 8 plus 4 rows);
    grouped 1x1 (two groups of 8 channels); depthwise 3x3 stride 2 (one channel per group);
    a 2-channel conv (too few channels for tables); 13 channels of K = 2 (an odd number of
    one-byte rows: the table paths read rows, not blocks of four); fully connected (K = 52)."""
    b = GraphBuilder(rng, (8, 16), dtype)
    kw = {"w_dtype": w_dtype, "acc_bits": acc_bits}
    t = b.conv(b.input, 16, (1, 5), padding=(0, 2, 0, 2), relu=True, **kw)
    t = b.reshape(t, (16, 4, 4))
    t = b.conv(t, 12, (3, 3), padding=(1, 1, 1, 1), **kw)
    t = b.conv(t, 16, (1, 1), groups=2, **kw)
    t = b.conv(t, 16, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1), groups=16, **kw)
    t = b.conv(t, 2, (1, 1), **kw)
    t = b.conv(t, 13, (1, 1), **kw)
    t = b.flatten(t)
    b.fully_connected(t, 10, **kw)
    return b.graph()


def packed_generic_chain(rng: np.random.Generator) -> IntGraph:
    """16-bit activations through packed layers of every format, int32 and int64 accumulators:
    the portable (generic) path of iq_conv_packed_impl.h."""
    b = GraphBuilder(rng, (6, 12), "int16")
    t = b.conv(b.input, 8, (1, 3), padding=(0, 1, 0, 1), w_dtype="int4")
    t = b.conv(t, 8, (1, 3), w_dtype="ternary", acc_bits=64)
    t = b.conv(t, 6, (1, 1), w_dtype="pow2")
    t = b.flatten(t)
    b.fully_connected(t, 5, w_dtype="binary", acc_bits=64)
    return b.graph()
