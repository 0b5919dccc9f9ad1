"""search_bits: respects the budget, spends it where it matters, returns a Config PTQ accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import intquant
from intquant.analysis.mixed import activation_ram, search_bits, weight_cost
from intquant.ops import weight_codes


def two_layer_mlp() -> nn.Module:
    """Two equal-size layers; layer '0' has one huge weight per row, so that at 4 bits its
    max-abs/MSE grid is far too coarse for the rest of the row, while layer '2' is benign."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                      nn.Linear(16, 4)).eval()
    with torch.no_grad():
        for layer in (m[0], m[2], m[4]):
            layer.bias.zero_()
        m[0].weight[:, 0] = 25.0
    return m


@pytest.fixture(scope="module")
def setup():
    model = two_layer_mlp()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    x[:, 0] *= 0.01  # the outlier weights multiply a small input
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy().argmax(1)
    assert np.bincount(y, minlength=4).min() > 20  # a real 4-class problem
    return model, x, y


def params_of(model: nn.Module) -> dict[str, int]:
    return {name: mod.weight.numel() for name, mod in model.named_children()
            if isinstance(mod, nn.Linear)}


def test_budget_is_respected_and_config_is_accepted(setup) -> None:
    model, x, y = setup
    params = params_of(model)
    budget = sum(params.values()) * 6 // 8  # 75 % of int8
    res = search_bits(model, x[:300], (x[300:], y[300:]), budget_bytes=budget,
                      candidates=(4, 8))
    # Independent cost: dense bits of every layer's weights.
    cost = sum(-(-params[n] * b // 8) for n, b in res.weight_bits.items())
    assert cost <= budget and res.predicted["weight_bytes"] == cost
    assert set(res.weight_bits) == set(params)
    # The Config goes through PTQ; the integer weights really are in the chosen ranges.
    q = intquant.quantize(model, x[:300], res.config, progress=False)
    for op in q.graph.ops:
        if op.name in res.weight_bits:
            bound = 2 ** (res.weight_bits[op.name] - 1) - 1
            assert np.abs(weight_codes(op).astype(np.int64)).max() <= bound
    assert res.measured["accuracy"] == pytest.approx(q.accuracy(x[300:], y[300:]))
    assert res.measured["weight_bytes"] == cost


def test_the_sensitive_layer_gets_the_bits(setup) -> None:
    """Budget for exactly one of the two 16x16 layers at 8 bits: it must be the outlier one."""
    model, x, y = setup
    params = params_of(model)
    budget = weight_cost(params, {"0": 8, "2": 4, "4": 4})
    res = search_bits(model, x[:300], (x[300:], y[300:]), budget_bytes=budget,
                      candidates=(4, 8))
    assert res.weight_bits["0"] == 8 and res.weight_bits["2"] == 4
    # And it pays off on the real integer model vs uniform 4 bits.
    w4 = intquant.quantize(model, x[:300], intquant.Config(weight_bits=4), progress=False)
    assert res.measured["accuracy"] > w4.accuracy(x[300:], y[300:])


def test_budget_below_the_minimum_is_a_clear_error(setup) -> None:
    model, x, y = setup
    with pytest.raises(ValueError, match="below the smallest possible weight size"):
        search_bits(model, x[:100], (x[300:], y[300:]), budget_bytes=10, candidates=(4, 8),
                    measure=False)


def test_activation_widths_follow_the_ram_budget(setup) -> None:
    model, x, y = setup
    res = search_bits(model, x[:300], (x[300:], y[300:]), budget_bytes=None, candidates=(8,),
                      act_candidates=(8, 16), ram_budget_bytes=48, measure=False)
    wide = [n for n, b in res.act_bits.items() if b == 16]
    assert wide, "16-bit activations fit the RAM budget somewhere and lower the error"
    # Independent RAM model: largest (input + output) bytes over the chain 16 -> 16 -> 16 -> 4.
    sizes = {"input": 16, "0": 16, "2": 16, "4": 4}
    source = {"0": "input", "2": "0", "4": "2"}

    def nbytes(n: str) -> int:
        return sizes[n] * (2 if res.act_bits.get(n, 8) == 16 else 1)

    ram = max(nbytes(n) + nbytes(source[n]) for n in source)
    assert ram <= 48 and ram == res.predicted["ram_bytes"]


def test_activation_ram_model() -> None:
    from intquant.graph import capture
    from intquant.graph.passes import optimize

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 30), nn.ReLU(), nn.Linear(30, 5)).eval()
    g = optimize(capture(m, np.zeros((1, 10), np.float32)))
    assert activation_ram(g, {}, 8) == 10 + 30  # largest in+out pair, 1 byte each
    assert activation_ram(g, {"0": 16}, 8) == 10 + 60
