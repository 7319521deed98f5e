"""Test stores for the data layer, built with the real converters from npz shards.

Rows are synthetic and self-identifying: label 0 of row i is i, so any batch can be checked
against the source. write_wds_with_webdataset writes tars the converter does not produce
(webdataset's own writer, pax headers, extra members) to test the reader on them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maize_ddp.npz_shards import shard_path, write_shard
from maize_ddp.store_format import FORMAT, record_file


def make_rows(n: int, seq_len: int = 40, num_targets: int = 2, seed: int = 0):
    """codes uint8 [n, L] (about 1/5 N), labels float32 [n, T] with y[:, 0] = row index."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 5, size=(n, seq_len), dtype=np.uint8)
    y = rng.normal(size=(n, num_targets)).astype(np.float32)
    y[:, 0] = np.arange(n)
    return codes, y


def write_npz_source(src, splits: dict, *, shard_rows: int = 30) -> Path:
    """The seed layout (maize_ddp.npz_shards): SRC/{split}/{split}-00000.npz, arr_0 one-hot, arr_1 [n, T]."""
    src = Path(src)
    for name, (codes, y) in splits.items():
        for k, first in enumerate(range(0, len(codes), shard_rows)):
            rows = slice(first, first + shard_rows)
            write_shard(shard_path(src, name, k), codes[rows], y[rows], compress=False)
    return src


def build_zarr(src, dst, **options) -> Path:
    from convert.npz_to_zarr import convert

    convert(src, dst, **options)
    return Path(dst)


def build_wds(src, dst, **options) -> Path:
    from convert.npz_to_wds import convert

    convert(src, dst, **options)
    return Path(dst)


def _stats(y):
    y64 = y.astype(np.float64)
    return {"n": len(y), "label_mean": y64.mean(0).tolist(), "label_std": y64.std(0).tolist()}


def write_wds_with_webdataset(path, splits: dict, *, shard_samples: int = 16, note_every: int = 0) -> Path:
    """A WebDataset store by docs/FORMATS.md, written by webdataset's own TarWriter (pax headers
    before every member). note_every=k adds a KEY.txt member to every k-th sample, as real
    datasets carry extra fields: the members are then no longer equally spaced."""
    import webdataset

    path = Path(path)
    path.mkdir(parents=True)
    codes0, y0 = next(iter(splits.values()))
    manifest = {"format": FORMAT, "alphabet": "ACGTN", "seq_len": codes0.shape[1],
                "num_targets": y0.shape[1], "splits": {}, "sources": []}
    for name, (codes, y) in splits.items():
        (path / name).mkdir()
        shards = []
        for k, first in enumerate(range(0, len(codes), shard_samples)):
            rel = f"{name}/{name}-{k:06d}.tar"
            rows = range(first, min(first + shard_samples, len(codes)))
            with webdataset.TarWriter(str(path / rel)) as tar:
                for row in rows:
                    sample = {"__key__": f"{row:010d}", "seq.npy": codes[row], "y.npy": y[row]}
                    if note_every and row % note_every == 0:
                        sample["txt"] = f"row {row}"
                    tar.write(sample)
            shards.append({"path": rel, "n": len(rows), "first_row": first, **record_file(path, rel).to_dict()})
        (path / name / "ids.txt").write_text("".join(f"{name}-row-{row}\n" for row in range(len(codes))))
        ids = record_file(path, f"{name}/ids.txt").to_dict()
        manifest["splits"][name] = {**_stats(y), "shards": shards, "ids": ids}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
