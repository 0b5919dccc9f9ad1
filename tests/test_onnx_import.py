"""ONNX import: every supported op against ONNX Runtime (an independent implementation), models
exported by torch.onnx against float PyTorch, and the error messages for malformed files."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from intquant.graph.onnx_import import UnsupportedOnnxError, from_onnx, randomize_weights

RNG = np.random.default_rng(0)


def _f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, in_shape, out_shape, inits=(), opset=13, in_name="x"):
    g = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    if out_shape is None:  # let ONNX fill in the output type (the checker requires one)
        del m.graph.output[:]
        m.graph.output.append(onnx.ValueInfoProto(name="y"))
        try:
            m = onnx.shape_inference.infer_shapes(m)
        except Exception:  # malformed on purpose: the importer must report it
            m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, []))
    return m


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _check_vs_ort(model, x, rtol=1e-4, atol=1e-5):
    ours = from_onnx(model)(x).numpy()
    ref = _ort(model, x)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)
    return ours


# ---- one op at a time, against ONNX Runtime ----------------------------------------------------

N = helper.make_node


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"strides": [2, 1], "pads": [0, 2, 1, 0], "dilations": [1, 2]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"group": 2},
    ],
)
def test_conv2d(opset, attrs):
    groups = attrs.get("group", 1)
    inits = {"w": _f32(6, 4 // groups, 3, 3), "b": _f32(6)}
    m = _model([N("Conv", ["x", "w", "b"], ["y"], **attrs)], (2, 4, 9, 8), None, inits, opset)
    _check_vs_ort(m, _f32(2, 4, 9, 8))


def test_conv1d_no_bias():
    inits = {"w": _f32(5, 3, 4)}
    m = _model([N("Conv", ["x", "w"], ["y"], pads=[2, 1], strides=[2], dilations=[2])],
               (1, 3, 20), None, inits)
    _check_vs_ort(m, _f32(1, 3, 20))


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1},
        {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ],
)
def test_pools(op, attrs):
    if op == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    m = _model([N(op, ["x"], ["y"], **attrs)], (2, 3, 9, 10), None, opset=19)
    _check_vs_ort(m, _f32(2, 3, 9, 10))


def test_maxpool1d_dilated():
    m = _model([N("MaxPool", ["x"], ["y"], kernel_shape=[3], dilations=[2], pads=[1, 2])],
               (2, 3, 15), None, opset=12)
    _check_vs_ort(m, _f32(2, 3, 15))


def test_gemm_transb_alpha_beta_then_softmax():
    inits = {"w": _f32(7, 12), "c": _f32(7)}
    m = _model([N("Gemm", ["x", "w", "c"], ["h"], transB=1, alpha=0.5, beta=2.0),
                N("Softmax", ["h"], ["y"], axis=-1)], (3, 12), None, inits)
    _check_vs_ort(m, _f32(3, 12))


def test_matmul_plus_bias_is_folded_into_linear():
    inits = {"w": _f32(12, 5), "b": _f32(5)}
    m = _model([N("MatMul", ["x", "w"], ["h"]), N("Add", ["h", "b"], ["y"])], (4, 12), None, inits)
    gm = from_onnx(m)
    assert [n.op for n in gm.graph.nodes] == ["input", "linear"]
    _check_vs_ort(m, _f32(4, 12))


def test_bn_mul_add_relu_chain_and_activations():
    """BatchNorm followed by a per-channel Mul and Add (the DenseNet / Inception-v2 pattern),
    then every elementwise activation the importer maps."""
    c = 4
    inits = {
        "s": _f32(c), "bb": _f32(c), "mu": _f32(c), "var": np.abs(_f32(c)) + 0.5,
        "k": _f32(c, 1, 1), "t": _f32(c, 1, 1), "lo": np.float32(-0.5), "hi": np.float32(0.7),
    }
    nodes = [
        N("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["a"], epsilon=1e-3),
        N("Mul", ["a", "k"], ["b"]), N("Add", ["t", "b"], ["c"]),
        N("LeakyRelu", ["c"], ["d"], alpha=0.2), N("Sigmoid", ["d"], ["e"]),
        N("Tanh", ["e"], ["f"]),
        N("Sub", ["c", "lo"], ["g"]), N("Div", ["g", "hi"], ["h"]),
        N("Clip", ["h", "lo", "hi"], ["i"]), N("Relu", ["i"], ["j"]),
        N("Sum", ["f", "j", "j"], ["y"]),
    ]
    m = _model(nodes, (2, c, 5, 5), None, inits)
    ops = [n.op for n in from_onnx(m).graph.nodes]
    assert ops.count("batchnorm") == 2 and "mul_const" not in ops  # Mul/Add folded into the BN
    _check_vs_ort(m, _f32(2, c, 5, 5))


def test_shape_ops_flatten_reshape_transpose_concat_pad():
    nodes = [
        N("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
        N("Concat", ["x", "t"], ["c"], axis=1),
        N("Pad", ["c", "pads", "cv"], ["p"], mode="constant"),
        N("Unsqueeze", ["p", "ax2"], ["u"]),
        N("Squeeze", ["u", "ax2"], ["s"]),
        N("Shape", ["s"], ["shp"]),
        N("Gather", ["shp", "i0"], ["n"]),
        N("Concat", ["n1", "m1"], ["newshape"], axis=0),
        N("Reshape", ["s", "newshape"], ["r"]),
        N("Identity", ["r"], ["id"]),
        N("Dropout", ["id"], ["dr"]),
        N("Flatten", ["dr"], ["y"], axis=1),
    ]
    inits = {"pads": np.array([0, 0, 1, 0, 0, 0, 2, 3], np.int64), "cv": np.float32(0.25),
             "ax2": np.array([2], np.int64), "i0": np.array(0, np.int64),
             "n1": np.array([2], np.int64), "m1": np.array([-1], np.int64)}
    m = _model(nodes, (2, 3, 4, 4), [2, 6 * 7 * 7], inits)
    _check_vs_ort(m, _f32(2, 3, 4, 4))


def test_constant_subgraph_is_folded_and_global_pool():
    w_shape = np.array([8, 3, 1, 1], np.int64)
    nodes = [
        N("Constant", [], ["ws"], value=numpy_helper.from_array(w_shape)),
        N("ConstantOfShape", ["ws"], ["w0"],
          value=numpy_helper.from_array(np.array([0.5], np.float32))),
        N("Mul", ["w0", "noise"], ["w"]),
        N("Conv", ["x", "w"], ["h"]),
        N("GlobalAveragePool", ["h"], ["y"]),
    ]
    m = _model(nodes, (1, 3, 6, 6), None, {"noise": _f32(8, 3, 1, 1)})
    gm = from_onnx(m)
    assert [n.op for n in gm.graph.nodes] == ["input", "conv", "global_avg_pool"]
    _check_vs_ort(m, _f32(1, 3, 6, 6))


def test_softmax_non_last_axis_both_opset_semantics():
    for opset, axis in [(11, 1), (13, 1)]:
        m = _model([N("Softmax", ["x"], ["y"], axis=axis)], (2, 3, 4), None, opset=opset)
        _check_vs_ort(m, _f32(2, 3, 4))


# ---- models exported by torch ------------------------------------------------------------------


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = nn.functional.relu6(self.dw(h)) + 0.5 * h[:, :, ::2, ::2]
        h = torch.cat([self.pool(h), nn.functional.max_pool2d(h, 2)], dim=1)[:, :8]
        return self.fc(torch.flatten(h, 1))


def _torch_onnx(module: nn.Module, x: torch.Tensor, opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}}, input_names=["input"])
    return onnx.load_from_string(buf.getvalue())


def test_resnet_block_exported_by_torch_matches_pytorch():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(8, 8, 1), nn.Sigmoid(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 5), nn.Softmax(dim=1))
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(3, 3, 16, 16)
    gm = from_onnx(_torch_onnx(net, x[:1], 13))
    np.testing.assert_allclose(gm(x.numpy()).numpy(), net(x).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("opset", [13, 18])
def test_torch_export_with_slicing_matches_pytorch(opset):
    """Strided slicing (``h[:, :, ::2, ::2]``, ``[:, :8]``) exports as Slice: one slice per
    sliced axis, equal to PyTorch."""
    net = SmallNet().eval()
    x = torch.randn(2, 3, 16, 16)
    gm = from_onnx(_torch_onnx(net, x[:1], opset))
    assert sum(n.op == "slice" for n in gm.graph.nodes) == 3
    np.testing.assert_allclose(gm(x).numpy(), net(x).detach().numpy(), atol=1e-5)


def test_torch_mlp_1d_conv_opset21():
    net = nn.Sequential(nn.Conv1d(2, 6, 5, stride=2, padding=2), nn.LeakyReLU(0.1),
                        nn.AvgPool1d(3, 2, padding=1), nn.Tanh(), nn.Flatten(),
                        nn.Linear(6 * 10, 4)).eval()
    x = torch.randn(4, 2, 40)
    gm = from_onnx(_torch_onnx(net, x[:1], 21))
    np.testing.assert_allclose(gm(x).numpy(), net(x).detach().numpy(), atol=1e-5)


def test_light_squeezenet_with_random_weights_matches_ort():
    import os

    path = os.path.join(os.path.dirname(onnx.__file__),
                        "backend/test/data/light/light_squeezenet.onnx")
    m = randomize_weights(onnx.load(path), seed=1)
    gm = from_onnx(m)
    x = _f32(1, 3, 224, 224)
    ours = gm(x).numpy()
    ref = _ort(m, x)
    np.testing.assert_allclose(ours.reshape(ref.shape), ref, rtol=1e-3, atol=1e-6)
    assert ref.std() > 1e-4  # the random weights make the output depend on the input


# ---- errors -------------------------------------------------------------------------------------


def test_truncated_protobuf(tmp_path):
    m = _model([N("Relu", ["x"], ["y"])], (1, 4), None)
    p = tmp_path / "t.onnx"
    p.write_bytes(m.SerializeToString()[:-7])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        from_onnx(p)


def test_missing_initializer_names_node_op_opset():
    m = _model([N("Conv", ["x", "w"], ["y"], name="conv1")], (1, 3, 5, 5), None, opset=14)
    with pytest.raises(ValueError, match=r"'conv1' \(Conv, opset 14\).*'w'.*missing initializer"):
        from_onnx(m)


def test_checker_failure_is_a_value_error():
    m = _model([N("Relu", ["x"], ["y"])], (1, 4), None)
    m.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(ValueError, match=r"opset 13.*checker"):
        from_onnx(m)


def test_unsupported_op_names_node_op_opset():
    m = _model([N("Exp", ["x"], ["y"], name="e1")], (1, 4), None, opset=17)
    with pytest.raises(UnsupportedOnnxError, match=r"node 'e1' \(Exp, opset 17\).*not supported"):
        from_onnx(m)


def test_every_unsupported_node_is_reported_at_once():
    """Two unsupported nodes on two branches; nodes after them are skipped, not reported."""
    m = _model([N("Exp", ["x"], ["a"], name="e1"), N("Relu", ["a"], ["b"], name="after"),
                N("Sin", ["x"], ["c"], name="s1"), N("Add", ["b", "c"], ["y"], name="sum")],
               (1, 4), None, opset=17)
    with pytest.raises(UnsupportedOnnxError) as e:
        from_onnx(m)
    msg = str(e.value)
    assert msg.startswith("2 unsupported node(s)")
    assert "'e1' (Exp" in msg and "'s1' (Sin" in msg
    assert "'after'" not in msg and "'sum'" not in msg


def test_div_of_two_tensors_is_unsupported():
    m = _model([N("Div", ["x", "x"], ["y"], name="q")], (1, 4), None)
    with pytest.raises(UnsupportedOnnxError, match=r"'q' \(Div, opset 13\).*Div of two"):
        from_onnx(m)


def test_two_activation_ops_broadcast_within_rank_against_ort():
    """Mul, Add and Sub of two activations: same shape, a per-channel (N, C, 1) gate, either
    order (as squeeze-excitation and residual blocks write them)."""
    nodes = [N("GlobalAveragePool", ["x"], ["g"]), N("Sigmoid", ["g"], ["s"]),
             N("Mul", ["x", "s"], ["m"]), N("Sub", ["g", "m"], ["d"]),
             N("Add", ["d", "x"], ["y"])]
    _check_vs_ort(_model(nodes, (2, 3, 5), None), _f32(2, 3, 5))



def test_opset_out_of_range():
    m = _model([N("Relu", ["x"], ["y"])], (1, 4), None, opset=22)
    with pytest.raises(UnsupportedOnnxError, match="opset 22"):
        from_onnx(m)


def test_dynamic_shape_needs_input_shape():
    m = _model([N("GlobalAveragePool", ["x"], ["y"])], ("N", 3, "H", "W"), None)
    with pytest.raises(ValueError, match="dynamic dimensions.*input_shape"):
        from_onnx(m)
    x = _f32(2, 3, 5, 7)
    np.testing.assert_allclose(from_onnx(m, input_shape=(3, 5, 7))(x).numpy(),
                               x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="disagrees"):
        from_onnx(m, input_shape=(4, 5, 7))


def test_reshape_across_batch_is_unsupported():
    m = _model([N("Reshape", ["x", "s"], ["y"])], (2, 3, 4), None,
               {"s": np.array([6, 4], np.int64)})
    with pytest.raises(UnsupportedOnnxError, match="across the batch axis"):
        from_onnx(m)


def test_quantize_accepts_imported_model_as_module():
    """``from_onnx`` returns an nn.Module whose forward takes NumPy or torch input."""
    inits = {"w": _f32(4, 3, 3, 3)}
    m = _model([N("Conv", ["x", "w"], ["y"])], (1, 3, 6, 6), None, inits)
    gm = from_onnx(m)
    assert isinstance(gm, nn.Module)
    x = _f32(1, 3, 6, 6)
    np.testing.assert_array_equal(gm(x).numpy(), gm(torch.from_numpy(x)).numpy())


@pytest.mark.slow
def test_light_squeezenet_end_to_end_integer_c(tmp_path):
    """The scale test in small: a 224x224 light model imported, quantized, run by the
    interpreter and as C on the host, bit-exact, with the arena at the planner's bound."""
    import os

    import intquant
    from intquant.codegen.toolchain import compile_and_run_host

    path = os.path.join(os.path.dirname(onnx.__file__),
                        "backend/test/data/light/light_squeezenet.onnx")
    gm = from_onnx(randomize_weights(onnx.load(path), seed=0))
    calib = _f32(4, 3, 224, 224)
    qm = intquant.quantize(gm, calib, intquant.Config(), progress=False)
    x = _f32(1, 3, 224, 224)
    xq = qm.quantize_input(x)
    y_int = qm.run(xq)
    res = qm.export_c(tmp_path / "sq", name="model")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, xq), y_int)
    assert res.arena_lower_bound <= res.arena_bytes
    # The integer model tracks the float one: same top class on this input.
    y_float = gm(x).numpy().reshape(y_int.shape)
    assert np.argmax(qm.dequantize_output(y_int)) == np.argmax(y_float)
