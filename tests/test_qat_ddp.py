"""QAT under PyTorch DDP: ``torchrun --nproc_per_node 2`` (gloo on CPU) runs intquant.train on
a tiny QAT model (tests/ddp_qat_worker.py); both ranks must end with the same parameters and
buffers although they started from different weights and saw different halves of the data,
and the converted integer model must run and equal eval mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("ddp_qat_worker.py")


def test_torchrun_two_ranks_end_with_one_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(WORKER), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    # the data was split: disjoint halves that together cover every sample once
    s0, s1 = set(r0["seen"].tolist()), set(r1["seen"].tolist())
    assert len(r0["seen"]) == len(r1["seen"]) == 32
    assert s0.isdisjoint(s1) and s0 | s1 == set(range(64))
    # one model on both ranks: every parameter and buffer bit-identical
    keys = [k for k in r0.files if k.startswith("state.")]
    assert any(k.endswith(".step") for k in keys) and any("running_mean" in k for k in keys)
    for k in keys:
        assert np.array_equal(r0[k], r1[k]), k
    assert np.array_equal(r0["loss"], r1["loss"])  # the loss history is the global mean
    # the converted integer model runs, and equals eval mode on each rank and across ranks
    assert r0["codes"].dtype.kind == "i" and r0["codes"].shape == (64, 3)
    assert np.array_equal(r0["codes"], r1["codes"])
    for r in (r0, r1):
        assert np.array_equal(r["predict"].astype(np.float32), r["eval_out"])
