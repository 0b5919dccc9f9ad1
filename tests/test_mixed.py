"""search_bits: respects the budget, spends it where it matters, returns a Config PTQ accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import intquant
from intquant.analysis.mixed import activation_ram, search_bits
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
    budget = sum(-(-params[n] * b // 8) for n, b in {"0": 8, "2": 4, "4": 4}.items())
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


def test_low_bit_prediction_is_the_generated_size(tmp_path) -> None:
    """Every candidate down to 1 bit and ternary; rows whose K is not a multiple of 8 (padding
    bytes). The predicted weight bytes equal the IntGraph's and the generated C's weight
    arrays, and an independent formula of the packed layouts (docs/intgraph.md)."""
    from intquant.codegen import export_c

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(3, 6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8, 13),
                          nn.ReLU(), nn.Linear(13, 5)).eval()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3, 12)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy().argmax(1)
    cands = (1, "ternary", 2, 4, 8)
    params = {"0": (6, 15), "3": (13, 48), "5": (5, 13)}  # rows, K
    budget = 6 * 4 + 13 * 12 + 5 * 13  # K=15 and K=48 at 2 bits, K=13 at 8 bits
    res = search_bits(model, x[:200], (x[200:], y[200:]), budget_bytes=budget,
                      candidates=cands)

    def layout_bytes(rows: int, k: int, c) -> int:
        per_row = {1: -(-k // 8), "ternary": 2 * -(-k // 8), 2: 2 * -(-k // 8),
                   4: -(-k // 2), 8: k}[c]
        return rows * per_row

    expected = sum(layout_bytes(*params[n], c) for n, c in res.weight_bits.items())
    assert res.predicted["weight_bytes"] == expected <= budget
    assert res.measured["weight_bytes"] == expected
    info = export_c(res.qmodel.graph, tmp_path / "c", name="m").info
    c_bytes = sum(o["weight_array_bytes"] for o in info["ops"] if o["name"] in params)
    assert c_bytes == expected
    formats = {o.attrs.get("weight_format") for o in res.qmodel.graph.ops}
    assert formats & {"binary", "int2"}, res.weight_bits  # the budget forces sub-byte layers
    for c in (1, "ternary", 4):  # every layer at one candidate: each layout's padding
        one = search_bits(model, x[:200], (x[200:], y[200:]), candidates=(c,))
        expected = sum(layout_bytes(*params[n], c) for n in params)
        assert one.predicted["weight_bytes"] == one.measured["weight_bytes"] == expected


def test_candidates_are_checked() -> None:
    from intquant.analysis.mixed import parse_candidates

    assert parse_candidates([8, "t", 1, "2", "ternary"]) == [1, "ternary", 2, 8]
    with pytest.raises(ValueError, match="neither a width nor 'ternary'"):
        parse_candidates(["quaternary"])
    with pytest.raises(ValueError, match=r"in \[1, 16\]"):
        parse_candidates([0])
