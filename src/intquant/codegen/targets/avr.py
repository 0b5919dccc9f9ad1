"""8-bit AVR (ATmega2560: 256 KB flash, 8 KB RAM, 16-bit ``int``): avr-gcc + avr-libc, simavr.

The samples are linked into program memory (``PROGMEM``) and copied into the input buffer one
at a time with ``memcpy_P``: 8 KB of RAM hold the arena, the buffers and the stack, not the
samples. The harness (all here, none of it in the model library) prints through UART0, which
simavr echoes on stderr, one line per record:
  ``S<hex>``  deepest stack of one inference: RAM between the end of .bss and main's stack
              pointer is painted, the first sample runs with the timer stopped (no interrupt
              frame), the painted bytes still intact are counted;
  ``C<hex>``  cycles of one ``<name>_run``: Timer1 at the CPU clock (prescaler 1), overflows
              counted by an interrupt (its ~30 cycles per 65536 are included);
  ``O<hex>``  the output bytes (little-endian, in memory order);
then ``END``; ``cli`` + ``sleep`` makes simavr quit.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np

from ..toolchain import (
    WARN,
    ToolchainError,
    _check_inputs,
    _run,
    elf_symbols,
    project_info,
    require,
    soft_float_symbols,
)
from .base import Target, TargetBuild, TargetCost, from_target_bytes, library_footprint

MCU = "atmega2560"
F_CPU = 16_000_000
RAM_START, RAM_END = 0x800200, 0x802200  # data-space addresses of the 8 KB SRAM (nm view)
DATA_SPACE = 0x800000  # nm shows RAM addresses from here; flash addresses lie below
PGM_READ_REACH = 0x10000  # pgm_read_* (LPM with a 16-bit Z) read the first 64 KB of flash
FLASH_BYTES = 256 * 1024
STACK_RESERVE = 1024  # RAM kept free for the stack when checking that a model fits
SIMAVR_TIMEOUT = 600  # seconds for one simulation (all samples of a batch)
AVR_LIBC_HEADER = "/usr/lib/avr/include/avr/pgmspace.h"

MAIN_C = r"""/* ATmega2560 test main for {name} under simavr (not part of the model library). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <stdint.h>
#include "{name}.h"

extern const {name}_input_t iqh_samples[][{up}_INPUT_SIZE] PROGMEM;
extern const uint16_t iqh_num_samples;
extern uint8_t __heap_start; /* end of .data + .bss (avr-libc linker script) */

static {name}_input_t iqh_in[{up}_INPUT_SIZE];
static {name}_output_t iqh_out[{up}_OUTPUT_SIZE];
static volatile uint16_t iqh_overflows;

ISR(TIMER1_OVF_vect)
{{
    ++iqh_overflows;
}}

static void iqh_put(uint8_t c)
{{
    while (!(UCSR0A & (1 << UDRE0))) {{
    }}
    UDR0 = c;
}}

/* One record: tag, the bytes in hex (memory order), newline. */
static void iqh_record(uint8_t tag, const void* data, uint16_t n)
{{
    static const char hex[] = "0123456789abcdef";
    const uint8_t* p = (const uint8_t*)data;
    iqh_put(tag);
    while (n--) {{
        iqh_put((uint8_t)hex[*p >> 4]);
        iqh_put((uint8_t)hex[*p++ & 15u]);
    }}
    iqh_put('\n');
}}

static uint32_t iqh_cycles(void)
{{
    uint8_t sreg = SREG;
    uint16_t t, o;
    cli();
    t = TCNT1;
    o = iqh_overflows;
    if ((TIFR1 & (1 << TOV1)) && t < 0x8000u) {{ /* an overflow not yet serviced */
        ++o;
    }}
    SREG = sreg;
    return ((uint32_t)o << 16) | t;
}}

static void iqh_run(uint16_t s)
{{
    memcpy_P(iqh_in, iqh_samples[s], sizeof(iqh_in));
    if ({name}_run(iqh_in, iqh_out) != 0) {{
        iqh_record('E', "", 0);
    }}
}}

static void iqh_stop(void)
{{
    cli();
    SMCR = (1 << SE); /* sleep with interrupts off: simavr quits */
    __asm__ volatile("sleep");
    for (;;) {{
    }}
}}

int main(void)
{{
    uint8_t* p;
    uint8_t* const top = (uint8_t*)SP - 8; /* main's frame lies above SP */
    uint16_t s, stack;
    uint32_t t0, t1;
    UCSR0B = (1 << TXEN0);
    for (p = &__heap_start; p < top; ++p) {{
        *p = 0xA5;
    }}
    iqh_run(0);
    for (p = &__heap_start; p < top && *p == 0xA5; ++p) {{
    }}
    stack = (uint16_t)(top + 8 - p);
    iqh_record('S', &stack, sizeof(stack));
    TCCR1A = 0;
    TIMSK1 = (1 << TOIE1);
    sei();
    TCCR1B = (1 << CS10); /* Timer1 at the CPU clock */
    for (s = 0; s < iqh_num_samples; ++s) {{
        t0 = iqh_cycles();
        iqh_run(s);
        t1 = iqh_cycles() - t0;
        iqh_record('C', &t1, sizeof(t1));
        iqh_record('O', iqh_out, sizeof(iqh_out));
    }}
    iqh_record('D', "", 0);
    iqh_stop();
    return 0;
}}
"""


def samples_source(name: str, ctype: str, samples: np.ndarray) -> str:
    """The samples as a PROGMEM array (initializers are values: no byte order involved)."""
    rows = ",\n".join(
        "    {" + ", ".join(str(int(v)) for v in s) + "}" for s in samples.reshape(len(samples), -1)
    )
    return (
        f'#include <avr/pgmspace.h>\n#include "{name}.h"\n'
        f"const uint16_t iqh_num_samples = {len(samples)};\n"
        f"const {ctype} iqh_samples[{len(samples)}][{name.upper()}_INPUT_SIZE] PROGMEM = {{\n"
        f"{rows}\n}};\n"
    )


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_records(text: str) -> list[tuple[str, bytes]]:
    """(tag, bytes) of every harness record in simavr's UART echo.

    simavr colours each line, prints '.' for the newline that ends a record and breaks lines
    longer than 255 characters: a record is a tag line plus the hex-only lines that continue
    it, up to the one ending in '.'. Its own messages (upper-case words, spaces) never match.
    """
    records: list[tuple[str, bytes]] = []
    tag, digits, open_ = "", [], False
    for line in ANSI.sub("", text).splitlines():
        line = line.strip()
        start = re.fullmatch(r"([SCOED])([0-9a-f]*)(\.?)", line)
        more = re.fullmatch(r"([0-9a-f]*)(\.?)", line) if open_ and line else None
        if start:
            tag, digits, open_ = start.group(1), [start.group(2)], not start.group(3)
        elif more:
            digits.append(more.group(1))
            open_ = not more.group(2)
        else:
            continue
        if not open_:
            records.append((tag, bytes.fromhex("".join(digits))))
    return records


class AvrTarget(Target):
    name = "avr"
    summary = (
        "8-bit AVR ATmega2560 (256 KB flash, 8 KB RAM, 16-bit int): avr-gcc + avr-libc, "
        "simavr, cycles from Timer1"
    )
    byte_order = "<"
    nm = "avr-nm"
    tools = ("avr-gcc", "avr-nm", "simavr", AVR_LIBC_HEADER)
    machine = f"simavr {MCU} @ {F_CPU // 1_000_000} MHz (256 KB flash, 8 KB RAM)"

    def build(
        self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2"
    ) -> TargetBuild:
        info = project_info(out_dir)
        x = _check_inputs(info, inputs)
        self.require_tools()
        build = info.out_dir / "build" / f"avr{opt.lstrip('-')}"
        build.mkdir(parents=True, exist_ok=True)
        ctype = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t"}[info.input_dtype.name]
        (build / "samples.c").write_text(samples_source(info.name, ctype, x))
        (build / "main.c").write_text(MAIN_C.format(name=info.name, up=info.name.upper()))
        srcs = [str(info.out_dir / s) for s in info.library_sources]
        srcs += [str(build / "main.c"), str(build / "samples.c")]
        elf = build / f"{info.name}.elf"
        _run(
            [
                require("avr-gcc"),
                f"-mmcu={MCU}",
                "-std=c99",
                opt,
                *WARN,
                "-ffunction-sections",
                "-fdata-sections",
                "-I",
                str(info.out_dir),
                *("-Xassembler", "-I", "-Xassembler", str(info.out_dir)),  # avr-gcc 5 does not
                # pass -I on to the assembler's .incbin
                "-Wl,--gc-sections",
                "-o",
                str(elf),
                *srcs,
            ]
        )
        self._check_fits(elf)
        return TargetBuild(self.name, elf, soft_float_symbols(elf, self.nm), self.machine)

    def _check_fits(self, elf) -> None:
        """The linker's avr6 memory regions are larger than the part: check RAM and flash."""
        syms = {name: addr for name, _, addr, _ in elf_symbols(elf, self.nm)}
        pgm_end = syms["__ctors_start"]  # .progmem* sections end here (avr-libc linker script)
        if pgm_end > PGM_READ_REACH:
            raise ToolchainError(
                f"{elf}: program-memory data ends at {pgm_end:#x}, beyond the {PGM_READ_REACH} B "
                "pgm_read_* (IQ_LOAD_*) reach: fewer constants, or fewer samples"
            )
        ram_used = syms["__heap_start"] - RAM_START
        flash_used = syms["_etext"] + (syms["__data_end"] - syms["__data_start"])
        if ram_used + STACK_RESERVE > RAM_END - RAM_START:
            raise ToolchainError(
                f"{elf}: .data + .bss take {ram_used} B of the ATmega2560's 8192 B of RAM, "
                f"leaving less than {STACK_RESERVE} B for the stack"
            )
        if flash_used > FLASH_BYTES:
            raise ToolchainError(f"{elf}: {flash_used} B do not fit 256 KB of flash")

    def _simulate(self, out_dir, x: np.ndarray, opt: str):
        info = project_info(out_dir)
        b = self.build(out_dir, x, opt)
        if b.soft_float:
            raise ToolchainError(f"{b.elf} links soft-float helpers: {b.soft_float}")
        try:
            res = subprocess.run(
                [require("simavr"), "-m", MCU, "-f", str(F_CPU), str(b.elf)],
                capture_output=True,
                timeout=SIMAVR_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ToolchainError(
                f"simavr run of {b.elf} did not finish within {SIMAVR_TIMEOUT} s"
            ) from None
        text = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
        recs = parse_records(text)
        tags = [t for t, _ in recs]
        if res.returncode != 0 or "E" in tags or tags[-1:] != ["D"]:
            raise ToolchainError(
                f"simavr run of {b.elf} failed (exit {res.returncode}):\n{text[-2000:]}"
            )
        raw = b"".join(v for t, v in recs if t == "O")
        out = from_target_bytes(raw, info, x.shape[0], self.byte_order)
        cycles = [int.from_bytes(v, "little") for t, v in recs if t == "C"]
        stack = next(int.from_bytes(v, "little") for t, v in recs if t == "S")
        return b, out, cycles, stack

    def run(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2") -> np.ndarray:
        return self._simulate(out_dir, _check_inputs(project_info(out_dir), inputs), opt)[1]

    def cost(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str = "-O2") -> TargetCost:
        x = _check_inputs(project_info(out_dir), inputs)
        b, _, cycles, stack = self._simulate(out_dir, x, opt)
        flash, ram = library_footprint(b.elf, self.nm)
        return TargetCost(self.machine, flash, ram, stack, "cycles", cycles)
