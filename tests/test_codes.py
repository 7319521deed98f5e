import numpy as np
import pytest

from _npz import encode, random_codes
from maize_ddp.codes import (OneHotError, ascii_to_codes, codes_to_ascii, codes_to_onehot, onehot_to_codes,
                             reverse_complement)


def reference_decode(x, layout):
    """Plain argmax; N where a column sums to zero or is uniform."""
    x = np.asarray(x, dtype=np.float64)
    if layout == "NL4":
        x = x.transpose(0, 2, 1)
    codes = x.argmax(1).astype(np.uint8)
    codes[(x.sum(1) == 0) | (x.min(1) == x.max(1))] = 4
    return codes


@pytest.mark.parametrize("layout", ["N4L", "NL4"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "uint8", "int32", "bool"])
def test_decoder_matches_argmax_reference(layout, dtype):
    codes = random_codes(np.random.default_rng(3), 7, 33)
    x = encode(codes, layout, dtype, uniform_n=dtype.startswith("float"))
    assert np.array_equal(onehot_to_codes(x, layout), reference_decode(x, layout))
    assert np.array_equal(onehot_to_codes(x, layout), codes)


@pytest.mark.parametrize("layout", ["N4L", "NL4"])
@pytest.mark.parametrize("value", [2.0, -1.0, 0.5, np.nan, "two ones", "one + 1e-9"])
def test_decoder_rejects_columns_that_are_not_one_hot(layout, value):
    codes = random_codes(np.random.default_rng(4), 3, 10)
    x = encode(codes, "N4L", "float32")
    if value == "two ones":
        x[1, :, 4] = [1, 1, 0, 0]
    elif value == "one + 1e-9":
        x[1, :, 4] = [1, 1e-9, 0, 0]
    else:
        x[1, 2, 4] = value
    if layout == "NL4":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    with pytest.raises(OneHotError, match="row 1 position 4 is not one-hot"):
        onehot_to_codes(x, layout)


def test_channel_axis_must_be_4():
    with pytest.raises(OneHotError, match="3 channels"):
        onehot_to_codes(np.zeros((2, 3, 10)), "N4L")


def test_round_trips():
    text = "ACGTNNacgtRY"
    codes = ascii_to_codes(text)
    assert codes_to_ascii(codes) == "ACGTNNACGTNN"
    assert np.array_equal(onehot_to_codes(codes_to_onehot(codes[None], "NL4"), "NL4")[0], codes)
    assert codes_to_ascii(reverse_complement(ascii_to_codes("AACGTN"))) == "NACGTT"
    import torch
    t = torch.from_numpy(ascii_to_codes("AACGTN")[None])
    assert codes_to_ascii(reverse_complement(t).numpy()[0]) == "NACGTT"
