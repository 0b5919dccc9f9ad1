"""IntGraph: validation messages, .iqm save/load (round trip, rejection of bad files), helpers."""

from __future__ import annotations

import copy
import json
import os
import re
import zipfile
from collections.abc import Callable

import numpy as np
import pytest

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
# Validation of in-memory graphs: each mutation → a message naming op, index and field
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


def _set(op_index: int, field: str, key: str, value) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        getattr(g.ops[op_index], field)[key] = value

    return mutate


def _cast_const(op_index: int, key: str, dtype) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        g.ops[op_index].consts[key] = g.ops[op_index].consts[key].astype(dtype)

    return mutate


def _edit_const(op_index: int, key: str, fn) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        g.ops[op_index].consts[key] = fn(g.ops[op_index].consts[key].copy())

    return mutate


def _del_attr(op_index: int, key: str) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        del g.ops[op_index].attrs[key]

    return mutate


def _set_item(a: np.ndarray, i: int, v: int) -> np.ndarray:
    a[i] = v
    return a


CONV = re.escape("op 0 'conv_0' (conv): ")
CONV_CASES = [
    (_cast_const(0, "bias", np.float32), CONV + "const 'bias' has dtype float32, expected int32"),
    (_cast_const(0, "bias", np.int64), CONV + "const 'bias' has dtype int64, expected int32"),
    (_cast_const(0, "weight", np.int32), "const 'weight' has dtype int32, expected int8 or int16"),
    (_cast_const(0, "multiplier", np.int64), "const 'multiplier' has dtype int64, expected int32"),
    (_edit_const(0, "weight", lambda w: w[:, :, 0]), "const 'weight' must be 4-D"),
    (_edit_const(0, "bias", lambda b: b[:3]), "const 'bias' has 3 entries, expected Cout = 4"),
    (_edit_const(0, "shift", lambda s: s[:2]), "const 'shift' has 2 entries, expected Cout = 4"),
    (_edit_const(0, "multiplier", lambda m: -m), "const 'multiplier' values must be in"),
    (_edit_const(0, "shift", lambda s: s * 0 + 31), r"const 'shift' values must be in \[-31, 30\]"),
    (_edit_const(0, "weight", lambda w: w[:, :1]), "dim 1 must be Cin/groups = 2"),
    (_set(0, "attrs", "act_min", 10), None),  # fine on its own (act_max is 127)
    (_set(0, "attrs", "act_max", 200), "attr 'act_max' = 200 is out of range"),
    (_set(0, "attrs", "act_max", -129), "attr 'act_max' = -129 is out of range"),
    (_set(0, "attrs", "input_zero_point", 300), "attr 'input_zero_point' = 300 is out of range"),
    (_set(0, "attrs", "output_zero_point", 126), "differs from tensor 't1' zero_point"),
    (_set(0, "attrs", "groups", 3), "attr 'groups' = 3 must divide Cin = 4"),
    (_set(0, "attrs", "groups", 0), "attr 'groups' = 0 is out of range"),
    (_set(0, "attrs", "stride", [0, 1]), "attr 'stride' entries must be >= 1"),
    (_set(0, "attrs", "padding", [1, -1, 1, 1]), "attr 'padding' entries must be >= 0"),
    (_set(0, "attrs", "padding", [1, 1, 1]), "attr 'padding' must have 4 entries"),
    (_set(0, "attrs", "dilation", [2, 2]), r"output tensor 't1' has shape \(4, 6, 6\), expected"),
    (_set(0, "attrs", "stride", [2, 2]), r"expected \(4, 3, 3\)"),
    (_set(0, "attrs", "acc_bits", 16), "attr 'acc_bits' = 16, expected 32 or 64"),
    (_set(0, "attrs", "acc_bits", True), "attr 'acc_bits' must be an integer, got True"),
    (_set(0, "attrs", "act_min", 1.5), "attr 'act_min' must be an integer, got 1.5"),
    (_set(0, "attrs", "rounding", "nearest"), "attr 'rounding' = 'nearest'"),
    (_set(0, "attrs", "rounding", "pow2"), "rounding 'pow2' needs every const 'multiplier'"),
    (_set(0, "attrs", "strides", [1, 1]), r"unknown attr\(s\) \['strides'\]"),
    (_set(0, "consts", "zero_point", np.zeros(4, np.int32)), r"unknown const\(s\)"),
    (_del_attr(0, "act_min"), "missing attr 'act_min'"),
    (_set(0, "attrs", "rounding", "single"), None),
    (
        _edit_const(0, "bias", lambda b: _set_item(b, 0, 2**31 - 1)),
        "accumulator bound",
    ),
]


@pytest.mark.parametrize("mutate,message", CONV_CASES)
def test_conv_validation_messages(mutate, message: str | None) -> None:
    g = _conv()
    mutate(g)
    if message is None:
        g.validate()
        return
    with pytest.raises(IntGraphError, match=message):
        g.validate()


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


def _set_tensor(name_index: int, **kw) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        t = list(g.tensors.values())[name_index]
        for k, v in kw.items():
            setattr(t, k, v)

    return mutate


def _set_graph(**kw) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        for k, v in kw.items():
            setattr(g, k, v)

    return mutate


def _orphan_output(g: IntGraph) -> None:
    g.tensors["orphan"] = TensorInfo("orphan", (5,), "int8", 1.0, 0)
    g.output = "orphan"


def _inputs(i: int, inputs: list[str]) -> Callable[[IntGraph], None]:
    def mutate(g: IntGraph) -> None:
        g.ops[i].inputs = inputs

    return mutate


CHAIN_CASES = [
    (_swap_first_ops, re.escape("op 0 'max_pool_1' (max_pool): input tensor 't1' is not produced")),
    (_rename_op(1, "conv_0"), "op name 'conv_0' is not unique"),
    (_set_kind(2, "gelu"), re.escape("op 2 'clamp_2' (gelu): unknown op kind 'gelu'")),
    (_inputs(2, ["nope"]), "tensor 'nope' is not in graph.tensors"),
    (_inputs(2, ["t1", "t2"]), r"expects 1 input\(s\), got 2"),
    (_orphan_output, "graph output tensor 'orphan' is not produced by any op"),
    (_set_graph(input="zz"), "graph input tensor 'zz' is not in tensors"),
    (_set_graph(meta={"x": np.int64(1)}), "meta must be JSON-serialisable"),
    (_set_tensor(0, dtype="int32"), "tensor 't0': dtype 'int32'"),
    (_set_tensor(0, scale=float("nan")), "tensor 't0': scale nan must be a finite float > 0"),
    (_set_tensor(0, zero_point=200), r"tensor 't0': zero_point 200 outside int8"),
    (_set_tensor(2, zero_point=3), "zero_point 3 must equal 't1' zero_point"),
    (_set(1, "attrs", "kernel", [9, 9]), "window larger than the padded input"),
    (_set(1, "attrs", "padding", [0, 0, 3, 0]), "lies entirely in the padding"),
    (_set(2, "attrs", "act_min", 100), r"attr 'act_min' = 100 > 'act_max'"),
    (_set(3, "attrs", "axis", 3), "attr 'axis' = 3 is out of range"),
    (_set(4, "attrs", "count_include_pad", 2), "attr 'count_include_pad' = 2 is out of range"),
    (_set(4, "attrs", "zero_point", 1), "attr 'zero_point' = 1 differs from tensor"),
    (_edit_const(5, "table", lambda t: t[:255]), "const 'table' has 255 entries, expected 256"),
    (_cast_const(5, "table", np.int16), "const 'table' has dtype int16, expected int8"),
    (_set(6, "attrs", "shape", [7, 9]), "attr 'shape' .* different element count"),
    (_edit_const(7, "bias", lambda b: b[:, None]), "const 'bias' must be 1-D"),
    (_edit_const(8, "exp_table", lambda t: t[1:]), "const 'exp_table' must start at 2\\^30"),
    (_edit_const(8, "exp_table", lambda t: t[:-1]), "must start at 2\\^30 .* and end with 0"),
    (_edit_const(8, "exp_table", lambda t: _set_item(t, 2, t[1] + 5)), "non-increasing"),
    (_set(8, "attrs", "lut_shift", 16), "attr 'lut_shift' = 16 is out of range"),
]


@pytest.mark.parametrize("mutate,message", CHAIN_CASES)
def test_graph_validation_messages(mutate, message: str) -> None:
    g = _chain()
    g.validate()
    mutate(g)
    with pytest.raises(IntGraphError, match=message):
        g.validate()


def test_validation_of_add_rescale_pad_transpose_lut16() -> None:
    b = GraphBuilder(np.random.default_rng(6), (2, 5), "int16")
    r = b.rescale(b.input)
    b.add(b.input, r)
    g = b.graph()
    g.ops[1].attrs["left_shift"] = 16  # 32768 << 16 = 2^31: overflows the int32 sum
    with pytest.raises(IntGraphError, match="op 1 'add_1' \\(add\\): attr 'left_shift' = 16"):
        g.validate()
    g.ops[1].attrs["left_shift"] = 15
    g.ops[1].attrs["a_shift"] = 1
    with pytest.raises(IntGraphError, match="attr 'a_shift' = 1 is out of range \\[-31, 0\\]"):
        g.validate()
    g.ops[1].attrs["a_shift"] = 0
    g.ops[0].attrs["input_zero_point_shifted"] = -(2**31)
    with pytest.raises(IntGraphError, match="exceeding int32"):
        g.validate()

    b = GraphBuilder(np.random.default_rng(7), (2, 5, 3), "int16")
    t = b.pad(b.input, [0, 0, 1, 1, 0, 2])
    t = b.transpose(t, [2, 1, 0])
    b.lut(t)
    g = b.graph()
    g.ops[0].attrs["pads"] = [0, 0, 1, 1, 0]
    with pytest.raises(IntGraphError, match="attr 'pads' must have 6 entries"):
        g.validate()
    g.ops[0].attrs["pads"] = [0, 0, 1, 1, 0, 2]
    g.ops[1].attrs["perm"] = [2, 2, 0]
    with pytest.raises(IntGraphError, match="attr 'perm' \\[2, 2, 0\\] is not a permutation"):
        g.validate()
    g.ops[1].attrs["perm"] = [2, 1, 0]
    g.ops[2].consts["table"] = np.zeros(256, np.int32)
    with pytest.raises(IntGraphError, match="const 'table' has 256 entries, expected 513"):
        g.validate()
    g.ops[2].consts["table"] = np.full(513, 2**24, np.int32)
    with pytest.raises(IntGraphError, match="\\|t\\| < 2\\^23"):
        g.validate()


def test_accumulator_bound_needs_acc_bits_64() -> None:
    """int16 weights on int16 activations overflow an int32 accumulator: the check says so."""
    g = conv_graph(
        np.random.default_rng(8),
        dtype="int16",
        w_dtype="int16",
        cin=4,
        cout=4,
        groups=1,
        kernel=(3, 3),
        dilation=(1, 1),
        padding=(1, 1, 1, 1),
    )
    assert g.ops[0].attrs["acc_bits"] == 64
    g.ops[0].attrs["acc_bits"] = 32
    g.ops[0].consts["bias"] = g.ops[0].consts["bias"].astype(np.int32)
    with pytest.raises(IntGraphError, match=r"accumulator bound \d+ >= 2\^31 for acc_bits 32; use"):
        g.validate()


def test_16x8_shift_limit_and_bias_dtype() -> None:
    g = conv_graph(np.random.default_rng(8), dtype="int16")
    assert g.ops[0].attrs["acc_bits"] == 64
    g.ops[0].consts["shift"][:] = 8
    with pytest.raises(IntGraphError, match=r"const 'shift' values must be in \[-31, 7\]"):
        g.validate()
    g = conv_graph(np.random.default_rng(8), dtype="int16")
    g.ops[0].consts["bias"] = g.ops[0].consts["bias"].astype(np.int32)
    with pytest.raises(IntGraphError, match="const 'bias' has dtype int32, expected int64"):
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
