"""QATModel: what :func:`intquant.qat.prepare` returns — fake quantization in training, the
deployed integer model in eval mode.

Training mode runs the fake-quantized float network (straight-through gradients, fast).
Eval mode runs what will be deployed: the model is lowered through :func:`intquant.qat.convert`
to its IntGraph and executed by the NumPy integer interpreter (integer codes, exact int64
accumulators, the fixed-point requantization of ``intquant.numerics``), and the integer logits
are returned dequantized as a float32 tensor. The float fake-quant forward cannot promise that:
its convolutions round differently on different CPUs (AVX2, AVX-512, oneDNN or ATen kernels),
so on some machines a few percent of its logits differed from the integer model by one step.
Here ``model.eval()(x)`` equals ``convert(model).predict(x)`` on every machine, logit for logit.

The integer model is rebuilt only when a parameter or buffer changes (a fingerprint of their
values is compared on every call), so evaluating a test set batch by batch converts once.
Eval mode returns no gradient. ``exact_eval = False`` restores the fake-quant forward in eval
mode (e.g. to look at intermediate tensors with hooks), and so does any submodule left in
training mode (``recalibrate_batchnorm`` runs BatchNorm in training mode on purpose).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .quantizers import Quantizer

__all__ = ["QATModel", "CALIBRATION_SAMPLES"]

# Buffers a quantizer *writes* on every forward (the grid it just used): outputs, not state.
_RECORDED_BUFFERS = ("scale", "zero_point")
# Samples of the first input kept for the formats QAT does not train (calibrated at convert).
CALIBRATION_SAMPLES = 256


class _DeployedCache:
    """The integer model of the last parameter fingerprint; copies of a model start empty."""

    def __init__(self) -> None:
        self.fingerprint: bytes | None = None
        self.qmodel: Any = None

    def __deepcopy__(self, memo: dict) -> _DeployedCache:
        return _DeployedCache()


class QATModel(fx.GraphModule):
    """A fake-quantized GraphModule whose eval mode is the deployed integer model.

    Attributes set by ``prepare``: ``qat_layers`` (layer name → LayerInfo), ``qat_adds``
    (residual add name → AddInfo), ``qat_elems`` (products, differences, activations → AddInfo),
    ``qat_config``. User-settable: ``deploy_config`` (the
    ``Config`` convert and eval mode lower with; None = convert's default), ``exact_eval``.
    ``calibration_input`` holds the first samples seen, for formats QAT does not train.
    """

    _KEPT_ON_COPY = ("qat_layers", "qat_adds", "qat_elems", "qat_config", "deploy_config",
                     "calibration_input", "exact_eval", "_deployed_cache")

    def __init__(self, root: nn.Module, graph: fx.Graph) -> None:
        super().__init__(root, graph)
        self.qat_layers: dict = {}
        self.qat_adds: dict = {}
        self.qat_elems: dict = {}
        self.qat_config: Any = None
        self.deploy_config: Any = None
        self.calibration_input: np.ndarray | None = None
        self.exact_eval = True
        self._deployed_cache = _DeployedCache()

    def _deepcopy_init(self):
        """GraphModule's deepcopy rebuilds the module from its graph; keep our attributes."""

        def init(res: QATModel, fake_mod: nn.Module, graph: fx.Graph) -> None:
            fx.GraphModule.__init__(res, fake_mod, graph)
            for key in self._KEPT_ON_COPY:
                if key in fake_mod.__dict__:
                    res.__dict__[key] = fake_mod.__dict__[key]

        return init

    # -- dispatch ---------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.calibration_input is None and args and isinstance(args[0], torch.Tensor):
            self.calibration_input = _first_samples(args[0])
        if self.exact_eval and not self.training_anywhere():
            return self.deployed_forward(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def fake_quant_forward(self, *args: Any, **kwargs: Any) -> Any:
        """The fake-quantized float forward, whatever the mode (what training computes)."""
        return nn.Module.__call__(self, *args, **kwargs)

    def training_anywhere(self) -> bool:
        """True when the model or any submodule is in training mode."""
        return any(m.training for m in self.modules())

    # -- the deployed model -----------------------------------------------------------------
    def deployed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The integer model's dequantized output for ``x`` (float32, no gradient)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"QAT model input must be a torch.Tensor, got {type(x).__name__}")
        if self.uninitialized_quantizers():
            with torch.no_grad():  # data-dependent grids start from this batch, as in training
                self.fake_quant_forward(x)
        qmodel = self.deployed_model()
        y = qmodel.predict(x.detach().cpu().numpy())
        return torch.from_numpy(np.asarray(y, dtype=np.float32)).to(x.device)

    def deployed_model(self):
        """The integer ``QuantizedModel`` eval mode runs: ``convert(self)`` of the current
        parameters, rebuilt only when a parameter or buffer value changed."""
        from .convert import convert

        missing = self.uninitialized_quantizers()
        if missing:
            raise ValueError(f"QAT model: quantizers {missing} have not seen data yet; run the "
                             "model on a batch first (or pass example_input to prepare)")
        cache = self._deployed_cache
        if cache.qmodel is None or cache.fingerprint != self.state_fingerprint():
            try:
                cache.qmodel = convert(self)
            except ValueError as e:  # capture, planning and lowering errors are ValueErrors
                raise ValueError(
                    f"QAT eval mode runs the deployed integer model, and converting this model "
                    f"failed: {e} (model.exact_eval = False evaluates the fake-quant network)"
                ) from e
            cache.fingerprint = self.state_fingerprint()  # after: convert normalises LSQ steps
        return cache.qmodel

    def uninitialized_quantizers(self) -> list[str]:
        """Names of the quantizers whose grid waits for the first batch (LSQ, PACT, observers)."""
        return [name for name, m in self.named_modules()
                if isinstance(m, Quantizer) and hasattr(m, "initialized")
                and not bool(m.initialized)]

    def state_fingerprint(self) -> bytes:
        """A hash of every parameter and buffer value (except the grids quantizers record on
        each forward) and of the deployment config: equal fingerprints, equal integer models."""
        h = hashlib.blake2b(digest_size=16)
        for mod_name, m in self.named_modules():
            skip = _RECORDED_BUFFERS if isinstance(m, Quantizer) else ()
            tensors = list(m.named_parameters(recurse=False)) + \
                list(m.named_buffers(recurse=False))
            for name, t in tensors:
                if name in skip or t is None:
                    continue
                h.update(f"{mod_name}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        if self.deploy_config is not None:
            h.update(self.deploy_config.to_json().encode())
        return h.digest()


def _first_samples(x: torch.Tensor) -> np.ndarray:
    return x[:CALIBRATION_SAMPLES].detach().cpu().to(torch.float32).numpy().copy()
