"""Synthetic promoter dataset in the seed's npz layout, with a known noise ceiling.

    python -m convert.synth OUT [--train 4000 --val 500 --test 500 --seq-len 3020 ...]

Each sequence is background DNA of its own GC content with plant-like cis-elements planted
around a TSS (placed as in the classic window: 1000 bp into 3020, i.e. a third of the way in).
The label of target t is

    f_t(x) = sum_m w_tm * feature_m(x)   standardised to mean 0, variance 1
    y_t    = f_t(x) + Normal(0, noise_sd^2)

where the features are read back from the final sequence (so chance motif hits count too):
    TATA-box   TATAWA      strength falls off as a Gaussian of its distance to TSS-30
    CAAT-box   CCAAT       counted in [TSS-120, TSS-60]
    G-box      CACGTG      count upstream of the TSS (saturating at 3)
    ABRE       ACGTGKC     count upstream of the TSS (saturating at 3)
    W-box      TTGACY      count anywhere (a repressor: negative weight)
    GC content             of the whole window, z-scored
    G-box x ABRE           both present: a synergy term
The best possible test Pearson r is then sd(f)/sqrt(sd(f)^2 + noise_sd^2) = 1/sqrt(1 + noise_sd^2),
recorded per target in OUT/truth.json with the weights. Shards are generated one at a time from
seeds (seed, split, shard), so memory does not depend on the dataset's size.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from maize_ddp.codes import ascii_to_codes
from maize_ddp.npz_shards import shard_path, write_shard

from maize_ddp.outputs import atomic_output_dir
from maize_ddp.process_exit import exit_process

from .output import run_command
from .shards import ConvertError

MOTIFS = {  # name: (IUPAC consensus, weight for target 0)
    "tata": ("TATAWA", 1.0),
    "caat": ("CCAAT", 0.4),
    "gbox": ("CACGTG", 0.5),
    "abre": ("ACGTGKC", 0.4),
    "wbox": ("TTGACY", -0.5),
}
FEATURES = ["tata", "caat", "gbox", "abre", "wbox", "gc", "gbox_x_abre"]
BASE_WEIGHTS = np.array([1.0, 0.4, 0.5, 0.4, -0.5, 0.3, 0.6])
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "W": "AT", "K": "GT", "Y": "CT"}
SPLITS = ("train", "val", "test")
CALIBRATION_ROWS = 4096
# ALLOWED[symbol][code]: does this base match the IUPAC symbol (lookup beats np.isin tenfold)
ALLOWED = {s: np.isin(np.arange(5), ascii_to_codes(b)) for s, b in IUPAC.items()}
CHOICES = {s: ascii_to_codes(b) for s, b in IUPAC.items()}


def tss_position(seq_len: int) -> int:
    return max(40, round(seq_len * 1000 / 3020))


def motif_hits(codes: np.ndarray, consensus: str) -> np.ndarray:
    """Boolean [N, L-k+1]: the motif starts at this position."""
    n, length = codes.shape
    k = len(consensus)
    hits = np.ones((n, length - k + 1), dtype=bool)
    for j, symbol in enumerate(consensus):
        hits &= ALLOWED[symbol][codes[:, j:length - k + 1 + j]]
    return hits


def features(codes: np.ndarray) -> np.ndarray:
    """Feature matrix [N, len(FEATURES)] read from the sequences."""
    length = codes.shape[1]
    tss = tss_position(length)
    positions = np.arange(length)

    def count(name, lo, hi, cap=None):
        hits = motif_hits(codes, MOTIFS[name][0])
        lo, hi = max(lo, 0), min(hi, hits.shape[1])
        c = hits[:, lo:hi].sum(1).astype(np.float64)
        return np.minimum(c, cap) if cap else c

    tata_hits = motif_hits(codes, MOTIFS["tata"][0])
    strength = np.exp(-0.5 * ((positions[: tata_hits.shape[1]] - (tss - 30)) / 8.0) ** 2)
    tata = (tata_hits * strength).max(1)
    caat = count("caat", tss - 120, tss - 60, cap=2)
    gbox = count("gbox", 0, tss, cap=3)
    abre = count("abre", 0, tss, cap=3)
    wbox = count("wbox", 0, length, cap=3)
    gc = ((codes == 1) | (codes == 2)).mean(1)
    gc = (gc - 0.36) / 0.05
    synergy = ((gbox > 0) & (abre > 0)).astype(np.float64)
    return np.stack([tata, caat, gbox, abre, wbox, gc, synergy], axis=1)


def sample_motif(consensus: str, rng) -> np.ndarray:
    picks = rng.integers(0, 6, size=len(consensus))
    return np.array([CHOICES[s][i % len(CHOICES[s])] for s, i in zip(consensus, picks)], dtype=np.uint8)


def sample_sequences(n: int, length: int, rng) -> np.ndarray:
    """Background of per-sequence GC content, with motifs planted at random."""
    gc = np.clip(rng.normal(0.36, 0.05, size=(n, 1)), 0.2, 0.6)
    u = rng.random((n, length))
    # A/T split the AT share equally, C/G the GC share.
    codes = np.where(u < gc, np.where(u < gc / 2, 1, 2), np.where(u < gc + (1 - gc) / 2, 0, 3)).astype(np.uint8)
    tss = tss_position(length)
    for i in range(n):
        if rng.random() < 0.5:  # a TATA box near its optimum
            pos = int(np.clip(tss - 30 + rng.integers(-12, 13), 0, length - 6))
            codes[i, pos:pos + 6] = sample_motif("TATAWA", rng)
        for name, p, lo, hi in (("caat", 0.4, tss - 120, tss - 60), ("gbox", 0.5, 0, tss),
                                ("abre", 0.5, 0, tss), ("wbox", 0.4, 0, length)):
            consensus = MOTIFS[name][0]
            for _ in range(rng.integers(1, 3) if rng.random() < p else 0):
                lo_ok, hi_ok = max(lo, 0), max(min(hi, length) - len(consensus), max(lo, 0) + 1)
                pos = int(rng.integers(lo_ok, hi_ok))
                codes[i, pos:pos + len(consensus)] = sample_motif(consensus, rng)
    return codes


def target_weights(num_targets: int, seed: int) -> np.ndarray:
    """[T, F]: target 0 uses the base weights; further targets (tissues) rescale them."""
    rng = np.random.default_rng([seed, 7])
    w = np.tile(BASE_WEIGHTS, (num_targets, 1))
    if num_targets > 1:
        w[1:] *= rng.uniform(0.2, 1.8, size=(num_targets - 1, len(BASE_WEIGHTS)))
    return w


def calibrate(weights: np.ndarray, seq_len: int, seed: int):
    """Mean and sd of each target's signal, estimated once on a fixed sample."""
    rng = np.random.default_rng([seed, 99])
    signal = features(sample_sequences(CALIBRATION_ROWS, seq_len, rng)) @ weights.T
    return signal.mean(0), signal.std(0)


def make_shard(n, seq_len, weights, mean, sd, noise_sd, seed_key):
    rng = np.random.default_rng(seed_key)
    codes = sample_sequences(n, seq_len, rng)
    signal = (features(codes) @ weights.T - mean) / sd
    y = signal + rng.normal(0.0, noise_sd, size=signal.shape)
    return codes, y.astype(np.float32), signal


def generate(out, *, train=4000, val=500, test=500, seq_len=3020, num_targets=1, shard_size=1000,
             noise_sd=0.5, layout="N4L", dtype="float32", seed=0, overwrite=False) -> dict:
    check_settings(train=train, val=val, test=test, seq_len=seq_len, num_targets=num_targets,
                   shard_size=shard_size, noise_sd=noise_sd, seed=seed)
    with atomic_output_dir(out, overwrite, kind="truth.json") as tmp:
        truth = _write(tmp, train, val, test, seq_len, num_targets, shard_size, noise_sd, layout, dtype, seed)
    return truth


def check_settings(**settings) -> None:
    """One line naming the flag for a setting out of range (before anything is written)."""
    lowest = {"train": 0, "val": 0, "test": 0, "num_targets": 1, "shard_size": 1, "noise_sd": 0, "seed": 0}
    for name, least in lowest.items():
        value = settings[name]
        if not (value >= least and math.isfinite(value)):  # `not >=`: NaN fails too
            raise ConvertError(f"--{name.replace('_', '-')} must be at least {least}, not {value}")
    if settings["seq_len"] < 50:
        raise ConvertError(f"--seq-len {settings['seq_len']} is too short: the motif grammar needs at least 50 bp")


def _write(tmp: Path, train, val, test, seq_len, num_targets, shard_size, noise_sd, layout, dtype, seed) -> dict:
    weights = target_weights(num_targets, seed)
    mean, sd = calibrate(weights, seq_len, seed)
    realised = {}
    for split_id, (split, n) in enumerate(zip(SPLITS, (train, val, test))):
        (tmp / split).mkdir()
        sig_y = []
        for shard_id, start in enumerate(range(0, n, shard_size)):
            rows = min(shard_size, n - start)
            codes, y, signal = make_shard(rows, seq_len, weights, mean, sd, noise_sd, [seed, split_id, shard_id])
            labels = y[:, 0] if num_targets == 1 else y
            ids = [f"synth_{split}_{row:07d}" for row in range(start, start + rows)]  # as gene ids are
            write_shard(shard_path(tmp, split, shard_id), codes, labels, ids, layout=layout, dtype=dtype)
            sig_y.append((signal, y))
        if n:
            signal = np.concatenate([s for s, _ in sig_y])
            y = np.concatenate([v for _, v in sig_y])
            realised[split] = [float(np.corrcoef(signal[:, t], y[:, t])[0, 1]) for t in range(num_targets)]
    truth = {
        "generator": "convert.synth",
        "seed": seed, "seq_len": seq_len, "num_targets": num_targets, "noise_sd": noise_sd,
        "tss_position": tss_position(seq_len),
        "sizes": {"train": train, "val": val, "test": test}, "layout": layout, "dtype": dtype,
        "features": FEATURES, "weights": weights.tolist(),
        "signal_mean": mean.tolist(), "signal_sd": sd.tolist(),
        # The population ceiling: no predictor can beat corr(f, f + noise) in expectation.
        "ceiling_pearson": [float(1 / np.sqrt(1 + noise_sd ** 2))] * num_targets,
        "realised_ceiling_pearson": realised,
    }
    (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")  # also marks the folder as ours
    return truth


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (train/ val/ test/ and truth.json)")
    p.add_argument("--train", type=int, default=4000, help="training rows (default 4000)")
    p.add_argument("--val", type=int, default=500, help="validation rows (default 500)")
    p.add_argument("--test", type=int, default=500, help="test rows (default 500)")
    p.add_argument("--seq-len", type=int, default=3020, help="bases per sequence (default 3020)")
    p.add_argument("--num-targets", type=int, default=1, help="labels per row (default 1)")
    p.add_argument("--shard-size", type=int, default=1000, help="rows per npz shard (default 1000)")
    p.add_argument("--noise-sd", type=float, default=0.5, help="label noise sd; the signal has sd 1 (default 0.5)")
    p.add_argument("--layout", choices=["N4L", "NL4"], default="N4L",
                   help="one-hot axis order of arr_0: N4L [N, 4, L] or NL4 [N, L, 4] (default N4L)")
    p.add_argument("--dtype", choices=["float32", "uint8", "bool"], default="float32",
                   help="dtype of the one-hot arr_0 (default float32, as the course lab's shards)")
    p.add_argument("--seed", type=int, default=0, help="seeds the motifs, sequences and noise (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier convert.synth dataset")
    a = p.parse_args(argv)

    def report(truth: dict) -> None:
        print(f"wrote {a.train}/{a.val}/{a.test} rows of {a.seq_len} bp to {a.out} "
              f"(noise ceiling r = {truth['ceiling_pearson'][0]:.3f})")
    return run_command(lambda: generate(a.out, train=a.train, val=a.val, test=a.test, seq_len=a.seq_len,
                                        num_targets=a.num_targets, shard_size=a.shard_size, noise_sd=a.noise_sd,
                                        layout=a.layout, dtype=a.dtype, seed=a.seed, overwrite=a.overwrite),
                       report)


if __name__ == "__main__":
    exit_process(main())
