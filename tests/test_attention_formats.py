"""Activation formats chosen for attention and for 16-bit tensors (ptq.attention_tensors,
ptq.widen_attention, ptq.with_headroom).

- The operands of a matmul of two activations (nn.MultiheadAttention's Q/K/V projection) and the
  scores a matmul feeds into a softmax are held at Config.attention_act_bits (16) in W8A8; every
  other tensor keeps act_bits; a user's own act_bits for a layer wins; None turns it off.
- 16-bit activation ranges get Config.wide_act_headroom (2x) beyond the calibrated range, so
  inputs a little larger than any calibration input are not clipped.
The C of such mixed-width models is checked against the interpreter in
test_zoo_transformer.py (attention layers, both modes) and here on one sample.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import intquant
from intquant.graph.ir import SAME_FORMAT
from intquant.ptq import attention_tensors, prepare_graph

E = 16


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class SharedProjection(nn.Module):
    """y = W·x feeds a matmul and a residual add: not attention-only, stays at act_bits."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(E, E)

    def forward(self, x):
        y = self.proj(x)
        return torch.softmax(y @ y.transpose(1, 2), dim=-1) @ y + y


def _seq(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 6, E)).astype(np.float32)


def _mha() -> nn.Module:
    torch.manual_seed(3)
    return SelfAttention().eval()


def _in_projection(graph) -> str:
    """The linear with 3·E outputs (found by its weight, independently of the rule)."""
    (name,) = [n.name for n in graph.nodes
               if n.op == "linear" and np.shape(n.params["weight"])[0] == 3 * E]
    return name


def _scores(graph) -> list[str]:
    """The matmuls whose direct consumer is a softmax."""
    return [n.name for n in graph.nodes
            if n.op == "matmul" and any(c.op == "softmax" for c in graph.consumers(n.name))]


def test_attention_tensors_are_the_qkv_projection_and_the_scores():
    graph = prepare_graph(_mha(), _seq(2))
    assert len(_scores(graph)) == 1
    assert attention_tensors(graph) == {_in_projection(graph), *_scores(graph)}


def test_a_projection_also_used_outside_matmuls_is_not_an_attention_tensor():
    torch.manual_seed(0)
    graph = prepare_graph(SharedProjection().eval(), _seq(2))
    (proj,) = [n.name for n in graph.nodes if n.op == "linear"]
    wide = attention_tensors(graph)
    assert proj not in wide
    assert wide == set(_scores(graph))


def test_w8a8_attention_keeps_qkv_and_scores_at_16_bits_and_the_rest_at_8():
    q = intquant.quantize(_mha(), _seq(64), progress=False)
    g = q.float_graph
    wide = {_in_projection(g), *_scores(g)}
    for node in g.nodes:
        src = node
        while src.op in SAME_FORMAT:  # views and slices keep their input's format
            src = g.node(src.inputs[0])
        bits = 16 if src.name in wide else 8
        assert q.plan.acts[node.name].bits == bits, node.name
        assert q.graph.tensors[node.name].dtype == f"int{bits}"


def test_attention_act_bits_none_and_a_user_override_keep_8_bits():
    g = prepare_graph(_mha(), _seq(2))
    proj = _in_projection(g)
    off = intquant.quantize(_mha(), _seq(64), intquant.Config(attention_act_bits=None),
                            progress=False)
    assert {qp.bits for qp in off.plan.acts.values()} == {8}
    own = intquant.quantize(_mha(), _seq(64),
                            intquant.Config(overrides={proj: {"act_bits": 8}}), progress=False)
    assert own.plan.acts[proj].bits == 8
    assert own.plan.acts[_scores(g)[0]].bits == 16


def test_mixed_width_attention_c_equals_interpreter(tmp_path):
    from intquant.codegen.toolchain import compile_and_run_host

    q = intquant.quantize(_mha(), _seq(64), progress=False)
    xq = q.quantize_input(_seq(20, seed=1))
    res = q.export_c(tmp_path / "c", name="model")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xq), q.run(xq))


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x)


def _calib() -> np.ndarray:
    return np.random.default_rng(2).uniform(-1, 1, (256, 8)).astype(np.float32)


def test_16_bit_output_is_not_clipped_on_inputs_beyond_the_calibration_range():
    """1.5x the calibration inputs: with the headroom no output saturates (and the integer
    output follows the float one); calibrated to the exact range, the largest ones would."""
    m = Linear().eval()
    x = 1.5 * _calib()
    with torch.no_grad():
        ref = m(torch.as_tensor(x)).numpy()
    for headroom, clipped in ((2.0, False), (1.0, True)):
        cfg = intquant.Config(act_bits=16, wide_act_headroom=headroom, calibration="minmax")
        q = intquant.quantize(m, _calib(), cfg, progress=False)
        y = q.run(q.quantize_input(x))
        out = q.graph.tensors[q.graph.output]
        saturated = bool(np.any(np.abs(y.astype(np.int64)) >= 32767))
        assert saturated is clipped
        if not clipped:
            err = np.abs(q.dequantize_output(y) - ref).max()
            assert err < 0.02 * np.abs(ref).max(), (err, out.scale)
