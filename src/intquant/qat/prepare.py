"""prepare(model, config): a trainable copy of a float model with fake-quantized tensors.

The copy is traced with torch.fx, and fake quantizers are placed exactly where the integer
graph will hold quantized tensors, so what QAT trains is what lowering deploys:
- every Conv1d/Conv2d/ConvTranspose1d/ConvTranspose2d/Linear computes with quantized weights
  (``weight_quant``; per output channel, which for a transposed convolution is dim 1 of torch's
  weight within each group: the quantizers see the weight output channel first, as lowering);
- the tensor each such layer produces *after its BatchNorm and fused activation* (ReLU, ReLU6,
  Hardtanh — the ops lowering fuses into the layer) passes through ``<layer>.output_quant``;
- the graph input passes through ``input_quant``;
- every add of two activations (a residual connection) becomes a :class:`QAdd` module whose
  output, after its fused activation, passes through ``<add>.output_quant``: the integer
  ``add`` op requantizes its sum, so QAT trains that format too. An add is named after the
  module whose forward computes it (``blocks.0.add``); it uses the ``uniform`` quantizer (``lsq``
  when that is the activation quantizer) at ``act_bits`` (8 bits when ``act_quantizer`` is
  ``sign``), the first/last rule applies as to layers, and ``Config.overrides[<add>]`` sets
  ``act_bits`` / ``act_quantizer``.
- every elementwise activation the integer graph computes as its own op (Hardswish,
  Hardsigmoid, SiLU, GELU, ELU, LeakyReLU, PReLU, Sigmoid, Tanh — modules, or ``torch.sigmoid``
  / ``F.gelu`` ... calls, which become :class:`Activation` modules named ``<module>.<function>``)
  passes through ``<activation>.output_quant``, and every product or difference of two
  activations becomes a :class:`QMul` / :class:`QSub` module (``<module>.mul``, ``.sub``) with
  its ``output_quant``: squeeze-excitation trains every format the integer graph holds. They use
  the adds' quantizer and bits (unsigned for sigmoid / hardsigmoid outputs); a module called
  twice has its first call's output quantized (later calls are calibrated at conversion).
- every nn.GRU / nn.LSTM / GRUCell / LSTMCell becomes a ``QGRU`` / ``QLSTM`` / ``QGRUCell`` /
  ``QLSTMCell`` whose gate matrices are fake-quantized on the int8 row grid lowering deploys
  (``modules.fake_quant_rows``); convert passes those row scales to PTQ. The gates and the
  state are 16-bit fixed point in the integer op and are not fake-quantized (their rounding is
  far below the weights'). A cell loop must be traceable by torch.fx: a fixed number of steps
  (``for t in range(self.steps)``), not ``range(x.shape[1])`` or ``x.unbind(1)``.
Pools, flatten and reshapes between layers keep the quantized values unchanged (max pooling of
codes equals the codes of max pooling), as in the integer graph.

Precision policy (``Config.first_last_bits``, default 8): the first and last layers' weights,
the graph input, the tensor(s) feeding the last layer and the network output use that many bits
with the ``uniform`` quantizers; every other layer uses ``weight_bits``/``weight_quantizer`` and
``act_bits``/``act_quantizer``. ``Config.overrides[layer_name]`` sets ``weight_bits``,
``weight_quantizer``, ``act_bits`` (the layer's output tensor), ``act_quantizer`` per layer;
the key ``"input"`` addresses the input quantizer. None disables the first/last rule.

The ``sign`` activation quantizer (BNN) replaces the layer's activation function (it is the
activation), so it is placed after the BatchNorm and the ReLU/Hardtanh node is removed.

The result is a :class:`~intquant.qat.model.QATModel`: training mode runs this fake-quantized
network, eval mode runs the deployed integer model (see :mod:`intquant.qat.model`).
"""

from __future__ import annotations

import copy
import operator
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..config import Config
from .model import CALIBRATION_SAMPLES, QATModel
from .modules import (
    QUANT_LAYERS,
    QUANT_RECURRENT,
    Activation,
    GridAvgPool,
    QAdd,
    QMul,
    QSub,
    to_foldable_bn,
    to_qat_layer,
    to_qat_recurrent,
)
from .quantizers import ACT_QUANTIZERS, WEIGHT_QUANTIZERS, make_act_quantizer, make_weight_quantizer

__all__ = ["prepare", "recalibrate_batchnorm", "LayerInfo", "AddInfo", "QAT_OVERRIDE_KEYS"]

QAT_OVERRIDE_KEYS = ("weight_bits", "weight_quantizer", "act_bits", "act_quantizer")
INPUT_KEY = "input"

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
_RELU_FUNCS = {F.relu, torch.relu, F.relu6}
_ACT_FUNCS = _RELU_FUNCS | {F.hardtanh}
_UNSUPPORTED_LAYERS = (nn.Conv3d, nn.ConvTranspose3d, nn.Bilinear)


_NOMINAL_BITS = {"binary": 1, "binary_stochastic": 1, "xnor": 1, "ternary": 2, "sign": 1}


@dataclass
class LayerInfo:
    """What prepare decided for one quantized layer (kept on the prepared model for convert)."""

    name: str
    weight_quantizer: str
    weight_bits: int
    act_quantizer: str
    act_bits: int
    batchnorm: str | None = None  # module name of the BatchNorm folded at conversion
    activation: str | None = None  # "relu" | "relu6" | "hardtanh" | None (as fused)
    act_signed: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class AddInfo:
    """What prepare decided for one residual add (its output format is trained too)."""

    name: str
    act_quantizer: str
    act_bits: int
    activation: str | None = None  # fused activation after the add, as for layers
    act_signed: bool = True


def _is_module(node: fx.Node, modules: dict[str, nn.Module], types) -> bool:
    return node.op == "call_module" and isinstance(modules.get(node.target), types)


def _activation_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """'relu' | 'relu6' | 'hardtanh' if ``node`` is an activation lowering fuses, else None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, nn.ReLU6):
            return "relu6"
        if isinstance(m, nn.Hardtanh):
            return "relu6" if (m.min_val, m.max_val) == (0.0, 6.0) else \
                ("relu_clip" if m.min_val >= 0 else "hardtanh")
        return None
    if node.op == "call_function" and node.target in _ACT_FUNCS:
        if node.target is F.relu6:
            return "relu6"
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            return "relu_clip" if lo >= 0 else "hardtanh"
        return "relu"
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _consumer_layers(node: fx.Node, layer_nodes: set[fx.Node]) -> tuple[set[fx.Node], bool]:
    """Layers reached from ``node`` through non-layer ops; and whether the output is reached."""
    found: set[fx.Node] = set()
    reaches_output = False
    seen = {node}
    todo = deque(node.users)
    while todo:
        n = todo.popleft()
        if n in seen:
            continue
        seen.add(n)
        if n in layer_nodes:
            found.add(n)
        elif n.op == "output":
            reaches_output = True
        else:
            todo.extend(n.users)
    return found, reaches_output


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _validate_overrides(config: Config, layer_names: list[str], add_names: list[str]) -> None:
    known = set(layer_names) | set(add_names) | {INPUT_KEY}
    for name, ov in config.overrides.items():
        if name not in known:
            adds = f", adds: {add_names}" if add_names else ""
            raise ValueError(f"Config.overrides[{name!r}]: no Conv/Linear layer of that name; "
                             f"layers: {layer_names}{adds} (and {INPUT_KEY!r} for the input)")
        if name in add_names and ({"weight_bits", "weight_quantizer"} & set(ov)):
            raise ValueError(f"Config.overrides[{name!r}]: an add, product or activation has "
                             "no weights; set act_bits or act_quantizer")
        q = ov.get("weight_quantizer")
        if q is not None and q not in WEIGHT_QUANTIZERS:
            raise ValueError(f"Config.overrides[{name!r}]['weight_quantizer'] = {q!r}; "
                             f"choose one of {WEIGHT_QUANTIZERS}")
        q = ov.get("act_quantizer")
        if q is not None and q not in ACT_QUANTIZERS:
            raise ValueError(f"Config.overrides[{name!r}]['act_quantizer'] = {q!r}; "
                             f"choose one of {ACT_QUANTIZERS}")


_PASS_THROUGH_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity,
                         nn.Unflatten, GridAvgPool)
_PASS_THROUGH_CALLS = {"flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze"}


def _input_quantizer(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The fake quantizer whose output reaches ``node``'s input unchanged (through max pools,
    flatten, reshapes, dropout, grid-rounding average pools), i.e. the format of the layer's
    input; None if there is none. The layer's bias is rounded to that input's accumulator grid
    in eval mode.
    """
    cur = node.args[0] if node.args else None
    while isinstance(cur, fx.Node):
        if cur.op == "call_module":
            if cur.target == "input_quant" or cur.target.endswith(".output_quant"):
                return gm.get_submodule(cur.target)
            if not isinstance(gm.get_submodule(cur.target), _PASS_THROUGH_MODULES):
                return None
        elif cur.op == "call_method" and cur.target in _PASS_THROUGH_CALLS:
            pass
        elif cur.op == "call_function" and cur.target in (torch.flatten, torch.reshape):
            pass
        else:
            return None
        cur = cur.args[0] if cur.args else None
    return None


def _fixed_count_pool(m: nn.Module) -> bool:
    if isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
        return all(v == 1 for v in size)
    if isinstance(m, nn.AvgPool1d | nn.AvgPool2d):
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding,)
        return all(p == 0 for p in pad) and not m.ceil_mode
    return False


def _wrap_average_pools(gm: fx.GraphModule) -> None:
    """Make fixed-count average pools round to their input grid, as the integer op does."""
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        pool = gm.get_submodule(node.target)
        if not _fixed_count_pool(pool):
            continue
        src = _input_quantizer(gm, node)
        if src is not None:
            _set_module(gm, node.target, GridAvgPool(pool, src))


_ADD_FUNCS = (operator.add, torch.add)


def _is_activation_add(node: fx.Node) -> bool:
    """``a + b`` of two computed tensors (not a constant, not a parameter)."""
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCS) or \
        (node.op == "call_method" and node.target == "add")
    if not is_add or len(node.args) != 2 or node.kwargs:
        return False
    return all(isinstance(a, fx.Node) and a.op != "get_attr" for a in node.args)


_BINARY_FUNCS = {"mul": (operator.mul, torch.mul), "sub": (operator.sub, torch.sub)}
_BINARY_MODULES = {"add": QAdd, "mul": QMul, "sub": QSub}


def _binary_kind(node: fx.Node) -> str | None:
    """"mul" / "sub" for ``a * b`` / ``a - b`` of two computed tensors, else None."""
    for kind, funcs in _BINARY_FUNCS.items():
        if (node.op == "call_function" and node.target in funcs) or \
                (node.op == "call_method" and node.target == kind):
            if len(node.args) == 2 and not node.kwargs and all(
                    isinstance(a, fx.Node) and a.op != "get_attr" for a in node.args):
                return kind
    return None


# Activations the integer graph computes as an op of their own (a table or prelu).
_ACTIVATION_MODULES = (nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.ELU, nn.SELU,
                       nn.LeakyReLU, nn.PReLU, nn.Sigmoid, nn.Tanh)
_ACTIVATION_FUNCS = {F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.silu: "silu",
                     F.gelu: "gelu", F.elu: "elu", F.selu: "selu", F.leaky_relu: "leaky_relu",
                     torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh",
                     F.tanh: "tanh"}
_ACTIVATION_METHODS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}
_NON_NEGATIVE = (nn.Hardsigmoid, nn.Sigmoid)


def _activation_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """An elementwise activation call whose extra arguments are constants."""
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _ACTIVATION_MODULES)
    fn = node.target if node.op == "call_function" else None
    if node.op == "call_method":
        fn = _ACTIVATION_METHODS.get(node.target)
    if fn not in _ACTIVATION_FUNCS or not node.args:
        return False
    rest = list(node.args[1:]) + list(node.kwargs.values())
    return all(not isinstance(a, fx.Node) for a in rest)


def _activation_module(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module:
    if node.op == "call_module":
        return modules[node.target]
    fn = node.target if node.op == "call_function" else _ACTIVATION_METHODS[node.target]
    return Activation(fn, node.args[1:], node.kwargs)


def _module_path(node: fx.Node) -> str:
    """The module whose forward makes the call ("" at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _op_names(taken: set[str], nodes: list[fx.Node], suffixes: list[str]) -> list[str]:
    """A new module path per node: ``<module>.<suffix>`` (``_2``, … if repeated)."""
    names = []
    for node, suffix in zip(nodes, suffixes, strict=True):
        parent = _module_path(node)
        base = f"{parent}.{suffix}" if parent else suffix
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        names.append(name)
    return names


def _activation_names(gm: fx.GraphModule, nodes: list[fx.Node], taken: set[str]) -> list[str]:
    """Module activations keep their path; functional ones get ``<module>.<function>``."""
    names = []
    for node in nodes:
        if node.op == "call_module":
            names.append(node.target)
        else:
            fn = node.target if node.op == "call_function" else _ACTIVATION_METHODS[node.target]
            names.append(_op_names(taken, [node], [_ACTIVATION_FUNCS[fn]])[0])
    return names


def _add_info(name: str, act_kind: str | None, edge: bool, config: Config) -> AddInfo:
    ov = config.overrides.get(name, {})
    general = "lsq" if config.act_quantizer == "lsq" else "uniform"
    bits = 8 if config.act_quantizer == "sign" else config.act_bits
    if edge:
        general, bits = "uniform", config.first_last_bits
    kind = ov.get("act_quantizer", general)
    return AddInfo(name=name, act_quantizer=kind, act_bits=int(ov.get("act_bits", bits)),
                   activation=act_kind,
                   act_signed=act_kind not in ("relu", "relu6", "relu_clip"))


def _quantize_adds(gm: fx.GraphModule, adds: list[fx.Node], names: list[str],
                   last: fx.Node, layer_set: set[fx.Node], config: Config,
                   kinds: list[str] | None = None) -> dict[str, AddInfo]:
    """Turn each activation add (mul, sub: ``kinds``) into a QAdd (QMul, QSub) module and
    quantize its (activated) output."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    infos: dict[str, AddInfo] = {}
    kinds = kinds or ["add"] * len(adds)
    for node, name, kind in zip(adds, names, kinds, strict=True):
        act = _single_user(node)
        act_kind = _activation_kind(act, modules) if act is not None else None
        end = act if act_kind is not None else node
        consumers, to_output = _consumer_layers(end, layer_set)
        edge = config.first_last_bits is not None and (last in consumers or
                                                       (to_output and not consumers))
        info = _add_info(name, act_kind, edge, config)
        if info.act_quantizer == "sign":
            raise ValueError(f"Config.overrides[{name!r}]: an add output cannot use 'sign'")
        oq = make_act_quantizer(info.act_quantizer, info.act_bits, info.act_signed,
                                f"{kind} {name!r}")
        _set_module(gm, name, _BINARY_MODULES[kind](oq))
        with graph.inserting_after(node):
            add_node = graph.call_module(name, tuple(node.args[:2]))
        node.replace_all_uses_with(add_node)
        graph.erase_node(node)
        anchor = act if act_kind is not None else add_node
        with graph.inserting_after(anchor):
            qnode = graph.call_module(f"{name}.output_quant", (anchor,))
        anchor.replace_all_uses_with(qnode, delete_user_cb=lambda u, q=qnode: u is not q)
        infos[name] = info
    return infos


def _quantize_activations(gm: fx.GraphModule, nodes: list[fx.Node], names: list[str],
                          last: fx.Node, layer_set: set[fx.Node],
                          config: Config) -> dict[str, AddInfo]:
    """Functional activations become :class:`Activation` modules; each activation's output
    passes through ``<name>.output_quant`` (first call of a module called several times)."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    infos: dict[str, AddInfo] = {}
    for node, name in zip(nodes, names, strict=True):
        if name in infos:
            continue
        module = _activation_module(node, modules)
        consumers, to_output = _consumer_layers(node, layer_set)
        edge = config.first_last_bits is not None and (last in consumers or
                                                       (to_output and not consumers))
        info = _add_info(name, None, edge, config)
        fn = getattr(module, "fn", None)
        info.act_signed = not (isinstance(module, _NON_NEGATIVE) or
                               _ACTIVATION_FUNCS.get(fn) in ("sigmoid", "hardsigmoid"))
        if info.act_quantizer == "sign":
            raise ValueError(f"Config.overrides[{name!r}]: an activation output cannot use "
                             "'sign'")
        oq = make_act_quantizer(info.act_quantizer, info.act_bits, info.act_signed,
                                f"activation {name!r}")
        if node.op != "call_module":
            _set_module(gm, name, module)
            with graph.inserting_after(node):
                call = graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(call)
            graph.erase_node(node)
            node = call
        gm.get_submodule(name).add_module("output_quant", oq)
        with graph.inserting_after(node):
            qnode = graph.call_module(f"{name}.output_quant", (node,))
        node.replace_all_uses_with(qnode, delete_user_cb=lambda u, q=qnode: u is not q)
        infos[name] = info
    return infos


def _trace(model: nn.Module) -> QATModel:
    try:
        return QATModel(model, fx.Tracer().trace(model))
    except Exception as e:  # fx raises many types; say what to do
        cells = any(isinstance(m, nn.RNNCellBase) for m in model.modules())
        raise ValueError(
            f"prepare: torch.fx could not trace {type(model).__name__} ({type(e).__name__}: {e}). "
            "QAT needs a model without data-dependent Python control flow in forward()."
            + (" A GRUCell / LSTMCell loop needs a fixed number of steps (for t in "
               "range(self.steps): ... x[:, t]), not range(x.shape[1]) or x.unbind(1)."
               if cells else "")
        ) from e


def prepare(model: nn.Module, config: Config | None = None,
            example_input: torch.Tensor | None = None) -> QATModel:
    """A QAT copy of ``model`` (the original is not modified), in training mode.

    ``example_input`` (a batch) initialises the data-dependent quantizers (observer ranges, LSQ
    steps, PACT clips) with the fake-quantized network in eval mode; without it they initialise
    on the first batch the model sees. Its first samples are kept (``calibration_input``) for
    tensors whose format QAT does not train. The returned :class:`QATModel` (a
    ``torch.fx.GraphModule``) keeps the original module names (``features.0`` …); its
    ``qat_layers`` attribute maps each name to a :class:`LayerInfo`, ``qat_adds`` each residual
    add to an :class:`AddInfo`, ``qat_elems`` each product, difference and activation output to
    one. In eval mode it runs the deployed integer model.
    """
    config = config or Config()
    if not isinstance(config, Config):
        raise ValueError(f"prepare: config must be an intquant.Config, got {type(config).__name__}")
    float_model = copy.deepcopy(model).eval()
    for name, m in float_model.named_modules():
        if isinstance(m, _UNSUPPORTED_LAYERS):
            raise ValueError(f"prepare: layer {name!r} ({type(m).__name__}) has no QAT version; "
                             "supported: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, Linear")
    gm = _trace(float_model)
    # -- recurrent layers --: gate matrices fake-quantized on their deployed int8 row grid
    for name, m in list(gm.named_modules()):
        if type(m) in QUANT_RECURRENT:
            _set_module(gm, name, to_qat_recurrent(m))
    graph = gm.graph
    modules = dict(gm.named_modules())
    layer_nodes = [n for n in graph.nodes if _is_module(n, modules, tuple(QUANT_LAYERS))]
    if not layer_nodes:
        raise ValueError("prepare: the model has no Conv1d/Conv2d/ConvTranspose1d/"
                         "ConvTranspose2d/Linear layer to quantize")
    names = [n.target for n in layer_nodes]
    adds = [n for n in graph.nodes if _is_activation_add(n)]
    taken = {name for name, _ in gm.named_modules()}
    add_names = _op_names(taken, adds, ["add"] * len(adds))
    binary = [n for n in graph.nodes if _binary_kind(n) is not None]
    binary_kinds = [_binary_kind(n) for n in binary]
    binary_names = _op_names(taken, binary, binary_kinds)
    acts = [n for n in graph.nodes if _activation_node(n, modules)]
    act_names = _activation_names(gm, acts, taken)
    _validate_overrides(config, names, add_names + binary_names + act_names)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"prepare: the model must take exactly one input, it takes "
                         f"{len(placeholders)}")

    fl = config.first_last_bits
    first, last = layer_nodes[0], layer_nodes[-1]
    layer_set = set(layer_nodes)
    infos: dict[str, LayerInfo] = {}
    plan = []
    for node in layer_nodes:
        name = node.target
        bn = _single_user(node)
        bn = bn if bn is not None and _is_module(bn, modules, _BN) else None
        after_bn = bn if bn is not None else node
        act = _single_user(after_bn)
        act_kind = _activation_kind(act, modules) if act is not None else None
        act = act if act_kind is not None else None
        end = act if act is not None else after_bn
        consumers, to_output = _consumer_layers(end, layer_set)
        edge_w = fl is not None and node in (first, last)
        edge_a = fl is not None and (node is last or last in consumers or
                                     (to_output and not consumers))
        ov = config.overrides.get(name, {})
        info = LayerInfo(
            name=name,
            weight_quantizer=ov.get("weight_quantizer", "uniform" if edge_w
                                    else config.weight_quantizer),
            weight_bits=int(ov.get("weight_bits", fl if edge_w else config.weight_bits)),
            act_quantizer=ov.get("act_quantizer", "uniform" if edge_a else config.act_quantizer),
            act_bits=int(ov.get("act_bits", fl if edge_a else config.act_bits)),
            batchnorm=bn.target if bn is not None else None,
            activation=act_kind,
            act_signed=act_kind not in ("relu", "relu6", "relu_clip"),
        )
        if info.act_quantizer == "sign":
            info.act_signed = True
            info.activation = None
        # Nominal widths of the fixed-width methods, so reports say W1/W2 as the papers do.
        info.weight_bits = _NOMINAL_BITS.get(info.weight_quantizer, info.weight_bits)
        info.act_bits = _NOMINAL_BITS.get(info.act_quantizer, info.act_bits)
        infos[name] = info
        plan.append((node, bn, act, info))

    for node, bn, act, info in plan:
        where = f"layer {info.name!r}"
        wq = make_weight_quantizer(info.weight_quantizer, info.weight_bits, where)
        oq = make_act_quantizer(info.act_quantizer, info.act_bits, info.act_signed, where)
        qlayer = to_qat_layer(modules[info.name], wq, oq).eval()
        with torch.no_grad():
            qlayer.quantized_weight()  # sizes per-channel parameters (LSQ steps) before training
        _set_module(gm, info.name, qlayer)
        pre_act = bn if bn is not None else node
        anchor = pre_act if (info.act_quantizer == "sign" and act is not None) else \
            (act if act is not None else pre_act)
        with graph.inserting_after(anchor):
            qnode = graph.call_module(f"{info.name}.output_quant", (anchor,))
        if anchor is pre_act and act is not None:  # sign replaces the activation function
            act.replace_all_uses_with(qnode)
            graph.erase_node(act)
        else:
            anchor.replace_all_uses_with(qnode, delete_user_cb=lambda u, q=qnode: u is not q)

    for _node, bn, _, info in plan:
        qlayer = gm.get_submodule(info.name)
        bn_module = None
        if bn is not None:
            bn_module = to_foldable_bn(modules[bn.target])
            _set_module(gm, bn.target, bn_module)
        qlayer.link(bn_module, None)  # the input quantizer is linked below, once it exists

    gm.qat_adds = _quantize_adds(gm, adds, add_names, last, layer_set, config)
    gm.qat_elems = _quantize_adds(gm, binary, binary_names, last, layer_set, config,
                                  binary_kinds)
    gm.qat_elems.update(_quantize_activations(gm, acts, act_names, last, layer_set, config))

    x = placeholders[0]
    ov = config.overrides.get(INPUT_KEY, {})
    in_bits = int(ov.get("act_bits", fl if fl is not None else config.act_bits))
    in_kind = ov.get("act_quantizer", "uniform")
    in_quant = make_act_quantizer(in_kind, in_bits, True, "input")
    gm.add_submodule("input_quant", in_quant)
    with graph.inserting_after(x):
        xq = graph.call_module("input_quant", (x,))
    x.replace_all_uses_with(xq, delete_user_cb=lambda u: u is not xq)
    graph.lint()
    gm.recompile()
    _wrap_average_pools(gm)
    for node, _bn, _, info in plan:
        qlayer = gm.get_submodule(info.name)
        qlayer.link(qlayer.__dict__.get("_bn"), _input_quantizer(gm, node))
        qlayer.sign_output = info.act_quantizer == "sign"
    gm.qat_layers = infos
    gm.qat_config = config
    if example_input is not None:
        xt = torch.as_tensor(np.asarray(example_input, dtype=np.float32)) \
            if not isinstance(example_input, torch.Tensor) else example_input.to(torch.float32)
        gm.calibration_input = xt[:CALIBRATION_SAMPLES].detach().cpu().numpy().copy()
        gm.eval()
        with torch.no_grad():
            gm.fake_quant_forward(xt)
    return gm.train()


def recalibrate_batchnorm(model: fx.GraphModule, x: torch.Tensor | Any,
                          batch_size: int = 256) -> fx.GraphModule:
    """Re-estimate BatchNorm running statistics with the *deployed* (eval-mode) quantizers.

    Stochastic quantizers (``binary_stochastic``) train with random weights, so the running
    statistics BatchNorm collects describe a noisier network than the deterministic one that is
    deployed. This pass recomputes them as a plain average over ``x`` with every quantizer in
    eval mode and BatchNorm computing batch statistics, then leaves the model in eval mode.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) \
        else x.to(torch.float32)
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    saved = [(m.momentum, getattr(m, "folded", None)) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the plain mean over all batches
        if hasattr(m, "folded"):
            m.folded = False  # a folded BN must compute batch statistics in this pass
        m.train()
    with torch.no_grad():
        for i in range(0, xt.shape[0], batch_size):
            model(xt[i:i + batch_size])
    for m, (momentum, folded) in zip(bns, saved, strict=True):
        m.momentum = momentum
        if folded is not None:
            m.folded = folded
        m.eval()
    return model
