"""Post-training quantization methods: how the integer weights, biases and activation formats are
chosen once the scales are known. One module per method; ``intquant.ptq`` runs them in order:

    equalize       cross-layer equalization + bias absorption   float rewrite, before calibration
    act_clipping   activation ranges chosen for the output error  after calibration
    nearest / gptq / adaround / qdrop   integer weight codes      layer by layer (qdrop: by block)
    bias_correction                     mean output shift removed layer by layer
    row_groups     GPTQ + bias correction of the gate matrices inside a GRU / LSTM

Every method ends in the same place: the plan's graph holds weights equal to code · scale, so
lowering's round(w / s) gives back exactly the learned codes (``walk.snap``), and the plan's
activation formats are ordinary QParams. Nothing here changes lowering or the IntGraph.

Methods are selected by ``Config`` fields and named recipes (``config.PRESETS``:
``Config.preset("accurate")``), so that a caller — a user, a benchmark, a recommender — can
try each by name. Layers and tensors whose format a Config override fixes (QAT-converted
grids, per-block weights) are never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..graph.ir import WEIGHTED, Graph, Node
from ..numerics import QParams, quantize
from .adaround import adaround_layer
from .bias_correction import correct_bias
from .gptq import gptq_layer
from .qdrop import blocks, reconstruct_block, replace_format
from .row_groups import has_row_groups, round_row_groups
from .walk import Values, sample_count, snap, walk

# GPTQ fits the float output (upstream error compensated) only below this weight width:
# measured on mnist1d_cnn, at 8 bits the fitted correction (1000 samples) cost more than the
# 8-bit rounding it compensates (mean |logit error| 0.110 -> 0.122), at 4 bits it gained
# (0.317 -> 0.233; mnist1d_resnet 0.347 -> 0.186).
FLOAT_TARGET_BELOW_BITS = 8


def nearest_codes(node: Node, float_node: Node, x_f: torch.Tensor, x_q: torch.Tensor,
                  qp: QParams, cfg: Any) -> np.ndarray:
    """The plan's weights rounded to nearest (per-block weights are already on their grid)."""
    return quantize(node.params["weight"], qp).astype(np.int64)


def gptq_codes(node: Node, float_node: Node, x_f: torch.Tensor, x_q: torch.Tensor,
               qp: QParams, cfg: Any) -> np.ndarray:
    float_target = cfg.gptq_float_target and qp.bits < FLOAT_TARGET_BELOW_BITS
    return gptq_layer(float_node, x_q, qp.scale, qp.qmin, qp.qmax, cfg.gptq_damping,
                      cfg.gptq_act_order, x_float=x_f if float_target else None)


def adaround_codes(node: Node, float_node: Node, x_f: torch.Tensor, x_q: torch.Tensor,
                   qp: QParams, cfg: Any) -> np.ndarray:
    a = float_node.attrs
    geometry = {} if node.op == "linear" else dict(
        stride=a["stride"], padding=a["padding"], dilation=a["dilation"], groups=a["groups"])
    with torch.enable_grad():  # the walk runs under no_grad
        return adaround_layer(float_node.params["weight"], x_q.numpy(), qp.scale, qp.bits,
                              op=node.op, iters=cfg.recon_iters, name=node.name,
                              x_target=x_f.numpy(), **geometry).astype(np.int64)


LAYER_ROUNDERS = {"nearest": nearest_codes, "gptq": gptq_codes, "adaround": adaround_codes}


def calibration_samples(batches: list[np.ndarray], graph: Graph, wanted: int) -> np.ndarray:
    """The first samples of the calibration data, as many as the methods may hold."""
    x = np.concatenate(batches)
    return x[:sample_count(graph, wanted)]


def round_and_correct(float_graph: Graph, graph: Graph, acts: dict[str, QParams],
                      weights: Mapping[str, QParams], config: Any, x: np.ndarray,
                      free_weights: set[str], free_acts: set[str]) -> Graph:
    """A copy of ``graph`` whose weights are on their grids (code · scale), chosen by
    ``config.weight_rounding``, and whose biases are corrected (``config.bias_correction``).
    The gate matrices inside a recurrent op (``row_groups``) are rounded with GPTQ under every
    layer-wise method but "nearest" (AdaRound's loss is written for conv/linear layers);
    block reconstruction ("qdrop") leaves them to nearest rounding.

    ``acts`` is updated in place where block reconstruction learns activation steps.
    ``free_weights``: layers whose codes a method may choose (the others round to nearest);
    ``free_acts``: tensors whose format may change.
    """
    graph = copy.deepcopy(graph)
    if config.weight_rounding == "qdrop":
        reconstruct_blocks(float_graph, graph, acts, weights, config, x, free_weights,
                           free_acts)
        return graph
    rounder = LAYER_ROUNDERS[config.weight_rounding]

    def visit(nodes: list[Node], vf: Values, vq: Values) -> None:
        for node in nodes:
            if node.name in free_weights and has_row_groups(node):
                round_row_groups(float_graph.node(node.name), node, vf[node.inputs[0]],
                                 vq[node.inputs[0]], weights, config)
            if node.op not in WEIGHTED:
                continue
            float_node = float_graph.node(node.name)
            x_f, x_q = vf[node.inputs[0]], vq[node.inputs[0]]
            qp = weights[node.name]
            how = rounder if node.name in free_weights else nearest_codes
            node.params["weight"] = snap(how(node, float_node, x_f, x_q, qp, config), qp)
            if node.name in free_weights:
                correct_bias(float_node, node, x_f, x_q, config.bias_correction)

    walk(float_graph, graph, acts, x, visit)
    return graph


def reconstruct_blocks(float_graph: Graph, graph: Graph, acts: dict[str, QParams],
                       weights: Mapping[str, QParams], config: Any, x: np.ndarray,
                       free_weights: set[str], free_acts: set[str]) -> None:
    """Block reconstruction (``qdrop.py``) over the graph, block by block, in place."""
    from ..graph.execute import run_node

    def visit(nodes: list[Node], vf: Values, vq: Values) -> None:
        if not any(n.op in WEIGHTED for n in nodes):
            return
        names = {n.name for n in nodes}
        external = sorted({i for n in nodes for i in n.inputs if i not in names})
        targets = dict((k, vf[k]) for k in external)
        for n in nodes:
            targets[n.name] = run_node(float_graph.node(n.name), [targets[i] for i in n.inputs])
        targets = {k: v for k, v in targets.items() if k in names}
        later = {i for m in graph.nodes if m.name not in names for i in m.inputs}
        outputs = [n.name for n in nodes if n.name in later or n.name == graph.output]
        codes, formats = reconstruct_block(
            nodes, {k: vf[k] for k in external}, {k: vq[k] for k in external}, targets,
            outputs, acts, weights, free_weights, free_acts, iters=config.recon_iters,
            drop=config.qdrop_prob)
        for node in nodes:
            if node.op in WEIGHTED:
                qp = weights[node.name]
                q = codes.get(node.name)
                if q is None:  # a fixed grid
                    q = quantize(node.params["weight"], qp)
                node.params["weight"] = snap(np.asarray(q, np.int64), qp)
        for name, qp in formats.items():
            replace_format(acts, acts[name], qp)

    walk(float_graph, graph, acts, x, visit, units=blocks(graph))
