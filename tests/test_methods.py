"""PTQ methods (intquant.methods) against independent references.

GPTQ against a direct Optimal Brain Quantization loop (the inverse Hessian of the remaining
columns recomputed from scratch at every step), equalization against the float function it
must preserve, bias correction against the mean shift computed here in NumPy, and the wiring:
the integers in the IntGraph are exactly the codes each method chose.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import intquant
import recurrent_models as RM
from intquant.graph import run_graph
from intquant.graph.ir import Graph, Node
from intquant.methods.act_clipping import search_act_clipping
from intquant.methods.adaround import adaround_layer
from intquant.methods.bias_correction import correct_bias
from intquant.methods.equalize import (
    absorb_biases,
    equalize,
    find_pairs,
    input_ranges,
    output_ranges,
)
from intquant.methods.gptq import gptq_codes, gptq_layer, input_columns
from intquant.methods.qdrop import blocks
from intquant.methods.row_groups import row_group_codes, row_group_hessian
from intquant.methods.walk import round_to_format
from intquant.numerics import QParams, choose_qparams
from intquant.ops import float_op, weight_codes
from intquant.ptq import as_batches, calibrate, free_layers, make_plan, prepare_graph

# ----------------------------------------------------------------------------------------------
# GPTQ
# ----------------------------------------------------------------------------------------------


def obq_reference(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmax: int,
                  order: np.ndarray) -> tuple[np.ndarray, float]:
    """Quantize columns in ``order``; after each, move the remaining columns F by
    δ_F = −(w_q − ŵ_q) / [H_F⁻¹]_qq · (H_F⁻¹)_{F,q}, with H_F⁻¹ = inv(H[F, F]) computed
    directly (``scale``: one step per row, or per row and column). Returns the codes and the
    smallest distance of any w/s from a rounding tie."""
    w = w.astype(np.float64).copy()
    steps = np.broadcast_to(scale if scale.ndim == 2 else scale[:, None], w.shape)
    codes = np.zeros_like(w)
    remaining = list(order)
    margin = np.inf
    while remaining:
        q_col = remaining[0]
        h_inv = np.linalg.inv(h[np.ix_(remaining, remaining)])
        ratio = w[:, q_col] / steps[:, q_col]
        margin = min(margin, float(np.min(np.abs(np.abs(ratio - np.floor(ratio)) - 0.5))))
        q = np.clip(np.rint(ratio), -qmax, qmax)
        codes[:, q_col] = q
        err = w[:, q_col] - q * steps[:, q_col]
        w[:, remaining] -= np.outer(err / h_inv[0, 0], h_inv[0, :])
        remaining = remaining[1:]
    return codes, margin


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_matches_direct_optimal_brain_quantization(act_order):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 9)) @ rng.normal(size=(9, 9))  # correlated inputs
    x[:, 4] *= 3.0  # one dominant input, so act-order changes the order
    w = rng.normal(size=(5, 9))
    scale = np.abs(w).max(axis=1) / 7
    h = 2 * x.T @ x / len(x)
    damping = 0.01
    h_damped = h + damping * np.mean(np.diag(h)) * np.eye(9)
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(9)
    ref, margin = obq_reference(w, h_damped, scale[:, None].ravel(), 7, order)
    assert margin > 1e-6  # no value near a tie: the comparison does not hinge on last bits
    got = gptq_codes(w, h, scale, -7, 7, damping=damping, act_order=act_order)
    np.testing.assert_array_equal(got, ref)
    # and the point of it: a lower output error than rounding to nearest
    rtn = np.clip(np.rint(w / scale[:, None]), -7, 7)

    def out_err(c):
        return float(np.sum((x @ (w - c * scale[:, None]).T) ** 2))

    assert out_err(got) < out_err(rtn)


def test_gptq_with_a_step_per_row_and_column_matches_direct_obq():
    """Two matrices side by side, each on its own row scales (a GRU's W_ih | W_hh): the same
    OBQ loop, each column rounded on its own matrix's step."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 7)) @ rng.normal(size=(7, 7))
    w = rng.normal(size=(6, 7))
    w[:, 3:] *= 0.2  # the second matrix on a much finer grid
    steps = np.concatenate([np.repeat(np.abs(w[:, :3]).max(1, keepdims=True) / 7, 3, axis=1),
                            np.repeat(np.abs(w[:, 3:]).max(1, keepdims=True) / 7, 4, axis=1)],
                           axis=1)
    h = 2 * x.T @ x / len(x)
    h_damped = h + 0.01 * np.mean(np.diag(h)) * np.eye(7)
    order = np.argsort(-np.diag(h), kind="stable")
    ref, margin = obq_reference(w, h_damped, steps, 7, order)
    assert margin > 1e-6
    np.testing.assert_array_equal(gptq_codes(w, h, steps, -7, 7), ref)


def test_im2col_columns_reproduce_the_convolution_exactly():
    """Integer-valued data in float64: every product and sum is exact."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(-4, 5, size=(3, 4, 11)), dtype=torch.float64)
    w = rng.integers(-3, 4, size=(6, 2, 3)).astype(np.float64)
    node = Node("c", "conv", ["x"], attrs=dict(dims=1, stride=[1, 2], padding=[0, 1, 0, 2],
                                               dilation=[1, 2], groups=2),
                params={"weight": w})
    cols = input_columns(node, x)  # [groups, N·L, K]
    ref = F.conv1d(F.pad(x, (1, 2)), torch.as_tensor(w), None, 2, 0, 2, 2)  # [N, 6, L]
    rows = torch.as_tensor(w).reshape(2, 3, -1)
    got = torch.cat([cols[g] @ rows[g].T for g in range(2)], dim=1)  # [N·L, 6]
    assert torch.equal(got, ref.permute(0, 2, 1).reshape(-1, 6))


def test_gptq_depthwise_conv_uses_one_hessian_per_channel():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(64, 3, 12)), dtype=torch.float32)
    w = rng.normal(size=(3, 1, 3))
    node = Node("dw", "conv", ["x"], attrs=dict(dims=1, stride=[1, 1], padding=[0, 1, 0, 1],
                                                dilation=[1, 1], groups=3),
                params={"weight": w})
    scale = np.abs(w).reshape(3, -1).max(axis=1) / 7
    got = gptq_layer(node, x, scale, -7, 7)
    for c in range(3):  # channel c alone, as its own 1-group conv on its own input
        alone = Node("c", "conv", ["x"], attrs=dict(node.attrs, groups=1),
                     params={"weight": w[c:c + 1]})
        np.testing.assert_array_equal(got[c:c + 1], gptq_layer(alone, x[:, c:c + 1],
                                                              scale[c:c + 1], -7, 7))


# ----------------------------------------------------------------------------------------------
# The integers in the IntGraph are the codes the method chose
# ----------------------------------------------------------------------------------------------


def _first_layer_inputs(model, x, cfg):
    batches = as_batches(x)
    graph = prepare_graph(model, batches[0])
    acts = calibrate(graph, batches, cfg, progress=False)
    plan = make_plan(graph, acts, intquant.Config.preset("nearest", weight_bits=4), batches)
    xt = torch.as_tensor(x)
    return graph, plan.weights, xt, round_to_format(xt, acts["input"])


def test_gptq_and_adaround_codes_reach_the_integer_graph_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = torch.randn(300, 16).numpy()
    for rounding in ("gptq", "adaround"):
        cfg = intquant.Config.preset(rounding, weight_bits=4, recon_iters=50)
        q = intquant.quantize(model, x, cfg, progress=False)
        graph, weights, x_f, x_q = _first_layer_inputs(model, x, cfg)
        node, qp = graph.nodes[1], weights[graph.nodes[1].name]
        if rounding == "gptq":  # below 8 bits GPTQ fits the float output
            want = gptq_layer(node, x_q, qp.scale, qp.qmin, qp.qmax, x_float=x_f)
        else:
            want = adaround_layer(node.params["weight"], x_q.numpy(), qp.scale, 4, iters=50,
                                  x_target=x_f.numpy())
        np.testing.assert_array_equal(weight_codes(q.graph.ops[0]), want)


def test_methods_leave_fixed_grids_alone():
    """A layer whose scale an override fixes (as QAT's convert does) keeps nearest rounding
    and its bias; a tensor with an explicit range keeps it."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(200, 8).numpy()
    w0 = model[0].weight.detach().numpy()
    scale = np.abs(w0).max(axis=1) / 7
    ov = {"0": {"weight_scale": scale, "weight_bits": 4, "act_range": (0.0, 3.0)}}
    cfg = intquant.Config(weight_bits=4, weight_rounding="gptq", act_clipping=True,
                          overrides=ov)
    q = intquant.quantize(model, x, cfg, progress=False)
    np.testing.assert_array_equal(weight_codes(q.graph.ops[0]),
                                  np.clip(np.rint(w0 / scale[:, None]), -7, 7))
    np.testing.assert_array_equal(q.plan.graph.node("0").params["bias"],
                                  model[0].bias.detach().numpy())
    assert q.plan.acts["0"].scale[0] == pytest.approx(3.0 / 255, rel=1e-6)
    free_w, free_a = free_layers(q.plan.graph, cfg, set())
    assert free_w == {"2"} and "0" not in free_a


# ----------------------------------------------------------------------------------------------
# Bias correction
# ----------------------------------------------------------------------------------------------


def _linear(name, src, w, b):
    return Node(name, "linear", [src], params={"weight": w.astype(np.float32),
                                               "bias": b.astype(np.float32)})


@pytest.mark.parametrize("mode", ["weights", "full"])
def test_bias_correction_adds_the_mean_shift_computed_independently(mode):
    """Corrected bias = b + mean(x_f) Wᵀ − mean(x̂) Ŵᵀ, with x̂ = x_f ("weights") or the
    input rounded to its activation grid ("full"), computed here in float64 NumPy."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 6))
    b = rng.normal(size=4)
    x_f = rng.uniform(0.0, 1.0, size=(500, 6)).astype(np.float32)
    qp = choose_qparams(0.0, 1.0, bits=3, symmetric=False)  # coarse: a real mean shift
    x_q = round_to_format(torch.as_tensor(x_f), qp)
    w_hat = np.rint(w * 4) / 4  # weights on a 1/4 grid
    float_node = _linear("l", "x", w, b)
    quant_node = _linear("l", "x", w_hat, b)
    correct_bias(float_node, quant_node, torch.as_tensor(x_f), x_q, mode)
    x_in = x_q.double().numpy() if mode == "full" else x_f.astype(np.float64)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731  the node's weights
    want = b + x_f.astype(np.float64).mean(0) @ f32(w).T - x_in.mean(0) @ f32(w_hat).T
    np.testing.assert_allclose(quant_node.params["bias"], want, rtol=1e-5, atol=1e-6)


def test_full_bias_correction_removes_the_shift_activation_rounding_causes():
    """A 3-bit input grid shifts the mean of the first layer's output. "full" removes it from
    the integer model's output mean; "weights" (float inputs) cannot see it."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5)).eval()
    with torch.no_grad():
        model[0].weight.abs_()  # every output adds up the inputs' rounding bias
    x = (torch.rand(2000, 6) ** 3).numpy()  # skewed: rounding to 8 levels is biased
    ref = model(torch.as_tensor(x)).detach().numpy()
    shift = {}
    for mode in ("weights", "full"):
        cfg = intquant.Config(weight_bits=8, act_bits=8, bias_correction=mode,
                              overrides={"input": {"act_bits": 3}})
        q = intquant.quantize(model, x, cfg, progress=False)
        shift[mode] = np.abs((q.predict(x) - ref).mean(axis=0)).max()
    lsb = q.output_info.scale
    assert shift["full"] < 0.5 * lsb < shift["weights"]


# ----------------------------------------------------------------------------------------------
# Cross-layer equalization and bias absorption
# ----------------------------------------------------------------------------------------------


class ConvPairs(nn.Module):
    """conv → ReLU → max-pool → depthwise → ReLU → pointwise → ReLU → flatten → linear, with
    channels of very different ranges."""

    def __init__(self, last_act: nn.Module) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.dw = nn.Conv1d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv1d(4, 3, 1)
        self.fc = nn.Linear(3 * 4, 5)
        self.act = last_act
        with torch.no_grad():
            self.c1.weight.mul_(torch.tensor([0.01, 1.0, 10.0, 0.3]).reshape(4, 1, 1))
            self.c1.bias.copy_(torch.tensor([0.2, 5.0, 3.0, -0.1]))

    def forward(self, x):
        y = F.max_pool1d(torch.relu(self.c1(x)), 2)
        y = torch.relu(self.pw(torch.relu(self.dw(y))))
        return self.fc(torch.flatten(self.act(y), 1))


def _rel_max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_equalization_keeps_the_float_function_and_equalizes_ranges():
    torch.manual_seed(3)
    model = ConvPairs(nn.Identity()).eval()
    x = torch.randn(64, 2, 8)
    graph = prepare_graph(model, x[:2].numpy())
    eq, pairs = equalize(graph)
    assert pairs == 3  # c1→dw (through max-pool), dw→pw, pw→fc (through flatten)
    # float32 networks of a few hundred MACs: rescaling changes results by ~1e-6 relative
    assert _rel_max_diff(run_graph(eq, x), model(x).detach()) < 1e-4
    for pair in find_pairs(eq):
        np.testing.assert_allclose(output_ranges(pair.first), input_ranges(pair), rtol=1e-3)
    r = output_ranges(graph.node(find_pairs(graph)[0].first.name))
    r_eq = output_ranges(eq.node(find_pairs(eq)[0].first.name))
    assert r.max() / r.min() > 100 and r_eq.max() / r_eq.min() < r.max() / r.min() / 10


def test_equalization_skips_bounded_activations():
    torch.manual_seed(3)
    model = ConvPairs(nn.ReLU6()).eval()
    graph = prepare_graph(model, torch.randn(2, 2, 8).numpy())
    names = {(p.first.name, p.second.name) for p in find_pairs(graph)}
    assert all(first != "pw" for first, _ in names)  # pw → ReLU6 → fc is not homogeneous


def test_bias_absorption_is_exact_on_the_calibration_data():
    torch.manual_seed(4)
    model = ConvPairs(nn.Identity()).eval()
    with torch.no_grad():
        model.dw.bias.fill_(4.0)  # dw pre-activations stay positive: c > 0 to absorb
    x = torch.randn(128, 2, 8)
    graph = prepare_graph(model, x[:2].numpy())
    absorbed, count = absorb_biases(graph, [x.numpy()])
    assert count >= 1  # dw → pw (pointwise, no padding)
    c = graph.node("dw").params["bias"] - absorbed.node("dw").params["bias"]
    assert np.all(c >= 0) and np.any(c > 1.0)
    assert _rel_max_diff(run_graph(absorbed, x), run_graph(graph, x)) < 1e-4
    # where a constant was absorbed, the smallest dw output on the data is now 0: the range
    # starts at the ReLU's bound instead of c
    out = run_graph(absorbed, x, record=True)["dw"]
    low, high = out.amin(dim=(0, 2)).numpy(), float(out.max())
    assert np.all(np.abs(low[c > 0]) < 1e-4 * high)


# ----------------------------------------------------------------------------------------------
# Block reconstruction, activation clipping
# ----------------------------------------------------------------------------------------------


def test_blocks_keep_a_residual_block_together(zoo_model):
    model, ds = zoo_model("mnist1d_resnet")
    graph = prepare_graph(model, ds.x_train[:2])
    units = blocks(graph)
    assert units[0] == ["input"]
    assert ["blocks.1.conv1", "blocks.1.conv2", "blocks.1.downsample.0", "blocks.1"] in units
    assert [n for u in units for n in u] == [n.name for n in graph.nodes]


def test_block_reconstruction_beats_nearest_at_w4():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4)).eval()
    x = torch.randn(1200, 3) @ torch.randn(3, 12) + 0.1 * torch.randn(1200, 12)  # correlated
    calib, test = x[:600].numpy(), x[600:]
    ref = model(test).detach().numpy()
    err = {}
    for rounding in ("nearest", "qdrop"):
        cfg = intquant.Config(weight_bits=4, act_bits=8, weight_rounding=rounding,
                              bias_correction="none", recon_iters=300)
        q = intquant.quantize(model, calib, cfg, progress=False)
        err[rounding] = float(np.mean((q.predict(test.numpy()) - ref) ** 2))
        if rounding == "qdrop":
            nearest = np.rint(q.plan.graph.node("0").params["weight"]
                              / q.plan.weights["0"].scale[:, None])
            w0 = model[0].weight.detach().numpy() / q.plan.weights["0"].scale[:, None]
            assert np.all(np.abs(nearest - np.rint(w0)) <= 1)
    assert err["qdrop"] < 0.8 * err["nearest"]


def test_activation_clipping_only_where_it_helps():
    """An input with rare huge outliers: a min-max range wastes the 4-bit grid, the search
    clips it; a tensor whose range is already right is left alone."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1024, 8)).astype(np.float32)
    x[::64, 0] = 40.0  # outliers in both halves of the samples
    w = rng.normal(size=(3, 8)).astype(np.float32)
    graph = Graph([Node("input", "input", shape=(8,)),
                   _linear("fc", "input", w, np.zeros(3))], output="fc")
    graph.nodes[1].shape = (3,)
    cfg = intquant.Config(act_bits=4, calibration="minmax", overrides={"fc": {"act_bits": 16}})
    acts = calibrate(graph, [x], cfg, progress=False)
    weights = {"fc": QParams(scale=np.abs(w).max(1) / 127, zero_point=np.zeros(3), bits=8,
                             axis=0, narrow=True)}
    new = search_act_clipping(graph, acts, weights, x, {"input", "fc"})
    assert new["input"].scale[0] < acts["input"].scale[0]
    assert new["fc"] is acts["fc"]  # 16 bits: clipping cannot help


# ----------------------------------------------------------------------------------------------
# The gate matrices of a GRU / LSTM (row groups)
# ----------------------------------------------------------------------------------------------


def _recurrent_kws(kind: str) -> nn.Module:
    torch.manual_seed(2)
    return RM.Layer(kind).eval()


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_row_groups_hold_what_torch_multiplies_the_gate_matrices_with(kind):
    """Layer l's group: (x_t, h_{t−1}) at every step, h from nn.GRU / nn.LSTM itself (float64,
    layer by layer) for both layers of a stacked model; the keys name that layer's matrices
    and biases."""
    torch.manual_seed(3)
    model = RM.Layer(kind, layers=2, read="seq").eval()
    x = RM.sequences(5)
    graph = prepare_graph(model, x[:2].numpy())
    node = next(n for n in graph.nodes if n.op == kind)
    groups = float_op(kind).weight_inputs(node, [x])
    rnn = copy.deepcopy(model.rnn).double()
    with torch.no_grad():
        seq0, _ = _single_layer(rnn, 0)(x.double())
        seq1, _ = _single_layer(rnn, 1)(seq0)
    for layer, (inp, out) in enumerate(((x.double(), seq0), (seq0, seq1))):
        g = groups[layer]
        assert g.weights == (f"w_ih{layer}", f"w_hh{layer}")
        assert g.biases == (f"b_ih{layer}", f"b_hh{layer}")
        prev = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)
        np.testing.assert_allclose(g.inputs[0].numpy(), inp.reshape(-1, inp.shape[-1]).numpy(),
                                   atol=1e-12)
        np.testing.assert_allclose(g.inputs[1].numpy(), prev.reshape(-1, RM.HIDDEN).numpy(),
                                   atol=1e-12)


def _single_layer(rnn: nn.Module, layer: int) -> nn.Module:
    """Layer ``layer`` of a stacked nn.GRU / nn.LSTM as its own one-layer module."""
    one = type(rnn)(rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size,
                    batch_first=True).double()
    sd = {k.replace(f"_l{layer}", "_l0"): v for k, v in rnn.state_dict().items()
          if k.endswith(f"_l{layer}")}
    one.load_state_dict(sd)
    return one


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_gate_matrices_get_joint_gptq_codes_and_corrected_biases(kind):
    """The int8 gate matrices in the IntGraph are the joint GPTQ codes of [W_ih | W_hh] over
    the group's inputs; the biases move by W E[z] − Ŵ E[ẑ] (computed here in NumPy); the codes
    lower the gate output error on the calibration inputs below nearest rounding's."""
    model = _recurrent_kws(kind)
    x = RM.sequences(200).numpy()
    cfg = intquant.Config(act_bits=16)
    q = intquant.quantize(model, x, cfg, progress=False)
    graph = prepare_graph(model, x[:2])
    node = next(n for n in graph.nodes if n.op == kind)
    acts = calibrate(graph, as_batches(x), cfg, progress=False)
    x_f = torch.as_tensor(x)
    x_q = round_to_format(x_f, acts["input"])
    group = float_op(kind).weight_inputs(node, [x_q])[0]
    plan_node = q.plan.graph.node(node.name)
    formats = [q.plan.weights[f"{node.name}/{k}"] for k in group.weights]
    mats = [np.asarray(node.params[k], np.float64) for k in group.weights]
    want = row_group_codes(mats, formats, row_group_hessian(group), cfg.gptq_damping,
                           cfg.gptq_act_order)
    op = next(o for o in q.graph.ops if o.kind == kind)
    np.testing.assert_array_equal(op.consts["w_ih0"], want[0])
    np.testing.assert_array_equal(op.consts["w_hh0"], want[1])
    z = np.concatenate([v.numpy() for v in group.inputs], axis=1)
    nearest = [np.clip(np.rint(m / qp.scale[:, None]), -127, 127) for m, qp in
               zip(mats, formats, strict=True)]

    def gate_error(codes):
        w_hat = np.concatenate([c * qp.scale[:, None] for c, qp in
                                zip(codes, formats, strict=True)], axis=1)
        return float(np.sum((z @ (np.concatenate(mats, axis=1) - w_hat).T) ** 2))

    assert gate_error(want) < gate_error(nearest)
    assert any(np.any(w != n) for w, n in zip(want, nearest, strict=True))
    z_f = float_op(kind).weight_inputs(node, [x_f])[0]
    for i, bias in enumerate(group.biases):
        w_hat = want[i] * formats[i].scale[:, None]
        shift = mats[i] @ z_f.inputs[i].numpy().mean(0) - w_hat @ group.inputs[i].numpy().mean(0)
        np.testing.assert_allclose(plan_node.params[bias], node.params[bias] + shift,
                                   rtol=1e-9, atol=1e-12)


def test_gate_matrices_round_to_nearest_without_methods_and_on_fixed_grids():
    model = _recurrent_kws("lstm")
    x = RM.sequences(100).numpy()
    w_ih = model.rnn.weight_ih_l0.detach().numpy().astype(np.float64)
    q = intquant.quantize(model, x, intquant.Config.preset("nearest"), progress=False)
    op = next(o for o in q.graph.ops if o.kind == "lstm")
    scale = np.abs(w_ih).max(1) / 127
    np.testing.assert_array_equal(op.consts["w_ih0"], np.rint(w_ih / scale[:, None]))
    rows = [model.rnn.weight_ih_l0.shape[0], model.rnn.weight_hh_l0.shape[0]]
    fixed = np.concatenate([scale, np.full(rows[1], 0.01)])
    cfg = intquant.Config(overrides={"rnn": {"weight_scale": fixed}})
    q = intquant.quantize(model, x, cfg, progress=False)
    op = next(o for o in q.graph.ops if o.kind == "lstm")
    np.testing.assert_array_equal(op.consts["w_ih0"], np.rint(w_ih / scale[:, None]))
    np.testing.assert_array_equal(q.plan.graph.node("rnn").params["b_ih0"],
                                  model.rnn.bias_ih_l0.detach().numpy())


# ----------------------------------------------------------------------------------------------
# Headroom of calibrated activations wider than 8 bits
# ----------------------------------------------------------------------------------------------


def test_wide_activations_get_one_bit_of_headroom_and_8_bit_ones_none():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x = torch.randn(64, 4).numpy()
    with torch.no_grad():
        top = float(np.abs(model(torch.as_tensor(x)).numpy()).max())
    graph = prepare_graph(model, x[:2])
    out = graph.output
    for bits, factor, want in ((16, 2.0, 2 * top / 32767), (16, 1.0, top / 32767),
                               (8, 2.0, None)):
        cfg = intquant.Config(act_bits=bits, calibration="maxabs", wide_act_headroom=factor)
        acts = calibrate(graph, as_batches(x), cfg, progress=False)
        if want is None:  # 8 bits: the calibrated range itself
            plain = intquant.Config(act_bits=8, calibration="maxabs", wide_act_headroom=1.0)
            assert acts[out] == calibrate(graph, as_batches(x), plain, progress=False)[out]
        else:
            assert acts[out].scale[0] == pytest.approx(want, rel=1e-6)
            assert acts[out].zero_point[0] == 0
    with pytest.raises(ValueError, match="wide_act_headroom must be >= 1"):
        intquant.Config(wide_act_headroom=0.5)


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


def test_presets_and_validation():
    assert intquant.Config.preset("gptq", weight_bits=4).weight_rounding == "gptq"
    assert intquant.Config(bias_correction=False).bias_correction == "none"
    assert intquant.Config(bias_correction=True).bias_correction == "full"
    with pytest.raises(ValueError, match="unknown preset 'fastest'"):
        intquant.Config.preset("fastest")
    with pytest.raises(ValueError, match="weight_rounding must be one of"):
        intquant.Config(weight_rounding="obq")
    with pytest.raises(ValueError, match="qdrop_prob must be in"):
        intquant.Config(qdrop_prob=1.0)
    assert "GPTQ" in intquant.Config.preset("gptq").methods()
