"""Cortex-M0 (ARMv6-M, Thumb-1) code for the inner loop of the binary layers, generated per
layer for its number of words per output channel.

A *pixel kernel* computes, for one receptive field ``f`` (K words) and every output channel c
(weights ``w``, K words per channel in the C layout of :func:`c_weights`):
``pop[c] = Σ_j popcount(f[j] ^ w[c][j])``, and either

- **bits**: output bit c = 1 (value −1) exactly when ``2·pop[c] ≥ R[c]``, with
  ``R[c] = n + 1 − threshold[c]`` stored after the channel's K words (n = Cin·kh·kw: with every
  tap inside the input, acc = n − 2·pop < threshold ⇔ 2·pop ≥ R), packed MSB first into
  ceil(cout/32) words; or
- **pops**: ``pop[c]`` as uint16, for the requantizing output stage in C.

ARMv6-M has no popcount instruction. Per word: two loads, EOR, the first two steps of the
bit-parallel count (2-bit then 4-bit fields, constants 0x55555555 and 0x33333333 held in
r4/r5): 12–13 cycles. Up to three words share one 4-bit accumulator (fields ≤ 12), which is
then folded into byte fields (0x0F0F0F0F); up to seven words are summed horizontally with one
MULS by 0x01010101 (the total stays ≤ 224 < 256). The channel loop is fully unrolled over
the K words, so no loop counter is spent per word: ~56 cycles per channel for K = 3
(96 binary MACs). Every other target compiles the portable C of ``iq_binary.h`` (same
contract). ``instance_source`` returns both under one name.
"""

from __future__ import annotations

import numpy as np

MAX_WORDS = 31  # ldr offsets #4j reach 124; wider fields use the portable C loop
_HSUM_WORDS = 7  # ≤ 7·32 = 224 ones: the byte-sum MULS cannot carry out of the top byte


def c_weights(weight: np.ndarray, threshold: np.ndarray | None, n_full: int) -> np.ndarray:
    """The C layout: each channel's K words, followed in bit mode by R = n + 1 − threshold."""
    if threshold is None:
        return np.ascontiguousarray(weight.astype(np.uint32)).ravel()
    r = (n_full + 1 - threshold.astype(np.int64)).astype(np.uint32)
    return np.concatenate([weight.astype(np.uint32), r[:, None]], axis=1).ravel()


MAX_MASKED_WORDS = 15  # the mask sits K words after the field: offsets #4(K + j) ≤ 124


def instance_name(k: int, kind: str, stride: int) -> str:
    """``iq_bpix_<kind>_k<K>_s<stride>``; kind "bits", "pops" or "mpops" (masked popcounts),
    stride: words per output channel in the weight array."""
    return f"iq_bpix_{kind}_k{k}_s{stride}"


def declaration(name: str) -> str:
    return (f"void {name}(const uint32_t* field, const uint32_t* w, void* out, "
            "int32_t cout);\n")


def instance_source(k: int, kind: str, stride: int) -> str:
    """Thumb-1 assembly on Cortex-M0 builds, the portable loop everywhere else.

    bits: K + 1 words per channel (weights, R). pops: popcounts over the first K of every
    ``stride`` words. mpops: the same with ``field`` followed by a K-word mask whose clear bits
    are left out (a border pixel's padded taps)."""
    name = instance_name(k, kind, stride)
    portable = {
        "bits": f"iq_binary_pixel_bits(field, w, (uint32_t*)out, cout, {k});",
        "pops": f"iq_binary_pixel_pops(field, w, (uint16_t*)out, cout, {k}, {stride});",
        "mpops": f"iq_binary_pixel_masked_pops(field, w, (uint16_t*)out, cout, {k}, {stride});",
    }[kind]
    limit = MAX_MASKED_WORDS if kind == "mpops" else MAX_WORDS
    body = "\n".join(f'        "{line}\\n\\t"' for line in _asm(k, kind, stride))
    return f"""#include "iq_binary.h"
#if defined(__ARM_ARCH_6M__) && defined(__GNUC__) && {k} <= {limit}
__attribute__((naked)) void {name}(__attribute__((unused)) const uint32_t* field,
                                   __attribute__((unused)) const uint32_t* w,
                                   __attribute__((unused)) void* out,
                                   __attribute__((unused)) int32_t cout)
{{
    __asm__ volatile(
        ".syntax unified\\n\\t"
{body}
        ".ltorg\\n\\t");
}}
#else
void {name}(const uint32_t* field, const uint32_t* w, void* out, int32_t cout)
{{
    {portable}
}}
#endif
"""


# ----------------------------------------------------------------------------------------------
# Code generation. Registers: r0 field, r1 weights (advancing), r2/r3 temporaries, r4 m1,
# r5 m2, r6 4-bit accumulator, r7 byte accumulator (or the output word when K ≤ 3),
# r8 0x0F0F0F0F, r9 0x01010101, r10 output pointer, r11 output word (K > 3), r12 end of the
# channel range, lr the running popcount (K > 7); stack: [sp] channels left, [sp, #4] channels
# in the current group of 32.
# ----------------------------------------------------------------------------------------------


def _word(j: int, first_in_chunk: bool, mask_offset: int | None = None) -> list[str]:
    """popcount partial of f[j] ^ w[j] (AND the mask word, if any) into r6's 4-bit fields."""
    lines = [f"ldr r2, [r0, #{4 * j}]", f"ldr r3, [r1, #{4 * j}]", "eors r2, r3"]
    if mask_offset is not None:
        lines += [f"ldr r3, [r0, #{mask_offset + 4 * j}]", "ands r2, r3"]
    lines += [
        "lsrs r3, r2, #1",
        "ands r3, r4",
        "subs r2, r2, r3",
        "lsrs r3, r2, #2",
        "ands r3, r5",
        "ands r2, r5",
    ]
    if first_in_chunk:
        return lines + ["adds r6, r2, r3"]
    return lines + ["adds r6, r6, r2", "adds r6, r6, r3"]


def _nibbles_to_bytes() -> list[str]:
    """Split r6's 4-bit fields into byte fields: even nibbles in r6, odd ones in r3 (the caller
    adds them: each byte then holds ≤ 24)."""
    return ["lsrs r3, r6, #4", "mov r2, r8", "ands r6, r2", "ands r3, r2"]


def _popcount(k: int, masked: bool) -> tuple[list[str], str]:
    """Code leaving pop = Σ popcount(f ^ w) over the K words in a register; returns it."""
    mask = 4 * k if masked else None
    if k <= 3:
        code: list[str] = []
        for j in range(k):
            code += _word(j, j == 0, mask)
        code += _nibbles_to_bytes() + ["adds r6, r6, r3", "mov r2, r9", "muls r6, r2, r6",
                                       "lsrs r6, r6, #24"]
        return code, "r6"
    code = []
    groups = [list(range(g, min(k, g + _HSUM_WORDS))) for g in range(0, k, _HSUM_WORDS)]
    for gi, group in enumerate(groups):
        chunks = [group[i : i + 3] for i in range(0, len(group), 3)]
        for ci, chunk in enumerate(chunks):
            for i, j in enumerate(chunk):
                code += _word(j, i == 0, mask)
            code += _nibbles_to_bytes()
            code += ["adds r7, r6, r3"] if ci == 0 else ["adds r6, r6, r3", "adds r7, r7, r6"]
        code += ["mov r2, r9", "muls r7, r2, r7", "lsrs r7, r7, #24"]
        if len(groups) > 1:
            code += ["mov lr, r7"] if gi == 0 else ["add lr, r7"]
    if len(groups) > 1:
        code += ["mov r7, lr"]
    return code, "r7"


def _asm(k: int, kind: str, stride_words: int) -> list[str]:
    bits = kind == "bits"
    stride = 4 * stride_words
    pop_code, pop = _popcount(k, kind == "mpops")
    out_low = k <= 3  # the output word can stay in r7
    prologue = [
        "push {r4, r5, r6, r7, lr}",
        "mov r4, r8", "mov r5, r9", "mov r6, r10", "mov r7, r11",
        "push {r4, r5, r6, r7}",
        "sub sp, #8",
        "str r3, [sp, #0]",
        "mov r10, r2",
        "ldr r4, =0x55555555",
        "ldr r5, =0x33333333",
        "ldr r2, =0x0F0F0F0F", "mov r8, r2",
        "ldr r2, =0x01010101", "mov r9, r2",
    ]
    epilogue = [
        "9:",
        "add sp, #8",
        "pop {r4, r5, r6, r7}",
        "mov r8, r4", "mov r9, r5", "mov r10, r6", "mov r11, r7",
        "pop {r4, r5, r6, r7, pc}",
    ]
    advance = _add_imm("r1", stride)
    if not bits:
        setup = [f"ldr r2, ={stride}", "muls r3, r2, r3", "adds r3, r3, r1", "mov r12, r3",
                 "cmp r1, r12", "bne 1f", "b 9f"]
        loop = ["1:", *pop_code,
                "mov r2, r10", f"strh {pop}, [r2]", "adds r2, #2", "mov r10, r2",
                *advance, *_loop_back(pop_code, "9f")]
        return prologue + setup + loop + epilogue
    group = [
        "0:",
        "ldr r3, [sp, #0]",
        "cmp r3, #0", "bne 2f", "b 9f", "2:",
        "cmp r3, #32", "ble 3f", "movs r3, #32", "3:",
        "ldr r2, [sp, #0]", "subs r2, r2, r3", "str r2, [sp, #0]",
        "str r3, [sp, #4]",
        f"ldr r2, ={stride}", "muls r3, r2, r3", "adds r3, r3, r1", "mov r12, r3",
        "movs r2, #0",
        "mov r11, r2",
        "movs r7, #0",
    ]
    threshold = [f"ldr r2, [r1, #{4 * k}]", f"lsls {pop}, {pop}, #1", f"cmp {pop}, r2"]
    if out_low:
        threshold += ["adcs r7, r7"]
    else:
        threshold += ["mov r2, r11", "adcs r2, r2", "mov r11, r2"]
    loop = ["1:", *pop_code, *threshold, *advance, *_loop_back(pop_code, "4f"), "4:"]
    finish = [] if out_low else ["mov r7, r11"]
    finish += [
        "ldr r3, [sp, #4]", "movs r2, #32", "subs r2, r2, r3", "lsls r7, r2",
        "mov r2, r10", "stm r2!, {r7}", "mov r10, r2",
        "b 0b",
    ]
    return prologue + group + loop + finish + epilogue


def _loop_back(body: list[str], done: str) -> list[str]:
    """Next channel while r1 != r12: BNE reaches back ~250 bytes, a longer body needs B."""
    if len(body) < 100:  # 2-byte instructions, with room for the loop's own
        return ["cmp r1, r12", "bne 1b", f"b {done}"]
    return ["cmp r1, r12", f"beq {done}", "b 1b"]


def _add_imm(reg: str, value: int) -> list[str]:
    """reg += value (ADDS takes an 8-bit immediate)."""
    out = []
    while value > 0:
        step = min(value, 255)
        out.append(f"adds {reg}, #{step}")
        value -= step
    return out
