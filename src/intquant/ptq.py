"""Post-training quantization: the one-call entry point ``quantize(model, calib, config)``.

capture (torch.export) → passes (fold BN, fuse activations) → calibrate (observers on the
float graph's activations) → plan (formats per tensor) → lower (IntGraph).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .graph import Graph, Node, capture, optimize, run_graph
from .graph.execute import run_node
from .graph.ir import SAME_FORMAT
from .lower import QuantPlan, lower
from .numerics import QParams, choose_qparams, dequantize
from .numerics import quantize as quantize_array
from .observers import make_observer
from .qmodel import QuantizedModel

WEIGHTED = ("conv", "linear")


def fixed_output_qparams(op: str, bits: int, name: str) -> QParams | None:
    """Output formats fixed by the contract (TFLM): softmax/sigmoid in [0, 1], tanh in [−1, 1];
    a sign's ±1 (one bit, scale 1)."""
    if op == "sign":
        from .ops.sign import sign_format

        return sign_format(name)
    if op in ("softmax", "sigmoid"):
        if bits <= 8:
            return QParams(scale=[1 / 256], zero_point=[-128], bits=8, name=name)
        return QParams(scale=[1 / 32768], zero_point=[0], bits=16, name=name)
    if op == "tanh":
        if bits <= 8:
            return QParams(scale=[1 / 128], zero_point=[0], bits=8, name=name)
        return QParams(scale=[1 / 32768], zero_point=[0], bits=16, name=name)
    return None


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
    for x in tqdm(batches, desc="calibrating", disable=not progress, leave=False):
        values = run_graph(graph, x, record=True)
        for name in needs_obs:
            observers[name].update(values[name].numpy())
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
            acts[node.name] = observers[node.name].qparams(
                bits, symmetric=symmetric, signed=True, power_of_two=cfg["power_of_two"]
            )
    return acts


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
        return QParams(scale=scale, zero_point=np.zeros(scale.shape, dtype=np.int64), bits=bits,
                       signed=True, axis=0 if scale.size > 1 else None, narrow=True,
                       name=node_name)
    obs = make_observer(weight_calibration(cfg), axis=axis, name=f"{node_name}.weight")
    obs.update(weight)
    return obs.qparams(bits, symmetric=True, signed=True, power_of_two=cfg["power_of_two"])


def weight_error_per_channel(node: Node, x: torch.Tensor, w_qp: QParams,
                             w_float: np.ndarray) -> np.ndarray:
    """E[(Ŵ − W)·x] per output channel over a batch: the bias shift weight rounding causes."""
    w = w_float
    w_hat = dequantize(quantize_array(node.params["weight"], w_qp), w_qp).astype(np.float32)
    diff = copy.copy(node)
    diff.params = {"weight": w_hat - w}
    diff.act = None
    y = run_node(diff, [x])
    dims = [0] + list(range(2, y.dim()))
    return y.mean(dim=dims).double().numpy()


def correct_biases(graph: Graph, weights: dict[str, QParams], batches: list[np.ndarray],
                   original: Graph) -> Graph:
    """Empirical bias correction (Nagel et al. 2019): subtract the mean output error that
    rounding the weights introduces (vs the ``original`` float weights), measured on the
    calibration inputs of each layer."""
    graph = copy.deepcopy(graph)
    names = [n.name for n in graph.nodes if n.name in weights]
    sums = {n: 0.0 for n in names}
    count = 0
    for x in batches:
        values = run_graph(graph, x, record=True)
        for name in names:
            node = graph.node(name)
            sums[name] = sums[name] + len(x) * weight_error_per_channel(
                node, values[node.inputs[0]], weights[name],
                original.node(name).params["weight"])
        count += len(x)
    for name in names:
        node = graph.node(name)
        bias = node.params.get("bias")
        bias = np.zeros(node.params["weight"].shape[0]) if bias is None else bias
        node.params["bias"] = (bias - sums[name] / count).astype(np.float32)
    return graph


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


def make_plan(graph: Graph, acts: dict[str, QParams], config: Config,
              batches: list[np.ndarray] | None = None) -> QuantPlan:
    weights = {}
    blocked: dict[str, np.ndarray] = {}
    for node in graph.nodes:
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
    if config.bias_correction and batches:
        graph = correct_biases(graph, weights, batches, original)
    rounding = "pow2" if config.power_of_two else config.rounding
    raw = None
    if config.input_spec is not None:
        spec = config.input_spec
        raw = {"dtype": spec.dtype, "raw_scale": spec.raw_scale, "mean": spec.mean,
               "std": spec.std}
    return QuantPlan(graph, acts, weights, rounding, raw)


def prepare_graph(model: torch.nn.Module, example: np.ndarray) -> Graph:
    """Capture and optimize (fold BatchNorm, fuse activations)."""
    return optimize(capture(model, example))


def quantize(model: torch.nn.Module, calib: Any, config: Config | None = None, *,
             progress: bool = True) -> QuantizedModel:
    """Quantize a float model to an integer-only ``QuantizedModel``.

    ``calib``: representative float inputs (array / tensor of shape (N, ...) or an iterable of
    batches). ``config``: see ``intquant.Config`` (default: W8A8 per-channel, TFLM-compatible).
    """
    config = config or Config()
    config.validate()
    batches = as_batches(calib, limit=config.max_calib_samples)
    graph = prepare_graph(model, batches[0])
    for name in config.overrides:
        if name not in {n.name for n in graph.nodes} and not _is_folded(graph, name):
            raise ValueError(
                f"Config.overrides names layer {name!r}, which is not in the model; layers: "
                f"{[n.name for n in graph.nodes if n.op != 'input']}"
            )
    acts = calibrate(graph, batches, config, progress=progress)
    plan = make_plan(graph, acts, config, batches)
    return QuantizedModel(lower(plan), float_graph=graph, plan=plan, config=config)


def _is_folded(graph: Graph, name: str) -> bool:
    return any(name in n.source for n in graph.nodes)
