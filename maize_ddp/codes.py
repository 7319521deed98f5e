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


def arr0_to_codes(x: np.ndarray, layout: str, first_row: int = 0) -> np.ndarray:
    """An npz's arr_0 (or a block of its rows) as uint8 codes [N, L]: one-hot is decoded
    (onehot_to_codes); codes ("codes" layout) are checked to be bases, 0..N."""
    if layout != "codes":
        return onehot_to_codes(x, layout, first_row)
    if x.ndim != 2:
        raise OneHotError(f"expected 2-D base codes, got shape {list(x.shape)}")
    if x.size and x.max() > N_CODE:
        row, pos = np.argwhere(x > N_CODE)[0]
        raise OneHotError(f"row {first_row + row} position {pos} has code {x[row, pos]}; "
                          f"base codes are 0..{N_CODE} ({ALPHABET})")
    return np.ascontiguousarray(x, dtype=np.uint8)


def onehot_to_codes(x: np.ndarray, layout: str, first_row: int = 0) -> np.ndarray:
    """One-hot [N,4,L] ("N4L") or [N,L,4] ("NL4"), float/int/bool, to uint8 codes [N, L].

    A column must be one-hot, all zero (N) or uniform 0.25 (N); anything else raises
    OneHotError naming the row (counted from `first_row`, for a block of a larger array) and
    position. No argmax: about 8x faster than one.

    The conversion has to cost little next to decompressing the npz (the benchmark allows
    1.5x a plain np.load), and argmax across the channel axis alone costs as much as the
    decompression. Here each channel is compared with 1 and 0 once; a column is valid when
    all four channels are 0 or 1 and at most one is 1, and its code is the channel holding
    the 1 (none: N). Only when that check fails are uniform 0.25 columns looked for. Unlike
    argmax it is exact: a channel of 1e-9 beside a 1 is rejected, not rounded away. The
    tests check it against an argmax reference on every dtype and layout.
    """
    if x.ndim != 3:
        raise OneHotError(f"expected a 3-D one-hot array, got shape {list(x.shape)}")
    axis = 1 if layout == "N4L" else 2
    if x.shape[axis] != 4:
        raise OneHotError(f"channel axis has {x.shape[axis]} channels, expected 4 (layout {layout})")
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if axis == 2 and x.flags.c_contiguous and x.size:
        codes = _packed_nl4_codes(x)
        if codes is not None:
            return codes
    channels = [x[:, k, :] if axis == 1 else x[:, :, k] for k in range(4)]
    shape = channels[0].shape
    codes = np.zeros(shape, np.uint8)
    ones = np.zeros(shape, np.uint8)  # channels equal to 1
    binary = np.zeros(shape, np.uint8)  # channels equal to 0 or 1
    hit = np.empty(shape, np.bool_)
    hit8 = hit.view(np.uint8)
    for k, channel in enumerate(channels):
        np.equal(channel, 1, out=hit)
        ones += hit8
        binary += hit8
        if k:
            codes += hit8 if k == 1 else hit8 * np.uint8(k)
        np.equal(channel, 0, out=hit)
        binary += hit8
    if binary.size and not (binary.min() == 4 and ones.max() <= 1):
        valid = (binary == 4) & (ones <= 1)
        if x.dtype.kind == "f":  # uniform 0.25 columns are N too
            uniform = np.ones(shape, np.bool_)
            for channel in channels:
                uniform &= channel == 0.25
            valid |= uniform
        if not valid.all():
            row, pos = np.argwhere(~valid)[0]
            column = [c[row, pos].item() for c in channels]
            raise OneHotError(f"row {first_row + row} position {pos} is not one-hot: {column}")
    codes[ones == 0] = N_CODE
    return codes


def _packed_nl4_codes(x: np.ndarray) -> np.ndarray | None:
    """[N, L, 4] with the channels adjacent: a column's four 0/1 flags are one uint32.

    Strided per-channel passes over [N, L, 4] cost 2.5x the [N, 4, L] ones; comparing the
    whole array twice and reading the flags four bytes at a time does not. Byte k of the
    little-endian word is channel k, so a one-hot word is 1 << 8k, and multiplying it by
    0x00010203 puts k in the top byte. None when any column is not one-hot or all-zero.
    """
    n, length, _ = x.shape
    is_one = np.equal(x, 1).view("<u4").reshape(n, length)
    is_zero = np.equal(x, 0).view("<u4").reshape(n, length)
    if not ((is_one | is_zero) == 0x01010101).all() or (is_one & (is_one - np.uint32(1))).any():
        return None  # a non-binary channel, or two ones: uniform N or an error, decided slowly
    codes = ((is_one * np.uint32(0x00010203)) >> np.uint32(24)).astype(np.uint8)
    codes[is_one == 0] = N_CODE
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
    return np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[codes].tobytes().decode("ascii")
