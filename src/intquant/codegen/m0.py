"""Bare-metal Cortex-M0 harness: startup code, linker scripts, semihosting test main.

These files are written into ``<out_dir>/m0/`` by ``export_c``. They are the test harness, not
part of the model library: the library (``<name>.c``, kernels) stays free of any target code.

- ``startup.c``: vector table (stack top, reset handler), reset handler copying ``.data`` from
  flash and zeroing ``.bss``, then ``main`` and a semihosting exit with main's return code.
- ``microbit.ld`` (nRF51: 256 KB flash at 0, 16 KB RAM at 0x20000000) and ``an385.ld``
  (MPS2 AN385, Cortex-M3 with 4 MB; used only when a model does not fit 16 KB of RAM).
- ``main.c``: runs every sample of ``samples.c`` (const, so in flash) and prints each output as
  one hex line through semihosting SYS_WRITE0, then "END".
- ``samples.c``: written by ``toolchain.build_m0`` for the samples to run; export writes one
  sample of zero points so ``make m0`` works on its own.
"""

from __future__ import annotations

import numpy as np

MICROBIT_RAM = 16 * 1024
AN385_RAM = 4 * 1024 * 1024
STACK_RESERVE = 2048  # bytes the linker keeps free for the stack (checked, not hoped for)

STARTUP_C = r"""/* Cortex-M0 startup: vector table, .data copy, .bss zeroing, semihosting exit. */
#include <stdint.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
int main(void);
void iq_semihost_exit(int32_t code);

void Reset_Handler(void)
{
    uint32_t* src = &__data_load__;
    uint32_t* dst = &__data_start__;
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; ++dst) {
        *dst = 0u;
    }
    iq_semihost_exit(main());
}

void Default_Handler(void)
{
    iq_semihost_exit(99);
}

__attribute__((section(".vectors"), used)) static const void* const vectors[16] = {
    (const void*)&__stack_top__, (const void*)Reset_Handler, (const void*)Default_Handler,
    (const void*)Default_Handler, 0, 0, 0, 0, 0, 0, 0, (const void*)Default_Handler, 0, 0,
    (const void*)Default_Handler, (const void*)Default_Handler,
};

/* ARM semihosting: r0 = operation, r1 = argument, bkpt 0xab. */
static int32_t iq_semihost(int32_t op, const void* arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void* r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void iq_semihost_write0(const char* s)
{
    (void)iq_semihost(0x04, s); /* SYS_WRITE0 */
}

void iq_semihost_exit(int32_t code)
{
    static uint32_t block[2];
    block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
    block[1] = (uint32_t)code;
    (void)iq_semihost(0x20, block); /* SYS_EXIT_EXTENDED */
    for (;;) {
    }
}
"""

LINKER = """/* {what} */
MEMORY
{{
    FLASH (rx) : ORIGIN = 0x00000000, LENGTH = {flash}
    RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = {ram}
}}
ENTRY(Reset_Handler)
SECTIONS
{{
    .text : {{
        KEEP(*(.vectors))
        *(.text*)
        *(.rodata*)
        . = ALIGN(4);
    }} > FLASH
    .data : {{
        __data_start__ = .;
        *(.data*)
        . = ALIGN(4);
        __data_end__ = .;
    }} > RAM AT > FLASH
    __data_load__ = LOADADDR(.data);
    .bss (NOLOAD) : {{
        __bss_start__ = .;
        *(.bss*)
        *(COMMON)
        . = ALIGN(4);
        __bss_end__ = .;
    }} > RAM
    __stack_top__ = ORIGIN(RAM) + LENGTH(RAM);
    ASSERT(__bss_end__ + {stack} <= __stack_top__, "arena + buffers leave no room for the stack")
    /DISCARD/ : {{ *(.ARM.exidx*) *(.ARM.attributes) *(.comment) }}
}}
"""

# The test mains' common part (m0/main.c here, m0/stream_main.c in stream.py): the samples,
# the output buffer of {out_size} elements, the profiling hook and the hex printer.
MAIN_PRELUDE = r"""#include <stdint.h>
#include "{name}.h"

extern const {name}_input_t iq_samples[][{up}_INPUT_SIZE];
extern const int32_t iq_num_samples;
void iq_semihost_write0(const char* s);

static {name}_output_t out_buf[{out_size}];
static char line[2 * sizeof(out_buf) + 4];
volatile int32_t iq_profile_op;

/* Called between ops in profiling builds (-DIQ_PROFILE); the emulator hooks its address. */
__attribute__((noinline)) void iq_profile_mark(int32_t op)
{{
    iq_profile_op = op;
}}

static void print_output(void)
{{
    static const char hex[] = "0123456789abcdef";
    const uint8_t* bytes = (const uint8_t*)out_buf;
    uint32_t i, k = 0;
    line[k++] = 'O';
    for (i = 0; i < sizeof(out_buf); ++i) {{
        line[k++] = hex[bytes[i] >> 4];
        line[k++] = hex[bytes[i] & 15u];
    }}
    line[k++] = '\n';
    line[k] = 0;
    iq_semihost_write0(line);
}}

"""

MAIN_C = (
    "/* Cortex-M0 test main for {name}: run every sample, print outputs as hex lines. */\n"
    + MAIN_PRELUDE.replace("{out_size}", "{up}_OUTPUT_SIZE")
    + r"""int main(void)
{{
    int32_t s;
    for (s = 0; s < iq_num_samples; ++s) {{
        if ({name}_run(iq_samples[s], out_buf) != 0) {{
            iq_semihost_write0("ERROR\n");
            return 2;
        }}
        print_output();
    }}
    iq_semihost_write0("END\n");
    return 0;
}}
"""
)


def samples_source(name: str, ctype: str, samples: np.ndarray) -> str:
    """``iq_samples``: the given input samples as const arrays (kept in flash)."""
    up = name.upper()
    rows = []
    for s in samples.reshape(samples.shape[0], -1):
        vals = ", ".join(str(int(v)) for v in s)
        rows.append(f"    {{{vals}}}")
    return (
        f'#include "{name}.h"\n'
        f"const int32_t iq_num_samples = {samples.shape[0]};\n"
        f"const {ctype} iq_samples[{samples.shape[0]}][{up}_INPUT_SIZE] = {{\n"
        + ",\n".join(rows)
        + "\n};\n"
    )


def m0_files(name: str, ctype: str = "int8_t", zero_sample: np.ndarray | None = None) -> dict:
    up = name.upper()
    files = {
        "m0/startup.c": STARTUP_C,
        "m0/microbit.ld": LINKER.format(
            what="BBC micro:bit (nRF51, Cortex-M0, 16 KB RAM)",
            flash="256K",
            ram="16K",
            stack=STACK_RESERVE,
        ),
        "m0/an385.ld": LINKER.format(
            what="MPS2 AN385 (Cortex-M3, 4 MB RAM)", flash="4M", ram="4M", stack=STACK_RESERVE
        ),
        "m0/main.c": MAIN_C.format(name=name, up=up),
    }
    if zero_sample is not None:
        files["m0/samples.c"] = samples_source(name, ctype, zero_sample[None])
    return files
