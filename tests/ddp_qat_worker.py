"""Run by tests/test_qat_ddp.py under ``torchrun --nproc_per_node 2``: every rank prepares a
tiny LSQ W4A4 QAT model (from a float model initialised differently on each rank), fine-tunes
it with intquant.train under DistributedDataParallel (gloo, CPU) and saves what it ended with.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_qat_worker.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from intquant.config import Config
from intquant.qat import convert, prepare
from intquant.training import train

N, BATCH = 64, 16  # 32 samples per rank: 2 steps of 16


def data() -> tuple[np.ndarray, np.ndarray]:
    """Three noisy 1-D templates; sample i carries its index in x[i, 0, 0] = i (a tag)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, N)
    t = np.linspace(0, 1, 8)
    templates = np.stack([np.sin(2 * np.pi * t), t - 0.5, (t > 0.5) - 0.5])
    x = (templates[y] + 0.2 * rng.standard_normal((N, 8)))[:, None, :]
    x[:, 0, 0] = np.arange(N)
    return x.astype(np.float32), y.astype(np.int64)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    x, y = data()
    torch.manual_seed(100 + rank)  # different on each rank: DDP must start all from rank 0's
    float_model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(),
                                nn.Flatten(), nn.Linear(4 * 8, 3))
    cfg = Config(weight_bits=4, act_bits=4, weight_quantizer="lsq", act_quantizer="lsq",
                 first_last_bits=None)
    q = prepare(float_model, cfg)  # no example_input: train initialises it on every rank
    seen: list[int] = []
    q.register_forward_pre_hook(
        lambda m, args: seen.extend(args[0][:, 0, 0].round().long().tolist())
        if m.training else None)
    hist = train(q, (x, y), epochs=1, batch_size=BATCH, lr=1e-2, progress=False)
    dist.barrier()
    state = {k: v.detach().numpy() for k, v in q.state_dict().items()}
    qm = convert(q)
    codes = qm.run(qm.quantize_input(x))
    with torch.no_grad():
        eval_out = q.eval()(torch.from_numpy(x)).numpy()  # eval mode: the integer model
    np.savez(out / f"rank{rank}.npz", seen=np.array(seen), codes=codes, eval_out=eval_out,
             predict=qm.predict(x), loss=np.array(hist["loss"]),
             **{f"state.{k}": v for k, v in state.items()})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
