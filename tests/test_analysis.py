"""intquant.analyze: statistics vs scipy, SQNR and sensitivity vs an independent float-torch
re-implementation, JSON/Markdown/HTML outputs."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

import intquant
from intquant.analysis import Analysis, analysis_markdown, analyze, write_report
from intquant.analysis.plots import grid_levels
from intquant.analysis.stats import excess_kurtosis, share_beyond, skewness, sqnr_db
from intquant.numerics import QParams


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv1d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(6 * 10, 4)).eval()
    with torch.no_grad():  # a heavy-tailed layer: one outlier per output channel
        m[3].weight[:, 0] = 3.0
    return m


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 1, 10)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    y = logits.argmax(1)
    y[:30] = (y[:30] + 1) % 4  # some wrong labels so accuracy is not trivially 1
    qmodel = intquant.quantize(model, x[:200], intquant.Config(), progress=False)
    a = analyze(model, qmodel, (x[200:], y[200:]), sweep=True, sweep_bits=(3, 8))
    return model, x, y, logits, qmodel, a


def test_moments_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for w in (rng.normal(size=500), rng.standard_t(3, size=500), rng.exponential(size=500)):
        assert skewness(w) == pytest.approx(sps.skew(w), rel=1e-9)
        assert excess_kurtosis(w) == pytest.approx(sps.kurtosis(w, fisher=True), rel=1e-9)
    assert skewness(np.ones(5)) == 0.0 and excess_kurtosis(np.ones(5)) == 0.0


def test_sqnr_and_outlier_share_by_hand() -> None:
    assert sqnr_db([3.0, 4.0], [3.0, 3.0]) == pytest.approx(10 * math.log10(25.0))
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    w = np.array([0.0] * 99 + [100.0])  # mean 1, std 9.95: only the 100 is beyond 3 std
    assert share_beyond(w, 3.0) == pytest.approx(0.01)


def test_grid_levels() -> None:
    qp = QParams(scale=[0.5], zero_point=[0], bits=4, narrow=True)
    np.testing.assert_array_equal(grid_levels(qp), 0.5 * np.arange(-7, 8))


def test_weight_statistics_are_the_torch_weights(setup) -> None:
    model, *_, a = setup
    assert [s.name for s in a.layers if s.weighted] == ["0", "3"]
    for s, mod in ((a.layer("0"), model[0]), (a.layer("3"), model[3])):
        w = mod.weight.detach().double().numpy()
        assert s.params == w.size and s.weight_shape == w.shape
        assert s.w_min == pytest.approx(w.min()) and s.w_max == pytest.approx(w.max())
        assert s.w_std == pytest.approx(w.std())
        assert s.kurtosis == pytest.approx(sps.kurtosis(w.ravel()), rel=1e-6)
        # Independent per-channel symmetric max-abs int8 (the default at 8 bits).
        flat = w.reshape(len(w), -1)
        scale = np.abs(flat).max(1) / 127
        deq = np.rint(flat / scale[:, None]) * scale[:, None]
        assert s.weight_scale_min == pytest.approx(scale.min(), rel=1e-6)
        assert s.weight_scale_max == pytest.approx(scale.max(), rel=1e-6)
        assert s.weight_sqnr_db == pytest.approx(sqnr_db(flat, deq), abs=1e-4)
    # The outlier column of layer "3" shows up in its statistics.
    assert a.layer("3").kurtosis > 3 and a.layer("3").outliers_3std > 0


def test_output_sqnr_and_accuracy_vs_torch(setup) -> None:
    _, x, y, logits, qmodel, a = setup
    pred = qmodel.predict(x[200:])
    assert a.output_sqnr_db == pytest.approx(sqnr_db(logits[200:], pred), rel=1e-6)
    assert a.layer("3").act_sqnr_db == pytest.approx(a.output_sqnr_db, rel=1e-6)
    assert a.float_accuracy == pytest.approx(np.mean(logits[200:].argmax(1) == y[200:]))
    assert a.int_accuracy == pytest.approx(qmodel.accuracy(x[200:], y[200:]))
    assert a.logit_max_abs_error == pytest.approx(np.abs(logits[200:] - pred).max(), rel=1e-5)


def test_own_sqnr_is_the_layer_on_its_dequantized_integer_input(setup) -> None:
    """Layer "3" (the Linear) alone: nn.Linear of the dequantized integer tensor that feeds it
    vs its dequantized integer output — its own error, not the one it inherits."""
    from intquant import interpreter

    model, x, _, _, qmodel, a = setup
    values = interpreter.run(qmodel.graph, qmodel.quantize_input(x[200:]), return_all=True)
    (fc,) = [op for op in qmodel.graph.ops if op.output == "3"]
    deq = {}
    for name in (fc.inputs[0], "3"):
        info = qmodel.graph.tensors[name]
        deq[name] = info.scale * (values[name].astype(np.float64) - info.zero_point)
    with torch.no_grad():
        ref = model[3](torch.as_tensor(deq[fc.inputs[0]].reshape(100, -1),
                                       dtype=torch.float32)).numpy()
    assert a.layer("3").own_sqnr_db == pytest.approx(sqnr_db(ref, deq["3"]), abs=1e-3)
    # its own error is smaller than the one it carries from the layers before
    assert a.layer("3").own_sqnr_db > a.layer("3").act_sqnr_db
    assert a.layer("0").own_sqnr_db is not None


def _fake_quant(v: torch.Tensor, s: float, z: int, lo: int, hi: int) -> torch.Tensor:
    return (torch.clamp(torch.round(v / s) + z, lo, hi) - z) * s


def test_sensitivity_matches_a_torch_reimplementation(setup) -> None:
    """Only layer '3' quantized as planned: the plan's weights (the default's GPTQ codes on the
    per-channel max-abs grid) and (bias-corrected) bias, output on its int8 grid; KL and SQNR
    of its logits vs float."""
    model, x, y, logits, qmodel, a = setup
    m = copy.deepcopy(model)
    w = m[3].weight.detach().double()
    scale = w.abs().amax(1, keepdim=True) / 127
    planned = torch.from_numpy(np.asarray(qmodel.plan.graph.node("3").params["weight"],
                                          dtype=np.float64))
    codes = planned / scale
    assert float((codes - codes.round()).abs().max()) < 1e-6
    with torch.no_grad():
        m[3].weight.copy_((codes.round() * scale).float())
        m[3].bias.copy_(torch.from_numpy(qmodel.plan.graph.node("3").params["bias"]))
    act = qmodel.plan.acts["3"]
    s, z = float(act.scale[0]), int(act.zero_point[0])
    m[3].register_forward_hook(lambda mod, i, o: _fake_quant(o, s, z, -128, 127))
    with torch.no_grad():
        out = m(torch.from_numpy(x[200:])).double()
    acc = float(np.mean(out.numpy().argmax(1) == y[200:]))
    assert a.layer("3").sensitivity == pytest.approx(acc - a.float_accuracy, abs=1.5 / 100)
    ref = torch.from_numpy(logits[200:]).double()
    kl = torch.nn.functional.kl_div(out.log_softmax(1), ref.log_softmax(1), log_target=True,
                                    reduction="batchmean")
    assert a.layer("3").sensitivity_kl == pytest.approx(float(kl), rel=0.05)
    assert a.layer("3").sensitivity_sqnr_db == pytest.approx(sqnr_db(ref.numpy(), out.numpy()),
                                                             abs=0.2)
    # continuous where accuracy is not: every weighted layer has a positive KL
    assert all(st.sensitivity_kl > 0 for st in a.layers if st.weighted)


def test_sweep_shape_and_textbook_is_worse_at_3_bits(setup) -> None:
    *_, a = setup
    assert set(a.sweep) >= {"textbook (per-tensor max-abs)", "per-channel MSE"}
    assert all(set(curve) == {3, 8} for curve in a.sweep.values())
    # With one outlier per row, a single max-abs scale leaves the other weights ~1 level at 3
    # bits: per-channel MSE clipping must do at least as well.
    assert a.sweep["per-channel MSE"][3] >= a.sweep["textbook (per-tensor max-abs)"][3]


def test_json_and_markdown(setup) -> None:
    *_, a = setup
    d = json.loads(a.to_json())
    assert d["samples"] == 100 and len(d["layers"]) == len(a.layers)
    assert d["sweep"]["per-channel MSE"]["8"] == a.sweep["per-channel MSE"][8]
    md = analysis_markdown(a)
    assert "| 3 | linear |" in md and "textbook (per-tensor max-abs)" in md


def test_write_report_is_self_contained(setup, tmp_path) -> None:
    *_, a = setup
    paths = write_report(a, tmp_path)
    html = paths["html"].read_text()
    assert "<img" in html and "data:image/png;base64," in html
    assert "src='report_files" not in html and "http" not in html
    pngs = sorted(paths["images"].glob("*.png"))
    assert {p.name for p in pngs} >= {"sqnr.png", "accuracy_vs_bits.png", "weights_0.png",
                                      "weights_3.png", "sensitivity.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    for p in pngs:
        assert f"report_files/{p.name}" in md


def test_unlabelled_data_uses_agreement(setup) -> None:
    model, x, _, _, qmodel, _ = setup
    a = analyze(model, qmodel, x[200:], sensitivity=False, sweep=False)
    assert isinstance(a, Analysis) and not a.labelled and a.float_accuracy == 1.0
    assert "agreement" in a.metric


def test_analyze_with_config_quantizes(setup) -> None:
    model, x, y, *_ = setup
    a = analyze(model, intquant.Config(weight_bits=4), (x[200:], y[200:]), calib=x[:200],
                sensitivity=False, sweep=False)
    assert a.layer("0").weight_bits == 4 and a.layer("0").levels_used <= 15


def test_loaded_model_without_plan_is_refused(setup, tmp_path) -> None:
    model, x, _, _, qmodel, _ = setup
    qmodel.save(tmp_path / "m.iqm")
    with pytest.raises(ValueError, match="pass the Config"):
        analyze(model, intquant.load(tmp_path / "m.iqm"), x[:10])


def test_low_bit_sensitivity_is_reported(setup) -> None:
    *_, a = setup
    for s in a.layers:
        if s.weighted:
            # 4-bit weights cannot be better than 8-bit ones by more than noise (1 sample).
            assert s.sensitivity_low is not None
            assert s.sensitivity_low <= s.sensitivity + 1 / a.samples
            assert s.sensitivity_kl_low > s.sensitivity_kl  # continuous: no ties
    md = analysis_markdown(a)
    assert "KL at W4" in md and "sensitivity KL" in md
