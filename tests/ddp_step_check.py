"""Run under torchrun: one DDP optimizer step with per-rank batch B; rank 0 saves the parameters.

The test compares them with one single-process step on batch 2B over the same rows. BatchNorm
runs on its (identical) running statistics and dropout is off, so the only difference left is
DDP's gradient averaging, which must make the two steps equal.
"""
import sys

import torch

from maize_ddp import distributed
from maize_ddp.model import BasenjiModel
from maize_ddp.train import train_step

NO_DROPOUT = dict(pdrop1=0.0, pdrop2=0.0, pdrop3=0.0, pdropd=0.0, pdrop4=0.0)


def make(seq_len=200):
    torch.manual_seed(0)
    model = BasenjiModel(num_targets=2, seq_len=seq_len, **NO_DROPOUT)
    for m in model.modules():  # nonzero residual gammas so every layer gets gradient
        if isinstance(m, torch.nn.BatchNorm1d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    return model


def rows(batch, seq_len=200):
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 5, (batch, seq_len), generator=g, dtype=torch.uint8)
    y = torch.randn(batch, 2, generator=g)
    return codes, y


def step(model, codes, y):
    model.eval()  # BatchNorm on running statistics; no dropout anyway
    # SGD: the update is proportional to the gradient (Adam's first step is its sign, which
    # turns float rounding in near-zero gradients into full-size differences)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, codes, y, opt, None, "off", 0.0)


if __name__ == "__main__":
    out, per_rank = sys.argv[1], int(sys.argv[2])
    d = distributed.init("cpu")
    rank, world = d.rank, d.world_size
    codes, y = rows(per_rank * world)
    model = make()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    step(ddp, codes[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank])
    if rank == 0:
        torch.save(model.state_dict(), out)
    distributed.shutdown(d)  # joins gloo's threads before Python finalizes (see its docstring)
