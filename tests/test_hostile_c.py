"""Hostile names and hostile .iqm files against the C back end and validation (issue: safety).

Names come from users' models and files — nn.ModuleDict keys, ONNX node and tensor names,
hand-edited .iqm manifests — and must never change what the generated C computes: every case
compiles under -Wall -Wextra -Werror and equals the interpreter, including on inputs chosen to
trigger the condition a name tries to inject. Declared sizes in an .iqm are bounded before
anything is allocated for them.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import intquant
from intgraph_factory import conv_graph, max_pool_graph
from intquant.codegen import export_c
from intquant.codegen.toolchain import compile_and_run_host
from intquant.interpreter import run
from intquant.intgraph import IntGraphError, Limits, load, save

INJECT = "*/ if (input[0] == 99) return 0; /*"
CORPUS = [
    INJECT,
    "*/ return 42; /*",
    "/*",
    '"',
    "\\",
    "a\nb\r\n#define x 1",
    "%s%n%x",
    "$(touch pwned)",
    "`id`",
    "../../etc",
    "nul\x00byte",
    "ünïcödé 😀 \u202e",
    "x" * 10_000,
]
# nn.Module names may not contain '.'; everything else is allowed.
MODULE_KEYS = [k for k in CORPUS if "." not in k]


def trigger_inputs(shape: tuple[int, ...], dtype: str, n: int = 6) -> np.ndarray:
    """Random inputs whose first element takes the values injected code would test for."""
    rng = np.random.default_rng(5)
    info = np.iinfo(np.dtype(dtype))
    x = rng.integers(info.min, info.max + 1, size=(n, *shape)).astype(dtype)
    flat = x.reshape(n, -1)
    flat[: min(n, 4), 0] = [99, 42, 0, -1][: min(n, 4)] if info.min < 0 else [99, 42, 0, 1]
    return x


def assert_c_equals_interpreter(graph, tmp_path: Path, x: np.ndarray) -> Path:
    res = export_c(graph, tmp_path / "c", name="net")
    y = compile_and_run_host(res.out_dir, x, opt="-O2")
    np.testing.assert_array_equal(y, run(graph, x))
    source = "\n".join(p.read_text(errors="replace") for p in res.out_dir.glob("*.[ch]"))
    for needle in (INJECT, "*/ return 42; /*", "$(touch pwned)", "`id`", "#include <evil.h>"):
        assert needle not in source  # no name survives with the characters that could inject
    return res.out_dir


class HostileDict(nn.Module):
    """A ModuleDict whose keys are the hostile corpus, applied in order."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({k: nn.Linear(8, 8) for k in MODULE_KEYS})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = torch.relu(layer(x))
        return x


def test_module_dict_keys_cannot_inject_c(tmp_path):
    torch.manual_seed(0)
    model = HostileDict().eval()
    calib = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    q = intquant.quantize(model, calib, progress=False)
    assert any(INJECT in op.name for op in q.graph.ops)  # the names really reach the graph
    assert_c_equals_interpreter(q.graph, tmp_path, trigger_inputs((8,), "int8"))


def hostile_onnx() -> onnx.ModelProto:
    """Gemm → Relu → Gemm with hostile node, tensor and graph-input names."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "*/ w1 /*")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), '"w2\\')
    nodes = [
        helper.make_node("Gemm", [INJECT, "*/ w1 /*"], ["h /* x */"], name="*/ return 42; /*",
                         transB=1),
        helper.make_node("Relu", ["h /* x */"], ["r\n#include <evil.h>"], name="$(touch pwned)"),
        helper.make_node("Gemm", ["r\n#include <evil.h>", '"w2\\'], ["`id`"], name="../../etc",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hostile */", [helper.make_tensor_value_info(INJECT, TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("`id`", TensorProto.FLOAT, [1, 4])], [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_node_tensor_and_input_names_cannot_inject_c(tmp_path):
    model = intquant.from_onnx(hostile_onnx())
    calib = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
    q = intquant.quantize(model, calib, progress=False)
    assert_c_equals_interpreter(q.graph, tmp_path, trigger_inputs((6,), "int8"))


def rename_everything(graph, names: list[str]) -> None:
    """Give every op and every tensor (input and output included) a hostile name."""
    mapping = {t: f"{names[i % len(names)]}#{i}" for i, t in enumerate(graph.tensors)}
    for t, info in list(graph.tensors.items()):
        info.name = mapping[t]
    graph.tensors = {mapping[t]: info for t, info in graph.tensors.items()}
    for i, op in enumerate(graph.ops):
        op.name = f"{names[(i + 3) % len(names)]}@{i}"
        op.inputs = [mapping[t] for t in op.inputs]
        op.output = mapping[op.output]
    graph.input, graph.output = mapping[graph.input], mapping[graph.output]
    graph.meta = {INJECT: "*/ return 42; /*", "note": "x" * 5000}


def test_iqm_op_and_tensor_names_cannot_inject_c(tmp_path):
    g = conv_graph(np.random.default_rng(3), dims=2, dtype="int8")
    rename_everything(g, CORPUS)
    save(g, tmp_path / "m.iqm")
    g2 = load(tmp_path / "m.iqm")
    assert g2 == g or [op.name for op in g2.ops] == [op.name for op in g.ops]
    shape = g2.tensors[g2.input].shape
    assert_c_equals_interpreter(g2, tmp_path, trigger_inputs(shape, "int8"))


# ----------------------------------------------------------------------------------------------
# Bounded resources
# ----------------------------------------------------------------------------------------------


def _edit_manifest(path: Path, edit) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    m = json.loads(arrays["__manifest__"].tobytes())
    edit(m)
    arrays["__manifest__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    with open(path, "wb") as f:  # (np.savez on a path would append '.npz')
        np.savez(f, **arrays)


def test_huge_declared_tensor_is_refused_before_allocation(tmp_path):
    """A 2.4 KB file whose tensors declare 46341x46341 elements: refused in milliseconds."""
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    p = tmp_path / "big.iqm"
    save(g, p)

    def blow_up(m):
        for t in m["tensors"]:
            t["shape"] = [t["shape"][0], 46341, 46341]

    _edit_manifest(p, blow_up)
    assert p.stat().st_size < 10_000
    t0 = time.process_time()
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        load(p)
    assert time.process_time() - t0 < 5  # generous: no per-element work was done
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        export_c(g_with_shape(g, (g.tensors[g.input].shape[0], 46341, 46341)), tmp_path / "c")
    assert list(tmp_path.iterdir()) == [p]  # nothing half-written, no hidden temp folder


def g_with_shape(g, shape):
    g.tensors[g.input].shape = shape
    return g


def test_npy_header_larger_than_its_data_is_refused(tmp_path):
    """An array header may not declare more bytes than the member holds (no blind allocation)."""
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    p = tmp_path / "m.iqm"
    save(g, p)
    with zipfile.ZipFile(p) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.int8))
    header["shape"] = (2**40,)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["0/weight.npy"] = buf.getvalue() + b"\0" * 16
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(IntGraphError, match="header declares"):
        load(p)


def test_window_attrs_are_bounded_and_checked_in_time_independent_of_size():
    g = max_pool_graph(np.random.default_rng(0), dims=2, dtype="int8")
    op = g.ops[0]
    op.attrs["kernel"] = [1, 10**9]
    with pytest.raises(IntGraphError, match=r"attr 'kernel' entries must be <= 65536"):
        g.validate()


def test_limits_are_overridable():
    g = conv_graph(np.random.default_rng(0), dims=2, dtype="int8")
    g.validate()
    with pytest.raises(IntGraphError, match="max_tensor_elements"):
        g.validate(Limits(max_tensor_elements=4))
    with pytest.raises(IntGraphError, match="max_macs"):
        g.validate(Limits(max_macs=1))


def test_trigger_inputs_really_hit_the_injected_values():
    """The trigger inputs exercise the injected conditions (guards the tests above)."""
    x = trigger_inputs((8,), "int8")
    assert x[0, 0] == 99 and x[1, 0] == 42
