"""C99 spelling of integers, arrays, types and shapes: the leaf vocabulary of the C emitter.

Op modules (``intquant.ops``) and the emitter core share these so generated code has one style.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ..intgraph.types import ACTIVATION_DTYPES

C_TYPE = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "bit": "uint32_t",  # packed ±1 values, 32 per word (intquant.ops._bits)
}
DTYPE_CODE = {"int8": "IQ_S8", "uint8": "IQ_U8", "int16": "IQ_S16", "int32": "IQ_S32"}
SHORT = {"int8": "s8", "uint8": "u8", "int16": "s16"}
INT32_LIMIT = 2**31

def window_fields(kernel, attrs: dict[str, Any], dilation) -> dict[str, int]:
    """The sliding-window geometry conv and pool parameter structs share (C field names)."""
    return {
        "k_h": int(kernel[0]),
        "k_w": int(kernel[1]),
        "stride_h": attrs["stride"][0],
        "stride_w": attrs["stride"][1],
        "pad_top": attrs["padding"][0],
        "pad_left": attrs["padding"][1],
        "dil_h": dilation[0],
        "dil_w": dilation[1],
    }


# Characters a name may keep inside a generated C comment: letters, digits and harmless
# punctuation. Everything else — '*' and '/' (which could close the comment), '\\', quotes,
# '?' (trigraphs), '%', '$', backticks, control characters, non-ASCII — becomes '_'.
_COMMENT_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:;#=+-()[]<>@!^&|~{}"
)
COMMENT_NAME_LIMIT = 60


def comment_text(text: object, limit: int = COMMENT_NAME_LIMIT) -> str:
    """``text`` made safe to place inside ``/* ... */`` in generated C (or ``#`` in a Makefile).

    Names come from users' models and files (module paths, ONNX node names, .iqm contents), so
    nothing of them may reach C unescaped: disallowed characters become ``_`` and long names are
    cut (with ``...``), so the result can never end the comment, start a string or a line.
    """
    s = "".join(ch if ch in _COMMENT_SAFE else "_" for ch in str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def c_identifier(text: str) -> str:
    """An ASCII C identifier made from ``text`` (other characters become ``_``)."""
    out = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in text)
    return out if out and not out[0].isdigit() else "_" + out


def c_int(v: int) -> str:
    """A C99 integer literal for any value in the int64 range (INT64_MIN needs an expression)."""
    v = int(v)
    if v == -(2**63):
        return "(-INT64_C(9223372036854775807) - 1)"
    if v == -(2**31):
        return "(-2147483647 - 1)"
    if abs(v) >= 2**31:
        return f"INT64_C({v})"
    return str(v)


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16) -> str:
    """A constant data array in flash: ``IQ_FLASH`` (iq_target.h) puts it in program memory on
    AVR, where kernels read it through ``IQ_LOAD_*``."""
    if ctype == "uint32_t":
        flat = [f"{int(v)}u" for v in np.asarray(values).ravel().tolist()]
    else:
        flat = [c_int(v) for v in np.asarray(values).ravel().tolist()]
    if not flat:
        flat = ["0"]
    lines = [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(flat)}] IQ_FLASH = {{\n    {body}\n}};\n"


def scale_as_rational(scale: float) -> tuple[int, int]:
    """A binary float is exactly num / 2^k: return (num, k) with k possibly negative."""
    f = Fraction(float(scale))
    den = f.denominator
    k = den.bit_length() - 1
    if den != 1 << k:
        raise ValueError(f"scale {scale} is not a binary fraction")
    num = f.numerator
    if k == 0:  # integer scale: strip trailing zero bits into a negative exponent
        while num and num % 2 == 0:
            num //= 2
            k -= 1
    return num, k


def dtype_max_abs(dtype: str) -> int:
    lo, hi = ACTIVATION_DTYPES[dtype]
    return max(abs(lo), abs(hi))


def spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a (C, L) or (C, H, W) tensor."""
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    return shape[0], shape[1], shape[2]


def pad4(values: list[int], fill: int) -> list[int]:
    return [fill] * (4 - len(values)) + list(values)


def requant_mode(op) -> str:
    """The C requantization mode of an op, in the dispatch order of numerics.apply_multiplier:
    pow2, then int64, then rounding."""
    rounding = op.attrs.get("rounding", "double")
    if rounding == "pow2":
        return "IQ_RQ_POW2"
    if op.attrs.get("acc_bits", 32) == 64:
        return "IQ_RQ_X16"
    return "IQ_RQ_SINGLE" if rounding == "single" else "IQ_RQ_DOUBLE"
