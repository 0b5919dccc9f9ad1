"""Capture a PyTorch model into the float Graph with ``torch.export``.

Why torch.export and not ``torch.fx.symbolic_trace``: users hand us ``.pt2`` files (already
exported programs), and exporting an ``nn.Module`` gives the same ATen-level graph, so one
translator serves both. Every ATen node keeps the module path it came from
(``nn_module_stack``), which becomes the layer name used by per-layer overrides and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .execute import GraphModule, infer_shapes
from .ir import Graph, Node, unique_name

SUPPORTED_MODULES = (
    "Conv1d, Conv2d (stride, padding incl. 'same', dilation, groups), Linear, BatchNorm1d/2d, "
    "ReLU, ReLU6, LeakyReLU, Hardtanh, Sigmoid, Tanh, Hardswish, Hardsigmoid, SiLU, GELU, ELU, "
    "SELU, CELU, PReLU, Softmax, MaxPool1d/2d, AvgPool1d/2d, "
    "AdaptiveAvgPool1d/2d(1), Flatten, Unflatten, Identity, Dropout, ConstantPad/ZeroPad, "
    "Upsample/F.interpolate (nearest, bilinear/linear align_corners=False; integer factors), "
    "ConvTranspose1d/2d; "
    "functions: a + b, a - b, a * b (two activations, broadcasting within the same rank, or "
    "by a constant), torch.cat, torch.clamp, torch.sign (BNN sign, 0 -> +1), F.pad "
    "(constant), torch.erf, view/reshape/flatten/squeeze/unsqueeze/permute"
    "; transformer pieces: LayerNorm, MultiheadAttention, TransformerEncoderLayer (ReLU, GELU), "
    "Linear over (N, ..., C), @/matmul of two activations, softmax along any dim, mean(dim), "
    "select/slice (x[:, -1], x[:, a:b:s]), transpose, + a constant tensor"
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
        self.batch: dict[str, int | None] = {}  # fx name -> batch axis of the batch-1 tensor
        # fx node name -> handler replacing HANDLERS for that node, set by the CLAIMS passes
        # (patterns that span several nodes, e.g. a GRUCell loop becomes one recurrent layer)
        self.claimed: dict[str, Callable[[_Translator, torch.fx.Node], None]] = {}

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
        shape = self.sample_shape(fx_node) if "val" in fx_node.meta else ()
        self.nodes.append(
            Node(name, op, inputs, attrs or {}, params or {}, shape,
                 source=f"{_layer_name(fx_node)} ({_module_type(fx_node)}, {fx_node.target})")
        )
        self.alias[fx_node.name] = name

    def passthrough(self, fx_node, arg) -> None:
        self.alias[fx_node.name] = self.value(arg)

    # -- the batch axis -------------------------------------------------------------------
    # The model is exported with a batch of one, so the exported program is the per-sample
    # function. Its batch axis is a size-1 axis that transposes may move (nn.MultiheadAttention
    # works sequence-first inside) and reshapes may merge away (heads·batch). Every activation
    # records where that axis is (None: merged into another axis or dropped); its per-sample
    # shape — what the float Graph holds — is the full shape without it. Dropping a size-1 axis
    # keeps the C order, so any choice of the axis gives the same per-sample values.
    def full_shape(self, n: torch.fx.Node) -> tuple[int, ...]:
        return tuple(int(s) for s in n.meta["val"].shape)

    def batch_axis(self, n: torch.fx.Node) -> int | None:
        return self.batch.get(n.name, 0)

    def sample_shape(self, n: torch.fx.Node) -> tuple[int, ...]:
        """The per-sample shape of activation ``n`` (its full shape without the batch axis)."""
        full, b = self.full_shape(n), self.batch_axis(n)
        return full if b is None else full[:b] + full[b + 1:]

    def sample_dim(self, n: torch.fx.Node, d: int) -> int:
        """The per-sample axis of axis ``d`` of the full tensor ``n`` (not the batch axis)."""
        rank = len(self.full_shape(n))
        d = int(d) % rank
        b = self.batch_axis(n)
        if d == b:
            raise UnsupportedOpError(f"operates along the batch axis (dim {d} of a tensor of "
                                     f"shape {tuple(n.meta['val'].shape)} with batch size 1)")
        return d if b is None or d < b else d - 1

    def default_batch(self, n: torch.fx.Node) -> int | None:
        """Where the batch axis of ``n``'s output is, from its first activation input: the
        size-1 axis whose preceding axes hold as many elements as before the input's batch axis
        (None if there is none); an input without a batch axis gives the first size-1 axis."""
        acts = [a for a in n.all_input_nodes if a.name in self.alias]
        if not acts or "val" not in n.meta or not isinstance(n.meta["val"], torch.Tensor):
            return 0
        src = acts[0]
        if not isinstance(src.meta.get("val"), torch.Tensor):
            return 0  # a tuple-valued source (a recurrent layer's (out, h_n)): batch-first
        return batch_after_reshape(self.full_shape(src), self.batch_axis(src),
                                   self.full_shape(n))

    def require_batch_first(self, n: torch.fx.Node) -> None:
        """Handlers written for batch-first tensors (conv, pools, ...) get nothing else."""
        for a in n.all_input_nodes:
            if a.name in self.alias and self.batch_axis(a) != 0:
                b = self.batch_axis(a)
                where = "merged into another axis" if b is None else f"at axis {b}"
                raise UnsupportedOpError(
                    f"its input {a.name!r} (shape {self.full_shape(a)} with batch size 1) has "
                    f"its batch axis {where}; this op needs the batch axis first")

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
        live = _live_nodes(self.ep.graph)
        for claim in CLAIMS:
            claim(self)
        for n in self.ep.graph.nodes:
            if n.op == "call_function" and n not in live:
                continue  # e.g. the averaged attention weights nn.MultiheadAttention returns
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
                    output = self.batch_first_output(outs[0], output)
                except _DependsOnUnsupported:
                    output = None  # reported below through the unsupported node itself
                except UnsupportedOpError as e:
                    problems.append(f"model output: {e}")
                    output = None
                continue
            if n.op != "call_function":
                raise UnsupportedOpError(f"node {n.name}: fx op {n.op} not supported")
            target = str(n.target)
            handler = self.claimed.get(n.name)
            if handler is None and self.fold_constant(n):
                continue
            handler = handler or HANDLERS.get(target)
            try:
                if handler is None:
                    self.values_of(n)  # an input from an unsupported node: report that one only
                    raise UnsupportedOpError(f"{target} is not supported ({_hint(target)})")
                if target not in BATCH_ANYWHERE:
                    self.values_of(n)
                    self.require_batch_first(n)
                self.batch[n.name] = self.default_batch(n)
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

    def batch_first_output(self, n: torch.fx.Node, name: str) -> str:
        """The graph output as (N, ...): a reshape when the batch axis was merged or dropped."""
        b = self.batch_axis(n)
        if b == 0:
            return name
        full = self.full_shape(n)
        if b is not None or not full or full[0] != 1:
            raise UnsupportedOpError(f"the output (shape {full} with batch size 1) does not "
                                     "have its batch axis first")
        shape = full[1:]
        self.nodes.append(Node(self.unique(name + ".batch_first"), "reshape", [name],
                               {"shape": list(shape)}, {}, shape, source="model output"))
        return self.nodes[-1].name


def _live_nodes(graph: torch.fx.Graph) -> set[torch.fx.Node]:
    """Nodes the output depends on (torch.export keeps unused results, e.g. attention weights)."""
    out = next(n for n in graph.nodes if n.op == "output")
    live, todo = {out}, [out]
    while todo:
        for a in todo.pop().all_input_nodes:
            if a not in live:
                live.add(a)
                todo.append(a)
    return live


def batch_after_reshape(src: tuple[int, ...], b: int | None, dst: tuple[int, ...],
                        batch: int = 1) -> int | None:
    """The batch axis of a tensor of shape ``dst`` made from ``src`` (batch axis ``b``) with the
    same elements in C order: the axis of size ``batch`` with as many elements before it as
    before ``b``. A batch of one may also have been merged away: then (or for ``b`` None) the
    first size-1 axis, None if there is none. A batch of several merged with another axis gives
    None (the samples are mixed)."""
    if b is not None:
        before = int(np.prod(src[:b]))
        for k, s in enumerate(dst):
            if s == batch and int(np.prod(dst[:k])) == before:
                return k
    if batch != 1:
        return None
    return next((k for k, s in enumerate(dst) if s == 1), None)


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
    x, w, b, stride, padding, dilation, transposed, out_pad, groups = n.args
    if transposed:
        _emit_conv_transpose(t, n, x, w, b, stride, padding, out_pad, groups, dilation)
        return
    _conv(t, n, x, w, b, stride, padding, dilation, groups)


def h_linear(t, n):
    x, w = n.args[0], n.args[1]
    b = n.args[2] if len(n.args) > 2 else None
    t.sample_dim(x, -1)  # over the last axis of (N, ..., C): never the batch axis
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
    t.emit(n, "softmax", [t.value(x)], {"axis": t.sample_dim(x, dim)})


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
    dims = sorted(int(d) % rank for d in dims)
    if t.batch_axis(x) != 0 or rank < 3 or dims != list(range(2, rank)):
        axes = [t.sample_dim(x, d) for d in dims]
        t.emit(n, "mean", [t.value(x)], {"axes": axes, "keepdim": bool(keep)})
        return
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
    """view / reshape / flatten / squeeze / unsqueeze: the per-sample values in C order, the
    batch axis found again by ``batch_after_reshape`` (it may be merged, e.g. heads·batch)."""
    src = n.args[0]
    shape = t.sample_shape(n)
    if t.sample_shape(src) == shape:
        t.passthrough(n, src)
        return
    t.emit(n, "reshape", [t.value(src)], {"shape": list(shape)})


def h_permute(t, n):
    _permutation(t, n, [int(p) for p in n.args[1]])


def _add_constant(t, n, x, c, sign: float) -> None:
    """x ± c for a constant c: a scalar or per-channel c is a per-channel affine op (value 1,
    bias ±c); any other constant of x's shape (a positional embedding) is ``add_const``."""
    value = t.const(c) if isinstance(c, torch.fx.Node) else np.float32(c)
    value = np.asarray(value, dtype=np.float32)
    full = t.full_shape(x)
    if np.broadcast_shapes(value.shape, full) != full:
        raise UnsupportedOpError(f"adding a constant of shape {value.shape} broadcasts the "
                                 f"activation of shape {full}")
    per_channel = _per_channel_values(np.broadcast_to(value, full)) \
        if t.batch_axis(x) == 0 else None
    if value.size == 1 or per_channel is not None:
        bias = value.reshape(-1) if value.size == 1 else per_channel
        t.emit(n, "mul_const", [t.value(x)], {},
               {"value": np.ones(1, np.float32), "bias": sign * bias})
        return
    sample = np.ascontiguousarray(np.broadcast_to(value, full)).reshape(t.sample_shape(x))
    t.emit(n, "add_const", [t.value(x)], {}, {"value": sign * sample})


def _per_channel_values(v: np.ndarray) -> np.ndarray | None:
    """The values along axis 1 of a (1, C, ...) array constant along every other axis."""
    if v.ndim < 2:
        return None
    per = v.reshape(v.shape[0], v.shape[1], -1)[0, :, 0]
    view = (1, -1) + (1,) * (v.ndim - 2)
    return per if np.array_equal(v, np.broadcast_to(per.reshape(view), v.shape)) else None


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
    if not (a_act and b_act):
        raise UnsupportedOpError("add/sub is supported between two activations, or of an "
                                 "activation and a constant (constant - activation: use "
                                 "-(x - c))")
    _binary_activations(t, n, "add" if sign > 0 else "sub", a, b)


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
        return _binary_activations(t, n, "mul", x, c)
    value = t.const(c) if isinstance(c, torch.fx.Node) else np.float32(c)
    value = np.asarray(value, dtype=np.float32)
    if value.size > 1:
        t.require_batch_first(n)  # one value per channel (axis 1)
    full = x.meta["val"].shape
    channels = full[1] if len(full) > 1 else 1  # (N,): one scalar per sample
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


# -- two-activation ops and activations (reach-elem) ----------------------------------------


def _binary_activations(t: _Translator, n, op: str, a, b) -> None:
    """a + b, a − b, a · b of two activations; NumPy broadcasting within the same rank (a
    per-channel (N, C, 1, 1) gate, a per-sample (N, 1) scalar), never across the batch."""
    sa, sb = tuple(a.meta["val"].shape), tuple(b.meta["val"].shape)
    if len(sa) != len(sb):
        raise UnsupportedOpError(
            f"{op} of activations of shapes {sa} and {sb}: broadcasting needs both of the same "
            "rank (view the smaller one with size-1 axes, e.g. (N, C, 1, 1))")
    if t.batch_axis(a) != t.batch_axis(b):
        raise UnsupportedOpError(
            f"{op} of activations whose batch axes differ (dims {t.batch_axis(a)} and "
            f"{t.batch_axis(b)}): permute one so that the samples line up")
    t.emit(n, op, [t.value(a), t.value(b)])


def h_hardsigmoid(t, n):
    t.emit(n, "hardsigmoid", [t.value(n.args[0])], {"alpha": 1 / 6, "beta": 0.5})


def h_gelu(t, n):
    approximate = n.kwargs.get("approximate", n.args[1] if len(n.args) > 1 else "none")
    t.emit(n, "gelu", [t.value(n.args[0])], {"approximate": str(approximate)})


def h_elu(t, n):
    """aten.elu(x, alpha=1, scale=1, input_scale=1)."""
    a = list(n.args[1:]) + [None] * 3
    attrs = {"alpha": float(1.0 if a[0] is None else a[0]),
             "scale": float(1.0 if a[1] is None else a[1]),
             "input_scale": float(1.0 if a[2] is None else a[2])}
    t.emit(n, "elu", [t.value(n.args[0])], attrs)


def h_selu(t, n):
    """aten.selu(x): ELU with SELU's constants (alpha, scale; as ONNX Selu)."""
    t.emit(n, "elu", [t.value(n.args[0])],
           {"alpha": 1.6732632423543772, "scale": 1.0507009873554805, "input_scale": 1.0})


def h_celu(t, n):
    """aten.celu(x, alpha=1) = max(0, x) + min(0, alpha·(exp(x/alpha) − 1)): ELU with
    input_scale 1/alpha."""
    alpha = float(n.args[1] if len(n.args) > 1 else n.kwargs.get("alpha", 1.0))
    if alpha == 0:
        raise UnsupportedOpError("CELU with alpha = 0")
    t.emit(n, "elu", [t.value(n.args[0])],
           {"alpha": alpha, "scale": 1.0, "input_scale": 1.0 / alpha})


def h_prelu(t, n):
    """aten.prelu(x, weight): one slope per channel (dim 1), or one for all."""
    weight = np.asarray(t.const(n.args[1]), np.float32).reshape(-1)
    shape = n.args[0].meta["val"].shape
    channels = shape[1] if len(shape) > 1 else 1
    if weight.size not in (1, channels):
        raise UnsupportedOpError(f"PReLU with {weight.size} slopes on {channels} channels")
    t.emit(n, "prelu", [t.value(n.args[0])], {}, {"weight": weight})
# -- reach-vision: upsampling and transposed convolution ---------------------------------------

def _integer_factors(n) -> list[int]:
    """Per spatial axis out/in of an upsampling node; refuses non-integer ratios."""
    src = n.args[0].meta["val"].shape[2:]
    out = n.meta["val"].shape[2:]
    if any(o % i for i, o in zip(src, out, strict=True)):
        raise UnsupportedOpError(f"upsampling {tuple(src)} to {tuple(out)}: only integer factors")
    f = [int(o // i) for i, o in zip(src, out, strict=True)]
    if len(f) not in (1, 2):
        raise UnsupportedOpError("only 1-D and 2-D upsampling")
    return f if len(f) == 2 else [1, f[0]]


def _upsample(mode: str, align_arg: int | None = None):
    """aten.upsample_{nearest,bilinear,linear}*(x, output_size, [align_corners,] scales)."""
    def h(t, n):
        if align_arg is not None and n.args[align_arg]:
            raise UnsupportedOpError("align_corners=True (supported: align_corners=False)")
        t.emit(n, "upsample", [t.value(n.args[0])], {"mode": mode, "factor": _integer_factors(n)})
    return h


def _emit_conv_transpose(t, n, x, w, b, stride, padding, output_padding, groups, dilation):
    """One ``conv_transpose`` node (ops/conv_transpose.py), weights by output channel."""
    from ..ops.conv_transpose import swap_channel_axes

    weight = t.const(w)
    dims = weight.ndim - 2
    if dims not in (1, 2):
        raise UnsupportedOpError(f"only 1-D and 2-D transposed convolutions, got {dims}-D")
    st, p = _pair(stride, dims), _pair(padding, dims)
    op, dil = _pair(output_padding, dims), _pair(dilation, dims)
    if dims == 1:
        attrs = {"dims": 1, "stride": [1, st[0]], "padding": [0, p[0], 0, p[0]],
                 "output_padding": [0, op[0]], "dilation": [1, dil[0]]}
    else:
        attrs = {"dims": 2, "stride": st, "padding": [p[0], p[1], p[0], p[1]],
                 "output_padding": op, "dilation": dil}
    attrs["groups"] = int(groups)
    params = {"weight": swap_channel_axes(np.asarray(weight, np.float32), int(groups))}
    if b is not None:
        params["bias"] = t.const(b)
    t.emit(n, "conv_transpose", [t.value(x)], attrs, params)


def h_conv_transpose(t, n):
    """aten.conv_transpose{1,2}d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
    dilation=1)."""
    a = (list(n.args) + [None] * 8)[:8]
    _emit_conv_transpose(t, n, a[0], a[1], a[2], a[3] or 1, a[4] or 0, a[5] or 0, a[6] or 1,
                         a[7] or 1)
# -- reach-transformer: normalisation, matmul, attention, slicing, mean, permutations ---------


def _permutation(t, n, perm: list[int]) -> None:
    """permute / transpose of the full tensor: the batch axis moves, the per-sample axes are
    permuted (nothing to do when their order is kept, e.g. (1, T, C) -> (T, 1, C))."""
    src = n.args[0]
    rank = len(t.full_shape(src))
    perm = [int(p) % rank for p in perm]
    b = t.batch_axis(src)
    t.batch[n.name] = None if b is None else perm.index(b)
    sample_perm = [t.sample_dim(src, p) for p in perm if p != b]
    if sample_perm == sorted(sample_perm):
        t.passthrough(n, src)
        return
    t.emit(n, "transpose", [t.value(src)], {"perm": sample_perm})


def h_transpose(t, n):
    """aten.transpose.int(x, d0, d1) / aten.t(x)."""
    rank = len(t.full_shape(n.args[0]))
    d0, d1 = (int(n.args[1]) % rank, int(n.args[2]) % rank) if len(n.args) > 2 else (0, 1)
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    _permutation(t, n, perm)


def _slice(t, n, x, dim: int, start: int, stop: int, step: int, keepdim: bool) -> None:
    """Elements start, start + step, ... < stop of axis ``dim`` (``keepdim`` False: select)."""
    full = t.full_shape(x)
    d = int(dim) % len(full)
    b = t.batch_axis(x)
    if d == b:  # the batch axis has one element: select 0 drops it, a slice keeps it
        if len(range(start, stop, step)) != 1:
            raise UnsupportedOpError(f"slices the batch axis (dim {d}) to "
                                     f"{len(range(start, stop, step))} elements")
        t.batch[n.name] = b if keepdim else None
        t.passthrough(n, x)
        return
    if not keepdim:
        t.batch[n.name] = None if b is None else (b if b < d else b - 1)
    if keepdim and (start, stop, step) == (0, full[d], 1):
        t.passthrough(n, x)
        return
    if len(range(start, stop, step)) == 0:
        raise UnsupportedOpError(f"the slice {start}:{stop}:{step} of dim {d} is empty")
    attrs = {"axis": t.sample_dim(x, d), "start": start, "stop": stop, "step": step,
             "keepdim": keepdim}
    t.emit(n, "slice", [t.value(x)], attrs)


def h_select(t, n):
    """x[:, i] (aten.select.int(x, dim, index)): a slice of one element without its axis."""
    x, dim, index = n.args[:3]
    size = t.full_shape(x)[int(dim) % len(t.full_shape(x))]
    i = int(index) % size
    _slice(t, n, x, dim, i, i + 1, 1, keepdim=False)


def h_slice(t, n):
    """x[:, a:b:s] (aten.slice.Tensor(x, dim=0, start=None, end=None, step=1))."""
    a = list(n.args) + [None] * 5
    x, dim, start, end, step = a[0], a[1] or 0, a[2], a[3], a[4] or 1
    size = t.full_shape(x)[int(dim) % len(t.full_shape(x))]
    start, stop, step = slice(start, end, step).indices(size)
    if step < 1:
        raise UnsupportedOpError(f"slice step {step}")
    _slice(t, n, x, dim, start, stop, step, keepdim=True)


def h_narrow(t, n):
    """aten.narrow(x, dim, start, length)."""
    x, dim, start, length = n.args[:4]
    size = t.full_shape(x)[int(dim) % len(t.full_shape(x))]
    start = int(start) % size
    _slice(t, n, x, dim, start, start + int(length), 1, keepdim=True)


def h_layer_norm(t, n):
    """aten.layer_norm(x, normalized_shape, weight, bias, eps) and native_layer_norm."""
    a = list(n.args) + [None] * 5
    x, norm_shape, w, b = a[0], [int(v) for v in a[1]], a[2], a[3]
    eps = 1e-5 if a[4] is None else float(a[4])
    for k in range(len(norm_shape)):
        t.sample_dim(x, -1 - k)  # the normalised axes never hold the batch
    size = int(np.prod(norm_shape))
    params = {
        "weight": np.ones(norm_shape, np.float32) if w is None else t.const(w),
        "bias": np.zeros(norm_shape, np.float32) if b is None else t.const(b),
    }
    t.emit(n, "layer_norm", [t.value(x)], {"eps": eps, "dims": len(norm_shape)},
           {k: v.reshape(size) for k, v in params.items()})


def _matmul_operands(t, n, a, b) -> None:
    """Both operands are activations of (…, M, K) x (…, K, N) per sample, same leading axes."""
    if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)) or \
            t.is_const(a) or t.is_const(b):
        raise UnsupportedOpError("matmul with a constant operand (use nn.Linear)")
    for v in (a, b):
        if len(t.full_shape(v)) < 2:
            raise UnsupportedOpError("matmul of a vector")
        t.sample_dim(v, -1)
        t.sample_dim(v, -2)
    if t.sample_shape(a)[:-2] != t.sample_shape(b)[:-2]:
        raise UnsupportedOpError(f"matmul of {t.full_shape(a)} by {t.full_shape(b)} "
                                 "broadcasts the leading axes")


def h_matmul(t, n):
    """a @ b of two activations (aten.matmul / aten.bmm); a @ W with a constant W is Linear."""
    a, b = n.args[:2]
    if isinstance(b, torch.fx.Node) and t.is_const(b) and not t.is_const(a) and \
            t.const(b).ndim == 2:
        t.sample_dim(a, -1)
        t.emit(n, "linear", [t.value(a)], {}, {"weight": np.ascontiguousarray(t.const(b).T)})
        return
    _matmul_operands(t, n, a, b)
    t.emit(n, "matmul", [t.value(a), t.value(b)], {"transpose_b": False, "alpha": 1.0})


def h_sdpa(t, n):
    """scaled_dot_product_attention(q, k, v): softmax(q·kᵀ·scale)·v as three float ops — the
    scale folds into the first matmul's requantization."""
    a = list(n.args) + [None] * 6
    q, k, v = a[:3]
    mask = a[3] if a[3] is not None else n.kwargs.get("attn_mask")
    causal = a[5] if a[5] is not None else n.kwargs.get("is_causal", False)
    if mask is not None or causal:
        raise UnsupportedOpError("attention with a mask (attn_mask / is_causal)")
    if n.kwargs.get("enable_gqa", False):
        raise UnsupportedOpError("grouped-query attention (enable_gqa)")
    if a[4]:
        raise UnsupportedOpError(f"attention dropout {a[4]} (export the model in eval mode)")
    scale = n.kwargs.get("scale")
    scale = 1.0 / float(np.sqrt(t.full_shape(q)[-1])) if scale is None else float(scale)
    _matmul_operands(t, n, q, k)
    _matmul_operands(t, n, q, v)
    if t.sample_shape(k)[:-1] != t.sample_shape(v)[:-1]:
        raise UnsupportedOpError("keys and values of different lengths")
    layer = _layer_name(n)
    source = f"{layer} ({_module_type(n)}, {n.target})"
    shape_s = t.sample_shape(q)[:-1] + (t.sample_shape(k)[-2],)
    scores = Node(t.unique(layer + ".scores"), "matmul", [t.value(q), t.value(k)],
                  {"transpose_b": True, "alpha": scale}, {}, shape_s, source=source)
    probs = Node(t.unique(layer + ".softmax"), "softmax", [scores.name],
                 {"axis": len(shape_s) - 1}, {}, shape_s, source=source)
    t.nodes += [scores, probs]
    t.emit(n, "matmul", [probs.name, t.value(v)], {"transpose_b": False, "alpha": 1.0})
# -- recurrent layers (reach-rnn): nn.GRU / nn.LSTM, GRUCell / LSTMCell loops -----------------
#
# A recurrent layer is one float node (``gru`` / ``lstm``, see intquant/ops/gru.py) over a
# batch-first sequence (N, T, F), giving the last step (N, H) or, when something needs it, the
# whole sequence (N, T, H). What users write around the ATen ops is recognised before the walk
# (``claim_recurrent``, one of CLAIMS): the implicit h0 (``aten.zeros``), the tuple outputs,
# ``out[:, -1]`` / ``h_n[-1]`` / ``h_n.squeeze(0)`` (the last step), ``batch_first=False``
# with ``x.transpose(0, 1)`` around it, and a loop of cell calls over ``x[:, t]`` /
# ``x.unbind(1)`` that starts from a constant state (one layer; stacked loops become stacked
# layers), optionally collecting every state with ``torch.stack``.

_GETITEM = "<built-in function getitem>"
_RECURRENT = {"aten.gru.input": "gru", "aten.lstm.input": "lstm"}
_CELLS = {"aten.gru_cell.default": "gru", "aten.lstm_cell.default": "lstm"}
_TIME_MAJOR_SWAPS = ("aten.transpose.int", "aten.permute.default", "aten.swapaxes.default")
_LAST_STEP = "out[:, -1] (batch_first=True), out[-1] (batch_first=False) or h_n[-1]"


def _call(n: Any, *targets: str) -> bool:
    return isinstance(n, torch.fx.Node) and n.op == "call_function" and str(n.target) in targets


def _fx_shape(n: torch.fx.Node) -> tuple[int, ...]:
    return tuple(int(v) for v in n.meta["val"].shape)


def _is_last(index: Any, size: int) -> bool:
    return isinstance(index, int) and index in (-1, size - 1)


def _swaps_batch_and_time(n: Any) -> bool:
    """x.transpose(0, 1) / x.permute(1, 0, 2) of a rank-3 tensor."""
    if not _call(n, *_TIME_MAJOR_SWAPS) or len(_fx_shape(n)) != 3:
        return False
    if str(n.target) == "aten.permute.default":
        return [int(v) for v in n.args[1]] == [1, 0, 2]
    return sorted(int(v) % 3 for v in n.args[1:3]) == [0, 1]


def h_zeros(t: _Translator, n) -> None:
    """aten.zeros / new_zeros / zeros_like: a constant (e.g. the implicit h0 of nn.GRU)."""
    t.consts[n.name] = np.zeros(_fx_shape(n), np.float32)


def _no_op(t: _Translator, n) -> None:
    """A node a claimed pattern consumes (its value is never read on its own)."""


def _alias_to(source: torch.fx.Node):
    def h(t: _Translator, n) -> None:
        t.passthrough(n, source)
    return h


def _refuse(message: str):
    def h(t: _Translator, n) -> None:
        raise UnsupportedOpError(message)
    return h


def _time_major_output(n: Any) -> bool:
    """The output sequence of an nn.GRU / nn.LSTM with batch_first=False (its float node
    holds it batch-first)."""
    return _call(n, _GETITEM) and n.args[1] == 0 and _call(n.args[0], *_RECURRENT) and \
        not n.args[0].args[8]


def _batch_first_source(x: torch.fx.Node, what: str) -> torch.fx.Node:
    """The fx node holding the batch-first sequence of a time-major input ``x``."""
    if _time_major_output(x):
        return x
    if _swaps_batch_and_time(x):
        return x.args[0]
    raise UnsupportedOpError(f"{what} with batch_first=False reads a sequence intquant cannot "
                             "see as batch-first: pass x.transpose(0, 1) of a (N, T, F) tensor "
                             "(intquant's batch dimension is the first)")


def _initial_state(t: _Translator, hx: Any, layers: int, hidden: int, what: str) -> list:
    """Per-layer (H,) arrays of a constant initial state of shape (layers, 1, H) or (1, H)."""
    try:
        v = t.const(hx)
    except UnsupportedOpError:
        v = None
    if v is None or v.size != layers * hidden:
        raise UnsupportedOpError(f"the initial state {what} must be a constant (zeros or a "
                                 "parameter) of one batch row; a state computed from the input "
                                 "is not supported")
    v = v.reshape(layers, hidden)
    return [v[layer] for layer in range(layers)]


def _emit_recurrent(t: _Translator, fx_node, kind: str, x: torch.fx.Node, layer_params: list,
                    h0: list, c0: list | None, sequence: bool) -> None:
    """One float node ``kind`` over the batch-first sequence ``x``."""
    hidden = int(layer_params[0][1].shape[1])
    params: dict[str, np.ndarray] = {}
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(layer_params):
        rows = w_ih.shape[0]
        params[f"w_ih{layer}"], params[f"w_hh{layer}"] = w_ih, w_hh
        params[f"b_ih{layer}"] = np.zeros(rows, np.float32) if b_ih is None else b_ih
        params[f"b_hh{layer}"] = np.zeros(rows, np.float32) if b_hh is None else b_hh
        params[f"h0{layer}"] = np.asarray(h0[layer], np.float32)
        if c0 is not None:
            params[f"c0{layer}"] = np.asarray(c0[layer], np.float32)
    name = t.unique(_layer_name(fx_node))
    attrs = {"hidden_size": hidden, "layers": len(layer_params), "sequence": bool(sequence)}
    t.nodes.append(Node(name, kind, [t.value(x)], attrs, params, (),
                        source=f"{_layer_name(fx_node)} ({_module_type(fx_node)}, "
                               f"{fx_node.target})"))
    t.alias[fx_node.name] = name


def _layer_handler(kind: str, sequence: bool):
    def h(t: _Translator, n) -> None:
        x, hx, params, has_biases, layers, _dropout, _train, bidirectional, batch_first = \
            n.args[:9]
        what = "nn.GRU" if kind == "gru" else "nn.LSTM"
        if bidirectional:
            raise UnsupportedOpError(f"bidirectional {what} (it needs the whole sequence "
                                     "before the first output: no streaming form)")
        per_layer = 4 if has_biases else 2
        if len(params) != per_layer * layers:
            raise UnsupportedOpError(f"{what} with proj_size (unsupported)")
        weights = [t.const(p) for p in params]
        layer_params = []
        for layer in range(layers):
            w = weights[layer * per_layer:(layer + 1) * per_layer]
            layer_params.append((w[0], w[1], *(w[2:] if has_biases else (None, None))))
        hidden = int(layer_params[0][1].shape[1])
        if kind == "lstm":
            h0 = _initial_state(t, hx[0], layers, hidden, "h0")
            c0 = _initial_state(t, hx[1], layers, hidden, "c0")
        else:
            h0, c0 = _initial_state(t, hx, layers, hidden, "h0"), None
        source = x if batch_first else _batch_first_source(x, what)
        _emit_recurrent(t, n, kind, source, layer_params, h0, c0, sequence)
    return h


def _last_state_use(u: torch.fx.Node, hn: torch.fx.Node, layers: int) -> bool:
    """h_n[-1], and with one layer h_n[0], h_n.squeeze(0), h_n.squeeze(), h_n.view(N, H)."""
    if _call(u, "aten.select.int"):
        return u.args[1] == 0 and _is_last(u.args[2], layers)
    if layers != 1:
        return False
    if _call(u, "aten.squeeze.dim"):
        return u.args[1] == 0
    if _call(u, "aten.squeeze.dims"):
        return list(u.args[1]) == [0]
    if _call(u, "aten.squeeze.default", "aten.view.default", "aten.reshape.default",
             "aten._unsafe_view.default"):
        return len(_fx_shape(u)) <= 2
    return False


def _claim_layer(t: _Translator, r: torch.fx.Node) -> None:
    """The uses of one aten.gru / aten.lstm node's outputs (see the section comment)."""
    kind = _RECURRENT[str(r.target)]
    what = "nn.GRU" if kind == "gru" else "nn.LSTM"
    x, layers, batch_first = r.args[0], int(r.args[4]), bool(r.args[8])
    steps = _fx_shape(x)[1 if batch_first else 0]
    outs = {int(u.args[1]): u for u in r.users if _call(u, _GETITEM)}
    last, seq, refused = [], [], {}
    out = outs.get(0)
    for u in (out.users if out is not None else ()):
        if _call(u, "aten.select.int") and u.args[0] is out and \
                u.args[1] % 3 == (1 if batch_first else 0) and _is_last(u.args[2], steps):
            last.append(u)
        elif batch_first or _swaps_batch_and_time(u) or (
                _call(u, *_RECURRENT) and u.args[0] is out and not u.args[8]):
            seq.append(u)
        else:
            refused[u] = (f"the time-major output of {what}(batch_first=False) is used by "
                          f"{u.target}; use its last step out[-1] or out.transpose(0, 1)")
    for k, state in ((1, "h_n"), (2, "c_n")):
        for u in (outs[k].users if k in outs else ()):
            if k == 1 and _last_state_use(u, outs[k], layers):
                last.append(u)
            else:
                refused[u] = (f"{state} of {what} is used by {u.target}; supported: "
                              f"{_LAST_STEP}")
    sequence = bool(seq)
    if sequence:
        for u in last:  # a batch-first out[:, -1] stays an ordinary select of the sequence
            if not (batch_first and u.args[0] is out):
                refused[u] = (f"the last step of {what} is taken while its whole output "
                              "sequence is used too: take it from the sequence, out[:, -1]")
        last = []
    t.claimed[r.name] = _layer_handler(kind, sequence)
    for k, g in outs.items():
        t.claimed[g.name] = _alias_to(r) if k == 0 and sequence else _no_op
    for u in last:
        t.claimed[u.name] = _alias_to(r)
    for u in seq:
        if not batch_first and _swaps_batch_and_time(u):
            t.claimed[u.name] = _alias_to(r)
    for u, message in refused.items():
        t.claimed[u.name] = _refuse(message)
    if not batch_first and _swaps_batch_and_time(x) and all(
            _call(u, *_RECURRENT) and not u.args[8] for u in x.users):
        t.claimed[x.name] = _no_op  # the layer reads x.args[0] itself


@dataclass
class _CellChain:
    """One loop of cell calls over every time step: one recurrent layer."""

    kind: str
    cells: list[torch.fx.Node]
    source: torch.fx.Node | None = None  # batch-first sequence read by the steps
    inputs_from: _CellChain | None = None  # or: the per-step states of another loop
    step_nodes: list[torch.fx.Node] = field(default_factory=list)  # x[:, t] selections
    stack: torch.fx.Node | None = None
    sequence: bool = False

    def state(self, k: int) -> torch.fx.Node | None:
        """The node holding h after step k (the cell itself, or getitem 0 for LSTM)."""
        cell = self.cells[k]
        if self.kind == "gru":
            return cell
        return next((u for u in cell.users if _call(u, _GETITEM) and u.args[1] == 0), None)

    def cell_out(self, k: int, index: int) -> torch.fx.Node | None:
        return next((u for u in self.cells[k].users if _call(u, _GETITEM) and
                     u.args[1] == index), None)


def _previous_cell(c: torch.fx.Node) -> torch.fx.Node | None:
    """The cell whose state ``c`` continues (same weights), if any."""
    hx = c.args[1]
    if _call(c, "aten.lstm_cell.default"):
        if not (isinstance(hx, (list, tuple)) and len(hx) == 2 and _call(hx[0], _GETITEM)
                and _call(hx[1], _GETITEM)):
            return None
        prev = hx[0].args[0]
        if hx[1].args[0] is not prev or (hx[0].args[1], hx[1].args[1]) != (0, 1):
            return None
    else:
        prev = hx
    if _call(prev, str(c.target)) and list(prev.args[2:6]) == list(c.args[2:6]):
        return prev
    return None


def _time_step(x: Any) -> tuple[torch.fx.Node, int, int] | None:
    """(sequence, axis, index) of x = seq.select(axis, index) or seq.unbind(axis)[index]."""
    if _call(x, "aten.select.int"):
        return x.args[0], int(x.args[1]), int(x.args[2])
    if _call(x, _GETITEM) and _call(x.args[0], "aten.unbind.int"):
        u = x.args[0]
        return u.args[0], int(u.args[1]) if len(u.args) > 1 else 0, int(x.args[1])
    return None


def _cell_chains(t: _Translator) -> list[_CellChain]:
    cells = [n for n in t.ep.graph.nodes if _call(n, *_CELLS)]
    prev = {c.name: _previous_cell(c) for c in cells}
    nxt: dict[str, torch.fx.Node] = {}
    for c in cells:
        p = prev[c.name]
        if p is not None:
            if p.name in nxt:  # two cells continue one state: not a loop
                return []
            nxt[p.name] = c
    chains = []
    for c in cells:
        if prev[c.name] is None:
            seq = [c]
            while seq[-1].name in nxt:
                seq.append(nxt[seq[-1].name])
            chains.append(_CellChain(_CELLS[str(c.target)], seq))
    return chains


def stacked_on(owners: list[tuple[Any, int] | None], steps: Callable[[Any], int]) -> Any | None:
    """The cell loop whose states, step by step in order, are the inputs of a loop's steps
    (``owners[t]`` = (loop, step) that produced step t's input, or None): the upper layer of
    two stacked cell loops reads the lower one's every state. None when the inputs are
    anything else. Shared by the torch.export and the ONNX cell-loop matchers."""
    first = owners[0]
    if first is None or any(o is None or o[0] is not first[0] for o in owners):
        return None
    return first[0] if [o[1] for o in owners] == list(range(steps(first[0]))) else None


def _locate_steps(chain: _CellChain, by_state: dict[str, tuple]) -> str | None:
    """Find what the loop reads at each step; None, or why it is not one recurrent layer."""
    steps = [_time_step(c.args[0]) for c in chain.cells]
    if all(s is not None for s in steps):
        seq, axis = steps[0][0], steps[0][1]
        if any(s[0] is not seq or s[1] != axis for s in steps):
            return "its steps read different sequences"
        size = _fx_shape(seq)
        axis %= len(size)
        if len(size) != 3 or axis not in (0, 1):
            return "its steps do not read x[:, t] of a (N, T, F) sequence"
        if [s[2] % size[axis] for s in steps] != list(range(size[axis])):
            return f"it does not read every step 0 .. {size[axis] - 1} of the sequence in order"
        if axis == 0:
            if not (_time_major_output(seq) or _swaps_batch_and_time(seq)):
                return "it loops over the first axis of a tensor that is not x.transpose(0, 1)"
            chain.source = seq if _time_major_output(seq) else seq.args[0]
        else:
            chain.source = seq
        chain.step_nodes = [c.args[0] for c in chain.cells]
        return None
    owners = [by_state.get(c.args[0].name) if isinstance(c.args[0], torch.fx.Node) else None
              for c in chain.cells]
    below = stacked_on(owners, lambda loop: len(loop.cells))
    if below is not None:
        chain.inputs_from = below
        below.sequence = True
        return None
    return "its inputs are neither x[:, t] for every step nor the states of another loop"


def _claim_chain(chain: _CellChain, dependents: list[torch.fx.Node]) -> str | None:
    """Check how the loop's states are used; None, or why that is not supported. The loop
    gives its last state, or the whole sequence of states (stacked along time, or read by the
    loop of a stacked layer), not both."""
    n = len(chain.cells)
    states = [chain.state(k) for k in range(n)]
    if any(h is None for h in states):
        return "the state of a step is not passed on"
    ours = set(chain.cells) | set(dependents)
    last_used = False
    for k, h in enumerate(states):
        for u in h.users:
            if u in ours:
                continue
            if _call(u, "aten.stack.default") and list(u.args[0]) == states:
                if (u.args[1] if len(u.args) > 1 else 0) % 3 != 1:
                    return "its states are stacked along another axis than time (use dim=1)"
                chain.stack = u
            elif k == n - 1:
                last_used = True
            else:
                return f"the state after step {k} is used by {u.target}"
    chain.sequence = chain.sequence or chain.stack is not None
    if chain.sequence and last_used:
        return "both its last state and its whole sequence of states are used"
    if chain.kind == "lstm":
        for k in range(n):
            c = chain.cell_out(k, 1)
            if c is not None and any(u not in chain.cells for u in c.users):
                return f"the cell state after step {k} is used outside the loop"
    return None


def _chain_handler(chain: _CellChain):
    def h(t: _Translator, n) -> None:
        first = chain.cells[0]
        w_ih, w_hh, b_ih, b_hh = (None if a is None else t.const(a)  # bias=False: no b
                                  for a in (*first.args[2:6], None, None)[:4])
        hidden = int(w_hh.shape[1])
        what = "GRUCell" if chain.kind == "gru" else "LSTMCell"
        if chain.kind == "lstm":
            h0 = _initial_state(t, first.args[1][0], 1, hidden, f"h of the first {what} call")
            c0 = _initial_state(t, first.args[1][1], 1, hidden, f"c of the first {what} call")
        else:
            h0 = _initial_state(t, first.args[1], 1, hidden, f"h of the first {what} call")
            c0 = None
        source = chain.source if chain.source is not None else chain.inputs_from.state(
            len(chain.inputs_from.cells) - 1)
        _emit_recurrent(t, n, chain.kind, source, [(w_ih, w_hh, b_ih, b_hh)], h0, c0,
                        chain.sequence)
    return h


def claim_recurrent(t: _Translator) -> None:
    """Claim the nodes of recurrent layers and cell loops (see the section comment)."""
    for n in t.ep.graph.nodes:
        if _call(n, *_RECURRENT):
            _claim_layer(t, n)
    chains = _cell_chains(t)
    by_state = {c.state(k).name: (c, k) for c in chains for k in range(len(c.cells))
                if c.state(k) is not None}
    reasons = {id(c): _locate_steps(c, by_state) for c in chains}
    for chain in chains:
        dependents = [cell for d in chains if d.inputs_from is chain for cell in d.cells]
        why = reasons[id(chain)] or _claim_chain(chain, dependents)
        what = "GRUCell" if chain.kind == "gru" else "LSTMCell"
        if why is not None:  # reported once, at the first call (the others depend on it)
            t.claimed[chain.cells[0].name] = _refuse(
                f"a {what} loop that intquant cannot run as one recurrent layer: {why} "
                "(supported: h = cell(x[:, t], h) for every t in order, h starting from a "
                "constant such as zeros; then the last h, or torch.stack of every h along "
                "dim 1)")
            continue
        for c in chain.cells[:-1]:
            t.claimed[c.name] = _no_op
        if chain.kind == "lstm":
            for k in range(len(chain.cells)):
                for idx in (0, 1):
                    g = chain.cell_out(k, idx)
                    if g is not None:
                        t.claimed[g.name] = _no_op
            t.claimed[chain.state(len(chain.cells) - 1).name] = _alias_to(chain.cells[-1])
        t.claimed[chain.cells[-1].name] = _chain_handler(chain)
        if chain.stack is not None:
            t.claimed[chain.stack.name] = _alias_to(chain.cells[-1])
        _claim_step_nodes(t, chain)


def _claim_step_nodes(t: _Translator, chain: _CellChain) -> None:
    """The x[:, t] selections (and the unbind, transpose) that only the loop reads."""
    done = {s for s in chain.step_nodes if set(s.users) <= set(chain.cells)}
    for s in chain.step_nodes:
        parent = s.args[0]  # the unbind, or the selected sequence
        if _call(s, _GETITEM) and set(parent.users) <= done:
            done.add(parent)
        seq = parent.args[0] if _call(s, _GETITEM) else parent
        if _swaps_batch_and_time(seq) and set(seq.users) <= done:
            done.add(seq)
    for node in done:
        t.claimed[node.name] = _no_op


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
    "aten.hardswish.default": _unary("hardswish"),
    "aten.hardswish_.default": _unary("hardswish"),
    "aten.hardsigmoid.default": h_hardsigmoid,
    "aten.hardsigmoid_.default": h_hardsigmoid,
    "aten.silu.default": _unary("silu"),
    "aten.silu_.default": _unary("silu"),
    "aten.gelu.default": h_gelu,
    "aten.gelu_.default": h_gelu,
    "aten.elu.default": h_elu,
    "aten.elu_.default": h_elu,
    "aten.selu.default": h_selu,
    "aten.selu_.default": h_selu,
    "aten.celu.default": h_celu,
    "aten.celu_.default": h_celu,
    "aten.prelu.default": h_prelu,
    "aten._prelu_kernel.default": h_prelu,
    "aten.erf.default": _unary("erf"),
    "aten.sigmoid_.default": _unary("sigmoid"),
    "aten.tanh_.default": _unary("tanh"),

    # -- transformer pieces: normalisation, matmul, slicing --
    "aten.transpose.int": h_transpose,
    "aten.t.default": h_transpose,
    "aten.select.int": h_select,
    "aten.slice.Tensor": h_slice,
    "aten.narrow.default": h_narrow,
    "aten.layer_norm.default": h_layer_norm,
    "aten.native_layer_norm.default": h_layer_norm,
    "aten.matmul.default": h_matmul,
    "aten.bmm.default": h_matmul,
    "aten.scaled_dot_product_attention.default": h_sdpa,
    "aten.squeeze.default": h_reshape,

    # -- recurrent layers --
    "aten.zeros.default": h_zeros,
    "aten.new_zeros.default": h_zeros,
    "aten.zeros_like.default": h_zeros,

    # -- upsampling and transposed convolution --
    "aten.upsample_nearest1d.vec": _upsample("nearest"),
    "aten.upsample_nearest2d.vec": _upsample("nearest"),
    "aten.upsample_nearest1d.default": _upsample("nearest"),
    "aten.upsample_nearest2d.default": _upsample("nearest"),
    "aten._upsample_nearest_exact1d.vec": _upsample("nearest"),  # = nearest for integer factors
    "aten._upsample_nearest_exact2d.vec": _upsample("nearest"),
    "aten.upsample_linear1d.vec": _upsample("bilinear", 2),
    "aten.upsample_bilinear2d.vec": _upsample("bilinear", 2),
    "aten.upsample_linear1d.default": _upsample("bilinear", 2),
    "aten.upsample_bilinear2d.default": _upsample("bilinear", 2),
    "aten.conv_transpose1d.default": h_conv_transpose,
    "aten.conv_transpose2d.input": h_conv_transpose,
}

# Handlers that read where the batch axis is (``_Translator.batch_axis``) or do not care
# (elementwise); every other handler gets batch-first inputs only.
BATCH_ANYWHERE: frozenset[str] = frozenset({
    "<built-in function getitem>", "aten.dropout.default", "aten.alias.default",
    "aten.clone.default", "aten.contiguous.default", "aten.detach.default", "aten.relu.default",
    "aten.relu_.default", "aten.hardtanh.default", "aten.hardtanh_.default",
    "aten.relu6.default", "aten.clamp.default", "aten.leaky_relu.default",
    "aten.leaky_relu_.default", "aten.sigmoid.default", "aten.tanh.default",
    "aten.softmax.int", "aten._softmax.default", "aten.mean.dim", "aten.linear.default",
    "aten.view.default", "aten.reshape.default", "aten._unsafe_view.default",
    "aten.flatten.using_ints", "aten.unflatten.int", "aten.squeeze.dim", "aten.squeeze.dims",
    "aten.unsqueeze.default", "aten.permute.default", "aten.add.Tensor", "aten.add.Scalar",
    "aten.sub.Tensor", "aten.sub.Scalar", "aten.mul.Tensor", "aten.mul.Scalar",
    # -- transformer pieces --
    "aten.transpose.int", "aten.t.default", "aten.select.int", "aten.slice.Tensor",
    "aten.narrow.default", "aten.layer_norm.default", "aten.native_layer_norm.default",
    "aten.matmul.default", "aten.bmm.default", "aten.scaled_dot_product_attention.default",
    "aten.squeeze.default",
})
# Passes over the whole exported graph before the node-by-node walk: each may claim nodes
# (``_Translator.claimed``) whose meaning spans several nodes, replacing their HANDLERS entry.
CLAIMS: list[Callable[[_Translator], None]] = [
    claim_recurrent,
]


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
