"""BasenjiModel: the residual dilated CNN of the original report.

    codes [B, L] or one-hot [B, 4, L]
      -> conv block 1..3   GELU, Conv1d (no bias), BatchNorm, MaxPool, Dropout
      -> dilated tower     convdc residual blocks: x + Drop(BN(Conv1x1(GELU(BN(DilConv(GELU(x)))))))
      -> conv block 4      GELU, Conv1d 1x1, BatchNorm, Dropout
      -> head              GELU, Flatten, Linear(num_targets), Dropout
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from maize_ddp.errors import ConfigError


@dataclass
class ModelConfig:
    num_targets: int = 1
    n_channel: int = 4
    seq_len: int = 3020
    conv1kc: int = 64
    conv1ks: int = 15
    conv1st: int = 1
    conv1pd: int = 7
    pool1ks: int = 8
    pdrop1: float = 0.2
    conv2kc: int = 64
    conv2ks: int = 5
    conv2st: int = 1
    conv2pd: int = 3
    pool2ks: int = 4
    pdrop2: float = 0.2
    conv3kc: int = 72  # round(64 * 1.125), the width of the dilated tower
    conv3ks: int = 5
    conv3st: int = 1
    conv3pd: int = 3
    pool3ks: int = 4
    pdrop3: float = 0.2
    convdc: int = 6  # residual dilated blocks, dilation 1, 2, 4, ...
    convdkc: int = 32
    convdks: int = 3
    pdropd: float = 0.25
    conv4kc: int = 64
    pdrop4: float = 0.1
    # Dropout on the regression output zeroes whole predictions and biases the MSE
    # towards shrinking them, so it is off unless asked for.
    pdrop_head: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model hyperparameters: {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> None:
        """Settings no layer can be built with, named by their flags. (Sizes too big for the
        sequence are caught by flat_length, which knows the block they empty.)"""
        for f in fields(self):
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if f.name.startswith("pdrop"):
                if not 0 <= value < 1:
                    raise ConfigError(f"{flag} must be in [0, 1), not {value}")
            elif f.name.endswith("pd") or f.name == "convdc":
                if value < 0:
                    raise ConfigError(f"{flag} must not be negative, not {value}")
            elif value < 1:
                raise ConfigError(f"{flag} must be at least 1, not {value}")
        if self.convdks % 2 == 0:
            raise ConfigError(f"--convdks must be odd, not {self.convdks} (a residual block must keep the length)")


def truncated_normal_(w: torch.Tensor, std: float) -> torch.Tensor:
    """Normal(0, std) redrawn outside +-2 std, as the original `truncated_normal`."""
    return nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std)


def he_std(conv_or_linear: nn.Module) -> float:
    fan_in = conv_or_linear.weight[0].numel()
    return (2.0 / fan_in) ** 0.5


def conv_block(c_in, c_out, ks, st, pd, pool, pdrop) -> nn.Sequential:
    return nn.Sequential(
        nn.GELU(),
        nn.Conv1d(c_in, c_out, kernel_size=ks, stride=st, padding=pd, bias=False),
        nn.BatchNorm1d(c_out),
        nn.MaxPool1d(pool),
        nn.Dropout(pdrop),
    )


class ResidualDilatedBlock(nn.Module):
    def __init__(self, width: int, bottleneck: int, kernel_size: int, dilation: int, pdrop: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(width, bottleneck, kernel_size, dilation=dilation,
                      padding=dilation * (kernel_size - 1) // 2, bias=False),
            nn.BatchNorm1d(bottleneck),
            nn.GELU(),
            nn.Conv1d(bottleneck, width, 1, bias=False),
            nn.BatchNorm1d(width),
            nn.Dropout(pdrop),
        )

    def forward(self, x):
        return x + self.body(x)


def conv_out_len(length: int, ks: int, st: int, pd: int, dilation: int = 1) -> int:
    return (length + 2 * pd - dilation * (ks - 1) - 1) // st + 1


def flat_length(cfg: ModelConfig) -> int:
    """Sequence positions left after conv blocks 1-3 and their pools."""
    length = cfg.seq_len
    for i in (1, 2, 3):
        ks, st, pd = (getattr(cfg, f"conv{i}{p}") for p in ("ks", "st", "pd"))
        pool = getattr(cfg, f"pool{i}ks")
        length = conv_out_len(length, ks, st, pd) // pool
        if length < 1:
            raise ConfigError(
                f"seq_len {cfg.seq_len} is too short for this model: nothing is left after conv block {i} "
                f"(kernel {ks}, stride {st}, padding {pd}, pool {pool}); use a longer sequence or smaller pools")
    return length


class GeometryWarning(UserWarning):
    """The sequence is too short for the model's pools and dilations to be of use."""


def wasted_dilated_blocks(cfg: ModelConfig, flat_len: int) -> list[int]:
    """Dilations of the residual blocks whose every off-centre tap falls in the padding: with
    `flat_len` positions left after the pools, the nearest off-centre taps of a block of dilation
    d are d positions away, and at d >= flat_len the block is a 1x1 convolution at the cost of a
    dilated one."""
    return [2 ** i for i in range(cfg.convdc) if 2 ** i >= flat_len]


def geometry_warning(cfg: ModelConfig) -> str | None:
    """A sentence for a model whose tower cannot use its dilations on this seq_len, else None.

    The default pools (8 x 4 x 4) suit ~3 kb gene windows, where only the last of the six
    blocks overreaches; on a 170-bp promoter they leave one position and every block is moot."""
    flat = flat_length(cfg)
    wasted = wasted_dilated_blocks(cfg, flat)
    if len(wasted) < 2:
        return None
    pools = " x ".join(str(getattr(cfg, f"pool{i}ks")) for i in (1, 2, 3))
    return (f"seq_len {cfg.seq_len} leaves {flat} position(s) after the pools ({pools}): {len(wasted)} of the "
            f"{cfg.convdc} dilated blocks (dilation {wasted[0]}..{wasted[-1]}) reach only padding. For short "
            "sequences use smaller pools or fewer blocks (e.g. --pool1ks 4 --pool2ks 2 --pool3ks 2 --convdc 3 "
            "for ~170 bp, as presets/core_promoter.toml does)")


class BasenjiModel(nn.Module):
    input = "codes"  # reads uint8 codes [B, L] itself (and one-hot [B, 4, L]): see maize_ddp.models

    def __init__(self, num_targets: int = 1, n_channel: int = 4, seq_len: int = 3020, **hparams):
        super().__init__()
        cfg = ModelConfig.from_dict(dict(num_targets=num_targets, n_channel=n_channel, seq_len=seq_len, **hparams))
        cfg.validate()
        self.config = cfg
        self.flat_len = flat_length(cfg)
        c = cfg
        self.conv_block_1 = conv_block(c.n_channel, c.conv1kc, c.conv1ks, c.conv1st, c.conv1pd, c.pool1ks, c.pdrop1)
        self.conv_block_2 = conv_block(c.conv1kc, c.conv2kc, c.conv2ks, c.conv2st, c.conv2pd, c.pool2ks, c.pdrop2)
        self.conv_block_3 = conv_block(c.conv2kc, c.conv3kc, c.conv3ks, c.conv3st, c.conv3pd, c.pool3ks, c.pdrop3)
        self.dilated_tower = nn.Sequential(*[
            ResidualDilatedBlock(c.conv3kc, c.convdkc, c.convdks, 2 ** i, c.pdropd) for i in range(c.convdc)])
        self.conv_block_4 = nn.Sequential(
            nn.GELU(), nn.Conv1d(c.conv3kc, c.conv4kc, 1, bias=False), nn.BatchNorm1d(c.conv4kc), nn.Dropout(c.pdrop4))
        self.head = nn.Sequential(
            nn.GELU(), nn.Flatten(), nn.Linear(c.conv4kc * self.flat_len, c.num_targets), nn.Dropout(c.pdrop_head))
        # Codes -> one-hot on the device: row 4 (N) is all zeros.
        self.register_buffer("code_table", torch.eye(5, c.n_channel), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                truncated_normal_(m.weight, he_std(m))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The last BN of each residual block starts at zero so every block starts as the
        # identity: the tower's depth does not disturb early training.
        for block in self.dilated_tower:
            nn.init.zeros_(block.body[5].weight)

    def one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        """uint8 codes [B, L] -> float one-hot [B, 4, L]."""
        return self.code_table[codes.long()].transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = self.one_hot(x)
        if x.shape[-1] != self.config.seq_len:
            raise ValueError(f"model built for seq_len {self.config.seq_len}, got input of length {x.shape[-1]}")
        x = self.conv_block_1(x.to(self.code_table.dtype))
        x = self.conv_block_2(x)
        x = self.conv_block_3(x)
        x = self.dilated_tower(x)
        x = self.conv_block_4(x)
        return self.head(x)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches) -> None:
    """Recompute BatchNorm running statistics with dropout off.

    Dropout in front of every conv block makes the activations a BN layer sees in training wider
    than those it sees in evaluation ("variance shift"): running statistics gathered during
    training then shift and shrink every evaluation prediction. Averaging batch statistics over a
    few training batches with dropout off removes the shift (on the synthetic demo: test R² 0.29
    -> 0.48 at the same Pearson r).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:  # a model of another family may have none: nothing to recompute
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain cumulative average over the batches below
        m.train()
    for codes in batches:
        model(codes)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def build_model(cfg: ModelConfig) -> BasenjiModel:
    """A fresh model for training; warns (GeometryWarning) when its pools leave the dilated tower
    too few positions. Loading a trained one (BasenjiModel(**saved)) does not warn again."""
    if (problem := geometry_warning(cfg)) is not None:
        warnings.warn(problem, GeometryWarning, stacklevel=2)
    return BasenjiModel(**asdict(cfg))
