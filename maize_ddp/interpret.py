"""Why does the model predict what it does? Attribution maps of chosen sequences.

    python -m maize_ddp.interpret RUN|CKPT --data STORE|NPZ_FOLDER|TABLE|FASTA [--split test]
        (--ids ID [ID ...] | --top N) --method ism|saliency|both --out DIR

ism: saturation in-silico mutagenesis, every non-N position x the 3 other bases, batched; the
reference predicted once. saliency: gradient x input. Both explain the prediction the run
reports (its precision; the reverse-complement average when the run used it), for --target.
--top N picks the N rows with the highest prediction. Writes, into DIR atomically:

    attributions.npz   ids [N], codes uint8 [N, L], prediction [N], and per method scores
                       float32 [N, 4, L] (`ism`, `saliency`) and importance [N, L]
    windows.tsv        id first: each sequence's --windows most important windows per method
    figures/K_ID.png   per sequence: importance along the window, landmarks, a logo zoom
    interpret.json     what was run (marks the folder as this command's output)

Under torchrun the sequences are split across ranks, each explained exactly once; rank 0 writes.
See docs/interpret.md.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maize_ddp import attribution, distributed, models, progress
from maize_ddp.checkpoint import checkpoint_file, load
from maize_ddp.codes import ALPHABET, codes_to_ascii
from maize_ddp.arguments import add_run_settings, count, positive_int
from maize_ddp.inference import Predictor, recorded_origin, trained_align
from maize_ddp.inputs import InputError, RowSource, open_rows, rows_with_ids, split_holding
from maize_ddp.origin import landmarks, target_index
from maize_ddp.process_exit import exit_process
from maize_ddp.sequences import ALIGNMENTS

GENERATOR = "maize_ddp.interpret"
MANIFEST = "interpret.json"


# ---------------------------------------------------------------- choosing the rows


def top_rows(d, predictor: Predictor, source: RowSource, top: int, target: int,
             batch_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The `top` rows with the highest prediction (ties: the earlier row). Each rank predicts
    every world_size-th row and keeps its own best; the candidates are gathered and merged."""
    kept_pred, kept_order, kept_ids, kept_codes = [], [], [], []
    at = 0
    for ids, codes in source.blocks():
        mine = np.arange(at, at + len(ids))
        mine = np.flatnonzero(mine % d.world_size == d.rank)
        chunks = ((rows, codes[rows]) for rows in np.array_split(mine, range(batch_size, len(mine), batch_size)) if len(rows))
        for rows, pred in predictor.batches(chunks):
            kept_pred.append(pred[:, target])
            kept_order.append(at + rows)
            kept_ids.append(ids[rows])
            kept_codes.append(codes[rows])
        at += len(ids)
        if kept_pred and sum(len(p) for p in kept_pred) > 4 * top + batch_size:  # memory stays ~top rows
            kept = _best(kept_pred, kept_order, kept_ids, kept_codes, top)
            kept_pred, kept_order, kept_ids, kept_codes = ([k] for k in kept)
    local = _best(kept_pred, kept_order, kept_ids, kept_codes, top)
    parts = distributed.all_gather_objects(d, local)
    pred, order, ids, codes = _best(*(list(x) for x in zip(*parts)), top)
    if at == 0:
        raise InputError(f"{source.where}: no rows")
    return [str(i) for i in ids], codes, pred


def _best(preds, orders, ids, codes, top):
    if not preds or not sum(len(p) for p in preds):
        return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, str), np.zeros((0, 0), np.uint8)
    pred, order = np.concatenate(preds), np.concatenate(orders)
    pick = np.lexsort((order, -pred))[:top]
    codes = np.concatenate([c for c in codes if len(c)])
    return pred[pick], order[pick], np.concatenate(ids)[pick], codes[pick]


# ---------------------------------------------------------------- explaining them


def explain(d, predictor: Predictor, codes: np.ndarray, methods, target, batch_size, seqs_per_step):
    """This rank's share of the rows (every world_size-th), explained: (rows, {method: scores},
    predictions). Gathered by the caller."""
    rows = np.arange(d.rank, len(codes), d.world_size)
    scores = {m: np.zeros((len(rows), 4, codes.shape[1]), np.float32) for m in methods}
    pred = np.zeros(len(rows), np.float32)
    done = progress.bar(total=len(rows), desc=f"explaining ({', '.join(methods)})", unit="seqs", enabled=d.is_main)
    for s in range(0, len(rows), seqs_per_step):
        x = torch.from_numpy(codes[rows[s:s + seqs_per_step]]).to(d.device)
        pred[s:s + len(x)] = predictor(x)[:, target].cpu().numpy()
        for m in methods:
            scores[m][s:s + len(x)] = attribution.compute(m, predictor, x, target, batch_size).cpu().numpy()
        done.update(len(x))
    done.close()
    return rows, scores, pred


def gather(d, n: int, local):
    """Every rank's share on rank 0, in row order; each row exactly once or an error."""
    parts = distributed.all_gather_objects(d, local)
    if not d.is_main:
        return None
    rows = np.concatenate([p[0] for p in parts])
    order = np.argsort(rows, kind="stable")
    if not np.array_equal(rows[order], np.arange(n)):
        raise RuntimeError("interpretation did not cover every sequence exactly once")
    scores = {m: np.concatenate([p[1][m] for p in parts])[order] for m in parts[0][1]}
    return scores, np.concatenate([p[2] for p in parts])[order]


# ---------------------------------------------------------------- writing


def windows_table(ids, codes, tracks: dict, marks: dict, width: int, count_: int) -> str:
    """id, method, rank, start, end (0-based, end exclusive), score (sum of importance),
    abs_score, from_tss (start - TSS, when known), sequence."""
    tss = marks.get("TSS")
    lines = ["id\tmethod\trank\tstart\tend\tscore\tabs_score\tfrom_tss\tsequence"]
    for i, row_id in enumerate(ids):
        for method, values in tracks.items():
            for k, (a, b, score) in enumerate(attribution.top_windows(values[i], width, count_), 1):
                seq = codes_to_ascii(codes[i, a:b])
                rel = "" if tss is None else str(a - tss)
                lines.append(f"{row_id}\t{method}\t{k}\t{a}\t{b}\t{score:.6g}\t"
                             f"{float(np.abs(values[i, a:b]).sum()):.6g}\t{rel}\t{seq}")
    return "\n".join(lines) + "\n"


def figure_name(k: int, row_id: str) -> str:
    return f"{k:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', row_id)[:80]}.png"


def write_output(tmp: Path, ids, codes, pred, scores, methods, marks, a, run_info: dict) -> None:
    from maize_ddp.attribution_plot import figure

    tracks = {m: attribution.importance(m, scores[m], codes) for m in methods}
    arrays = {"ids": np.asarray(ids, dtype=str), "codes": codes, "prediction": pred}
    for m in methods:
        arrays[m] = scores[m]
        arrays[f"{m}_importance"] = tracks[m].astype(np.float32)
    np.savez_compressed(tmp / "attributions.npz", **arrays)
    (tmp / "windows.tsv").write_text(windows_table(ids, codes, tracks, marks, a.window, a.windows))
    if a.figures:
        (tmp / "figures").mkdir()
        for k, row_id in enumerate(ids[:a.figures]):  # drawing takes longer than ISM on CPU: the first N
            best = attribution.top_windows(tracks[methods[0]][k], a.window, 1)
            figure(tmp / "figures" / figure_name(k, row_id), row_id, codes_to_ascii(codes[k]),
                   {m: tracks[m][k] for m in methods}, marks, best[0][:2] if best else None, float(pred[k]))
    (tmp / MANIFEST).write_text(json.dumps({"generator": GENERATOR, **run_info}, indent=2) + "\n")  # last


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maize_ddp.interpret", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a run folder (uses checkpoints/best.pt) or a .pt file")
    p.add_argument("--data", required=True, type=Path,
                   help="a .zarr/.wds store, a folder of .npz shards, a sequence table (TSV/CSV) or a FASTA file")
    p.add_argument("--seq-col", help="a table's sequence column")
    p.add_argument("--id-col", help="a table's id column (default <file name>:<row>)")
    p.add_argument("--align", choices=ALIGNMENTS, help="fit a table's sequences to the model's length as "
                                                       "maize_ddp.predict does (default: as the run's data were)")
    p.add_argument("--split", help="split of a store (default: test for --top; for --ids, the split that holds "
                                   "them; ignored for npz folders, tables and FASTA)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ids", nargs="+", metavar="ID", help="explain these rows (by id)")
    which.add_argument("--top", type=positive_int, help="explain the N rows with the highest prediction (default 10)")
    p.add_argument("--method", choices=["ism", "saliency", "both"], default="both",
                   help="in-silico saturation mutagenesis, gradient x input, or both (default both)")
    p.add_argument("--target", default="0", help="which target to explain: its index or name (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output folder (new, or see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier interpret output")
    p.add_argument("--window", type=positive_int, default=20, help="width of the windows in windows.tsv (default 20)")
    p.add_argument("--windows", type=positive_int, default=5, help="windows per sequence and method (default 5)")
    p.add_argument("--figures", type=count, default=16, metavar="N",
                   help="draw figures/ for the first N sequences (default 16; 0: none): a figure takes longer "
                        "than a sequence's ISM on CPU")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="mutants (ISM) per forward pass (default 512 on a GPU, 128 on CPU)")
    p.add_argument("--seqs-per-step", type=positive_int, default=4,
                   help="sequences whose mutants are batched together (default 4)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda (default auto)")
    add_run_settings(p)
    return p


def run(a, d) -> dict | None:
    from maize_ddp.outputs import atomic_output_dir, refuse_existing

    # before hours of work, and once: the other ranks stop quietly when rank 0 refuses
    # the inputs are the store and the checkpoint file: RUN/interpret, a folder of the run's own, is fine
    inputs = [a.data, checkpoint_file(a.checkpoint)]
    distributed.on_main(d, lambda: refuse_existing(a.out, a.overwrite, inputs, MANIFEST))
    state = load(a.checkpoint)
    predictor = Predictor.of_checkpoint(state, d.device, a.checkpoint, a.trust_model_code, a.amp, a.rc_average)
    seq_len, num_targets = models.io_shape(state)
    a.target = target_index(recorded_origin(state), num_targets, a.target, "--target")
    a.batch_size = a.batch_size or attribution.ism_batch(d.device)
    methods = list(attribution.METHODS) if a.method == "both" else [a.method]
    def say(line):
        if d.is_main:
            print(line, file=sys.stderr, flush=True)
    split = a.split or (split_holding(a.data, a.ids, say) if a.ids else "test")
    source = open_rows(a.data, split, seq_len, seq_col=a.seq_col, id_col=a.id_col,
                       align=a.align or trained_align(state))
    started = time.perf_counter()
    if a.ids:
        ids, codes = rows_with_ids(source, a.ids)
    else:
        ids, codes, _ = top_rows(d, predictor, source, a.top or 10, a.target, a.batch_size)
    local = explain(d, predictor, codes, methods, a.target, a.batch_size, a.seqs_per_step)
    gathered = gather(d, len(ids), local)
    seconds = time.perf_counter() - started
    if not d.is_main:
        return None
    scores, pred = gathered
    marks = landmarks(source.origin, seq_len)
    info = {"checkpoint": str(a.checkpoint), "data": str(a.data), "split": split if source.split else None, "methods": methods,
            "target": a.target, "rc_average": predictor.rc_average, "amp": predictor.amp, "n": len(ids), "seq_len": seq_len,
            "landmarks": {k: list(v) if isinstance(v, tuple) else v for k, v in marks.items()},
            "origin": source.origin, "world_size": d.world_size, "seconds": round(seconds, 3),
            "scores": "ism[n, k, l] = f(base k at l) - f(reference); saliency = gradient x one-hot input; "
                      f"bases in order {ALPHABET[:4]}"}
    with atomic_output_dir(a.out, a.overwrite, inputs, MANIFEST) as tmp:
        write_output(tmp, ids, codes, pred, scores, methods, marks, a, info)
    return info


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return distributed.run_command(a.device, lambda d: run(a, d), lambda info: (
        f"explained {info['n']} sequence(s) ({', '.join(info['methods'])}) in {info['seconds']:.1f} s on "
        f"{info['world_size']} process(es) -> {a.out}"))


if __name__ == "__main__":
    exit_process(main())
