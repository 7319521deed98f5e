"""DNA base codes: the one-byte-per-base representation every store uses.

A=0, C=1, G=2, T=3, N=4. A one-hot column of all zeros, or a uniform 0.25 column, is N.
Storing codes instead of float32 one-hot is 16x smaller before compression; the model
expands them to one-hot on the device.
"""
from __future__ import annotations

import numpy as np

ALPHABET = "ACGTN"
N_CODE = 4
# complement of A,C,G,T,N is T,G,C,A,N
COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
_ASCII_TO_CODE = np.full(256, N_CODE, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _ASCII_TO_CODE[ord(_b)] = _i
    _ASCII_TO_CODE[ord(_b.lower())] = _i


class OneHotError(ValueError):
    """The array is not a valid one-hot encoding of DNA."""


def onehot_to_codes(x: np.ndarray, layout: str) -> np.ndarray:
    """Turn one-hot [N,4,L] ("N4L") or [N,L,4] ("NL4") into uint8 codes [N, L].

    Accepts float, integer and bool arrays. A column must be one-hot, all zero (N) or
    uniform 0.25 (N); anything else raises OneHotError saying which row and position.
    """
    if x.ndim != 3:
        raise OneHotError(f"expected a 3-D one-hot array, got shape {list(x.shape)}")
    axis = 1 if layout == "N4L" else 2
    if x.shape[axis] != 4:
        raise OneHotError(
            f"channel axis has {x.shape[axis]} channels, expected 4 (layout {layout}, shape {list(x.shape)})")
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    hi = x.max(axis=axis)
    lo = x.min(axis=axis)
    total = x.sum(axis=axis, dtype=np.float32 if x.dtype.kind == "f" else np.int64)
    onehot = (hi == 1) & (lo == 0) & (total == 1)
    zero = (hi == 0) & (lo == 0)
    ok = onehot | zero
    if x.dtype.kind == "f":
        ok |= (hi == 0.25) & (lo == 0.25)
    if not ok.all():
        row, pos = np.argwhere(~ok)[0]
        column = np.take(x[row], pos, axis=axis - 1)
        raise OneHotError(f"row {row} position {pos} is not one-hot: {column.tolist()}")
    codes = x.argmax(axis=axis).astype(np.uint8)
    codes[~onehot] = N_CODE
    return codes


def codes_to_onehot(codes: np.ndarray, layout: str = "N4L", dtype=np.float32) -> np.ndarray:
    """Expand uint8 codes [N, L] to one-hot; N becomes an all-zero column."""
    table = np.eye(5, 4, dtype=dtype)  # row 4 (N) is all zeros
    onehot = table[codes]  # [N, L, 4]
    return np.ascontiguousarray(onehot.transpose(0, 2, 1)) if layout == "N4L" else onehot


def reverse_complement(codes):
    """Reverse complement of codes [..., L] (numpy array or torch tensor)."""
    if isinstance(codes, np.ndarray):
        return COMPLEMENT[codes[..., ::-1]]
    import torch

    table = torch.as_tensor(COMPLEMENT, device=codes.device)
    return table[codes.flip(-1).long()]


def ascii_to_codes(seq: bytes | str) -> np.ndarray:
    """Text DNA (any case; anything but ACGT is N) to uint8 codes."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    return _ASCII_TO_CODE[np.frombuffer(seq, dtype=np.uint8)]


def codes_to_ascii(codes: np.ndarray) -> str:
    return np.frombuffer(b"ACGTN", dtype=np.uint8)[codes].tobytes().decode("ascii")
