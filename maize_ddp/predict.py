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
from pathlib import Path

import numpy as np
import torch

from maize_ddp import distributed, errors, models, progress
from maize_ddp.checkpoint import atomic_write, load
from maize_ddp.arguments import add_run_settings, positive_int
from maize_ddp.inputs import kind_of, npz_batches, open_rows, rows_with_ids, sequence_batches, split_holding
from maize_ddp.process_exit import exit_process
from maize_ddp.sequences import ALIGNMENTS
from maize_ddp.report import predict_batches, predictions_table
from maize_ddp.inference import (Predictor, output_name, probabilities, recorded_origin, target_columns, task_of,
                                 trained_align)

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


def write_predictions(fh, predictor: Predictor, batches, leading: tuple[str, ...], task: str,
                      num_targets: int, origin: dict | None = None) -> int:
    """Predict batch by batch, writing `leading` columns (the first is the id) and the
    predictions as each batch comes: the input is never held whole. Returns the row count."""
    header = "\t".join([*leading, *target_columns(output_name(task), origin, num_targets)])
    fh.write((header + "\n").encode())
    n = 0
    for rows, pred in predictor.batches(progress.bar(batches, desc="predicting", unit="batches")):
        if task == "classification":
            pred = probabilities(pred)
        fh.write("".join("\t".join(map(str, row)) + "\t" + "\t".join(f"{v:.9g}" for v in p) + "\n"
                         for row, p in zip(rows, pred)).encode())
        n += len(rows)
    return n


def predict_store(predictor: Predictor, data: str, split: str, batch_size: int, task: str,
                  shape: tuple[int, int], origin: dict | None = None) -> str:
    from maize_ddp.data import make_loader, open_store, read_ids

    info = open_store(data)
    info.check(split=split, seq_len=shape[0], num_targets=shape[1])
    loader = make_loader(data, split, batch_size=batch_size, train=False)
    _, (rows, y, pred) = predict_batches(predictor, loader, keep=True, show=True)
    loader.close()
    order = np.argsort(rows)
    rows, y, pred = rows[order], y[order], pred[order]
    if task == "classification":
        pred = probabilities(pred)
    return predictions_table(read_ids(info, split)[rows], rows, y, pred, output_name(task), origin)


def chosen_rows(a, seq_len: int, align: str | None) -> list:
    """--ids: ([(id,)] * B, codes [B, L]) batches of those rows, in the order asked."""
    source = open_rows(a.data, a.split, seq_len, seq_col=a.seq_col, id_col=a.id_col, align=a.align or align)
    ids, codes = rows_with_ids(source, a.ids)
    return [([(i,) for i in ids[k:k + a.batch_size]], torch.from_numpy(codes[k:k + a.batch_size]))
            for k in range(0, len(ids), a.batch_size)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, type=Path,
                   help="a .zarr/.wds store, a folder of .npz shards, a sequence table (TSV/CSV) or a FASTA file")
    p.add_argument("--split", help="split of a store (default: test; for --ids, the split that holds them; "
                                   "ignored otherwise)")
    p.add_argument("--out", required=True, type=Path, help="predictions TSV (a new file; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists and is a predictions table (never a checkpoint)")
    p.add_argument("--seq-col", help="a table's sequence column")
    p.add_argument("--id-col", help="a table's id column (default <file name>:<row>)")
    p.add_argument("--align", choices=ALIGNMENTS,
                   help="pad with N or trim sequences to the model's length, keeping this part in place "
                        "(default: as the run's table_to_npz did, else lengths must match)")
    p.add_argument("--ids", nargs="+", metavar="ID",
                   help="only the rows of these ids, in this order; default: every row")
    p.add_argument("--batch-size", type=positive_int, default=128, help="rows per forward pass (default 128)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_run_settings(p)
    a = p.parse_args(argv)
    return errors.run_main(lambda: predict(a))


def predict(a) -> str:
    """The command's work: predictions for --data written to --out (temp file, then rename)."""
    check_out(a.out, a.overwrite, a.data)
    a.split = a.split or (split_holding(a.data, a.ids) if a.ids else "test")
    device = distributed.pick_device(a.device, 0)
    state = load(a.checkpoint)
    predictor = Predictor.of_checkpoint(state, device, a.checkpoint, a.trust_model_code, a.amp, a.rc_average)
    task, (seq_len, num_targets) = task_of(state), models.io_shape(state)
    origin = recorded_origin(state)  # the run's data: its targets' names
    if a.ids:
        batches, leading = chosen_rows(a, seq_len, trained_align(state)), ("id",)

        def write(fh) -> int:
            return write_predictions(fh, predictor, batches, leading, task, num_targets, origin)
    elif kind_of(a.data) == "store":
        text = predict_store(predictor, str(a.data), a.split, a.batch_size, task, (seq_len, num_targets), origin)

        def write(fh) -> int:
            fh.write(text.encode())
            return text.count("\n") - 1
    else:
        if kind_of(a.data) == "npz":
            batches, leading = npz_batches(a.data, seq_len, a.batch_size), ("id", "file", "row")
        else:
            batches = sequence_batches(a.data, seq_len, a.batch_size, seq_col=a.seq_col, id_col=a.id_col,
                                       align=a.align or trained_align(state))
            leading = ("id",)

        def write(fh) -> int:
            return write_predictions(fh, predictor, batches, leading, task, num_targets, origin)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write(a.out, lambda fh: written.append(write(fh)))
    return f"wrote {written[0]} predictions to {a.out}"


if __name__ == "__main__":
    exit_process(main())
