"""Augmentations on uint8 codes: exact reverse complement, shifts padded with N, seeded."""
import numpy as np

from maize_ddp.codes import N_CODE, ascii_to_codes, codes_to_ascii
from maize_ddp.data.augment import augment, batch_rng, random_reverse_complement, random_shift, shift


def test_shift_moves_bases_and_pads_with_n():
    codes = np.stack([ascii_to_codes("ACGTACGTNA")] * 3)
    out = shift(codes, np.array([2, -3, 0]))
    assert [codes_to_ascii(r) for r in out] == ["NNACGTACGT", "TACGTNANNN", "ACGTACGTNA"]
    assert out.dtype == np.uint8


def test_random_shift_stays_within_bounds():
    codes = np.random.default_rng(0).integers(0, 4, size=(500, 50), dtype=np.uint8)
    out = random_shift(codes, 4, np.random.default_rng(1))
    for got, row in zip(out, codes):
        matches = [s for s in range(-4, 5) if np.array_equal(got, shift(row[None], np.array([s]))[0])]
        assert len(matches) == 1
    pads = (out == N_CODE).sum(1)
    assert pads.max() == 4 and (pads == 0).any()


def test_random_reverse_complement_flips_about_half():
    codes = np.random.default_rng(0).integers(0, 5, size=(1000, 30), dtype=np.uint8)
    out = random_reverse_complement(codes, np.random.default_rng(2))
    flipped = np.array([np.array_equal(o, codes_to_rc(c)) for o, c in zip(out, codes)])
    kept = np.array([np.array_equal(o, c) for o, c in zip(out, codes)])
    assert (flipped | kept).all() and 400 < flipped.sum() < 600
    assert codes_to_ascii(codes_to_rc(ascii_to_codes("AACGTN"))) == "NACGTT"


def codes_to_rc(row):
    from maize_ddp.codes import reverse_complement
    return reverse_complement(row)


def test_augment_is_a_function_of_seed_epoch_rank_batch():
    codes = np.random.default_rng(0).integers(0, 4, size=(64, 40), dtype=np.uint8)
    def run(*key):
        return augment(codes, batch_rng(*key), reverse_complement=True, max_shift=3)
    assert np.array_equal(run(0, 1, 0, 5), run(0, 1, 0, 5))
    for other in [(1, 1, 0, 5), (0, 2, 0, 5), (0, 1, 1, 5), (0, 1, 0, 6)]:
        assert not np.array_equal(run(0, 1, 0, 5), run(*other))
    assert np.array_equal(augment(codes, batch_rng(0, 0, 0, 0), reverse_complement=False, max_shift=0), codes)
