"""Peer quantizers run on the same float weights: torch.ao FX and ONNX Runtime quantize_static.

Shared by the benchmarks (ptq.py, peers.py). Each returns a callable ``f(x: np.ndarray) ->
float logits`` so that accuracy and logit error are measured the same way for everyone.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Predict = Callable[[np.ndarray], np.ndarray]


def torch_ao_fx(model: torch.nn.Module, calib: np.ndarray, backend: str) -> Predict:
    """torch.ao FX graph-mode static quantization with the backend's default qconfig."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = backend
    m = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(m, get_default_qconfig_mapping(backend),
                              (torch.as_tensor(calib[:1]),))
        with torch.no_grad():
            for i in range(0, len(calib), 256):
                prepared(torch.as_tensor(calib[i:i + 256]))
        quantized = convert_fx(prepared)

    def predict(x: np.ndarray) -> np.ndarray:
        torch.backends.quantized.engine = backend
        with torch.no_grad():
            return quantized(torch.as_tensor(x)).numpy()

    return predict


def export_onnx(model: torch.nn.Module, example: np.ndarray, path: Path) -> Path:
    """Float ONNX export (legacy TorchScript exporter: no download, static shapes, batch dim)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            copy.deepcopy(model).eval(), (torch.as_tensor(example[:1]),), str(path),
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            opset_version=17, dynamo=False,
        )
    return path


def ort_quantize_static(model: torch.nn.Module, calib: np.ndarray, method: str = "MinMax",
                        per_channel: bool = True, reference_path: bool = False) -> Predict:
    """ONNX Runtime ``quantize_static`` (QDQ, int8 activations and weights).

    ``reference_path=True`` disables ORT's graph optimisations (no fused int8 kernels), which
    gives the plain dequantize → float op → quantize results; the fused kernels can saturate
    on CPUs without VNNI.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            # Equal-sized batches: ORT's histogram calibrators stack them into one array.
            n = max(1, len(calib) // 50)
            self.batches = iter([{"x": calib[i * 50:(i + 1) * 50]} for i in range(n)])

        def get_next(self):
            return next(self.batches, None)

    tmp = Path(tempfile.mkdtemp(prefix="intquant_ort_"))
    fp = export_onnx(model, calib, tmp / "float.onnx")
    qp = tmp / "int8.onnx"
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "Percentile":
        extra["CalibPercentile"] = 99.999
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(fp), str(qp), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method), extra_options=extra,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if reference_path:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(qp), opts, providers=["CPUExecutionProvider"])

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    return predict


def float_predict(model: torch.nn.Module) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(x)).numpy()

    return predict


def score(predict: Predict, x: np.ndarray, y: np.ndarray, ref_logits: np.ndarray,
          batch: int = 500) -> tuple[float, float]:
    """(accuracy, mean |logit − float logit|) on a test set."""
    out = np.concatenate([predict(x[i:i + batch]) for i in range(0, len(x), batch)])
    out = out.reshape(len(x), -1)
    return float((out.argmax(1) == y).mean()), float(np.abs(out - ref_logits).mean())


def brevitas_available() -> bool:
    """Brevitas is installed only for the benchmarks (``pip install brevitas``), never needed
    by intquant or its tests."""
    try:
        import brevitas  # noqa: F401
        import brevitas_examples  # noqa: F401
    except ImportError:
        return False
    return True


def brevitas_ptq(model: torch.nn.Module, calib: np.ndarray, weight_bits: int, act_bits: int,
                 method: str = "gptq", keep_8bit: tuple[str, ...] = ()) -> Predict:
    """Brevitas PTQ on the same float weights, with its ImageNet example's recipe
    (``brevitas_examples.imagenet_classification.ptq``): BN merged, per-channel symmetric
    weights, per-tensor asymmetric activations (percentile 99.999), 32-bit bias, then
    ``method``: "gptq" (act-order), "qronos" (act-order) or "none", then bias correction
    ("gptq+bc" / "qronos+bc"). Fake-quant float outputs (Brevitas does not emit integer
    logits). ``keep_8bit``: module names whose weights stay at 8 bits (Brevitas's own
    layer-wise first/last rule looks for ImageNet shapes only).
    """
    from brevitas.graph.quantize import preprocess_for_quantize
    from brevitas_examples.imagenet_classification.ptq import ptq_common as bp

    batches = [(torch.as_tensor(calib[i:i + 100]), None) for i in range(0, len(calib), 100)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = preprocess_for_quantize(copy.deepcopy(model).eval(), equalize_iters=0,
                                    merge_bn=True)
        qm = bp.quantize_model(
            m, backend="fx", weight_bit_width=weight_bits, act_bit_width=act_bits,
            bias_bit_width=32, weight_quant_granularity="per_channel",
            act_quant_percentile=99.999, act_quant_type="asym", scale_factor_type="float_scale",
            quant_format="int", weight_param_method="stats", act_param_method="stats")
        with torch.no_grad():
            qm(batches[0][0])
        bp.calibrate(batches, qm)
        base = method.split("+")[0]
        if base == "gptq":
            bp.apply_gptq(batches, qm, act_order=True, create_weight_orig=True)
        elif base == "qronos":
            bp.apply_qronos(qm, batches, act_order=True)
        if method.endswith("+bc"):
            bp.apply_bias_correction(batches, qm)
    qm.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = qm(torch.as_tensor(x))
        return (out.value if hasattr(out, "value") else out).detach().numpy()

    return predict
