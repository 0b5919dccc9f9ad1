"""The host: the machine's gcc and the generated ``<name>_host_main.c`` (stdin -> stdout)."""

from __future__ import annotations

import os

import numpy as np

from .. import toolchain
from .base import Target, TargetBuild


class HostTarget(Target):
    name = "host"
    summary = "this machine's C compiler (gcc), the generated host driver"
    byte_order = "="
    tools = (toolchain.HOST_CC,)

    def build(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> TargetBuild:
        exe = toolchain.build_host(out_dir, opt)
        return TargetBuild(self.name, exe, [], "host")

    def run(self, out_dir: str | os.PathLike, inputs: np.ndarray, opt: str) -> np.ndarray:
        return toolchain.compile_and_run_host(out_dir, inputs, opt=opt)
