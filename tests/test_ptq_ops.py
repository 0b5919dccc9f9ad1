"""The quantize path across layers: refusals, overrides, accumulator widths, save/load,
simulation, raw integer inputs, bias correction, per-block and power-of-two weights.

Each supported layer against float PyTorch through the whole path is tested with the op kind it
lowers to, in tests/ops/test_<kind>.py (``test_<kind>_matches_float_after_quantize``).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import intquant
from intquant.lower import lower
from intquant.ops import weight_codes
from intquant.qmodel import QuantizedModel
from ops.conftest import Fn, batchnorm

torch.manual_seed(0)


def test_unsupported_op_names_layer_and_lists_supported() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Fn(torch.sin))
    with pytest.raises(ValueError) as e:
        intquant.quantize(model, torch.randn(8, 4), progress=False)
    msg = str(e.value)
    assert "sin" in msg and "'1'" in msg and "Supported" in msg


class TwoUnsupported(nn.Module):
    """sin and exp on two branches, layers after them: two problems, one error."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.b(torch.sin(self.a(x)))  # b depends on the unsupported sin: not reported
        return u + torch.exp(self.c(x))


def test_every_unsupported_op_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as e:
        intquant.quantize(TwoUnsupported(), torch.randn(8, 4), progress=False)
    msg = str(e.value)
    assert msg.startswith("2 unsupported operation(s)")
    assert "aten.sin" in msg and "aten.exp" in msg and "'b'" not in msg
    assert "activation: use a supported activation" in msg  # the hint for exp


def test_unknown_override_layer_is_rejected() -> None:
    cfg = intquant.Config(overrides={"nope": {"weight_bits": 16}})
    with pytest.raises(ValueError, match="nope"):
        intquant.quantize(nn.Linear(4, 2), torch.randn(8, 4), cfg, progress=False)


def test_nan_calibration_data_is_rejected() -> None:
    x = torch.randn(8, 4)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        intquant.quantize(nn.Linear(4, 2), x, progress=False)


def test_override_first_layer_to_16_bits_uses_int64_accumulator() -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    cfg = intquant.Config(overrides={"0": {"weight_bits": 16}})
    q = intquant.quantize(model, torch.randn(32, 1, 10), cfg, progress=False)
    conv = q.graph.op_by_name("0")
    assert conv.consts["weight"].dtype == np.int16 and conv.attrs["acc_bits"] == 64
    fc = q.graph.op_by_name("3")
    assert fc.consts["weight"].dtype == np.int8 and fc.attrs["acc_bits"] == 32


def test_accumulator_bound_holds_for_worst_case_input() -> None:
    """The chosen accumulator width can hold the worst input: drive every input to the extreme
    that maximises each channel's |Σ w·(x − z)| and compare with exact Python integers."""
    model = nn.Linear(300, 4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    q = intquant.quantize(model, torch.rand(16, 300), progress=False)
    op = q.graph.ops[0]
    w = op.consts["weight"].astype(object)
    z = op.attrs["input_zero_point"]
    worst = max(sum(abs(int(v)) * max(127 - z, z + 128) for v in row) for row in w)
    worst += int(np.abs(op.consts["bias"]).max())
    limit = 2**31 if op.attrs["acc_bits"] == 32 else 2**47
    assert worst < limit


def test_save_load_roundtrip_runs_identically(tmp_path) -> None:
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.Softmax(dim=-1),
    )
    x = torch.randn(20, 2, 12)
    q = intquant.quantize(model, x, progress=False)
    path = q.save(tmp_path / "m.iqm")
    q2 = intquant.load(path)
    xi = q.quantize_input(x)
    np.testing.assert_array_equal(q.run(xi), q2.run(xi))
    np.testing.assert_array_equal(q2.quantize_input(x), xi)


_SIM_CONFIGS = {
    "w8a8": intquant.Config(),
    "16x8-double": intquant.Config(act_bits=16, rounding="double"),
    "w4-per-block-single": intquant.Config(weight_bits=4, granularity=("per_block", 8),
                                           rounding="single"),
    "raw-uint8-input": intquant.Config(
        input_spec=intquant.InputSpec(dtype="uint8", raw_scale=1 / 16, mean=0.3, std=0.4)),
}


@pytest.mark.parametrize("cfg", list(_SIM_CONFIGS.values()), ids=list(_SIM_CONFIGS))
def test_simulate_eval_is_the_integer_model(cfg) -> None:
    """simulate() in eval mode returns q.predict exactly (integer codes, on every CPU), also
    after fine-tuning its weights in training mode (then: the re-lowered plan)."""
    model = nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1), batchnorm(8, 1), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5),
    ).eval()
    raw = torch.randint(0, 17, (200, 2, 8), generator=torch.Generator().manual_seed(5))
    x = (raw.float() / 16 - 0.3) / 0.4  # exactly representable for the raw uint8 contract
    q = intquant.quantize(model, x, cfg, progress=False)
    sim = q.simulate().eval()
    with torch.no_grad():
        out = sim(x)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), q.predict(x).astype(np.float32))

    sim.train()  # fine-tuning: the fake-quant forward, differentiable
    opt = torch.optim.SGD(sim.parameters(), lr=0.05)
    loss = F.cross_entropy(sim(x), torch.arange(200) % 5)
    loss.backward()
    opt.step()
    sim.eval()
    with torch.no_grad():
        tuned = sim(x).numpy()
    graph = copy.deepcopy(q.plan.graph)  # the plan with the tuned weights, lowered here
    for node in graph.nodes:
        if node.op in ("conv", "linear"):
            key = node.name.replace(".", "_")
            node.params["weight"] = sim.weights[key].detach().numpy()
            node.params["bias"] = sim.biases[key].detach().numpy()
    plan = dataclasses.replace(q.plan, graph=graph)
    ref = QuantizedModel(lower(plan), plan=plan)
    assert any(not np.array_equal(a.consts[k], b.consts[k])  # the step changed the model
               for a, b in zip(ref.graph.ops, q.graph.ops, strict=True) for k in a.consts)
    np.testing.assert_array_equal(tuned, ref.predict(x).astype(np.float32))


def test_raw_uint8_input_needs_no_float_on_device() -> None:
    """InputSpec: the device receives raw uint8 pixels; normalisation x = (raw/16 − 0.3)/0.4
    happens in integers inside the graph, and equals quantize_input's host-side conversion."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16, 3)).eval()
    raw = torch.randint(0, 17, (64, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    x = (raw.float() / 16 - 0.3) / 0.4
    spec = intquant.InputSpec(dtype="uint8", raw_scale=1 / 16, mean=0.3, std=0.4)
    cfg = intquant.Config(input_spec=spec, calibration="minmax", bias_correction=False)
    q = intquant.quantize(model, x, cfg, progress=False)
    assert q.input_info.dtype == "uint8"
    np.testing.assert_array_equal(q.quantize_input(x), raw.numpy().astype(np.uint8))
    out = q.dequantize_output(q.run(raw.numpy().astype(np.uint8)))
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(out - ref).max() <= 3 * q.output_info.scale


def test_bias_correction_removes_mean_output_shift() -> None:
    """Empirical bias correction: the mean (over samples) of the integer output minus the float
    output shrinks per channel, at 4-bit weights where rounding shifts are large."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(64, 16)).eval()
    x = torch.rand(512, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    shifts = []
    for bc in (False, True):
        cfg = intquant.Config(weight_bits=4, calibration="minmax", bias_correction=bc)
        q = intquant.quantize(model, x, cfg, progress=False)
        shifts.append(np.abs((q.predict(x) - ref).mean(axis=0)).mean())
    assert shifts[1] < 0.5 * shifts[0]


def test_per_block_weights_follow_block_grids() -> None:
    """('per_block', n): each block of n weights has its own power-of-two fraction of the
    channel scale; the stored integers are exact multiples of 2^(E − e_block) with at most
    2^(b−1) − 1 magnitude levels per block, and small-magnitude blocks are represented far
    better than with one scale per channel."""
    torch.manual_seed(5)
    lin = nn.Linear(32, 4)
    with torch.no_grad():
        lin.weight[:, :16] *= 0.05  # first block of every channel is tiny
    x = torch.rand(256, 32)
    errs = {}
    for gran in ("per_channel", ("per_block", 16)):
        cfg = intquant.Config(weight_bits=4, granularity=gran, weight_calibration="maxabs",
                              bias_correction=False)
        q = intquant.quantize(lin, x, cfg, progress=False)
        op = q.graph.ops[0]
        w_int = weight_codes(op).astype(np.int64)
        m = op.consts["multiplier"].astype(np.float64) * 2.0 ** (op.consts["shift"] - 31)
        w_scale = m * q.output_info.scale / q.input_info.scale  # s_w = m · s_out / s_in
        w_hat = w_int * w_scale[:, None]
        errs[str(gran)] = np.abs(w_hat[:, :16] - lin.weight.detach().numpy()[:, :16]).mean()
        if gran != "per_channel":
            for row in w_int:
                for blk in (row[:16], row[16:]):
                    nz = blk[blk != 0]
                    step = np.gcd.reduce(np.abs(nz)) if nz.size else 1
                    assert np.all(np.abs(blk // step) <= 7)  # 4-bit codes on the block grid
    assert errs["('per_block', 16)"] < 0.25 * errs["per_channel"]


def test_power_of_two_scales_give_shift_only_requantization() -> None:
    """power_of_two=True: every scale is a power of two, so every multiplier is exactly 2^30
    (requantization is a shift) — including the 1x1 depthwise conv a constant multiply becomes."""
    torch.manual_seed(2)  # the Linear's init: an unseeded one made the error bound flaky
    model = Fn(lambda x, lin: torch.tanh(2 * lin(x)) * -0.7, nn.Linear(6, 6)).eval()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(2))
    cfg = intquant.Config(power_of_two=True, calibration="minmax")
    q = intquant.quantize(model, x, cfg, progress=False)
    mults = [op.consts["multiplier"] for op in q.graph.ops if "multiplier" in op.consts]
    assert len(mults) == 3 and all(np.all(m == 2**30) for m in mults)
    assert all(op.attrs.get("rounding", "pow2") == "pow2" for op in q.graph.ops
               if "multiplier" in op.consts)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(q.predict(x) - ref).max() <= 6 * q.output_info.scale
