"""IntGraph: graph-level validation messages, .iqm save/load (round trip, rejection of bad
files), helpers. Each op kind's own checks are tested in tests/ops/test_<kind>.py."""

from __future__ import annotations

import copy
import json
import os
import re
import zipfile
from collections.abc import Callable

import numpy as np
import pytest

import intgraph_factory as F
from intgraph_factory import (
    ONE_OP_BUILDERS,
    GraphBuilder,
    conv_graph,
    random_chain,
    random_input,
)
from intquant.interpreter import run
from intquant.intgraph import (
    MANIFEST_KEY,
    IntGraph,
    IntGraphError,
    TensorInfo,
    load,
    op_macs,
    save,
    tensor_nbytes,
    weight_bytes,
)

# ----------------------------------------------------------------------------------------------
# Round trip
# ----------------------------------------------------------------------------------------------


def _graphs() -> list[tuple[str, IntGraph]]:
    out = []
    for kind, build in ONE_OP_BUILDERS.items():
        for dtype in ("int8", "uint8", "int16"):
            out.append((f"{kind}-{dtype}", build(np.random.default_rng(1), dtype=dtype)))
    for dims in (1, 2):
        for dtype in ("int8", "int16"):
            g = random_chain(np.random.default_rng(dims), 10, dims=dims, dtype=dtype)
            out.append((f"chain{dims}d-{dtype}", g))
    return out


@pytest.mark.parametrize("name,g", _graphs(), ids=[n for n, _ in _graphs()])
def test_save_load_round_trip(tmp_path, name: str, g: IntGraph) -> None:
    g.meta = {"input_spec": {"dtype": "uint8", "mean": [0.5], "std": [0.25]}, "source": name}
    path = tmp_path / "model.iqm"
    save(g, path)
    h = load(path)
    assert h == g
    assert h.tensors == g.tensors and h.meta == g.meta
    for op_g, op_h in zip(g.ops, h.ops, strict=True):
        for k in op_g.consts:
            assert op_h.consts[k].dtype == op_g.consts[k].dtype
    x = random_input(np.random.default_rng(0), g, 3)
    a, b = run(g, x, return_all=True), run(h, x, return_all=True)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype


def test_op_equality_sees_const_changes() -> None:
    g = conv_graph(np.random.default_rng(2))
    h = copy.deepcopy(g)
    assert h == g
    h.ops[0].consts["bias"] = h.ops[0].consts["bias"] + 1
    assert h != g
    h = copy.deepcopy(g)
    h.ops[0].consts["bias"] = h.ops[0].consts["bias"].astype(np.int64)  # same values, new dtype
    assert h != g


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path) -> None:
    g = conv_graph(np.random.default_rng(3))
    path = tmp_path / "m.iqm"
    save(g, path)
    before = path.read_bytes()
    bad = copy.deepcopy(g)
    bad.ops[0].attrs["act_max"] = 1000
    with pytest.raises(IntGraphError, match="act_max"):
        save(bad, path)
    assert path.read_bytes() == before  # the old file survives a failed save
    assert sorted(os.listdir(tmp_path)) == ["m.iqm"]


# ----------------------------------------------------------------------------------------------
# Validation of in-memory graphs: each mutation → a message naming op, index and field. The
# checks of each op kind are tested in tests/ops/test_<kind>.py; these are the graph's own.
# ----------------------------------------------------------------------------------------------


def _conv() -> IntGraph:
    """One-op conv (x: (4, 6, 6) int8 → y), acc_bits 32, Cout 4, groups 2."""
    b = GraphBuilder(np.random.default_rng(4), (4, 6, 6), "int8")
    b.conv(b.input, 4, (3, 3), (1, 1), (1, 1, 1, 1), groups=2)
    return b.graph()


def _chain() -> IntGraph:
    b = GraphBuilder(np.random.default_rng(5), (3, 8, 8), "int8")
    t = b.conv(b.input, 4, (3, 3), (1, 1), (1, 1, 1, 1))
    t = b.max_pool(t, (2, 2), (2, 2))
    c = b.clamp(t)
    t = b.concat([t, c], axis=0)
    t = b.avg_pool(t, (3, 3), (1, 1), (1, 1, 1, 1))
    t = b.lut(t)
    t = b.flatten(t)
    t = b.fully_connected(t, 5)
    b.softmax(t)
    return b.graph()


def _swap_first_ops(g: IntGraph) -> None:
    g.ops[0], g.ops[1] = g.ops[1], g.ops[0]


def _rename_op(i: int, name: str) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        g.ops[i].name = name

    return mutate


def _set_kind(i: int, kind: str) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        g.ops[i].kind = kind

    return mutate


def _set_graph(**kw) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        for k, v in kw.items():
            setattr(g, k, v)

    return mutate


def _orphan_output(g: IntGraph) -> None:
    g.tensors["orphan"] = TensorInfo("orphan", (5,), "int8", 1.0, 0)
    g.output = "orphan"


CHAIN_CASES = [
    (_swap_first_ops, re.escape("op 0 'max_pool_1' (max_pool): input tensor 't1' is not produced")),
    (_rename_op(1, "conv_0"), "op name 'conv_0' is not unique"),
    (_set_kind(2, "gelu"), re.escape("op 2 'clamp_2' (gelu): unknown op kind 'gelu'")),
    (F.set_inputs(2, ["nope"]), "tensor 'nope' is not in graph.tensors"),
    (_orphan_output, "graph output tensor 'orphan' is not produced by any op"),
    (_set_graph(input="zz"), "graph input tensor 'zz' is not in tensors"),
    (_set_graph(meta={"x": np.int64(1)}), "meta must be JSON-serialisable"),
    (F.set_tensor(0, dtype="int32"), "tensor 't0': dtype 'int32'"),
    (F.set_tensor(0, scale=float("nan")), "tensor 't0': scale nan must be a finite float > 0"),
    (F.set_tensor(0, zero_point=200), r"tensor 't0': zero_point 200 outside int8"),
]


@pytest.mark.parametrize("mutate,message", CHAIN_CASES)
def test_graph_validation_messages(mutate, message: str) -> None:
    g = _chain()
    g.validate()
    mutate(g)
    with pytest.raises(IntGraphError, match=message):
        g.validate()


# ----------------------------------------------------------------------------------------------
# Loading hand-edited / malformed files
# ----------------------------------------------------------------------------------------------


def _read_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _edit_manifest(path, fn) -> None:
    arrays = _read_npz(path)
    m = json.loads(arrays[MANIFEST_KEY].tobytes().decode())
    fn(m)
    arrays[MANIFEST_KEY] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    _write_npz(path, arrays)


def _edit_arrays(path, fn) -> None:
    arrays = _read_npz(path)
    fn(arrays)
    _write_npz(path, arrays)


def _conv_op(m: dict) -> dict:
    return m["ops"][0]


FILE_CASES = [
    (
        "bad json",
        lambda p: _edit_arrays(
            p, lambda a: a.__setitem__(MANIFEST_KEY, np.frombuffer(b"{not json", np.uint8))
        ),
        "manifest is not valid UTF-8 JSON",
    ),
    (
        "no manifest",
        lambda p: _edit_arrays(p, lambda a: a.pop(MANIFEST_KEY)),
        "missing key '__manifest__'",
    ),
    (
        "manifest dtype",
        lambda p: _edit_arrays(
            p, lambda a: a.__setitem__(MANIFEST_KEY, a[MANIFEST_KEY].astype(np.int16))
        ),
        "'__manifest__' must be a 1-D uint8 array",
    ),
    ("missing ops", lambda p: _edit_manifest(p, lambda m: m.pop("ops")), "missing key 'ops'"),
    (
        "missing tensor dtype",
        lambda p: _edit_manifest(p, lambda m: m["tensors"][0].pop("dtype")),
        r"tensors\[0\]: missing key 'dtype'",
    ),
    (
        "bad tensor dtype",
        lambda p: _edit_manifest(p, lambda m: m["tensors"][0].__setitem__("dtype", "float32")),
        "tensor 't0': dtype 'float32'",
    ),
    (
        "wrong format",
        lambda p: _edit_manifest(p, lambda m: m.__setitem__("format", "onnx")),
        "key 'format' must be 'intquant.intgraph'",
    ),
    (
        "future version",
        lambda p: _edit_manifest(p, lambda m: m.__setitem__("version", 3)),
        "key 'version' = 3; this reader understands versions \\[1, 2\\]",
    ),
    (
        "unknown kind",
        lambda p: _edit_manifest(p, lambda m: _conv_op(m).__setitem__("kind", "gelu")),
        "op 0 'conv_0' \\(gelu\\): unknown op kind 'gelu'",
    ),
    (
        "attr out of range",
        lambda p: _edit_manifest(p, lambda m: _conv_op(m)["attrs"].__setitem__("act_max", 1000)),
        "op 0 'conv_0' \\(conv\\): attr 'act_max' = 1000 is out of range",
    ),
    (
        "attr string",
        lambda p: _edit_manifest(p, lambda m: _conv_op(m)["attrs"].__setitem__("groups", "2")),
        "attr 'groups' must be an integer, got '2'",
    ),
    (
        "missing const",
        lambda p: _edit_arrays(p, lambda a: a.pop("0/bias")),
        r"const 'bias' is missing from the archive \(0/bias\)",
    ),
    (
        "extra array",
        lambda p: _edit_arrays(p, lambda a: a.__setitem__("7/foo", np.zeros(2, np.int8))),
        r"arrays not named in the manifest: \['7/foo'\]",
    ),
    (
        "float const",
        lambda p: _edit_arrays(
            p, lambda a: a.__setitem__("0/bias", a["0/bias"].astype(np.float32))
        ),
        "const 'bias'.*stored dtype float32; consts must be integers",
    ),
    (
        "array dtype edited",
        lambda p: _edit_arrays(p, lambda a: a.__setitem__("0/bias", a["0/bias"].astype(np.int64))),
        "const 'bias'.*stored array int64\\[4\\] does not match the manifest int32\\[4\\]",
    ),
    (
        "array and manifest edited",
        lambda p: (
            _edit_arrays(p, lambda a: a.__setitem__("0/bias", a["0/bias"].astype(np.int64))),
            _edit_manifest(
                p, lambda m: _conv_op(m)["consts"]["bias"].__setitem__("dtype", "int64")
            ),
        ),
        "op 0 'conv_0' \\(conv\\): const 'bias' has dtype int64, expected int32",
    ),
    (
        "array shape edited",
        lambda p: (
            _edit_arrays(p, lambda a: a.__setitem__("0/shift", a["0/shift"][:2])),
            _edit_manifest(p, lambda m: _conv_op(m)["consts"]["shift"].__setitem__("shape", [2])),
        ),
        "const 'shift' has 2 entries, expected Cout = 4",
    ),
    (
        "truncated",
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        "not a readable .iqm file",
    ),
    ("empty", lambda p: p.write_bytes(b""), "not a readable .iqm file"),
    (
        "object array",
        lambda p: _edit_arrays(
            p, lambda a: a.__setitem__("0/bias", np.array([{"a": 1}], dtype=object))
        ),
        "not a readable .iqm file",
    ),
]


@pytest.mark.parametrize("name,edit,message", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_load_rejects_malformed_files(tmp_path, name: str, edit, message: str) -> None:
    path = tmp_path / "m.iqm"
    save(_conv(), path)
    load(path)  # the unedited file is fine
    edit(path)
    with pytest.raises(IntGraphError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)  # the message names the file


def test_load_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(IntGraphError, match="nope.iqm"):
        load(tmp_path / "nope.iqm")


def test_saved_file_is_a_plain_npz_with_manifest(tmp_path) -> None:
    """The format the C back end and other tools read: zip of .npy + a JSON manifest."""
    path = tmp_path / "m.iqm"
    g = _conv()
    save(g, path)
    assert zipfile.is_zipfile(path)
    arrays = _read_npz(path)
    assert sorted(arrays) == sorted(["0/weight", "0/bias", "0/multiplier", "0/shift", MANIFEST_KEY])
    m = json.loads(arrays[MANIFEST_KEY].tobytes().decode("utf-8"))
    assert m["format"] == "intquant.intgraph" and m["version"] == 2
    assert m["ops"][0]["attrs"]["stride"] == [1, 1]
    assert [t["name"] for t in m["tensors"]] == ["t0", "t1"]
    np.testing.assert_array_equal(arrays["0/weight"], g.ops[0].consts["weight"])


# ----------------------------------------------------------------------------------------------
# Size / cost helpers (hand-computed)
# ----------------------------------------------------------------------------------------------


def test_tensor_nbytes() -> None:
    assert tensor_nbytes(TensorInfo("a", (3, 4, 5), "int16", 1.0, 0)) == 120
    assert tensor_nbytes(TensorInfo("a", (7,), "uint8", 1.0, 0)) == 7


def test_op_macs_and_weight_bytes() -> None:
    b = GraphBuilder(np.random.default_rng(9), (1, 40), "int8")
    t = b.conv(b.input, 32, (1, 5), (1, 2), (0, 2, 0, 2))  # L' = 20
    t = b.conv(t, 32, (1, 3), (1, 2), (0, 1, 0, 1))  # L' = 10
    t = b.conv(t, 32, (1, 3), (1, 1), (0, 1, 0, 1), groups=32)  # depthwise, L' = 10
    t = b.flatten(b.global_avg_pool(t))
    b.fully_connected(t, 10)
    g = b.graph()
    assert [op_macs(op, g) for op in g.ops] == [
        32 * 20 * 1 * 5,
        32 * 10 * 32 * 3,
        32 * 10 * 1 * 3,
        0,
        0,
        10 * 32,
    ]
    # weights int8 + bias/multiplier/shift int32 per output channel
    expected = (32 * 5 + 32 * 32 * 3 + 32 * 3 + 10 * 32) + 4 * 3 * (32 + 32 + 32 + 10)
    assert weight_bytes(g) == expected
