"""One conversion, whatever the store format: the steps every npz converter takes.

    settings checked -> sources found -> output refused if it would touch them -> scan (threads)
    -> read pass in worker processes, results in source order -> a StoreWriter inside an
    atomic output folder -> summary

A format is a StoreWriter (npz_to_zarr.ZarrWriter, npz_to_wds.WdsWriter): what its workers
compute for a shard, and what the writing process does with each result.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

from maize_ddp.origin import read_origin
from maize_ddp.store_format import FORMAT

from maize_ddp.outputs import atomic_output_dir, refuse_existing

from .output import Progress, dir_bytes
from .shards import ConvertError, Plan, ShardScan, SplitIds, find_sources, scan_and_plan
from .workers import WorkerPool


class StoreWriter(Protocol):
    kind: str  # "zarr" | "wds"
    worker: Callable  # a module-level function, run in the worker processes on job(...)'s arguments

    def layout(self, plan: Plan) -> None:
        """Settle the layout from the scanned shapes (may refuse the settings); nothing written."""

    def result_bytes(self, plan: Plan) -> int:
        """The largest result `worker` returns for one shard (its shared-memory slot)."""

    def job(self, scan: ShardScan, first_row: int, drop_nonfinite: bool) -> tuple:
        """`worker`'s arguments for one shard; it returns (*payload, ids)."""

    def open(self, tmp: Path, plan: Plan) -> None:
        """Start the store in the temporary output folder."""

    def append(self, scan: ShardScan, payload: tuple, ids) -> None:
        """One shard's rows, in source order."""

    def close(self) -> dict:
        """Finish the store; summary fields of this format."""


def at_least_one(flag: str, value) -> None:
    if value is not None and value < 1:
        raise ConvertError(f"{flag} must be at least 1, not {value}")


def convert(writer: StoreWriter, src, dst, *, split=None, workers=1, overwrite=False,
            drop_nonfinite=False, quiet=True) -> dict:
    """Convert SRC's npz shards into the store DST with `writer`; return a summary dict."""
    at_least_one("--workers", workers)
    started = time.perf_counter()
    sources = find_sources(src, split)
    inputs = [src, *sources]  # the output may not be, hold or lie inside any of these
    kind = {"zarr": "zarr.json", "wds": "manifest.json"}[writer.kind]  # --overwrite replaces only this
    refuse_existing(dst, overwrite, inputs=inputs, kind=kind)
    with Progress(len(sources), "scan", quiet, unit="files") as bar:
        plan = scan_and_plan(sources, src, workers, drop_nonfinite, lambda scan: bar.update(1, 0))
    # How the rows were made (the window geometry, ...): SRC's own description; with --split,
    # SRC is one split's folder and the description sits above it.
    plan.origin = read_origin(src) or (read_origin(Path(src).parent) if split is not None else None)
    writer.layout(plan)
    split_ids = SplitIds()
    # Workers are forked before the writer starts any thread (zarr starts one on first use).
    with WorkerPool(workers, writer.result_bytes(plan)) as pool:
        with atomic_output_dir(dst, overwrite, inputs=inputs, kind=kind) as tmp:
            writer.open(tmp, plan)
            jobs = (writer.job(s, first, drop_nonfinite) for s, first in zip(plan.scans, plan.first_rows()))
            with Progress(plan.rows, "convert", quiet) as bar:
                for scan, (*payload, ids) in zip(plan.scans, pool.ordered_map(writer.worker, jobs)):
                    split_ids.add(scan, ids)
                    writer.append(scan, payload, ids)
                    bar.update(len(ids), scan.bytes)
            layout = writer.close()
    return {
        "dst": str(dst), "format": FORMAT, "kind": writer.kind, "seq_len": plan.seq_len,
        "num_targets": plan.num_targets, **layout,
        "splits": {name: plan.split_meta(name).to_dict() for name in plan.splits},
        "rows": plan.rows, "dropped_nonfinite": plan.dropped, "source_bytes": plan.source_bytes,
        "store_bytes": dir_bytes(dst), "seconds": time.perf_counter() - started,
        "warnings": plan.all_warnings(),
    }
