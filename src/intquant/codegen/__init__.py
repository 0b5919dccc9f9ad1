"""The integer-only C back end: hand-written C99 kernels, generator, memory planner, toolchains.

export_c(graph, out_dir, name)          write the C project (see emit.py)
plan_memory(graph)                      the static arena plan alone
compile_and_run_host(out_dir, inputs)   build with the host gcc and run samples
run_on_m0(out_dir, inputs, emulator)    cross-build for Cortex-M0 and run under QEMU/unicorn
run_on(out_dir, inputs, target)         any target: host, cortex-m0(plus), avr, riscv32, powerpc
cost_report(out_dir, ..., target)       flash, RAM, instructions or cycles per inference and MAC
"""

from .emit import ExportResult, export_c
from .planner import MemoryPlan, plan_memory

__all__ = ["ExportResult", "MemoryPlan", "export_c", "plan_memory"]
