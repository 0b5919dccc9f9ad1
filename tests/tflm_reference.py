"""A deliberately naive re-implementation of TFLite-Micro's reference integer kernels.

Written from TFLM's ``kernels/internal/reference/integer_ops/*.h``, ``common.h`` and
gemmlowp's ``fixedpoint.h``: plain Python integers, explicit loops, NHWC layout, one scalar
at a time, exactly as the C++ reads. It shares no code with ``intquant`` (not even the
rounding helpers), so equality with the interpreter is evidence of TFLM bit-exactness rather
than of a function agreeing with itself.

Layouts (TFLM): input/output NHWC; conv filter OHWI ``[Cout, kh, kw, Cin/groups]``; depthwise
filter ``[1, kh, kw, Cin·depth_multiplier]``; fully-connected filter ``[Cout, Cin]``.
Arrays are nested Python lists or NumPy arrays indexed element by element.
"""

from __future__ import annotations

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _check_int32(v: int, what: str) -> int:
    """The C code would overflow (undefined behaviour) here: fail loudly instead."""
    if not INT32_MIN <= v <= INT32_MAX:
        raise OverflowError(f"{what} = {v} overflows int32")
    return v


def _c_div(a: int, b: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return _c_div(ab + nudge, 1 << 31)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: round half away from zero."""
    assert 0 <= exponent <= 31
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLM MultiplyByQuantizedMultiplier(int32 x, int32 M, int shift)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    shifted = _check_int32(x * (1 << left), "x << left_shift")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x: int, multiplier: int, shift: int):
    """TFLM MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0), used by add."""
    assert shift <= 0
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -shift)


def multiply_by_quantized_multiplier_int64(x: int, multiplier: int, shift: int) -> int:
    """TFLM MultiplyByQuantizedMultiplier(int64 x, ...) of the 16x8 kernels."""
    assert multiplier >= 0 and -31 <= shift < 8 and -(1 << 47) <= x < (1 << 47)
    reduced = ((multiplier + (1 << 15)) >> 16) if multiplier < 0x7FFF0000 else 0x7FFF
    total_shift = 15 - shift
    result = (x * reduced + (1 << (total_shift - 1))) >> total_shift
    return _check_int32(result, "16x8 requantized result")


def _inside(y: int, x: int, height: int, width: int) -> bool:
    return 0 <= y < height and 0 <= x < width


def conv_per_channel(
    inp,
    filt,
    bias,
    multipliers,
    shifts,
    *,
    input_offset: int,
    output_offset: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    act_min: int,
    act_max: int,
    int16x8: bool = False,
):
    """reference_integer_ops::ConvPerChannel (int8, grouped) and its 16x8 variant.

    ``pad`` is (pad_height, pad_width) = the top/left padding, ``out_hw`` the output size.
    Returns a nested list [N][Ho][Wo][Cout].
    """
    batches, in_h, in_w, in_depth = len(inp), len(inp[0]), len(inp[0][0]), len(inp[0][0][0])
    out_depth, f_h, f_w, f_in_depth = len(filt), len(filt[0]), len(filt[0][0]), len(filt[0][0][0])
    groups = in_depth // f_in_depth
    filters_per_group = out_depth // groups
    out = []
    for b in range(batches):
        rows = []
        for out_y in range(out_hw[0]):
            in_y_origin = out_y * stride[0] - pad[0]
            cols = []
            for out_x in range(out_hw[1]):
                in_x_origin = out_x * stride[1] - pad[1]
                chans = []
                for oc in range(out_depth):
                    group = oc // filters_per_group
                    acc = 0
                    for fy in range(f_h):
                        in_y = in_y_origin + dilation[0] * fy
                        for fx in range(f_w):
                            in_x = in_x_origin + dilation[1] * fx
                            if not _inside(in_y, in_x, in_h, in_w):
                                continue
                            for ic in range(f_in_depth):
                                iv = int(inp[b][in_y][in_x][ic + group * f_in_depth])
                                fv = int(filt[oc][fy][fx][ic])
                                acc += fv * iv if int16x8 else fv * (iv + input_offset)
                    acc += int(bias[oc])
                    if int16x8:
                        acc = multiply_by_quantized_multiplier_int64(
                            acc, int(multipliers[oc]), int(shifts[oc])
                        )
                    else:
                        acc = multiply_by_quantized_multiplier(
                            _check_int32(acc, "accumulator"), int(multipliers[oc]), int(shifts[oc])
                        )
                    acc += output_offset
                    chans.append(min(max(acc, act_min), act_max))
                cols.append(chans)
            rows.append(cols)
        out.append(rows)
    return out


def depthwise_conv_per_channel(
    inp,
    filt,
    bias,
    multipliers,
    shifts,
    *,
    depth_multiplier: int,
    input_offset: int,
    output_offset: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    act_min: int,
    act_max: int,
    int16x8: bool = False,
):
    """reference_integer_ops::DepthwiseConvPerChannel; filter [1][kh][kw][Cin·mult]."""
    batches, in_h, in_w, in_depth = len(inp), len(inp[0]), len(inp[0][0]), len(inp[0][0][0])
    f_h, f_w = len(filt[0]), len(filt[0][0])
    out = []
    for b in range(batches):
        rows = []
        for out_y in range(out_hw[0]):
            cols = []
            for out_x in range(out_hw[1]):
                chans = [0] * (in_depth * depth_multiplier)
                for ic in range(in_depth):
                    for m in range(depth_multiplier):
                        oc = m + ic * depth_multiplier
                        in_x_origin = out_x * stride[1] - pad[1]
                        in_y_origin = out_y * stride[0] - pad[0]
                        acc = 0
                        for fy in range(f_h):
                            for fx in range(f_w):
                                in_x = in_x_origin + dilation[1] * fx
                                in_y = in_y_origin + dilation[0] * fy
                                if _inside(in_y, in_x, in_h, in_w):
                                    iv = int(inp[b][in_y][in_x][ic])
                                    fv = int(filt[0][fy][fx][oc])
                                    acc += fv * iv if int16x8 else fv * (iv + input_offset)
                        acc += int(bias[oc])
                        if int16x8:
                            acc = multiply_by_quantized_multiplier_int64(
                                acc, int(multipliers[oc]), int(shifts[oc])
                            )
                        else:
                            acc = multiply_by_quantized_multiplier(
                                _check_int32(acc, "accumulator"),
                                int(multipliers[oc]),
                                int(shifts[oc]),
                            )
                        acc += output_offset
                        chans[oc] = min(max(acc, act_min), act_max)
                cols.append(chans)
            rows.append(cols)
        out.append(rows)
    return out


def fully_connected_per_channel(
    inp,
    filt,
    bias,
    multipliers,
    shifts,
    *,
    input_offset: int,
    output_offset: int,
    act_min: int,
    act_max: int,
    int16x8: bool = False,
):
    """reference_integer_ops::FullyConnectedPerChannel (int8) / the 16x8 FullyConnected."""
    out = []
    for b in range(len(inp)):
        row = []
        for oc in range(len(filt)):
            acc = 0
            for d in range(len(inp[b])):
                iv = int(inp[b][d])
                fv = int(filt[oc][d])
                acc += fv * iv if int16x8 else fv * (iv + input_offset)
            acc += int(bias[oc])
            if int16x8:
                acc = multiply_by_quantized_multiplier_int64(
                    acc, int(multipliers[oc]), int(shifts[oc])
                )
            else:
                acc = multiply_by_quantized_multiplier(
                    _check_int32(acc, "accumulator"), int(multipliers[oc]), int(shifts[oc])
                )
            acc += output_offset
            row.append(min(max(acc, act_min), act_max))
        out.append(row)
    return out


def add_elementwise(
    a,
    b,
    *,
    input1_offset: int,
    input2_offset: int,
    left_shift: int,
    input1_multiplier: int,
    input1_shift: int,
    input2_multiplier: int,
    input2_shift: int,
    output_multiplier: int,
    output_shift: int,
    output_offset: int,
    act_min: int,
    act_max: int,
):
    """reference_integer_ops AddElementwise (int8 and int16 share it); flat sequences."""
    out = []
    for va, vb in zip(a, b, strict=True):
        input1_val = input1_offset + int(va)
        input2_val = input2_offset + int(vb)
        shifted1 = _check_int32(input1_val * (1 << left_shift), "shifted input1")
        shifted2 = _check_int32(input2_val * (1 << left_shift), "shifted input2")
        scaled1 = multiply_by_quantized_multiplier_smaller_than_one_exp(
            shifted1, input1_multiplier, input1_shift
        )
        scaled2 = multiply_by_quantized_multiplier_smaller_than_one_exp(
            shifted2, input2_multiplier, input2_shift
        )
        raw_sum = _check_int32(scaled1 + scaled2, "raw_sum")
        raw_output = (
            multiply_by_quantized_multiplier_smaller_than_one_exp(
                raw_sum, output_multiplier, output_shift
            )
            + output_offset
        )
        out.append(min(max(raw_output, act_min), act_max))
    return out


def average_pool(
    inp,
    *,
    filter_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    act_min: int,
    act_max: int,
):
    """reference_integer_ops::AveragePool (int8/int16): mean over the in-bounds window."""
    batches, in_h, in_w, depth = len(inp), len(inp[0]), len(inp[0][0]), len(inp[0][0][0])
    out = []
    for b in range(batches):
        rows = []
        for out_y in range(out_hw[0]):
            cols = []
            for out_x in range(out_hw[1]):
                chans = []
                for ch in range(depth):
                    in_x_origin = out_x * stride[1] - pad[1]
                    in_y_origin = out_y * stride[0] - pad[0]
                    fx_start, fx_end = max(0, -in_x_origin), min(filter_hw[1], in_w - in_x_origin)
                    fy_start, fy_end = max(0, -in_y_origin), min(filter_hw[0], in_h - in_y_origin)
                    acc = 0
                    filter_count = 0
                    for fy in range(fy_start, fy_end):
                        for fx in range(fx_start, fx_end):
                            acc += int(inp[b][in_y_origin + fy][in_x_origin + fx][ch])
                            filter_count += 1
                    if filter_count == 0:
                        raise ValueError("window without any input element")
                    if acc > 0:
                        acc = _c_div(acc + filter_count // 2, filter_count)
                    else:
                        acc = _c_div(acc - filter_count // 2, filter_count)
                    chans.append(min(max(acc, act_min), act_max))
                cols.append(chans)
            rows.append(cols)
        out.append(rows)
    return out


def max_pool(
    inp,
    *,
    filter_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    act_min: int,
    act_max: int,
    lowest: int,
):
    """reference_integer_ops::MaxPool (int8/int16): max over the in-bounds window."""
    batches, in_h, in_w, depth = len(inp), len(inp[0]), len(inp[0][0]), len(inp[0][0][0])
    out = []
    for b in range(batches):
        rows = []
        for out_y in range(out_hw[0]):
            cols = []
            for out_x in range(out_hw[1]):
                chans = []
                for ch in range(depth):
                    in_x_origin = out_x * stride[1] - pad[1]
                    in_y_origin = out_y * stride[0] - pad[0]
                    fx_start, fx_end = max(0, -in_x_origin), min(filter_hw[1], in_w - in_x_origin)
                    fy_start, fy_end = max(0, -in_y_origin), min(filter_hw[0], in_h - in_y_origin)
                    mx = lowest
                    for fy in range(fy_start, fy_end):
                        for fx in range(fx_start, fx_end):
                            mx = max(mx, int(inp[b][in_y_origin + fy][in_x_origin + fx][ch]))
                    chans.append(min(max(mx, act_min), act_max))
                cols.append(chans)
            rows.append(cols)
        out.append(rows)
    return out
