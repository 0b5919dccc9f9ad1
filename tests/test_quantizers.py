"""Each QAT quantizer: forward against the paper's formula written out independently here, and
gradient (STE mask, cancellation, learned-parameter gradient) against a hand derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from intquant import numerics
from intquant.qat import quantizers as Q


def _w(shape=(4, 3, 5), seed=0, scale=0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).requires_grad_(True)


def _grad(out: torch.Tensor, *inputs: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """Gradients of sum(g_out · out) for a fixed random upstream gradient g_out."""
    g_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad((out * g_out).sum(), inputs)
    return (g_out,) + grads


def _assert_on_grid(q: Q.Quantizer, out: torch.Tensor) -> None:
    """out == fl32(scale·(code − zero_point)) bit for bit, codes in range and in levels."""
    e = q.export()
    scale = torch.as_tensor(e["scale"], dtype=torch.float64)
    zp = torch.as_tensor(e["zero_point"], dtype=torch.float64)
    if e["axis"] == 0:
        scale = scale.reshape((-1,) + (1,) * (out.ndim - 1))
        zp = zp.reshape(scale.shape)
    ratio = out.detach().to(torch.float64) / scale + zp
    code = torch.round(ratio)
    # out is the float32 product fl(scale·(q − z)): within half an ulp of an integer code.
    assert torch.all((ratio - code).abs() < 1e-5), "values are not on the integer grid"
    assert code.min() >= e["qmin"] and code.max() <= e["qmax"]
    if e["levels"] is not None:
        assert set(torch.unique(code).tolist()) <= set(e["levels"])
    # The float32 product scale·(q − z) reproduces the training value bit for bit.
    again = (scale.to(torch.float32) * (code - zp).to(torch.float32))
    assert torch.equal(again, out.detach())
    assert np.all(e["scale"] == e["scale"].astype(np.float32))  # scales are float32 values


# ---------------------------------------------------------------------------------------------
# uniform
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_weight_forward_is_per_channel_maxabs(bits):
    w = _w()
    q = Q.UniformWeight(bits)
    out = q(w)
    qmax = 2 ** (bits - 1) - 1
    ref = []
    for c in range(w.shape[0]):
        wc = w[c].detach().numpy().astype(np.float64)
        s = np.float32(np.abs(wc).max() / qmax)
        ref.append(np.clip(np.rint(wc / s), -qmax, qmax) * s)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(ref), rtol=0, atol=1e-7)
    _assert_on_grid(q, out)


def test_uniform_weight_gradient_is_identity():
    w = _w()
    g_out, g_w = _grad(Q.UniformWeight(4)(w), w)
    torch.testing.assert_close(g_w, g_out)


def test_uniform_act_matches_numerics_choose_qparams_and_clips_gradient():
    x = (torch.linspace(-3, 3, 61, dtype=torch.float32) + 0.013).requires_grad_(True)
    q = Q.UniformAct(4, signed=True).eval()
    q.min_val.fill_(-1.0)
    q.max_val.fill_(2.0)
    q.initialized.fill_(True)
    out = q(x)
    qp = numerics.choose_qparams(-1.0, 2.0, bits=4, symmetric=False, signed=True)
    ref = numerics.dequantize(numerics.quantize(x.detach().numpy(), qp), qp)
    np.testing.assert_array_equal(out.detach().numpy(), ref.astype(np.float32))
    _assert_on_grid(q, out)
    g_out, g_x = _grad(out, x)
    code = np.rint(x.detach().numpy() / qp.scale[0]) + qp.zero_point[0]
    inside = (code >= -8) & (code <= 7)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(g_x.numpy(), g_out.numpy() * inside)


def test_uniform_act_unsigned_after_relu_has_zero_point_zero():
    q = Q.UniformAct(8, signed=False)
    q(torch.rand(100) * 5)
    e = q.export()
    assert e["zero_point"][0] == 0 and (e["qmin"], e["qmax"]) == (0, 255)


# ---------------------------------------------------------------------------------------------
# LSQ
# ---------------------------------------------------------------------------------------------


def test_lsq_init_forward_and_gradients_per_tensor_activation():
    bits = 3
    qp = 2**bits - 1
    x = (torch.randn(8, 6, generator=torch.Generator().manual_seed(3)) * 2) ** 2
    x.requires_grad_(True)
    q = Q.LSQ(bits, signed=False, is_weight=False)
    out = q(x)
    s = q.step.detach().reshape(())
    # Esser et al.: s0 = 2·mean|v| / sqrt(Qp)
    torch.testing.assert_close(s, 2 * x.detach().abs().mean() / math.sqrt(qp))
    v = x.detach() / s
    torch.testing.assert_close(out.detach(), torch.clamp(torch.round(v), 0, qp) * s)
    _assert_on_grid(q, out)
    g_out, g_x, g_s = _grad(out, x, q.step)
    inside = (v >= 0) & (v <= qp)
    assert (~inside).any()
    torch.testing.assert_close(g_x, g_out * inside)
    dstep = torch.where(v > qp, torch.full_like(v, qp), torch.round(v) - v)
    g = 1 / math.sqrt(x[0].numel() * qp)
    torch.testing.assert_close(g_s.reshape(()), (g_out * dstep).sum() * g)


def test_lsq_weight_step_gradient_per_channel_with_clipping():
    w = _w((3, 4, 2), seed=5)
    q = Q.LSQ(4, signed=True, is_weight=True)
    q(w)  # initialise
    with torch.no_grad():
        q.step.mul_(0.3)  # small steps so that some weights clip on both sides
    out = q(w)
    qn = qp = 7
    s = q.step.detach().reshape(-1, 1, 1)
    v = w.detach() / s
    torch.testing.assert_close(out.detach(), torch.clamp(torch.round(v), -qn, qp) * s)
    g_out, g_w, g_s = _grad(out, w, q.step)
    below, above = v < -qn, v > qp
    assert below.any() and above.any()
    dstep = torch.where(below, -qn * torch.ones_like(v),
                        torch.where(above, qp * torch.ones_like(v), torch.round(v) - v))
    g = 1 / math.sqrt(w[0].numel() * qp)
    torch.testing.assert_close(g_s, (g_out * dstep).sum(dim=(1, 2)) * g)
    torch.testing.assert_close(g_w, g_out * ~(below | above))


def test_lsq_paper_range_when_not_narrow():
    q = Q.LSQ(2, signed=True, narrow=False)
    assert q.code_range() == (-2, 1)


# ---------------------------------------------------------------------------------------------
# PACT
# ---------------------------------------------------------------------------------------------


def test_pact_forward_and_alpha_gradient():
    alpha, bits = 1.5, 2
    x = torch.tensor([-0.5, 0.0, 0.2, 0.6, 1.0, 1.49, 1.5, 2.0, 3.0], requires_grad=True)
    q = Q.PACT(bits, init_alpha=alpha)
    out = q(x)
    qp = 2**bits - 1
    y = np.clip(x.detach().numpy(), 0, alpha)
    s = np.float32(alpha / qp)
    np.testing.assert_allclose(out.detach().numpy(), np.round(y / s) * s, rtol=0, atol=1e-7)
    _assert_on_grid(q, out)
    g_out, g_x, g_a = _grad(out, x, q.alpha)
    xv = x.detach()
    torch.testing.assert_close(g_x, g_out * ((xv >= 0) & (xv < alpha)))
    torch.testing.assert_close(g_a.reshape(()), (g_out * (xv >= alpha)).sum())


def test_pact_initialises_alpha_from_first_batch():
    q = Q.PACT(4)
    q(torch.tensor([0.0, 2.5, 1.0]))
    assert float(q.alpha.detach()) == 2.5


# ---------------------------------------------------------------------------------------------
# Binary family
# ---------------------------------------------------------------------------------------------


def test_binaryconnect_deterministic_sign_and_identity_gradient():
    w = torch.tensor([[-0.7, -0.0, 0.0, 0.3], [2.0, -2.0, 1e-9, -1e-9]], requires_grad=True)
    q = Q.BinaryConnect()
    out = q(w)
    expected = torch.tensor([[-1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0]])
    torch.testing.assert_close(out.detach(), expected)
    _assert_on_grid(q, out)
    g_out, g_w = _grad(out, w)
    torch.testing.assert_close(g_w, g_out)


def test_binaryconnect_stochastic_probability_is_hard_sigmoid_of_normalized_weight():
    n = 20000
    # every row (output channel) has mean |w| = (0.8 + 0.2 + 0 + 0.4 + 0.6) / 5 = 0.4
    w = torch.tensor([-0.8, -0.2, 0.0, 0.4, 0.6]).repeat(n, 1)
    q = Q.BinaryConnect(stochastic=True, generator=torch.Generator().manual_seed(0)).train()
    p_plus = (q(w) > 0).to(torch.float64).mean(0)
    # clip((w / 0.4 + 1) / 2, 0, 1) = clip(w * 1.25 + 0.5, 0, 1)
    expected = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.0], dtype=torch.float64)
    assert torch.all((p_plus - expected).abs() < 0.015), p_plus
    # the samples do not depend on the weights' scale (a power of two: exact in binary floats)
    a = Q.BinaryConnect(stochastic=True, generator=torch.Generator().manual_seed(3)).train()
    b = Q.BinaryConnect(stochastic=True, generator=torch.Generator().manual_seed(3)).train()
    assert torch.equal(a(w), b(w * 0.0625))
    q.eval()  # deployment: deterministic sign
    torch.testing.assert_close(q(w[:1]), torch.tensor([[-1.0, -1.0, 1.0, 1.0, 1.0]]))


def test_binary_latent_weights_are_clipped_during_training():
    from intquant.qat.modules import to_qat_layer

    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, -0.5, -4.0], [0.1, 0.2, 0.3]]))
    q = to_qat_layer(lin, Q.BinaryConnect()).train()
    q(torch.randn(1, 3))
    assert float(q.weight.detach().abs().max()) == 1.0


def test_sign_activation_cancels_gradient_outside_unit_interval():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.01, 5.0], requires_grad=True)
    q = Q.SignAct()
    out = q(x)
    torch.testing.assert_close(out.detach(),
                               torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    g_out, g_x = _grad(out, x)
    torch.testing.assert_close(g_x, g_out * (x.detach().abs() <= 1))


def test_xnor_forward_and_exact_gradient():
    w = _w((3, 2, 4), seed=7, scale=0.8)
    q = Q.XNOR()
    out = q(w)
    wd = w.detach()
    alpha = wd.abs().reshape(3, -1).mean(1)
    sign = torch.where(wd >= 0, 1.0, -1.0)
    torch.testing.assert_close(out.detach(), alpha.reshape(3, 1, 1) * sign)
    _assert_on_grid(q, out)
    g_out, g_w = _grad(out, w)
    n = wd[0].numel()
    through_sign = g_out * alpha.reshape(3, 1, 1) * (wd.abs() <= 1)
    through_alpha = sign / n * (g_out * sign).sum(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(g_w, through_sign + through_alpha)


@pytest.mark.parametrize("per_channel", [False, True])
def test_ternary_twn_threshold_and_optimal_scale(per_channel):
    w = _w((4, 3, 3), seed=11)
    q = Q.Ternary(per_channel=per_channel)
    out = q(w)
    wd = w.detach().numpy().astype(np.float64)
    groups = [wd[c] for c in range(4)] if per_channel else [wd]
    ref = []
    for g in groups:
        delta = 0.7 * np.abs(g).mean()
        kept = np.abs(g) > delta
        alpha = np.abs(g)[kept].mean()
        ref.append(alpha * np.sign(g) * kept)
    ref = np.stack(ref) if per_channel else ref[0]
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-6, atol=1e-7)
    _assert_on_grid(q, out)
    g_out, g_w = _grad(out, w)
    torch.testing.assert_close(g_w, g_out)


# ---------------------------------------------------------------------------------------------
# DoReFa
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4])
def test_dorefa_weight_tanh_normalisation_and_gradient(k):
    w = _w((2, 10), seed=13, scale=1.0)
    q = Q.DoReFaWeight(k)
    out = q(w)
    wd = w.detach().numpy().astype(np.float64)
    t = np.tanh(wd)
    wn = t / (2 * np.abs(t).max()) + 0.5
    n = 2**k - 1
    ref = 2 * np.round(n * wn) / n - 1
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=1e-6)
    _assert_on_grid(q, out)
    # Gradient: STE through round, exact through tanh(w)/max|tanh(w)| (= 2·w' − 1).
    g_out, g_w = _grad(out, w)
    g = g_out.numpy().astype(np.float64)
    m_idx = np.unravel_index(np.abs(t).argmax(), t.shape)
    big_m = np.abs(t).max()
    expected = g * (1 - t**2) / big_m
    expected[m_idx] -= np.sign(t[m_idx]) * (1 - t[m_idx] ** 2) * (g * t).sum() / big_m**2
    np.testing.assert_allclose(g_w.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dorefa_weight_one_bit_is_mean_abs_times_sign():
    w = _w((3, 5), seed=2)
    out = Q.DoReFaWeight(1)(w)
    wd = w.detach()
    torch.testing.assert_close(out.detach(), wd.abs().mean() * torch.where(wd >= 0, 1.0, -1.0))


def test_dorefa_activation_forward_and_ste_in_unit_interval():
    x = torch.tensor([-0.4, 0.0, 0.1, 0.5, 0.8, 1.0, 1.7], requires_grad=True)
    q = Q.DoReFaAct(2)
    out = q(x)
    ref = np.round(3 * np.clip(x.detach().numpy(), 0, 1)) / 3
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=1e-7)
    _assert_on_grid(q, out)
    g_out, g_x = _grad(out, x)
    xv = x.detach()
    torch.testing.assert_close(g_x, g_out * ((xv >= 0) & (xv <= 1)))


def test_dorefa_gradient_quantization_is_on_grid_and_unbiased():
    k = 2
    g_in = torch.tensor([[0.3, -1.0, 0.05, 0.7]])
    gen = torch.Generator().manual_seed(4)
    x = torch.zeros(4000, 4, requires_grad=True)  # the max is per sample: rows are independent
    (Q.quantize_gradient(x, k, gen) * g_in).sum().backward()
    s = x.grad
    m = g_in.abs().max()
    levels = 2 * m * (torch.arange(2**k) / (2**k - 1) - 0.5)
    assert torch.all(torch.isclose(s.unsqueeze(-1), levels, atol=1e-6).any(-1))
    assert torch.all((s.mean(0) - g_in[0]).abs() < 0.03)


# ---------------------------------------------------------------------------------------------
# HWGQ and power-of-two
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_hwgq_step_minimises_half_wave_gaussian_mse(bits):
    from scipy import integrate, optimize, stats

    n = 2**bits - 1

    def mse(d):  # E[(Q(x) − relu(x))^2], x ~ N(0, 1), by numerical integration
        total = 0.0
        for i in range(n + 1):
            lo = 0 if i == 0 else (i - 0.5) * d
            hi = np.inf if i == n else (i + 0.5) * d
            total += integrate.quad(lambda x, c=i * d: (x - c) ** 2 * stats.norm.pdf(x), lo, hi)[0]
        return total

    best = optimize.minimize_scalar(mse, bounds=(0.01, 3), method="bounded",
                                    options={"xatol": 1e-8}).x
    assert abs(Q.hwgq_step(bits) - best) < 1e-4


def test_hwgq_forward_levels_and_clipped_relu_gradient():
    q = Q.HWGQ(2)
    d = np.float32(Q.hwgq_step(2))
    x = torch.tensor([-1.0, 0.1, 0.4, 0.9, 1.5, 1.9, 2.5, 4.0], requires_grad=True)
    out = q(x)
    ref = np.clip(np.round(x.detach().numpy() / d), 0, 3) * d
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    _assert_on_grid(q, out)
    g_out, g_x = _grad(out, x)
    xv = x.detach()
    torch.testing.assert_close(g_x, g_out * ((xv > 0) & (xv <= 3 * float(d))))


@pytest.mark.parametrize("bits", [3, 4])
def test_pow2_levels_in_log_domain(bits):
    w = _w((3, 40), seed=17)
    q = Q.Pow2Weight(bits)
    out = q(w)
    n = 2 ** (bits - 1) - 1
    wd = w.detach().numpy().astype(np.float64)
    ref = np.zeros_like(wd)
    for c in range(3):
        alpha = np.float32(np.abs(wd[c]).max())
        for i, v in enumerate(wd[c]):
            levels = [alpha * 2.0**-j for j in range(n)]
            # nearest level in log2 distance; below half a log-step under the smallest: zero
            if abs(v) < levels[-1] * 2**-0.5:
                continue
            best = min(levels, key=lambda lv, v=v: abs(math.log2(abs(v)) - math.log2(lv)))
            ref[c, i] = math.copysign(best, v)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-6, atol=0)
    _assert_on_grid(q, out)
    assert (out == 0).any()  # the zero level is used
    g_out, g_w = _grad(out, w)
    torch.testing.assert_close(g_w, g_out)
    e = q.export()
    assert e["levels"][-1] == 2 ** (n - 1) and e["bits"] == n + 1


def test_factories_reject_unknown_names_with_the_layer_name():
    with pytest.raises(ValueError, match="conv9.*unknown weight_quantizer"):
        Q.make_weight_quantizer("int3", 3, "layer 'conv9'")
    with pytest.raises(ValueError, match="unknown act_quantizer"):
        Q.make_act_quantizer("relu", 3, False)
