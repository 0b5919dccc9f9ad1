"""Packed sub-byte weights of conv / fully_connected: layouts, validation, the interpreter, the
C kernels (host at -O2 and under ASan/UBSan, Cortex-M0), lowering and the .iqm format.

References are independent of the packing code: layout goldens are written out bit by bit
here; a packed layer is compared with the same layer whose codes are stored as plain int8 (the
unpacked path, itself tested against float PyTorch); the C kernels are compared with the
interpreter, the specification.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import intgraph_factory as F
from intquant.codegen import export_c
from intquant.codegen.toolchain import compile_and_run_host, emulate_unicorn
from intquant.interpreter import run
from intquant.intgraph import FORMAT_VERSION, MANIFEST_KEY, IntGraphError, load, save
from intquant.ops import _lowbit, _packed, weight_codes

FORMATS = ["int4", "int2", "ternary", "binary", "pow2"]


# ----------------------------------------------------------------------------------------------
# Layouts (goldens worked out by hand from docs/intgraph.md)
# ----------------------------------------------------------------------------------------------


def test_int4_golden() -> None:
    # codes 1, -8, 7: nibbles 0x1, 0x8, 0x7; two per byte, low nibble first, padding zero
    np.testing.assert_array_equal(_packed.pack(np.array([[1, -8, 7]]), "int4"), [[0x81, 0x07]])


def test_pow2_golden() -> None:
    # 64 = +2^6 -> 0b0111, -1 = -2^0 -> 0b1001, 0 -> 0, 4 = +2^2 -> 0b0011
    np.testing.assert_array_equal(_packed.pack(np.array([[64, -1, 0, 4]]), "pow2"),
                                  [[0x97, 0x30]])


def test_int2_golden_is_two_bit_planes() -> None:
    # codes 1, -1, 0, -2, 1 (two's complement 01, 11, 00, 10, 01):
    # plane of bit 0 = 1,1,0,0,1 -> 0b10011; plane of bit 1 = 0,1,0,1,0 -> 0b01010
    np.testing.assert_array_equal(_packed.pack(np.array([[1, -1, 0, -2, 1]]), "int2"),
                                  [[0b10011, 0b01010]])


def test_binary_golden_rows_start_on_bytes() -> None:
    codes = np.array([[1, -1, -1, 1, 1, 1, -1, 1, -1], [-1] * 8 + [1]])
    # row 0: bits 1,0,0,1,1,1,0,1 | 0 -> 0xB9, 0x00; row 1: 0x00, 0x01
    np.testing.assert_array_equal(_packed.pack(codes, "binary"), [[0xB9, 0x00], [0x00, 0x01]])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("k", [1, 3, 8, 13, 96])
def test_round_trip_and_row_bytes(fmt: str, k: int) -> None:
    rng = np.random.default_rng(k)
    codes = rng.choice(F.PACKED_LEVELS[fmt], size=(3, k))
    real_fmt = F.PACKED_FORMAT[fmt]
    packed = _packed.pack(codes, real_fmt)
    bits = {"int4": 4, "pow2": 4, "int2": 2, "binary": 1}[real_fmt]
    # bits/8 per code, each row (and each int2 plane) rounded up to whole bytes
    per_row = 2 * -(-k // 8) if real_fmt == "int2" else -(-k * bits // 8)
    assert packed.shape == (3, per_row) == (3, _packed.row_bytes(real_fmt, k))
    np.testing.assert_array_equal(_packed.unpack(packed, real_fmt, k), codes)


def test_format_choice_follows_the_declared_width() -> None:
    assert _packed.choose_format(np.array([-1, 1]), 1) == "binary"
    assert _packed.choose_format(np.array([-1, 0, 1]), 1) == "int2"  # a zero: not binary
    assert _packed.choose_format(np.array([-1, 0, 1]), 2) == "int2"
    assert _packed.choose_format(np.array([-8, 7]), 4) == "int4"
    assert _packed.choose_format(np.array([-3, 3]), 3) == "int4"  # 3 bits are stored as 4
    assert _packed.choose_format(np.array([-64, 0, 2]), 8) == "pow2"
    assert _packed.choose_format(np.array([-4, 0, 2]), 8) is None  # fits int4: a real int8 grid
    assert _packed.choose_format(np.array([-100, 5]), 8) is None
    assert _packed.choose_format(np.array([-9, 7]), 4) is None  # out of range: stays int8


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _one_conv(fmt: str = "int4"):
    return F.conv_graph(np.random.default_rng(0), dims=2, cin=4, cout=6, groups=1,
                        kernel=(3, 3), w_dtype=fmt)


@pytest.mark.parametrize("edit,message", [
    (lambda op: op.attrs.update(weight_format="int3"), "attr 'weight_format' = 'int3'"),
    (lambda op: op.attrs.pop("weight_shape"), "missing attr 'weight_shape'"),
    (lambda op: op.attrs.update(weight_shape=[6, 4, 3]), "attr 'weight_shape' must have 4"),
    (lambda op: op.attrs.update(weight_shape=[6, 4, 3, 4]), r"is stored as \(6, 24\) bytes"),
    (lambda op: op.consts.update(weight=op.consts["weight"][:, :-1]), "weight' has shape"),
    (lambda op: op.consts.update(weight=op.consts["weight"].astype(np.int8)), "dtype int8"),
    (lambda op: op.attrs.pop("weight_format"), "only for packed weights"),
])
def test_packed_weight_validation(edit, message: str) -> None:
    g = _one_conv()
    edit(g.ops[0])
    with pytest.raises(IntGraphError, match=message):
        g.validate()


def test_logical_size_is_bounded_before_unpacking() -> None:
    from intquant.intgraph.limits import Limits

    g = _one_conv("binary")
    with pytest.raises(IntGraphError, match="max_const_bytes"):
        g.validate(Limits(max_const_bytes=100))  # 6 x 24 = 144 codes


def test_padding_bits_and_pow2_nibble_8_are_rejected() -> None:
    g = _one_conv("int4")  # K = 36: even, no padding nibble; use a K = 9 layer instead
    g = F.conv_graph(np.random.default_rng(1), dims=2, cin=1, cout=2, groups=1, kernel=(3, 3),
                     w_dtype="int4")
    g.ops[0].consts["weight"][0, -1] |= 0x10  # the unused high nibble of code 9
    with pytest.raises(IntGraphError, match="padding nibble of a row is not zero"):
        g.validate()
    g = F.conv_graph(np.random.default_rng(1), dims=2, cin=1, cout=2, groups=1, kernel=(3, 3),
                     w_dtype="binary")
    g.ops[0].consts["weight"][1, -1] |= 0x80  # bit 15 of a 9-code row
    with pytest.raises(IntGraphError, match="padding bits of a row are not zero"):
        g.validate()
    g = F.conv_graph(np.random.default_rng(1), dims=2, cin=1, cout=2, groups=1, kernel=(3, 3),
                     w_dtype="pow2")
    g.ops[0].consts["weight"][0, 0] = 0x98  # nibble 8 (minus zero) is not a code
    with pytest.raises(IntGraphError, match="pow2 nibble 8 is not a code"):
        g.validate()


# ----------------------------------------------------------------------------------------------
# Interpreter: a packed layer computes what the same codes in int8 compute
# ----------------------------------------------------------------------------------------------


def _twins(build, fmt: str, seed: int):
    """The same graph built twice from one seed: weights packed, and the codes as int8."""
    packed = build(np.random.default_rng(seed), fmt)
    plain = build(np.random.default_rng(seed), fmt + ":int8")
    assert "weight_format" in packed.ops[-1].attrs and "weight_format" not in plain.ops[-1].attrs
    return packed, plain


LAYERS = {
    "conv1d": lambda rng, w: F.conv_graph(rng, dims=1, cin=6, cout=10, groups=1, kernel=(1, 5),
                                          padding=(0, 2, 0, 1), w_dtype=w),
    "conv2d": lambda rng, w: F.conv_graph(rng, dims=2, cin=5, cout=9, groups=1, kernel=(3, 3),
                                          stride=(2, 1), padding=(1, 1, 0, 1), w_dtype=w),
    "depthwise": lambda rng, w: F.conv_graph(rng, dims=2, cin=6, depthwise=True, kernel=(3, 3),
                                             padding=(1, 1, 1, 1), w_dtype=w),
    "depthwise1d": lambda rng, w: F.conv_graph(rng, dims=1, cin=5, depthwise=True,
                                               kernel=(1, 3), stride=(1, 1), dilation=(1, 2),
                                               padding=(0, 2, 0, 1), w_dtype=w),
    "fully_connected": lambda rng, w: F.fully_connected_graph(rng, cin=37, cout=11, w_dtype=w),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_interpreter_packed_equals_int8_codes(fmt: str, layer: str) -> None:
    packed, plain = _twins(LAYERS[layer], fmt, seed=len(layer) + 7 * len(fmt))
    np.testing.assert_array_equal(weight_codes(packed.ops[0]), plain.ops[0].consts["weight"])
    x = F.random_input(np.random.default_rng(3), packed, 16)
    np.testing.assert_array_equal(run(packed, x), run(plain, x))
    # the stored bytes are the packed size, not the int8 size
    w = packed.ops[0].consts["weight"]
    assert w.nbytes == _packed.packed_nbytes(packed.ops[0].attrs["weight_format"],
                                             plain.ops[0].consts["weight"].shape)
    assert w.nbytes < plain.ops[0].consts["weight"].nbytes or w.shape[1] == 1


# ----------------------------------------------------------------------------------------------
# C kernels: one layer against the int8 twin; every path, host -O2, ASan/UBSan, Cortex-M0
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_c_layer_equals_int8_codes(tmp_path, fmt: str, layer: str) -> None:
    """One packed layer compiled for the host equals the same codes stored as int8 and run by
    the interpreter's unpacked path."""
    packed, plain = _twins(LAYERS[layer], fmt, seed=3 * len(layer) + len(fmt))
    x = F.random_input(np.random.default_rng(6), packed, 4)
    res = export_c(packed, tmp_path / "c", name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x), run(plain, x))



def _check_c(g, out_dir, n: int = 3) -> None:
    x = F.random_input(np.random.default_rng(5), g, n)
    ref = run(g, x)
    res = export_c(g, out_dir, name="net")
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x), ref)
    np.testing.assert_array_equal(compile_and_run_host(res.out_dir, x[:1], sanitize=True),
                                  ref[:1])
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc missing: run scripts/install_toolchain.sh")
    m0 = emulate_unicorn(res.out_dir, x[:2])
    np.testing.assert_array_equal(m0.outputs.reshape(ref[:2].shape), ref[:2])
    # the C holds exactly the IntGraph's weight bytes, packed
    for o in res.info["ops"]:
        op = g.ops[o["index"]]
        if "weight" in op.consts:
            assert o["weight_array_bytes"] == op.consts["weight"].nbytes


@pytest.mark.parametrize("fmt,dtype", [("int4", "int8"), ("int2", "uint8"), ("ternary", "int8"),
                                       ("binary", "int8"), ("binary", "uint8"), ("pow2", "int8")])
def test_packed_chain_in_c(tmp_path, fmt: str, dtype: str) -> None:
    g = F.packed_chain(np.random.default_rng(11), fmt, dtype)
    paths = {_lowbit.packed_path(g, op) for op in g.ops if "weight" in op.consts}
    fast = {"int4": "lanes", "pow2": "product"}.get(fmt, "subset")
    assert paths == {fast, "direct"}  # both 8-bit paths of the format run
    # channel blocks (8 for lanes, 4 for tables) and remaining rows both occur
    layers = [_lowbit.PackedLayer(g, op) for op in g.ops
              if "weight" in op.consts and _lowbit.packed_path(g, op) == fast]
    assert any(la.blocks.size for la in layers) and any(la.rows.size for la in layers)
    _check_c(g, tmp_path / "c")


def test_generic_path_in_c(tmp_path) -> None:
    """16-bit activations (int32 and int64 accumulators): the portable path of every format."""
    b = F.GraphBuilder(np.random.default_rng(2), (6, 12), "int16")
    t = b.conv(b.input, 8, (1, 3), padding=(0, 1, 0, 1), w_dtype="int4")
    t = b.conv(t, 8, (1, 3), w_dtype="ternary", acc_bits=64)
    t = b.conv(t, 6, (1, 1), w_dtype="pow2")
    t = b.flatten(t)
    b.fully_connected(t, 5, w_dtype="binary", acc_bits=64)
    g = b.graph()
    assert {_lowbit.packed_path(g, op) for op in g.ops if "weight" in op.consts} == {"generic"}
    _check_c(g, tmp_path / "c")


# ----------------------------------------------------------------------------------------------
# Lowering and the .iqm format
# ----------------------------------------------------------------------------------------------


def test_ptq_low_widths_are_stored_packed() -> None:
    import torch
    from torch import nn

    import intquant

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 4))
    x = np.random.default_rng(0).normal(size=(64, 2, 8)).astype(np.float32)
    for bits, fmt, levels in [(1, "binary", {-1, 1}), (2, "int2", {-2, -1, 0, 1}),
                              (4, "int4", set(range(-7, 8)))]:
        q = intquant.quantize(model, x, intquant.Config(weight_bits=bits), progress=False)
        for op in q.graph.ops:
            if op.kind in ("conv", "fully_connected"):
                assert op.attrs["weight_format"] == fmt
                assert set(np.unique(weight_codes(op)).tolist()) <= levels
                assert op.consts["weight"].dtype == np.uint8
    q = intquant.quantize(model, x, intquant.Config(weight_bits=2, weight_quantizer="ternary"),
                          progress=False)
    assert set(np.unique(weight_codes(q.graph.ops[0])).tolist()) <= {-1, 0, 1}


def test_iqm_round_trip_and_version_1_files(tmp_path) -> None:
    g = F.packed_chain(np.random.default_rng(4), "binary")
    save(g, tmp_path / "p.iqm")
    h = load(tmp_path / "p.iqm")
    assert h.ops == g.ops and FORMAT_VERSION == 2
    assert h.ops[0].consts["weight"].dtype == np.uint8

    def set_version(path, version: int) -> None:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        m = json.loads(arrays[MANIFEST_KEY].tobytes().decode())
        m["version"] = version
        arrays[MANIFEST_KEY] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    # A version-1 file (every weight int8/int16) loads; one claiming packed weights does not.
    plain = F.conv_graph(np.random.default_rng(0), dims=1, cin=2, cout=3, groups=1)
    save(plain, tmp_path / "v1.iqm")
    set_version(tmp_path / "v1.iqm", 1)
    assert load(tmp_path / "v1.iqm").ops == plain.ops
    set_version(tmp_path / "p.iqm", 1)
    with pytest.raises(IntGraphError, match="packed weights .* need version 2"):
        load(tmp_path / "p.iqm")


@pytest.mark.parametrize("fmt", ["int4", "binary"])
def test_onnx_integer_export_of_packed_layers(fmt: str) -> None:
    """The ONNX exporter reads the unpacked codes: ONNX Runtime reproduces the interpreter."""
    import onnxruntime as ort

    from intquant.onnx_export import intgraph_to_onnx

    g = F.packed_chain(np.random.default_rng(8), fmt)
    x = F.random_input(np.random.default_rng(9), g, 4)
    s = ort.InferenceSession(intgraph_to_onnx(g).SerializeToString(),
                             providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(None, {s.get_inputs()[0].name: x})[0], run(g, x))


@pytest.mark.parametrize("fmt", ["int4", "ternary"])
def test_packed_chain_on_big_endian_powerpc(tmp_path, fmt: str) -> None:
    """The channel blocks are word / halfword arrays (values, not byte images): the same C is
    bit-exact on a big-endian target."""
    from intquant.codegen.targets import get_target
    from intquant.codegen.toolchain import run_on

    missing = get_target("powerpc").missing_tools()
    if missing:
        pytest.fail(f"powerpc: {', '.join(missing)} missing: scripts/install_toolchain.sh")
    g = F.packed_chain(np.random.default_rng(13), fmt)
    x = F.random_input(np.random.default_rng(14), g, 2)
    res = export_c(g, tmp_path / "c", name="net")
    np.testing.assert_array_equal(run_on(res.out_dir, x, "powerpc"), run(g, x))
