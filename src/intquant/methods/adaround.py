"""AdaRound: learn, per weight, whether to round down or up (Nagel et al., ICML 2020).

Round-to-nearest minimises each weight's own error, but a layer's output error is
||W x − Ŵ x||² over the real inputs x: with correlated inputs, rounding some weights the "wrong"
way cancels the errors of others. AdaRound keeps Ŵ = s · clamp(floor(W/s) + h(V), qmin, qmax)
with a soft rounding h(V) = clamp(sigmoid(V)·(ζ − γ) + γ, 0, 1) (the rectified sigmoid, ζ = 1.1,
γ = −0.1, so h reaches exactly 0 and 1), and minimises

    mean over samples ||W x − Ŵ x||²  +  λ Σ (1 − |2h(V) − 1|^β)

by gradient descent on V. The regulariser is off for the first ``warmup`` fraction of the
iterations, then β anneals from 20 (only pushes weights that are nearly decided) to 2 (pushes
every h to 0 or 1). The result is floor(W/s) + [h(V) >= 0.5], so every integer is within one of
round-to-nearest.

Offline only (it needs torch); the integers it returns go into QuantPlan / IntGraph like any
others. Scales are not changed: choose them first (e.g. with an observer), then round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from intquant.numerics import qrange, storage_dtype

ZETA = 1.1
GAMMA = -0.1


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V) in [0, 1], exactly 0 or 1 on a set of positive measure (so rounding can settle)."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def inverse_rectified_sigmoid(h: torch.Tensor) -> torch.Tensor:
    """V with h(V) = h for h in (0, 1): start the optimisation at the float weights."""
    h = torch.clamp(h, 1e-4, 1.0 - 1e-4)
    return -torch.log((ZETA - GAMMA) / (h - GAMMA) - 1.0)


def rounding_regulariser(h: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ 1 − |2h − 1|^β: zero when every h is 0 or 1, largest at h = 1/2."""
    return (1.0 - (2.0 * h - 1.0).abs().pow(beta)).sum()


def annealed_beta(step: int, iters: int, warmup: float, beta_range: tuple[float, float]) -> float:
    """Cosine decay of β from beta_range[0] to beta_range[1] after the warm-up."""
    start = warmup * iters
    progress = min(max((step - start) / max(iters - start, 1.0), 0.0), 1.0)
    hi, lo = beta_range
    return lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * progress))


def _pair(v: int | Sequence[int], dims: int) -> list[int]:
    if isinstance(v, (int, np.integer)):
        return [int(v)] * dims
    v = [int(a) for a in v]
    return v[-dims:]


def layer_forward(op: str, *, stride: int | Sequence[int] = 1,
                  padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                  groups: int = 1, dims: int = 2):
    """f(x, W) for a bias-free linear or conv layer (bias cancels in W x − Ŵ x).

    ``padding`` is an int, or [top, left, bottom, right] as in the float Graph (1-D convs use
    left/right); stride and dilation are ints or sequences whose last ``dims`` entries count.
    """
    if op == "linear":
        return lambda x, w: F.linear(x, w)
    if op != "conv":
        raise ValueError(f"op must be 'linear' or 'conv', got {op!r}")
    if isinstance(padding, (int, np.integer)):
        pads = [int(padding)] * 4
    else:
        pads = [int(p) for p in padding]
        if len(pads) != 4:
            raise ValueError(f"padding must be an int or [top, left, bottom, right], got {padding}")
    top, left, bottom, right = pads
    st, dil = _pair(stride, dims), _pair(dilation, dims)
    if dims == 1:
        return lambda x, w: F.conv1d(F.pad(x, (left, right)), w, None, st, 0, dil, groups)
    return lambda x, w: F.conv2d(F.pad(x, (left, right, top, bottom)), w, None, st, 0, dil, groups)


def adaround_layer(
    weight: np.ndarray,
    x_in: np.ndarray,
    scale: np.ndarray | float,
    bits: int,
    *,
    op: str = "linear",
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    iters: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-2,
    reg_weight: float = 0.01,
    warmup: float = 0.2,
    beta_range: tuple[float, float] = (20.0, 2.0),
    seed: int = 0,
    threads: int | None = 1,
    name: str = "layer",
    x_target: np.ndarray | None = None,
) -> np.ndarray:
    """Integer weights (symmetric, narrow range, zero point 0) learned by AdaRound.

    weight: float [Cout, Cin] (linear) or [Cout, Cin/groups, (kh,) kw] (conv).
    x_in: the layer's input activations on calibration data, [N, Cin] or [N, Cin, (H,) W].
    x_target: the float network's input to the layer for the same samples, when ``x_in`` comes
    from the already-quantized layers upstream: the loss is then ||W x_target − Ŵ x_in||², so
    the rounding also compensates the error arriving from upstream (AdaRound's "asymmetric"
    reconstruction). Default: x_in.
    scale: per-tensor scalar or per-output-channel [Cout] weight scales (already chosen).
    Returns an array of weight.shape in the format's storage dtype, each value within ±1 of
    round-to-nearest(weight / scale) and inside [−(2^(bits−1) − 1), 2^(bits−1) − 1].
    ``threads``: torch intra-op threads during the optimisation (restored afterwards). One by
    default: the problems are small, and several threads per process on a loaded or 2-core
    machine (CI runs pytest -n 2) spin against each other, ~100x slower. None keeps torch's.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _adaround(weight, x_in, scale, bits, op=op, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, iters=iters, batch_size=batch_size,
                         lr=lr, reg_weight=reg_weight, warmup=warmup, beta_range=beta_range,
                         seed=seed, name=name, x_target=x_target)
    finally:
        torch.set_num_threads(previous)


def _adaround(weight, x_in, scale, bits, *, op, stride, padding, dilation, groups, iters,
              batch_size, lr, reg_weight, warmup, beta_range, seed, name,
              x_target) -> np.ndarray:
    weight, x_in, scale = _validated(weight, x_in, scale, op, name)
    if x_target is not None and np.shape(x_target) != x_in.shape:
        raise ValueError(f"{name}: x_target has shape {np.shape(x_target)}, x_in {x_in.shape}; "
                         "they must be the same samples")
    qmin, qmax = qrange(bits, signed=True, narrow=True)
    forward = layer_forward(op, stride=stride, padding=padding, dilation=dilation,
                            groups=groups, dims=weight.ndim - 2 if op == "conv" else 0)
    # floor(W/s) in float64 (exact integers); the optimisation itself runs in float32.
    w_over_s = weight / scale
    floor_np = np.floor(w_over_s)
    w_floor = torch.from_numpy(floor_np.astype(np.float32))
    w = torch.from_numpy(weight.astype(np.float32))
    x = torch.from_numpy(x_in.astype(np.float32))
    s = torch.from_numpy(scale.astype(np.float32))
    v = inverse_rectified_sigmoid(torch.from_numpy((w_over_s - floor_np).astype(np.float32)))
    v.requires_grad_(True)
    x_ref = x if x_target is None else torch.from_numpy(np.asarray(x_target, dtype=np.float32))
    with torch.no_grad():
        try:
            target = forward(x_ref, w)
        except RuntimeError as err:
            raise ValueError(
                f"{name}: the layer does not run on inputs of shape {tuple(x.shape)} with weight "
                f"{tuple(w.shape)} ({err}); check op, stride, padding, groups"
            ) from err

    optimiser = torch.optim.Adam([v], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for step in range(iters):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        soft_weight = s * torch.clamp(w_floor + rectified_sigmoid(v), qmin, qmax)
        diff = forward(x[idx], soft_weight) - target[idx]
        loss = diff.pow(2).flatten(1).sum(dim=1).mean()
        if step >= warmup * iters:
            beta = annealed_beta(step, iters, warmup, beta_range)
            loss = loss + reg_weight * rounding_regulariser(rectified_sigmoid(v), beta)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    with torch.no_grad():
        up = (rectified_sigmoid(v) >= 0.5).numpy()
    q = np.clip(floor_np + up, qmin, qmax)
    return q.astype(np.int64).astype(storage_dtype(bits, True))


def _validated(weight, x_in, scale, op: str, name: str):
    """float64 arrays, the scale shaped to broadcast over the output channels."""
    weight = np.asarray(weight, dtype=np.float64)
    x_in = np.asarray(x_in, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if op not in ("linear", "conv"):
        raise ValueError(f"{name}: op must be 'linear' or 'conv', got {op!r}")
    want = "2-d [Cout, Cin]" if op == "linear" else "3-d or 4-d [Cout, Cin/groups, (kh,) kw]"
    if (op == "linear" and weight.ndim != 2) or (op == "conv" and weight.ndim not in (3, 4)):
        raise ValueError(f"{name}: {op} weight must be {want}, got shape {weight.shape}")
    if x_in.ndim < 2 or x_in.shape[0] == 0:
        raise ValueError(
            f"{name}: x_in must be the layer inputs [N, ...] with N >= 1, got shape {x_in.shape}"
        )
    for what, arr in (("weight", weight), ("x_in", x_in), ("scale", scale)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: {what} contains NaN/inf")
    if np.any(scale <= 0):
        raise ValueError(f"{name}: scales must be > 0, got {scale}")
    if scale.size not in (1, weight.shape[0]):
        raise ValueError(
            f"{name}: {scale.size} scales for {weight.shape[0]} output channels; give one per "
            "output channel or one per tensor"
        )
    view = ((-1,) if scale.size > 1 else (1,)) + (1,) * (weight.ndim - 1)
    return weight, x_in, scale.reshape(view)
