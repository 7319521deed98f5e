"""DeepCRE: the CNN of Peleke et al. 2024 (Nat. Commun. 15, 3309), which predicts whether a
plant gene is highly or lowly expressed from the same 3,020-bp gene window maize_ddp's genome
converter cuts (1,000 bp upstream + 500 bp downstream of the TSS, 20 N, 500 upstream + 1,000
downstream of the TTS).

    one-hot [B, 4, L]
      -> 3 x ( Conv1d k8 'same' + ReLU, Conv1d k8 'same' + ReLU, MaxPool 8 (ceil), Dropout )
         with 64, 128 and 64 channels
      -> Flatten -> Linear 128 + ReLU -> Dropout -> Linear 64 + ReLU -> Linear num_targets

The published model ends in a sigmoid for its high/low classes; here the last layer gives
logits (classification: BCE with logits) or values (regression), one per target.
"""
from __future__ import annotations

import math

from torch import nn


def same_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # Keras' padding="same": an even kernel pads one more on the right (torch's "same" warns and copies)
    return nn.Sequential(nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0), nn.Conv1d(c_in, c_out, kernel))


def conv_pair(c_in: int, c_out: int, kernel: int, pool: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        same_conv(c_in, c_out, kernel), nn.ReLU(), same_conv(c_out, c_out, kernel), nn.ReLU(),
        nn.MaxPool1d(pool, ceil_mode=True), nn.Dropout(dropout))


class DeepCRE(nn.Module):
    """Reads one-hot [B, 4, L]; maize_ddp makes it from the codes it streams (maize_ddp.models)."""

    def __init__(self, num_targets: int = 1, seq_len: int = 3020, channels=(64, 128, 64), kernel: int = 8,
                 pool: int = 8, dropout: float = 0.25, dense=(128, 64)):
        super().__init__()
        blocks, c_in, length = [], 4, seq_len
        for c_out in channels:
            blocks.append(conv_pair(c_in, c_out, kernel, pool, dropout))
            c_in, length = c_out, math.ceil(length / pool)
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * length, dense[0]), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(dense[0], dense[1]), nn.ReLU(), nn.Linear(dense[1], num_targets))

    def forward(self, x):
        return self.head(self.convs(x))
