"""Predictions of single-base substitutions of BasenjiModel, computed only where they can differ.

fastISM (Nair et al., Bioinformatics 2022): a substitution at position p changes the output of a
convolution only within the kernel's reach of p, and a max-pool shrinks that span again. So for
conv blocks 1-3 (GELU, Conv1d, BatchNorm, MaxPool, Dropout), each mutant's block output is
computed on a window of Q positions around p, its input read from the activations cached for the
unmutated sequence with the mutant's own (already computed) window spliced in. After block 3 the
window is written into the cached activations and the rest (the dilated tower, whose reach soon
spans the whole sequence, block 4 and the head) runs at full length.

The arithmetic is the model's own (the same modules on fewer positions), so predictions equal a
full forward pass up to float rounding. On the 3-kb gene window the three blocks hold ~90 % of the
model's work; on a 170-bp promoter about two thirds.

Only a BasenjiModel itself (not a subclass), every module in eval mode and its conv blocks as
built (zero padding, no dilation, pools without overlap or padding) takes this path (`supports`):
any other model falls back to full forward passes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from maize_ddp.model import BasenjiModel


def supports(model) -> bool:
    if type(model) is not BasenjiModel or any(m.training for m in model.modules()):
        return False
    for block in (model.conv_block_1, model.conv_block_2, model.conv_block_3):
        kinds = (torch.nn.GELU, torch.nn.Conv1d, torch.nn.BatchNorm1d, torch.nn.MaxPool1d, torch.nn.Dropout)
        if len(block) != len(kinds) or not all(type(m) is k for m, k in zip(block, kinds)):
            return False
        conv, pool = block[1], block[3]
        if conv.dilation != (1,) or conv.padding_mode != "zeros" or not isinstance(conv.padding, tuple):
            return False
        if (pool.stride not in (None, pool.kernel_size) or pool.padding != 0 or pool.dilation != 1
                or pool.ceil_mode or not isinstance(pool.kernel_size, int)):
            return False
    return True


@dataclass(frozen=True)
class Stage:
    """One conv block's geometry: its input length, padding, kernel, stride, pool, output length,
    and Q, the most output positions one substitution can change (the window computed)."""
    block: torch.nn.Sequential
    length_in: int
    pad: int
    kernel: int
    stride: int
    pool: int
    length_out: int
    window: int = 0

    @property
    def conv(self) -> torch.nn.Conv1d:
        return self.block[1]

    def reached(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output positions [qlo, qhi] that hold every one a change of input positions [lo, hi]
        can reach (never empty: a change that reaches only the pool's dropped tail reaches none,
        and any range will do)."""
        conv_len = (self.length_in + 2 * self.pad - self.kernel) // self.stride + 1
        # conv output j reads inputs j*stride - pad + [0, kernel)
        jlo = -torch.div(self.kernel - 1 - self.pad - lo, self.stride, rounding_mode="floor")
        jhi = torch.div(hi + self.pad, self.stride, rounding_mode="floor").clamp(max=conv_len - 1)
        qlo = (jlo.clamp(min=0) // self.pool).clamp(max=self.length_out - 1)
        return qlo, torch.maximum(jhi // self.pool, qlo).clamp(max=self.length_out - 1)

    def start(self, qlo: torch.Tensor) -> torch.Tensor:
        """Where each mutant's window of `window` output positions begins: at its first reached
        position, moved left where the window would run past the end."""
        return qlo.clamp(max=self.length_out - self.window)


def stages_of(model: BasenjiModel) -> list[Stage]:
    cfg = model.config
    stages, length = [], cfg.seq_len
    for i, block in enumerate((model.conv_block_1, model.conv_block_2, model.conv_block_3), 1):
        conv, pool = block[1], block[3]
        kernel, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        out = ((length + 2 * pad - kernel) // stride + 1) // pool.kernel_size
        stages.append(Stage(block, length, pad, kernel, stride, pool.kernel_size, out))
        length = out
    # each stage's window: the widest span any single position's change reaches there
    lo = hi = torch.arange(cfg.seq_len)
    sized = []
    for stage in stages:
        lo, hi = stage.reached(lo, hi)
        sized.append(replace(stage, window=int((hi - lo + 1).max())))
    return sized


class Cache:
    """A batch of sequences' activations at the input of each conv block (zero-padded by the
    block's padding; GELU(0) = 0, so padding before the GELU is padding after it) and after block 3."""

    def __init__(self, model: BasenjiModel, stages: list[Stage], codes: torch.Tensor):
        if codes.shape[-1] != model.config.seq_len:  # as the model's own forward refuses it
            raise ValueError(f"model built for seq_len {model.config.seq_len}, got input of length {codes.shape[-1]}")
        x = model.one_hot(codes).to(model.code_table.dtype)
        self.inputs = []
        for stage in stages:
            self.inputs.append(F.pad(x, (stage.pad, stage.pad)))
            x = stage.block(x)
        self.last = x


class FastISM:
    """Predictions [M, T] of mutants given as (sequence, position, base) of cached sequences."""

    def __init__(self, model: BasenjiModel):
        self.model = model
        self.stages = stages_of(model)

    def cache(self, codes: torch.Tensor) -> Cache:
        return Cache(self.model, self.stages, codes)

    def predict(self, cache: Cache, seq: torch.Tensor, pos: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        device = pos.device
        # the change so far: the one-hot column of the new base at pos
        patch = self.model.one_hot(base.long()[:, None]).to(cache.inputs[0].dtype)  # [M, 4, 1]
        patch_start, lo, hi = pos, pos, pos
        for stage, padded in zip(self.stages, cache.inputs):
            qlo, qhi = stage.reached(lo, hi)
            start = stage.start(qlo)
            width = (stage.window * stage.pool - 1) * stage.stride + stage.kernel  # padded inputs read
            offset = start * stage.pool * stage.stride  # in padded coordinates
            window = padded.unfold(2, width, 1)[seq, :, offset]  # [M, C, width]
            rel = torch.arange(width, device=device) - (patch_start + stage.pad - offset)[:, None]
            inside = (rel >= 0) & (rel < patch.shape[2])
            spliced = patch.gather(2, rel.clamp(0, patch.shape[2] - 1)[:, None, :].expand(-1, patch.shape[1], -1))
            window = torch.where(inside[:, None, :], spliced, window)
            conv = stage.conv
            x = F.conv1d(stage.block[0](window), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
            patch = stage.block[4](stage.block[3](stage.block[2](x)))  # BatchNorm, MaxPool, Dropout
            patch_start, lo, hi = start, qlo, qhi
        x = cache.last[seq].clone()
        index = (patch_start[:, None] + torch.arange(patch.shape[2], device=device))[:, None, :]
        x.scatter_(2, index.expand(-1, x.shape[1], -1), patch.to(x.dtype))
        model = self.model
        return model.head(model.conv_block_4(model.dilated_tower(x)))
