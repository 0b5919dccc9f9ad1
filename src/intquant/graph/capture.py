"""Capture a PyTorch model into the float Graph with ``torch.export``.

Why torch.export and not ``torch.fx.symbolic_trace``: users hand us ``.pt2`` files (already
exported programs), and exporting an ``nn.Module`` gives the same ATen-level graph, so one
translator serves both. Every ATen node keeps the module path it came from
(``nn_module_stack``), which becomes the layer name used by per-layer overrides and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .execute import GraphModule, infer_shapes
from .ir import Graph, Node, unique_name

SUPPORTED_MODULES = (
    "Conv1d, Conv2d (stride, padding incl. 'same', dilation, groups), Linear, BatchNorm1d/2d, "
    "ReLU, ReLU6, LeakyReLU, Hardtanh, Sigmoid, Tanh, Softmax, MaxPool1d/2d, AvgPool1d/2d, "
    "AdaptiveAvgPool1d/2d(1), Flatten, Unflatten, Identity, Dropout, ConstantPad/ZeroPad; "
    "functions: +, torch.cat, torch.clamp, torch.sign (BNN sign, 0 -> +1), F.pad (constant), "
    "* by a constant, view/reshape/flatten/squeeze/unsqueeze/permute"
)


class UnsupportedOpError(ValueError):
    """A module or function the integer pipeline cannot represent."""


class _DependsOnUnsupported(Exception):
    """A node whose input comes from an unsupported one: not reported a second time."""


# What to use instead, for ATen ops people meet (prefix match on the target name).
HINTS: dict[str, str] = {
    "aten.conv3d": "only 1-D and 2-D convolutions: fold the extra axis into channels or batch",
    "aten.conv_transpose3d": "only 1-D and 2-D transposed convolutions",
    "aten.upsample_bicubic2d": "use nn.Upsample(mode='nearest') or mode='bilinear'",
    "aten.embedding": "embeddings of token ids: feed the embedded vectors as the model input",
    "aten.lstm": "nn.LSTM: see docs/ops.md for the recurrent layers intquant supports",
    "aten.gru": "nn.GRU: see docs/ops.md for the recurrent layers intquant supports",
    "aten.rnn_tanh": "nn.RNN: use nn.GRU or nn.LSTM",
    "aten.max_pool3d": "only 1-D and 2-D pooling",
    "aten.avg_pool3d": "only 1-D and 2-D pooling",
    "aten.div": "division by a tensor: multiply by a constant instead",
    "aten.exp": "exp of an activation: use a supported activation (sigmoid, tanh, softmax)",
    "aten.log": "log of an activation is not supported",
    "aten.sqrt": "sqrt of an activation: use nn.LayerNorm for normalisation",
}
_POISONED = "\0unsupported"  # alias of an fx node whose op could not be translated


def _hint(target: str) -> str:
    for prefix, hint in HINTS.items():
        if target.startswith(prefix):
            return hint
    return "see docs/ops.md for the supported operations"


def _layer_name(fx_node: torch.fx.Node) -> str:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return str(path)
    return fx_node.name


def _module_type(fx_node: torch.fx.Node) -> str:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if stack:
        t = list(stack.values())[-1][1]
        return getattr(t, "__name__", str(t)).split(".")[-1]
    return "function"


def _pair(v: Any, n: int = 2) -> list[int]:
    if isinstance(v, int):
        return [v] * n
    v = [int(a) for a in v]
    return v * n if len(v) == 1 else v


class _Translator:
    """Walks the exported FX graph and emits float Graph nodes."""

    def __init__(self, ep: torch.export.ExportedProgram):
        self.ep = ep
        self.consts: dict[str, np.ndarray] = {}
        sig = ep.graph_signature
        state = ep.state_dict
        for ph, target in {**sig.inputs_to_parameters, **sig.inputs_to_buffers}.items():
            self.consts[ph] = state[target].detach().cpu().numpy().astype(np.float32)
        for ph, target in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
            self.consts[ph] = ep.constants[target].detach().cpu().numpy().astype(np.float32)
        self.user_inputs = list(sig.user_inputs)
        self.nodes: list[Node] = []
        self.alias: dict[str, str] = {}  # fx name -> graph node name
        self.used_names: set[str] = set()

    # -- helpers --------------------------------------------------------------------------
    def value(self, arg: Any) -> str:
        if not isinstance(arg, torch.fx.Node):
            raise UnsupportedOpError(f"expected a tensor input, got constant {arg!r}")
        if arg.name not in self.alias:
            raise UnsupportedOpError(f"tensor {arg.name!r} is a constant, not an activation")
        if self.alias[arg.name] == _POISONED:
            raise _DependsOnUnsupported
        return self.alias[arg.name]

    def const(self, arg: Any) -> np.ndarray | None:
        if arg is None:
            return None
        if isinstance(arg, torch.fx.Node) and arg.name in self.consts:
            return self.consts[arg.name]
        raise UnsupportedOpError(f"expected a constant parameter, got {arg!r}")

    def is_const(self, arg: Any) -> bool:
        return isinstance(arg, torch.fx.Node) and arg.name in self.consts

    def unique(self, name: str) -> str:
        return unique_name(name, self.used_names)

    def emit(self, fx_node, op, inputs, attrs=None, params=None) -> None:
        name = self.unique(_layer_name(fx_node))
        shape = tuple(fx_node.meta["val"].shape[1:]) if "val" in fx_node.meta else ()
        self.nodes.append(
            Node(name, op, inputs, attrs or {}, params or {}, shape,
                 source=f"{_layer_name(fx_node)} ({_module_type(fx_node)}, {fx_node.target})")
        )
        self.alias[fx_node.name] = name

    def passthrough(self, fx_node, arg) -> None:
        self.alias[fx_node.name] = self.value(arg)

    def fold_constant(self, n: torch.fx.Node) -> bool:
        """Evaluate an op whose tensor inputs are all constants (e.g. ``p.weight.view(...)``)."""
        tensors: list[torch.fx.Node] = []
        torch.fx.node.map_arg((n.args, n.kwargs), tensors.append)
        if not tensors or not all(a.name in self.consts for a in tensors):
            return False
        args, kwargs = torch.fx.node.map_arg(
            (n.args, n.kwargs), lambda a: torch.as_tensor(self.consts[a.name])
        )
        value = n.target(*args, **kwargs)
        if not isinstance(value, torch.Tensor):
            return False
        self.consts[n.name] = value.detach().numpy().astype(np.float32)
        return True

    # -- translation ----------------------------------------------------------------------
    def values_of(self, n: torch.fx.Node) -> list[str]:
        """Graph names of the node's tensor inputs (raises for inputs of unsupported nodes)."""
        args: list[torch.fx.Node] = []
        torch.fx.node.map_arg((n.args, n.kwargs), args.append)
        return [self.value(a) for a in args if a.name in self.alias]

    def run(self) -> Graph:
        """Translate every node; unsupported ones are all collected and reported in one error."""
        problems: list[str] = []
        for n in self.ep.graph.nodes:
            if n.op == "placeholder":
                if n.name in self.user_inputs:
                    if any(x.op == "input" for x in self.nodes):
                        raise UnsupportedOpError("models with several inputs are not supported")
                    self.emit(n, "input", [])
                    self.nodes[-1].name = "input"
                    self.used_names.add("input")
                    self.alias[n.name] = "input"
                continue
            if n.op == "output":
                outs = n.args[0]
                if len(outs) != 1:
                    raise UnsupportedOpError("models with more than one output are not supported")
                try:
                    output = self.value(outs[0])
                except _DependsOnUnsupported:
                    output = None  # reported below through the unsupported node itself
                continue
            if n.op != "call_function":
                raise UnsupportedOpError(f"node {n.name}: fx op {n.op} not supported")
            target = str(n.target)
            if self.fold_constant(n):
                continue
            handler = HANDLERS.get(target)
            try:
                if handler is None:
                    self.values_of(n)  # an input from an unsupported node: report that one only
                    raise UnsupportedOpError(f"{target} is not supported ({_hint(target)})")
                handler(self, n)
            except _DependsOnUnsupported:
                self.alias[n.name] = _POISONED
            except UnsupportedOpError as e:
                problems.append(f"layer {_layer_name(n)!r} ({_module_type(n)}, {target}): {e}")
                self.alias[n.name] = _POISONED
        if problems:
            raise UnsupportedOpError(
                f"{len(problems)} unsupported operation(s): " + "; ".join(problems)
                + f". Supported: {SUPPORTED_MODULES}"
            )
        g = Graph(self.nodes, output)
        g.validate()
        return g


# -- handlers, one per ATen op ---------------------------------------------------------------

def _conv(t: _Translator, n, x, w, b, stride, padding, dilation, groups) -> None:
    weight = t.const(w)
    dims = weight.ndim - 2
    if dims not in (1, 2):
        raise UnsupportedOpError(f"only 1-D and 2-D convolutions, got {dims}-D")
    k = list(weight.shape[2:])
    dil = _pair(dilation, dims)
    st = _pair(stride, dims)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [0] * (2 * dims)
        elif padding == "same":
            pads = []
            for kk, d in zip(k, dil, strict=True):
                total = d * (kk - 1)
                pads += [total // 2, total - total // 2]
        else:
            raise UnsupportedOpError(f"padding mode {padding!r}")
    else:
        p = _pair(padding, dims)
        pads = [v for pp in p for v in (pp, pp)]
    if dims == 1:
        stride2, dil2, pad4 = [1, st[0]], [1, dil[0]], [0, pads[0], 0, pads[1]]
    else:
        stride2, dil2, pad4 = st, dil, [pads[0], pads[2], pads[1], pads[3]]
    params = {"weight": weight}
    if b is not None:
        params["bias"] = t.const(b)
    attrs = {"dims": dims, "stride": stride2, "padding": pad4, "dilation": dil2,
             "groups": int(groups)}
    t.emit(n, "conv", [t.value(x)], attrs, params)


def h_conv(t, n):
    """aten.conv1d/conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1)."""
    x, w, b, stride, padding, dilation, groups = (list(n.args) + [None] * 7)[:7]
    _conv(t, n, x, w, b, 1 if stride is None else stride, 0 if padding is None else padding,
          1 if dilation is None else dilation, 1 if groups is None else groups)


def h_convolution(t, n):
    x, w, b, stride, padding, dilation, transposed, _out_pad, groups = n.args
    if transposed:
        raise UnsupportedOpError("transposed convolution")
    _conv(t, n, x, w, b, stride, padding, dilation, groups)


def h_linear(t, n):
    x, w = n.args[0], n.args[1]
    b = n.args[2] if len(n.args) > 2 else None
    params = {"weight": t.const(w)}
    if b is not None:
        params["bias"] = t.const(b)
    t.emit(n, "linear", [t.value(x)], {}, params)


def h_batch_norm(t, n):
    # aten.batch_norm(x, weight, bias, mean, var, training, momentum, eps, cudnn)
    x, w, b, mean, var = n.args[:5]
    eps = n.args[7] if len(n.args) > 7 else 1e-5
    _emit_bn(t, n, x, w, b, mean, var, eps)


def h_native_bn(t, n):
    # aten._native_batch_norm_legit_no_training(x, weight, bias, mean, var, momentum, eps)
    x, w, b, mean, var, _mom, eps = n.args
    _emit_bn(t, n, x, w, b, mean, var, eps)


def _emit_bn(t, n, x, w, b, mean, var, eps):
    m = t.const(mean)
    params = {
        "mean": m,
        "var": t.const(var),
        "weight": t.const(w) if w is not None else np.ones_like(m),
        "bias": t.const(b) if b is not None else np.zeros_like(m),
    }
    t.emit(n, "batchnorm", [t.value(x)], {"eps": float(eps)}, params)


def h_getitem(t, n):
    src, idx = n.args
    if idx != 0:
        raise UnsupportedOpError("only the first output of a multi-output op is supported")
    t.passthrough(n, src)


def h_identity(t, n):
    t.passthrough(n, n.args[0])


def h_relu(t, n):
    t.emit(n, "relu", [t.value(n.args[0])])


def h_hardtanh(t, n):
    lo = n.args[1] if len(n.args) > 1 else -1.0
    hi = n.args[2] if len(n.args) > 2 else 1.0
    t.emit(n, "clamp", [t.value(n.args[0])], {"min": float(lo), "max": float(hi)})


def h_clamp(t, n):
    lo = n.args[1] if len(n.args) > 1 else n.kwargs.get("min")
    hi = n.args[2] if len(n.args) > 2 else n.kwargs.get("max")
    attrs = {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)}
    t.emit(n, "clamp", [t.value(n.args[0])], attrs)


def h_leaky_relu(t, n):
    slope = n.args[1] if len(n.args) > 1 else 0.01
    t.emit(n, "leaky_relu", [t.value(n.args[0])], {"negative_slope": float(slope)})


def _unary(op: str) -> Callable:
    def h(t, n):
        t.emit(n, op, [t.value(n.args[0])])
    return h


def h_softmax(t, n):
    x, dim = n.args[0], n.args[1]
    rank = len(n.args[0].meta["val"].shape)
    if dim % rank != rank - 1:
        raise UnsupportedOpError(f"softmax over dim {dim}; only the last dim is supported")
    t.emit(n, "softmax", [t.value(x)])


def _pool_attrs(n, dims, kernel, stride, padding, dilation):
    k = _pair(kernel, dims)
    s = _pair(stride, dims) if stride else k
    p = _pair(padding, dims)
    d = _pair(dilation, dims)
    if dims == 1:
        return {"dims": 1, "kernel": [1, k[0]], "stride": [1, s[0]],
                "padding": [0, p[0], 0, p[0]], "dilation": [1, d[0]]}
    return {"dims": 2, "kernel": k, "stride": s, "padding": [p[0], p[1], p[0], p[1]],
            "dilation": d}


def _max_pool(dims):
    def h(t, n):
        a = list(n.args) + [None] * 6
        if a[5]:
            raise UnsupportedOpError("ceil_mode=True")
        attrs = _pool_attrs(n, dims, a[1], a[2], a[3] or 0, a[4] or 1)
        t.emit(n, "max_pool", [t.value(a[0])], attrs)
    return h


def _avg_pool(dims):
    def h(t, n):
        a = list(n.args) + [None] * 7
        ceil_mode = a[4] or False
        cip = True if a[5] is None else bool(a[5])
        if ceil_mode:
            raise UnsupportedOpError("ceil_mode=True")
        if dims == 2 and a[6] is not None:
            raise UnsupportedOpError("divisor_override")
        attrs = _pool_attrs(n, dims, a[1], a[2], a[3] or 0, 1)
        attrs["count_include_pad"] = int(cip)
        del attrs["dilation"]
        t.emit(n, "avg_pool", [t.value(a[0])], attrs)
    return h


def h_adaptive_avg(t, n):
    out = n.args[1]
    out = [out] if isinstance(out, int) else list(out)
    if any(o != 1 for o in out):
        raise UnsupportedOpError(f"adaptive average pool to {out}; only output size 1")
    t.emit(n, "global_avg_pool", [t.value(n.args[0])])


def h_mean(t, n):
    x, dims = n.args[0], n.args[1]
    keep = n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)
    rank = len(x.meta["val"].shape)
    if sorted(d % rank for d in dims) != list(range(2, rank)):
        raise UnsupportedOpError(f"mean over dims {dims}; only over all spatial dims")
    if keep:
        t.emit(n, "global_avg_pool", [t.value(x)])
    else:
        t.emit(n, "global_avg_pool", [t.value(x)])
        gap = t.nodes[-1]
        gap.name = t.unique(gap.name + ".pool")
        t.alias[n.name] = gap.name
        shape = tuple(n.meta["val"].shape[1:])
        t.nodes.append(Node(t.unique(_layer_name(n)), "reshape", [gap.name],
                            {"shape": list(shape)}, {}, shape, source=gap.source))
        t.alias[n.name] = t.nodes[-1].name


def h_reshape(t, n):
    src = n.args[0]
    shape = tuple(n.meta["val"].shape[1:])
    if tuple(src.meta["val"].shape[1:]) == shape:
        t.passthrough(n, src)
        return
    if n.meta["val"].shape[0] != src.meta["val"].shape[0]:
        raise UnsupportedOpError("reshape that mixes the batch dimension")
    t.emit(n, "reshape", [t.value(src)], {"shape": list(shape)})


def h_permute(t, n):
    perm = [int(p) for p in n.args[1]]
    if perm[0] != 0:
        raise UnsupportedOpError("permute that moves the batch dimension")
    t.emit(n, "transpose", [t.value(n.args[0])], {"perm": [p - 1 for p in perm[1:]]})


def _add_constant(t, n, x, c, sign: float) -> None:
    """x ± c for a constant scalar / per-channel c: a per-channel affine op (value 1, bias ±c)."""
    value = t.const(c) if isinstance(c, torch.fx.Node) else np.float32(c)
    value = np.asarray(value, dtype=np.float32)
    channels = x.meta["val"].shape[1]
    if value.size not in (1, channels) or (value.size > 1 and value.squeeze().ndim != 1):
        raise UnsupportedOpError("adding a constant needs a scalar or one value per channel")
    t.emit(n, "mul_const", [t.value(x)], {},
           {"value": np.ones(1, np.float32), "bias": sign * value.reshape(-1)})


def h_add(t, n, sign: float = 1.0):
    a, b = n.args[0], n.args[1]
    alpha = n.kwargs.get("alpha", 1)
    if alpha != 1:
        raise UnsupportedOpError("add/sub with alpha != 1")
    a_act = isinstance(a, torch.fx.Node) and not t.is_const(a)
    b_act = isinstance(b, torch.fx.Node) and not t.is_const(b)
    if a_act and not b_act:
        return _add_constant(t, n, a, b, sign)
    if b_act and not a_act and sign > 0:
        return _add_constant(t, n, b, a, sign)
    if a_act and b_act and sign < 0:
        raise UnsupportedOpError("a - b of two activations (supported: a + b of two activations "
                                 "of the same shape, a ± constant)")
    if not (a_act and b_act):
        raise UnsupportedOpError("add is supported between two activations of the same shape, "
                                 "or of an activation and a constant")
    if tuple(a.meta["val"].shape) != tuple(b.meta["val"].shape):
        raise UnsupportedOpError("add with broadcasting")
    t.emit(n, "add", [t.value(a), t.value(b)])


def h_mul(t, n):
    a, b = n.args[0], n.args[1]
    if isinstance(a, torch.fx.Node) and not t.is_const(a) and not (
        isinstance(b, torch.fx.Node) and not t.is_const(b)
    ):
        x, c = a, b
    elif isinstance(b, torch.fx.Node) and not t.is_const(b):
        x, c = b, a
    else:
        raise UnsupportedOpError("mul of two constants")
    if isinstance(c, torch.fx.Node) and not t.is_const(c):
        raise UnsupportedOpError("mul of two activations (only multiplication by a constant)")
    value = t.const(c) if isinstance(c, torch.fx.Node) else np.float32(c)
    value = np.asarray(value, dtype=np.float32)
    channels = x.meta["val"].shape[1]
    if value.size not in (1, channels) or (value.size > 1 and value.squeeze().ndim != 1):
        raise UnsupportedOpError("mul by a constant must be a scalar or one value per channel")
    t.emit(n, "mul_const", [t.value(x)], {}, {"value": value.reshape(-1)})


def h_cat(t, n):
    tensors, dim = n.args[0], (n.args[1] if len(n.args) > 1 else 0)
    rank = len(n.meta["val"].shape)
    dim = dim % rank
    if dim == 0:
        raise UnsupportedOpError("concatenation along the batch dimension")
    t.emit(n, "concat", [t.value(x) for x in tensors], {"axis": dim - 1})


def h_pad(t, n):
    x, pad = n.args[0], list(n.args[1])
    mode = n.args[2] if len(n.args) > 2 else n.kwargs.get("mode", "constant")
    value = n.args[3] if len(n.args) > 3 else n.kwargs.get("value", 0.0)
    if mode != "constant":
        raise UnsupportedOpError(f"pad mode {mode!r}; only constant")
    _emit_pad(t, n, x, pad, value)


def h_constant_pad(t, n):
    x, pad = n.args[0], list(n.args[1])
    value = n.args[2] if len(n.args) > 2 else 0.0
    _emit_pad(t, n, x, pad, value)


def _emit_pad(t, n, x, pad, value):
    rank = len(x.meta["val"].shape) - 1  # non-batch
    pads = [0] * (2 * rank)
    for i in range(len(pad) // 2):
        d = rank - 1 - i
        if d < 0:
            raise UnsupportedOpError("padding of the batch dimension")
        pads[2 * d], pads[2 * d + 1] = int(pad[2 * i]), int(pad[2 * i + 1])
    if any(p < 0 for p in pads):
        raise UnsupportedOpError("negative padding (cropping)")
    t.emit(n, "pad", [t.value(x)], {"pads": pads, "value": float(value or 0.0)})


HANDLERS: dict[str, Callable[[_Translator, torch.fx.Node], None]] = {
    "aten.conv1d.default": h_conv,
    "aten.conv2d.default": h_conv,
    "aten.conv1d.padding": h_conv,
    "aten.conv2d.padding": h_conv,
    "aten.convolution.default": h_convolution,
    "aten.linear.default": h_linear,
    "aten.batch_norm.default": h_batch_norm,
    "aten._native_batch_norm_legit_no_training.default": h_native_bn,
    "<built-in function getitem>": h_getitem,
    "aten.dropout.default": h_identity,
    "aten.alias.default": h_identity,
    "aten.clone.default": h_identity,
    "aten.contiguous.default": h_identity,
    "aten.detach.default": h_identity,
    "aten.relu.default": h_relu,
    "aten.relu_.default": h_relu,
    "aten.hardtanh.default": h_hardtanh,
    "aten.hardtanh_.default": h_hardtanh,
    "aten.relu6.default": lambda t, n: t.emit(n, "clamp", [t.value(n.args[0])],
                                              {"min": 0.0, "max": 6.0}),
    "aten.clamp.default": h_clamp,
    "aten.leaky_relu.default": h_leaky_relu,
    "aten.leaky_relu_.default": h_leaky_relu,
    "aten.sigmoid.default": _unary("sigmoid"),
    "aten.tanh.default": _unary("tanh"),
    "aten.sign.default": _unary("sign"),  # BNN sign; the float op has sign(0) = +1
    "aten.softmax.int": h_softmax,
    "aten._softmax.default": h_softmax,
    "aten.max_pool1d.default": _max_pool(1),
    "aten.max_pool2d.default": _max_pool(2),
    "aten.max_pool2d_with_indices.default": _max_pool(2),
    "aten.avg_pool1d.default": _avg_pool(1),
    "aten.avg_pool2d.default": _avg_pool(2),
    "aten.adaptive_avg_pool1d.default": h_adaptive_avg,
    "aten.adaptive_avg_pool2d.default": h_adaptive_avg,
    "aten.mean.dim": h_mean,
    "aten.view.default": h_reshape,
    "aten.reshape.default": h_reshape,
    "aten._unsafe_view.default": h_reshape,
    "aten.flatten.using_ints": h_reshape,
    "aten.unflatten.int": h_reshape,
    "aten.squeeze.dim": h_reshape,
    "aten.squeeze.dims": h_reshape,
    "aten.unsqueeze.default": h_reshape,
    "aten.permute.default": h_permute,
    "aten.add.Tensor": h_add,
    "aten.add.Scalar": h_add,
    "aten.sub.Tensor": lambda t, n: h_add(t, n, -1.0),
    "aten.sub.Scalar": lambda t, n: h_add(t, n, -1.0),
    "aten.mul.Tensor": h_mul,
    "aten.mul.Scalar": h_mul,
    "aten.cat.default": h_cat,
    "aten.pad.default": h_pad,
    "aten.constant_pad_nd.default": h_constant_pad,

    # -- two-activation ops and activations --

    # -- transformer pieces: normalisation, matmul, slicing --

    # -- recurrent layers --

    # -- upsampling and transposed convolution --
}


def capture_exported(ep: torch.export.ExportedProgram) -> Graph:
    """Translate an ExportedProgram (e.g. loaded from a ``.pt2`` file) into a float Graph."""
    graph = _Translator(ep).run()
    infer_shapes(graph, graph.input.shape)
    return graph


def capture(model: torch.nn.Module, example_input: torch.Tensor | np.ndarray) -> Graph:
    """Capture ``model`` (in eval mode) as a float Graph, using one example input for shapes.

    A ``GraphModule`` (e.g. from ``from_onnx``) already holds its graph and is returned as is.
    """
    if isinstance(model, GraphModule):
        return model.graph
    x = torch.as_tensor(np.asarray(example_input, dtype=np.float32))[:1]
    was_training = model.training
    model.eval()
    try:
        ep = torch.export.export(model, (x,))
    except Exception as e:  # torch.export's own message names the offending Python line
        raise UnsupportedOpError(
            f"torch.export could not capture the model: {e}\nintquant captures models with "
            f"torch.export; data-dependent control flow is not supported. Supported layers: "
            f"{SUPPORTED_MODULES}"
        ) from None
    finally:
        model.train(was_training)
    return capture_exported(ep)
