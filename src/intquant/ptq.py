"""Post-training quantization: the one-call entry point ``quantize(model, calib, config)``.

capture (torch.export) → passes (fold BN, fuse activations) → calibrate (observers on the
float graph's activations) → plan (formats per tensor) → lower (IntGraph).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import methods
from .config import Config
from .data import check_calibration, warn_data
from .graph import Graph, capture, capture_exported, optimize, run_graph
from .graph.ir import SAME_FORMAT, WEIGHTED
from .lower import QuantPlan, lower
from .methods.act_clipping import search_act_clipping
from .methods.equalize import absorb_biases, equalize
from .numerics import QParams, choose_qparams
from .observers import make_observer
from .ops import FLOAT_OPS, float_op
from .progress import bar
from .qmodel import QuantizedModel

CLIPPING_SAMPLES = 1024  # samples the activation clipping search evaluates the output on


def fixed_output_qparams(op: str, bits: int, name: str) -> QParams | None:
    """Output formats fixed by the contract (TFLM): softmax/sigmoid in [0, 1], tanh in [−1, 1];
    a sign's ±1 (one bit, scale 1)."""
    d = FLOAT_OPS.get(op)
    return None if d is None or d.fixed_format is None else d.fixed_format(bits, name)


def as_batches(calib: Any, batch_size: int = 256, limit: int | None = None) -> list[np.ndarray]:
    """Accept an array, a tensor, or an iterable of batches (or (x, y) pairs); return arrays."""
    if isinstance(calib, torch.Tensor):
        calib = calib.detach().cpu().numpy()
    if isinstance(calib, np.ndarray):
        arr = np.asarray(calib, dtype=np.float32)
        if limit is not None:
            arr = arr[:limit]
        batches = [arr[i:i + batch_size] for i in range(0, len(arr), batch_size)]
    elif isinstance(calib, Iterable):
        batches, seen = [], 0
        for b in calib:
            if isinstance(b, (tuple, list)):
                b = b[0]
            if isinstance(b, torch.Tensor):
                b = b.detach().cpu().numpy()
            b = np.asarray(b, dtype=np.float32)
            batches.append(b)
            seen += len(b)
            if limit is not None and seen >= limit:
                break
    else:
        raise TypeError(
            "calib must be an array, a tensor or an iterable of batches, "
            f"got {type(calib).__name__}"
        )
    if not batches or sum(len(b) for b in batches) == 0:
        raise ValueError("calibration data is empty; pass some representative input samples")
    for b in batches:
        if not np.all(np.isfinite(b)):
            raise ValueError("calibration data contain NaN or inf values; clean them first")
    return batches


def _act_format(cfg: dict[str, Any], name: str) -> tuple[int, bool]:
    bits = int(cfg["act_bits"])
    symmetric = bool(cfg["symmetric_activations"]) or bits > 8
    return bits, symmetric


def calibrate(graph: Graph, batches: list[np.ndarray], config: Config,
              progress: bool = True) -> dict[str, QParams]:
    """Run the float graph on the calibration batches and choose every activation format."""
    observers: dict[str, Any] = {}
    needs_obs = []
    for node in graph.nodes:
        if node.op in SAME_FORMAT:
            continue
        cfg = config.for_layer(node.name)
        if cfg.get("act_qparams") is not None or cfg.get("act_range") is not None:
            continue
        if fixed_output_qparams(node.op, cfg["act_bits"], node.name) is not None:
            continue
        observers[node.name] = make_observer(
            cfg["calibration"], percentile=config.percentile, name=node.name
        )
        needs_obs.append(node.name)
    inner = [n for n in graph.nodes if n.op != "input" and float_op(n.op).observe is not None]
    for x in bar(batches, "calibrating", progress):
        values = run_graph(graph, x, record=True)
        for name in needs_obs:
            observers[name].update(values[name].numpy())
        observe_inner(inner, values, observers)
    acts: dict[str, QParams] = {}
    for node in graph.nodes:
        cfg = config.for_layer(node.name)
        bits, symmetric = _act_format(cfg, node.name)
        if node.op in SAME_FORMAT:
            acts[node.name] = acts[node.inputs[0]]
            continue
        fixed = fixed_output_qparams(node.op, bits, node.name)
        if cfg.get("act_qparams") is not None:
            acts[node.name] = cfg["act_qparams"]
        elif cfg.get("act_range") is not None:
            lo, hi = cfg["act_range"]
            acts[node.name] = choose_qparams(lo, hi, bits=bits, symmetric=symmetric,
                                             power_of_two=cfg["power_of_two"], name=node.name)
        elif fixed is not None:
            acts[node.name] = fixed
        else:
            acts[node.name] = with_headroom(observers[node.name].qparams(
                bits, symmetric=symmetric, signed=True, power_of_two=cfg["power_of_two"]
            ), config.wide_act_headroom)
    for node in inner:  # state inside an op: its whole range, 16-bit (FloatOpDef.observe)
        prefix = node.name + "/"
        for name in [k for k in observers if k.startswith(prefix)]:
            acts[name] = observers[name].qparams(16, symmetric=True, signed=True)
    return acts


def attention_tensors(graph: Graph) -> set[str]:
    """Tensors inside attention that a rounding hurts most: each operand of a matmul of two
    activations (Q, K, V — the node that produces it, through views and slices, when that
    node feeds nothing but matmuls), and each matmul whose output goes to a softmax (the
    scores). A product of two rounded operands carries both errors, and the softmax turns an
    absolute error δ of a score into a relative error ≈ δ of a probability: a sharp attention
    (scores spanning tens of units) needs the scores and their operands finer than 8 bits.
    The tensors are small (tokens × features), so the RAM cost is small."""

    def end_users(name: str) -> list:
        """The consumers of ``name``, looking through format-preserving nodes."""
        out = []
        for c in graph.consumers(name):
            out += end_users(c.name) if c.op in SAME_FORMAT else [c]
        return out

    def producer(name: str):
        node = graph.node(name)
        while node.op in SAME_FORMAT:
            node = graph.node(node.inputs[0])
        return node

    def is_matmul(node) -> bool:
        return node.op != "input" and float_op(node.op).two_activation_matmul

    wide = set()
    for mm in (n for n in graph.nodes if is_matmul(n)):
        if any(float_op(u.op).exponentiates_input for u in end_users(mm.name)):
            wide.add(mm.name)
        for i in mm.inputs:
            src = producer(i)
            users = end_users(src.name)
            if (src.op != "input" and float_op(src.op).fixed_format is None
                    and users and all(is_matmul(u) for u in users)
                    and src.name != graph.output):
                wide.add(src.name)
    return wide


def widen_attention(graph: Graph, config: Config) -> Config:
    """``config`` with the attention tensors (``attention_tensors``) at
    ``config.attention_act_bits`` where the layer's own setting is narrower and the user set
    no format for it."""
    bits = config.attention_act_bits
    if bits is None:
        return config
    overrides = dict(config.overrides)
    for name in sorted(attention_tensors(graph)):
        cfg = config.for_layer(name)
        own = overrides.get(name, {})
        if cfg["act_bits"] >= bits or any(k in own for k in ("act_bits", "act_range",
                                                                "act_qparams")):
            continue
        overrides[name] = {**own, "act_bits": bits}
    return dataclasses.replace(config, overrides=overrides)


def with_headroom(qp: QParams, factor: float) -> QParams:
    """A calibrated format wider than 8 bits (symmetric: zero point 0) with its range grown by
    ``factor`` (``Config.wide_act_headroom``); 8-bit formats unchanged."""
    if qp.bits <= 8 or factor == 1.0 or np.any(qp.zero_point != 0):
        return qp
    return dataclasses.replace(qp, scale=qp.scale * factor)


@torch.no_grad()
def observe_inner(nodes: list, values: dict, observers: dict) -> None:
    """Record the ranges of the tensors computed inside ``nodes`` (``FloatOpDef.observe``, e.g.
    an LSTM's cell state) as ``observers["<node>/<key>"]``: max-abs observers, because a
    state clipped by its format stays wrong for every later time step."""
    for node in nodes:
        inner = float_op(node.op).observe(node, [values[i] for i in node.inputs])
        for key, v in inner.items():
            name = f"{node.name}/{key}"
            if name not in observers:
                observers[name] = make_observer("maxabs", name=name)
            observers[name].update(v.numpy())


def weight_calibration(cfg: dict[str, Any]) -> str:
    method = cfg["weight_calibration"]
    if method == "auto":
        return "maxabs" if cfg["weight_bits"] >= 8 else "mse"
    return method


def weight_qparams(node_name: str, weight: np.ndarray, cfg: dict[str, Any]) -> QParams:
    """Symmetric (narrow-range) weight format per tensor / channel, from the chosen observer."""
    bits = int(cfg["weight_bits"])
    if cfg.get("weight_qparams") is not None:
        return cfg["weight_qparams"]
    gran = cfg["granularity"]
    axis = 0 if gran == "per_channel" else None
    if cfg.get("weight_scale") is not None:
        scale = np.asarray(cfg["weight_scale"], dtype=np.float64).reshape(-1)
        # Trained codes (QAT): the full two's complement range, so that LSQ's −2^(b−1) stays
        # a b-bit code (packed at b bits); symmetric grids never reach it.
        return QParams(scale=scale, zero_point=np.zeros(scale.shape, dtype=np.int64), bits=bits,
                       signed=True, axis=0 if scale.size > 1 else None, narrow=False,
                       name=node_name)
    if bits == 1 and not cfg["power_of_two"]:
        return binary_weight_qparams(node_name, weight, axis)
    if bits == 2 and cfg.get("weight_quantizer") != "ternary" and not cfg["power_of_two"]:
        return two_bit_weight_qparams(node_name, weight, axis)
    obs = make_observer(weight_calibration(cfg), axis=axis, name=f"{node_name}.weight")
    obs.update(weight)
    return obs.qparams(bits, symmetric=True, signed=True, power_of_two=cfg["power_of_two"])


def inner_weight_qparams(node: Any, cfg: dict[str, Any]) -> dict[str, QParams]:
    """Formats of the weight matrices of an op that is not a conv/linear (a GRU's gate
    matrices, ``FloatOpDef.weight_tensors``), one scale per row, as ``"<node>/<key>"``. A
    ``weight_scale`` override lists the rows' scales of every matrix in order (what QAT
    trained)."""
    mats = float_op(node.op).weight_tensors(node)
    given = cfg.get("weight_scale")
    out, start = {}, 0
    for key, w in mats.items():
        name = f"{node.name}/{key}"
        if given is not None:
            scale = np.asarray(given, np.float64).reshape(-1)[start:start + w.shape[0]]
            start += w.shape[0]
            out[name] = QParams(scale=scale, zero_point=np.zeros(scale.shape, np.int64),
                                bits=int(cfg["weight_bits"]), signed=True, axis=0, narrow=True,
                                name=name)
        else:
            out[name] = weight_qparams(name, w, {**cfg, "weight_scale": None})
    return out


def _inner_weight_cfg(config: Config, node: Any) -> dict[str, Any]:
    """The settings of an op with inner gate matrices. A node that took stacked layers in
    (``passes.stack_recurrent_layers``: two GRUCell loops, two nn.GRU modules) lists the row
    scales given for each merged layer's name (QAT's), bottom first, when every one has them."""
    cfg = config.for_layer(node.name)
    names = [*node.stacked_below, node.name]
    if len(names) > 1:
        given = [config.for_layer(name)["weight_scale"] for name in names]
        cfg["weight_scale"] = None if any(g is None for g in given) else np.concatenate(
            [np.ravel(np.asarray(g, np.float64)) for g in given])
    return cfg


def _per_channel_rows(weight: np.ndarray, axis: int | None) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    return w.reshape(w.shape[0], -1) if axis == 0 else w.reshape(1, -1)


def binary_weight_qparams(node_name: str, weight: np.ndarray, axis: int | None) -> QParams:
    """1-bit weights: codes sign(w) ∈ {−1, +1}, scale α = mean|w| per channel (or tensor).

    α is the least-squares scale for fixed signs (XNOR-Net, Rastegari et al. 2016, eq. 4).
    """
    alpha = np.abs(_per_channel_rows(weight, axis)).mean(axis=1)
    alpha = np.where(alpha > 0, alpha, 1.0)
    return QParams(scale=alpha, zero_point=np.zeros(alpha.shape, np.int64), bits=1,
                   signed=True, axis=axis if alpha.size > 1 else None, name=node_name)


def two_bit_weight_qparams(node_name: str, weight: np.ndarray, axis: int | None) -> QParams:
    """2-bit weights on the full two's complement grid {−2, −1, 0, 1}·s (four levels, one
    more than ternary's narrow range), s chosen per channel (or tensor) by least squared
    error over a grid of clipping fractions of max|w|/2."""
    rows = _per_channel_rows(weight, axis)
    top = np.abs(rows).max(axis=1) / 2
    top = np.where(top > 0, top, 1.0)
    best_err = np.full(len(top), np.inf)
    scale = top.copy()
    for f in np.linspace(0.3, 1.5, 61):  # one pass per fraction: memory stays O(weights)
        s = top * f
        err = ((np.clip(np.rint(rows / s[:, None]), -2, 1) * s[:, None] - rows) ** 2).sum(1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        scale = np.where(better, s, scale)
    return QParams(scale=scale, zero_point=np.zeros(scale.shape, np.int64), bits=2,
                   signed=True, axis=axis if scale.size > 1 else None, narrow=False,
                   name=node_name)


def block_exponents(block_scale: np.ndarray, max_exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block scales as power-of-two fractions of the channel's largest block scale.

    s'_{c,b} = s_c · 2^(−e_{c,b}) with e = floor(log2(s_c / s_{c,b})) clipped to [0, max_exponent]
    (so s' ≥ s: the block's range stays covered). Returns (s_c, e).
    """
    s_c = block_scale.max(axis=1)
    e = np.floor(np.log2(s_c[:, None] / block_scale))
    return s_c, np.clip(e, 0, max_exponent).astype(np.int64)


def per_block_weights(node_name: str, weight: np.ndarray, cfg: dict[str, Any],
                      block: int) -> tuple[np.ndarray, QParams]:
    """Per-block quantization that still runs on per-channel integer kernels.

    Each block of ``block`` consecutive weights of an output channel gets its own scale, a
    power-of-two fraction of the channel's scale (a shared-exponent / block-floating-point
    grid). Its ``bits``-bit codes q, shifted left by the exponent difference, are exact
    integers on the channel's finest grid, stored in an int8 container (int16 when
    bits + exponent range exceed 8). Returns the weights rounded to the block grid (exactly
    representable on the per-channel grid) and that per-channel format.
    """
    bits = int(cfg["weight_bits"])
    container = 8 if bits <= 6 else 16
    obs = make_observer(weight_calibration(cfg), axis=0, block_size=block,
                        name=f"{node_name}.weight")
    obs.update(weight)
    qp = obs.qparams(bits, symmetric=True, signed=True)
    s_c, e = block_exponents(qp.scale.reshape(weight.shape[0], -1), container - bits)
    fine = e.max(axis=1)  # channel grid = s_c · 2^(−max e)
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    idx = np.arange(flat.shape[1]) // block
    block_scale = s_c[:, None] * np.exp2(-e[:, idx].astype(np.float64))
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.rint(flat / block_scale), -qmax, qmax)
    w_block = (q * block_scale).reshape(weight.shape)
    fine_scale = s_c * np.exp2(-fine.astype(np.float64))
    channel_qp = QParams(scale=fine_scale, zero_point=np.zeros_like(fine), bits=container,
                         signed=True, axis=0, narrow=True, name=node_name)
    return w_block.astype(np.float64), channel_qp


def free_layers(graph: Graph, config: Config, blocked: set[str]) -> tuple[set[str], set[str]]:
    """(layers whose integer weights a method may choose, tensors whose format it may change):
    everything a Config override does not fix (QAT grids, explicit ranges, per-block grids)
    and no contract format (softmax/sigmoid/tanh outputs)."""
    weights, acts = set(), set()
    for node in graph.nodes:
        cfg = config.for_layer(node.name)
        if ((node.op in WEIGHTED or methods.has_row_groups(node)) and node.name not in blocked
                and cfg.get("weight_scale") is None and cfg.get("weight_qparams") is None):
            weights.add(node.name)
        if (node.op not in SAME_FORMAT and cfg.get("act_qparams") is None
                and cfg.get("act_range") is None
                and fixed_output_qparams(node.op, cfg["act_bits"], node.name) is None):
            acts.add(node.name)
    return weights, acts


def make_plan(graph: Graph, acts: dict[str, QParams], config: Config,
              batches: list[np.ndarray] | None = None) -> QuantPlan:
    """Weight formats, then the PTQ methods (activation clipping, weight rounding, bias
    correction: ``intquant.methods``), then the plan lowering turns into integers."""
    weights = {}
    blocked: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.op != "input" and float_op(node.op).weight_tensors is not None:
            weights.update(inner_weight_qparams(node, _inner_weight_cfg(config, node)))
        if node.op not in WEIGHTED:
            continue
        cfg = config.for_layer(node.name)
        gran = cfg["granularity"]
        if (isinstance(gran, (tuple, list)) and gran[0] == "per_block"
                and cfg.get("weight_scale") is None and cfg.get("weight_qparams") is None):
            blocked[node.name], weights[node.name] = per_block_weights(
                node.name, node.params["weight"], cfg, int(gran[1]))
        else:
            weights[node.name] = weight_qparams(node.name, node.params["weight"], cfg)
    original = graph
    if blocked:
        graph = copy.deepcopy(graph)
        for name, w in blocked.items():
            graph.node(name).params["weight"] = w
    acts = dict(acts)
    if batches and (config.act_clipping or config.weight_rounding != "nearest"
                    or config.bias_correction != "none"):
        free_weights, free_acts = free_layers(graph, config, set(blocked))
        x = methods.calibration_samples(batches, graph, config.method_samples)
        if config.act_clipping:
            acts = search_act_clipping(graph, acts, weights, x[:CLIPPING_SAMPLES], free_acts)
        graph = methods.round_and_correct(original, graph, acts, weights, config, x,
                                          free_weights, free_acts)
    rounding = "pow2" if config.power_of_two else config.rounding
    raw = None
    if config.input_spec is not None:
        spec = config.input_spec
        raw = {"dtype": spec.dtype, "raw_scale": spec.raw_scale, "mean": spec.mean,
               "std": spec.std}
    return QuantPlan(graph, acts, weights, rounding, raw)


# ----------------------------------------------------------------------------------------------
# The model argument: a module, an ExportedProgram, or a .pt2 / .onnx file
# ----------------------------------------------------------------------------------------------


def load_model_file(path: str | os.PathLike) -> Graph:
    """The float Graph of a torch.export ``.pt2`` or an ``.onnx`` file (not yet optimized)."""
    p = Path(path)
    if p.suffix not in (".pt2", ".onnx"):
        raise ValueError(f"model file {p} must be a torch.export .pt2 file or an .onnx file")
    if not p.is_file():
        raise ValueError(f"model file {p} does not exist")
    if p.suffix == ".onnx":
        from .graph.onnx_import import from_onnx

        return from_onnx(p).graph
    from .graph.pt2 import UnsafePt2Error, load_pt2

    try:
        ep = load_pt2(p)
    except UnsafePt2Error as e:
        raise ValueError(f"{e}; create it with torch.export.save(torch.export.export(model, "
                         f"(example,)), '{p.name}')") from None
    return capture_exported(ep)


def capture_model(model: Any, example: np.ndarray) -> Graph:
    """The float Graph of anything ``quantize`` accepts: an nn.Module, an ExportedProgram (or
    its ``.module()``), a ``GraphModule`` from ``from_onnx``, or a ``.pt2`` / ``.onnx`` path."""
    if isinstance(model, (str, os.PathLike)):
        return load_model_file(model)
    if isinstance(model, torch.export.ExportedProgram):
        return capture_exported(model)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module, a torch.export ExportedProgram, or the path "
                        f"of a .pt2 / .onnx file, got {type(model).__name__}")
    try:
        return capture(model, example)
    except NotImplementedError:
        if not isinstance(model, torch.fx.GraphModule):
            raise
        # ExportedProgram.module(): torch forbids eval() on it, and its graph is fixed already.
        x = torch.as_tensor(np.asarray(example, dtype=np.float32)[:1])
        return capture_exported(torch.export.export(model, (x,)))


def warn_if_unlike_training(graph: Graph, x: np.ndarray, factor: float = 10.0) -> None:
    """Warn when calibration inputs look unlike the training data to the first BatchNorm.

    A BatchNorm's running statistics are the mean and variance its input had in training; on
    calibration inputs preprocessed the same way the spread is close to them. Spread or mean
    off by ``factor`` standard deviations (uint8 0-255 pixels for a model trained on [0, 1])
    means the data are on another scale, and the integer model will be poor.
    """
    bn = next((n for n in graph.nodes if n.op == "batchnorm"), None)
    if bn is None:
        return
    with torch.no_grad():
        values = run_graph(graph, x, record=True)
    v = values[bn.inputs[0]].double().numpy()
    axes = (0,) + tuple(range(2, v.ndim))
    sd = np.sqrt(bn.params["var"].astype(np.float64) + bn.attrs.get("eps", 1e-5))
    spread = float(np.median(v.std(axis=axes) / sd))
    shift = float(np.median(np.abs(v.mean(axis=axes) - bn.params["mean"]) / sd))
    if spread > factor or spread < 1 / factor or shift > factor:
        warn_data(
            f"calibration inputs look unlike the training data: at the first BatchNorm "
            f"({bn.name!r}) their activations have {spread:.3g}x the spread it saw in training "
            f"(mean off by {shift:.3g} standard deviations); data on another scale (e.g. uint8 "
            f"0-255 pixels for a model trained on [0, 1]) give a poor integer model: preprocess "
            f"the calibration data exactly like the training data")


def check_requantization(plan: QuantPlan, largest_input: float) -> None:
    """Refuse, naming the layer, a requantization multiplier the integer contract cannot hold.

    ``s_in · s_w / s_out`` must stay below 2^30 (shift <= 30). It leaves that range when a
    layer's calibrated input range dwarfs its output range, e.g. calibration values of 1e30
    before a ReLU6 whose output is at most 6: such data are on the wrong scale.
    """
    for node in plan.graph.nodes:
        if node.name not in plan.weights:
            continue
        s_in = float(plan.acts[node.inputs[0]].scale.max())
        s_out = float(plan.acts[node.name].scale.min())
        real = s_in * float(plan.weights[node.name].scale.max()) / s_out
        if real >= 2.0**30:
            raise ValueError(
                f"layer {node.name!r}: its calibrated input range (scale {s_in:.3g}) is {real:.3g} "
                f"times its output range, beyond what an integer requantization can hold "
                f"(< 2^30); the calibration data (values up to {largest_input:.3g}) are on the "
                f"wrong scale: preprocess them exactly like the training data")


def equalize_graph(graph: Graph, batches: list[np.ndarray]) -> Graph:
    """Cross-layer equalization, then bias absorption (float rewrites, ``methods.equalize``)."""
    graph, _ = equalize(graph)
    graph, _ = absorb_biases(graph, batches)
    return graph


def prepare_graph(model: Any, example: np.ndarray) -> Graph:
    """Capture and optimize (fold BatchNorm, fuse activations)."""
    graph = capture_model(model, example)
    return optimize(graph)


def quantize(model: Any, calib: Any, config: Config | None = None, *,
             progress: bool = True) -> QuantizedModel:
    """Quantize a float model to an integer-only ``QuantizedModel``.

    ``model``: an ``nn.Module``, a torch.export ``ExportedProgram``, or the path (str or Path)
    of a ``.pt2`` or ``.onnx`` file. ``calib``: representative float inputs (array / tensor of
    shape (N, ...) or an iterable of batches); too few, constant, or on another scale than the
    training data (judged by the first BatchNorm) draw an ``intquant.DataWarning``.
    ``config``: see ``intquant.Config`` (default: W8A8 per-channel, TFLM-compatible).
    ``progress``: a bar for calibration that lasts over ~2 s (``INTQUANT_PROGRESS=0`` too).
    """
    config = config or Config()
    config.validate()
    batches = as_batches(calib, limit=config.max_calib_samples)
    check_calibration(batches)
    graph = capture_model(model, batches[0])
    warn_if_unlike_training(graph, batches[0])
    graph = optimize(graph)
    for name in config.overrides:
        if name not in {n.name for n in graph.nodes} and not _is_folded(graph, name):
            raise ValueError(
                f"Config.overrides names layer {name!r}, which is not in the model; layers: "
                f"{[n.name for n in graph.nodes if n.op != 'input']}"
            )
    if config.equalize:
        graph = equalize_graph(graph, batches)
    config = widen_attention(graph, config)
    acts = calibrate(graph, batches, config, progress=progress)
    plan = make_plan(graph, acts, config, batches)
    check_requantization(plan, max(float(np.abs(b).max()) for b in batches))
    return QuantizedModel(lower(plan), float_graph=graph, plan=plan, config=config)


def _is_folded(graph: Graph, name: str) -> bool:
    return any(name in n.source for n in graph.nodes)
