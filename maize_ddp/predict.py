"""Predict with a trained model on a store split or on a folder of npz shards.

    python -m maize_ddp.predict RUN_DIR|CKPT --data DATA.zarr|DATA.wds [--split test] --out preds.tsv
    python -m maize_ddp.predict RUN_DIR|CKPT --data NPZ_FOLDER --out preds.tsv

Npz shards are read one at a time (arr_0 one-hot as [N,4,L] or [N,L,4]); labels are not needed.
--out is a new file: an existing one is replaced only with --overwrite, and only when it is a
predictions table (never a checkpoint, a folder or any other file).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

from maize_ddp import distributed, errors
from maize_ddp.checkpoint import atomic_write_text, load
from maize_ddp.codes import OneHotError, onehot_to_codes
from maize_ddp.npz_shards import onehot_layout
from maize_ddp.store_format import StoreError, check_ids
from maize_ddp.evaluate import (add_run_settings, forward, model_from_checkpoint, positive_int, predict_batches,
                                predictions_table, run_settings)

HEADERS = ("id\t", "row\t", "file\trow\t")  # how a predictions table starts (now, and before row ids)


class PredictError(errors.Error, ValueError):
    pass


def check_out(out: Path, overwrite: bool) -> None:
    """--out may be replaced only when asked and only when it is a predictions table: a typo
    must not turn a checkpoint, or anything else, into a TSV."""
    if out.is_dir():
        raise PredictError(f"{out}: is a folder; --out is the predictions file to write")
    if out.suffix == ".pt" or out.parent.name == "checkpoints":
        raise PredictError(f"{out}: looks like a checkpoint (.pt, or inside checkpoints/); choose another --out")
    if not out.exists():
        return
    if not overwrite:
        raise PredictError(f"{out}: exists; pass --overwrite to replace it")
    try:
        with open(out, "rb") as fh:
            head = fh.read(64).decode("utf-8", "replace")
    except OSError as e:
        raise errors.file_error(e, out, "cannot read") from None
    if not head.startswith(HEADERS):
        raise PredictError(f"{out}: is not a predictions table; not replacing it")


def npz_batches(folder: Path, seq_len: int, batch_size: int):
    """Yield (file name, first row, ids [B], codes [B, L]) from every .npz under `folder`, in
    sorted order; a shard's ids are its `ids` member, else `<file>:<row>` as the converters name them."""
    files = sorted(f for f in folder.rglob("*.npz") if not f.name.startswith("._"))  # not macOS metadata
    if not files:
        raise PredictError(f"{folder}: no .npz files found")
    for f in files:
        try:
            with np.load(f) as z:
                x = z["arr_0"]
                ids = check_ids(z["ids"], f) if "ids" in z.files else None
        except StoreError as e:
            raise PredictError(str(e)) from None
        except Exception as e:
            raise PredictError(f"{f}: cannot read arr_0 or ids ({type(e).__name__}: {e})") from None
        layout = onehot_layout(x.shape)
        if layout is None:
            raise PredictError(f"{f}: arr_0 has shape {list(x.shape)}; expected one-hot [N, 4, L] or [N, L, 4]")
        try:
            codes = onehot_to_codes(x, layout)
        except OneHotError as e:
            raise PredictError(f"{f}: {e}") from None
        if codes.shape[1] != seq_len:
            raise PredictError(f"{f}: sequences are {codes.shape[1]} bp but the model was built for {seq_len}")
        name = f.relative_to(folder)
        if ids is None:
            ids = np.array([f"{name}:{row}" for row in range(len(codes))])
        if ids.shape != (len(codes),):
            raise PredictError(f"{f}: ids has shape {list(ids.shape)} for {len(codes)} rows")
        for start in range(0, len(codes), batch_size):
            yield name, start, ids[start:start + batch_size], torch.from_numpy(codes[start:start + batch_size])


@torch.no_grad()
def predict_npz(model, folder: Path, device, batch_size: int, amp: str, rc_average: bool) -> str:
    model.eval()
    t = model.config.num_targets
    header = "id\tfile\trow\t" + ("predicted" if t == 1 else "\t".join(f"predicted_{i}" for i in range(t)))
    buf = io.StringIO()
    buf.write(header + "\n")
    for name, start, ids, codes in npz_batches(folder, model.config.seq_len, batch_size):
        pred = forward(model, codes.to(device), amp, rc_average).cpu().numpy()
        for i, (row_id, p) in enumerate(zip(ids.tolist(), pred)):
            buf.write(f"{row_id}\t{name}\t{start + i}\t" + "\t".join(f"{v:.9g}" for v in p) + "\n")
    return buf.getvalue()


def predict_store(model, data: str, split: str, device, batch_size: int, amp: str, rc_average: bool) -> str:
    from maize_ddp.data import make_loader, open_store, read_ids

    mc = model.config
    info = open_store(data)
    info.check(split=split, seq_len=mc.seq_len, num_targets=mc.num_targets)
    loader = make_loader(data, split, batch_size=batch_size, train=False)
    _, (rows, y, pred) = predict_batches(model, loader, device, amp, rc_average, keep=True)
    loader.close()
    order = np.argsort(rows)
    rows, y, pred = rows[order], y[order], pred[order]
    return predictions_table(read_ids(info, split)[rows], rows, y, pred)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, type=Path, help="a .zarr/.wds store or a folder of .npz shards")
    p.add_argument("--split", default="test", help="split of a store (default: test; ignored for npz folders)")
    p.add_argument("--out", required=True, type=Path, help="predictions TSV (a new file; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists and is a predictions table (never a checkpoint)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    add_run_settings(p)
    a = p.parse_args(argv)
    from maize_ddp.data import StoreError

    try:
        check_out(a.out, a.overwrite)
        device = distributed.pick_device(a.device, 0)
        state = load(a.checkpoint)
        model = model_from_checkpoint(state, device)
        amp, rc_average = run_settings(state, a.amp, a.rc_average, device)
        is_store = (a.data / "zarr.json").exists() or (a.data / "manifest.json").exists()
        if is_store:
            text = predict_store(model, str(a.data), a.split, device, a.batch_size, amp, rc_average)
        elif a.data.is_dir():
            text = predict_npz(model, a.data, device, a.batch_size, amp, rc_average)
        else:
            raise PredictError(f"{a.data}: neither a store nor a folder of .npz shards")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.out, text)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (errors.Error, StoreError, OSError) as e:
        print(f"error: {errors.describe(e)}", file=sys.stderr)
        return 1
    print(f"wrote {len(text.splitlines()) - 1} predictions to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
