"""Predict with a trained model on a store split, a folder of npz shards, a sequence table or FASTA.

    python -m maize_ddp.predict RUN_DIR|CKPT --data DATA.zarr|DATA.wds [--split test] --out preds.tsv
    python -m maize_ddp.predict RUN_DIR|CKPT --data NPZ_FOLDER --out preds.tsv
    python -m maize_ddp.predict RUN_DIR|CKPT --data seqs.tsv --seq-col sequence --id-col name --out preds.tsv
    python -m maize_ddp.predict RUN_DIR|CKPT --data seqs.fa --out preds.tsv
    python -m maize_ddp.predict RUN_DIR|CKPT --data DATA.zarr --ids AT1G01010 AT1G01020 --out preds.tsv

Npz shards are read one at a time (arr_0 one-hot as [N,4,L] or [N,L,4], or base codes [N,L]);
tables and FASTA are streamed (maize_ddp.sequences) in batches, and predictions are written in
input order as they come; labels are not needed. Every table starts with the row's id. A
classification run's column is `probability` (of class 1, the sigmoid of the model's logit).
--out is a new file: an existing one is replaced only with --overwrite, and only when it is a
predictions table (never a checkpoint, a folder or any other file). --ids predicts only the rows
of those ids, in the order given (columns: id and the predictions), from any kind of input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from maize_ddp import distributed, errors, models, progress
from maize_ddp.checkpoint import atomic_write, load
from maize_ddp.codes import OneHotError, arr0_to_codes
from maize_ddp.id_hashes import IdHashes
from maize_ddp.npz_shards import arr0_layout
from maize_ddp.sequences import ALIGNMENTS, fit_length, length_problem, read_records, sequence_problem, to_codes
from maize_ddp.store_format import StoreError, check_ids
from maize_ddp.evaluate import (add_run_settings, forward, model_from_checkpoint, output_name, positive_int,
                                predict_batches, predictions_table, probabilities, run_settings, task_of)

HEADERS = ("id\t", "row\t", "file\trow\t")  # how a predictions table starts (now, and before row ids)


class PredictError(errors.Error, ValueError):
    pass


def check_out(out: Path, overwrite: bool, data: Path | None = None) -> None:
    """--out may be replaced only when asked and only when it is a predictions table of predict's
    own: a typo must not turn a checkpoint, the input, or a run's report into another table."""
    if out.is_dir():
        raise PredictError(f"{out}: is a folder; --out is the predictions file to write")
    if out.suffix == ".pt" or out.parent.name == "checkpoints":
        raise PredictError(f"{out}: looks like a checkpoint (.pt, or inside checkpoints/); choose another --out")
    if data is not None and out.exists() and out.resolve() == data.resolve():
        raise PredictError(f"{out}: is the input (--data); choose another --out")
    split, _, rest = out.name.partition("_predictions")
    if rest == ".tsv" and (out.parent / f"{split}_metrics.json").exists():
        raise PredictError(f"{out}: is part of a report (beside {split}_metrics.json, which it must match); "
                           "choose another --out")
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
    """Yield ([(id, file name, row)] * B, codes [B, L]) from every .npz under `folder`, in sorted
    order; a shard's ids are its `ids` member, else `<file>:<row>` as the converters name them."""
    files = sorted(f for f in folder.rglob("*.npz") if not f.name.startswith("._"))  # not macOS metadata
    if not files:
        raise PredictError(f"{folder}: no .npz files found")
    seen = IdHashes()
    for f in files:
        try:
            with np.load(f) as z:
                x = z["arr_0"]
                ids = check_ids(z["ids"], f) if "ids" in z.files else None
        except StoreError as e:
            raise PredictError(str(e)) from None
        except Exception as e:
            raise PredictError(f"{f}: cannot read arr_0 or ids ({type(e).__name__}: {e})") from None
        layout = arr0_layout(x.shape, x.dtype)
        if layout is None:
            raise PredictError(f"{f}: arr_0 is {x.dtype}{list(x.shape)}; expected one-hot [N, 4, L] or "
                               "[N, L, 4], or uint8 base codes [N, L]")
        try:
            codes = arr0_to_codes(x, layout)
        except OneHotError as e:
            raise PredictError(f"{f}: {e}") from None
        if codes.shape[1] != seq_len:
            raise PredictError(f"{f}: sequences are {codes.shape[1]} bp but the model was built for {seq_len}")
        name = f.relative_to(folder)
        if ids is None:
            ids = np.array([f"{name}:{row}" for row in range(len(codes))])
        if ids.shape != (len(codes),):
            raise PredictError(f"{f}: ids has shape {list(ids.shape)} for {len(codes)} rows")
        repeats = seen.add(ids.tolist())  # unique within a shard already: across shards too
        if repeats.any():
            raise PredictError(f"{f}: id {str(ids[np.argmax(repeats)])!r} is also the id of a row in an "
                               "earlier shard; ids must be unique")
        for start in range(0, len(codes), batch_size):
            rows = [(i, str(name), start + k) for k, i in enumerate(ids[start:start + batch_size].tolist())]
            yield rows, torch.from_numpy(codes[start:start + batch_size])


def check_sequence_file(path: Path) -> None:
    """A file given as --data must be a sequence table or FASTA, not a piece of another input."""
    if path.suffix == ".npz":
        raise PredictError(f"{path}: an npz shard; pass the folder that holds the shards")
    if path.name in ("zarr.json", "manifest.json"):
        raise PredictError(f"{path}: a store's metadata; pass the store folder, {path.parent}")


def sequence_batches(path: Path, seq_len: int, batch_size: int, *, seq_col=None, id_col=None, align=None):
    """Yield ([(id,)] * B, codes [B, L]) from a sequence table or FASTA, in file order. A bad
    sequence, a repeated id, (without --align) a length other than the model's, or no sequence
    at all is an error naming the file and the row."""
    check_sequence_file(path)
    seen = IdHashes()

    def checked(batch: list[np.ndarray], ids: list[str], wheres: list[str]):
        repeats = seen.add(ids)  # a batch at a time: per id it would cost 20x more
        if repeats.any():
            k = int(np.argmax(repeats))
            raise PredictError(f"{wheres[k]}: id {ids[k]!r} appears on an earlier row; ids must be unique")
        return [(i,) for i in ids], torch.from_numpy(np.stack(batch))

    batch, ids, wheres, rows = [], [], [], 0
    try:
        for record in read_records(path, seq_col=seq_col, id_col=id_col):
            problem = sequence_problem(record)
            if problem:
                raise PredictError(f"{record.where}: {problem}")
            codes = to_codes(record.seq)
            if align:
                codes = fit_length(codes, seq_len, align)
            elif len(codes) != seq_len:
                raise PredictError(length_problem(record, len(codes), seq_len, "the model was built for",
                                                  "pass --align left|right|centre to pad with N or trim"))
            batch.append(codes)
            ids.append(record.id)
            wheres.append(record.where)
            rows += 1
            if len(batch) == batch_size:
                yield checked(batch, ids, wheres)
                batch, ids, wheres = [], [], []
        if batch:
            yield checked(batch, ids, wheres)
    except errors.Error as e:
        raise PredictError(str(e)) from None
    if rows == 0:
        raise PredictError(f"{path}: no sequences (only a header, or an empty file)")


@torch.no_grad()
def write_predictions(fh, model, batches, leading: tuple[str, ...], device, amp: str, rc_average: bool,
                      task: str, num_targets: int) -> int:
    """Predict batch by batch, writing `leading` columns (the first is the id) and the
    predictions as each batch comes: the input is never held whole. Returns the row count."""
    model.eval()
    t = num_targets
    name = output_name(task)
    header = "\t".join(leading) + "\t" + (name if t == 1 else "\t".join(f"{name}_{i}" for i in range(t)))
    fh.write((header + "\n").encode())
    n = 0
    for rows, codes in progress.bar(batches, desc="predicting", unit="batches"):
        pred = forward(model, codes.to(device, non_blocking=True), amp, rc_average).cpu().numpy()
        if task == "classification":
            pred = probabilities(pred)
        fh.write("".join("\t".join(map(str, row)) + "\t" + "\t".join(f"{v:.9g}" for v in p) + "\n"
                         for row, p in zip(rows, pred)).encode())
        n += len(rows)
    return n


def predict_store(model, data: str, split: str, device, batch_size: int, amp: str, rc_average: bool,
                  task: str, shape: tuple[int, int]) -> str:
    from maize_ddp.data import make_loader, open_store, read_ids

    info = open_store(data)
    info.check(split=split, seq_len=shape[0], num_targets=shape[1])
    loader = make_loader(data, split, batch_size=batch_size, train=False)
    _, (rows, y, pred) = predict_batches(model, loader, device, amp, rc_average, keep=True, show=True)
    loader.close()
    order = np.argsort(rows)
    rows, y, pred = rows[order], y[order], pred[order]
    if task == "classification":
        pred = probabilities(pred)
    return predictions_table(read_ids(info, split)[rows], rows, y, pred, output_name(task))


def chosen_rows(a, seq_len: int, align: str | None) -> list:
    """--ids: ([(id,)] * B, codes [B, L]) batches of those rows, in the order asked."""
    from maize_ddp.interpret_input import InputError, open_rows, rows_with_ids

    try:
        source = open_rows(a.data, a.split, seq_len, seq_col=a.seq_col, id_col=a.id_col, align=a.align or align)
        ids, codes = rows_with_ids(source, a.ids)
    except InputError as e:
        raise PredictError(str(e)) from None
    return [([(i,) for i in ids[k:k + a.batch_size]], torch.from_numpy(codes[k:k + a.batch_size]))
            for k in range(0, len(ids), a.batch_size)]


def trained_align(state: dict) -> str | None:
    """How the run's training sequences were fitted to length (convert.table_to_npz --align),
    when its store recorded it: predictions then see sequences fitted the same way."""
    origin = (state.get("store") or {}).get("origin") or {}
    return (origin.get("settings") or {}).get("align")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, type=Path,
                   help="a .zarr/.wds store, a folder of .npz shards, a sequence table (TSV/CSV) or a FASTA file")
    p.add_argument("--split", default="test", help="split of a store (default: test; ignored otherwise)")
    p.add_argument("--out", required=True, type=Path, help="predictions TSV (a new file; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists and is a predictions table (never a checkpoint)")
    p.add_argument("--seq-col", help="a table's sequence column")
    p.add_argument("--id-col", help="a table's id column (default <file name>:<row>)")
    p.add_argument("--align", choices=ALIGNMENTS,
                   help="pad with N or trim sequences to the model's length, keeping this part in place "
                        "(default: as the run's table_to_npz did, else lengths must match)")
    p.add_argument("--ids", nargs="+", metavar="ID",
                   help="only the rows of these ids, in this order (from --split of a store); default: every row")
    p.add_argument("--batch-size", type=positive_int, default=128, help="rows per forward pass (default 128)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_run_settings(p)
    a = p.parse_args(argv)
    return errors.run_main(lambda: predict(a))


def predict(a) -> str:
    """The command's work: predictions for --data written to --out (temp file, then rename)."""
    check_out(a.out, a.overwrite, a.data)
    device = distributed.pick_device(a.device, 0)
    state = load(a.checkpoint)
    model = model_from_checkpoint(state, device, a.checkpoint, a.trust_model_code)
    amp, rc_average = run_settings(state, a.amp, a.rc_average, device)
    task, (seq_len, num_targets) = task_of(state), models.io_shape(state)
    if a.ids:
        batches, leading = chosen_rows(a, seq_len, trained_align(state)), ("id",)

        def write(fh) -> int:
            return write_predictions(fh, model, batches, leading, device, amp, rc_average, task, num_targets)
    elif (a.data / "zarr.json").exists() or (a.data / "manifest.json").exists():
        text = predict_store(model, str(a.data), a.split, device, a.batch_size, amp, rc_average, task,
                             (seq_len, num_targets))

        def write(fh) -> int:
            fh.write(text.encode())
            return text.count("\n") - 1
    else:
        if a.data.is_dir():
            batches, leading = npz_batches(a.data, seq_len, a.batch_size), ("id", "file", "row")
        elif a.data.is_file():
            batches = sequence_batches(a.data, seq_len, a.batch_size, seq_col=a.seq_col, id_col=a.id_col,
                                       align=a.align or trained_align(state))
            leading = ("id",)
        else:
            raise PredictError(f"{a.data}: no such store, folder or file")

        def write(fh) -> int:
            return write_predictions(fh, model, batches, leading, device, amp, rc_average, task, num_targets)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write(a.out, lambda fh: written.append(write(fh)))
    return f"wrote {written[0]} predictions to {a.out}"


if __name__ == "__main__":
    sys.exit(main())
