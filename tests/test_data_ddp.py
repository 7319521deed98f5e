"""Real ranks (spawned processes, gloo): a DDP-style loop with a collective per step finishes
on every rank, and evaluation gathers every row exactly once, for both backends."""
import datetime
import json
import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from _stores import build_wds, build_zarr, make_rows, write_npz_source

WORLD = 2
SPLITS = {"train": make_rows(101, 32, 1, seed=0), "val": make_rows(23, 32, 1, seed=1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, stores, port, out):
    from maize_ddp.data import make_loader

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        result = {}
        for path in stores:
            train = make_loader(path, "train", batch_size=8, rank=rank, world_size=WORLD, seed=3)
            steps = 0
            for epoch in range(2):
                train.set_epoch(epoch)
                for codes, y in train:
                    dist.all_reduce(y.sum(0))  # a collective per step, like DDP's gradient all-reduce
                    steps += 1
            val = make_loader(path, "val", batch_size=4, rank=rank, world_size=WORLD, train=False)
            rows = [r for _, _, batch_rows in val for r in batch_rows.tolist()]  # no collective inside
            gathered = [None] * WORLD
            dist.all_gather_object(gathered, rows)
            result[path] = {"steps": steps, "gathered": gathered}
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_ranks_step_together_and_evaluate_every_row_once(tmp_path):
    src = write_npz_source(tmp_path / "src", SPLITS, shard_rows=30)
    stores = [str(build_zarr(src, tmp_path / "d.zarr", chunk_rows=8)),
              str(build_wds(src, tmp_path / "d.wds", shard_samples=40))]
    mp.spawn(rank_main, args=(stores, free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    for path in stores:
        assert [res[path]["steps"] for res in results] == [2 * (101 // (WORLD * 8))] * WORLD
        gathered = results[0][path]["gathered"]
        assert sum(gathered, []) == list(range(23))  # exact once, rank order = source order
