"""GPU throughput of the trainer against ideal loops, side by side in one run (issue 15's table).

    python benchmarks/bench_gpu.py                 # one GPU: 3020 bp, batch 32 and 256, fp32 and bf16 (< 5 min)
    python benchmarks/bench_gpu.py --small         # the same table at a small size (automatic without CUDA)
    python benchmarks/bench_gpu.py --out gpu.md    # also rewrite gpu.md after every case (a cut-off run keeps its rows)

For each precision and batch size, four loops train the default model for two epochs of the same
rows, and each epoch is timed (the device synchronised at both ends):
  ideal eager     the model on a uint8 tensor already on the device, a random permutation per
                  epoch, no host read; AdamW (fused on CUDA) with no clipping
  ideal compiled  the same through train.compile_for_training (CUDA graphs on one GPU)
  trainer         train.train_epoch itself on a real Zarr store with its loader (pinned memory,
                  DataLoader workers reading ahead), the StepMeter, steps.jsonl, log points every
                  50 steps, and a validation between the epochs (untimed, as in a run)
  trainer compile the same with --compile
Reported: steady samples/s (epoch 2), the ratio to the ideal eager loop at the same precision and
batch, the first epoch's speed over the steady one (start-up: workers, cuDNN autotuning,
compilation), and the peak GPU memory. Prints a Markdown table and the issue's targets.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maize_ddp import config, distributed, train  # noqa: E402
from maize_ddp.inference import autocast  # noqa: E402
from maize_ddp.model import ModelConfig, build_model  # noqa: E402

# a tiny model for tests (the compile test's: its compiled graphs come from inductor's cache)
TINY = ["--conv1kc", "8", "--conv2kc", "8", "--conv3kc", "8", "--convdc", "1", "--convdkc", "4", "--conv4kc", "8",
        "--pool1ks", "2", "--pool2ks", "2", "--pool3ks", "2", "--pdrop1", "0", "--pdrop2", "0", "--pdrop3", "0",
        "--pdropd", "0", "--pdrop4", "0"]
LOOPS = ("ideal eager", "ideal compiled", "trainer", "trainer --compile")
# the order cases run in: what the targets compare comes first, so a run cut short still answers them
RUN_ORDER = ("ideal eager", "trainer", "trainer --compile", "ideal compiled")


def make_store(work: Path, rows: int, seq_len: int) -> Path:
    from convert import npz_to_zarr, synth

    store = work / f"bench_{rows}_{seq_len}.zarr"
    if not store.exists():
        synth.generate(work / f"npz_{rows}_{seq_len}", train=rows, val=max(64, rows // 8), test=64, seq_len=seq_len,
                       shard_size=min(rows, 4096), dtype="uint8")
        npz_to_zarr.convert(work / f"npz_{rows}_{seq_len}", store)
    return store


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_config(store: Path, out: Path, device: torch.device, amp: str, batch: int, compiled: bool, model_flags):
    cfg = config.resolve(["--data", str(store), "--out", str(out), "--batch-size", str(batch), "--amp", amp,
                          "--device", device.type, "--epochs", "2", "--warmup-steps", "5", "--log-every", "50",
                          *(["--compile"] if compiled else []), *model_flags])
    train.open_data(cfg)  # seq_len and targets from the store, as a run
    return cfg


def ideal(store, work, device, amp, batch, compiled, model_flags, workers) -> tuple[list, float]:
    """Two epochs over the store's rows, kept on the device; returns [(seconds, samples)] and peak MB."""
    from maize_ddp.data import make_loader

    cfg = trainer_config(store, work / "unused", device, amp, batch, False, model_flags)
    parts = [(c, y) for c, y in make_loader(store, "train", batch_size=4096, train=False, with_rows=False)]
    codes, y = torch.cat([c for c, _ in parts]).to(device), torch.cat([t for _, t in parts]).to(device)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(cfg.model)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if device.type == "cuda" else None)
    d = distributed.Dist(0, 0, 1, device, None)
    step_model = train.compile_for_training(model, d) if compiled else model
    graphs = getattr(step_model, "cuda_graphs", False)
    model.train()
    epochs = []
    for epoch in range(2):
        perm = torch.randperm(len(codes), device=device)
        steps = len(codes) // batch
        sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, amp):
                loss = F.mse_loss(step_model(codes[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        epochs.append((time.perf_counter() - t0, steps * batch))
    return epochs, 0.0


def trainer(store, work, device, amp, batch, compiled, model_flags, workers, read_ahead=True) -> tuple[list, float]:
    """train.train_epoch, as a run calls it, for two epochs with a validation after each (untimed);
    returns [(seconds, samples)]. As a run, the loader reads ahead: the first epoch while the
    model is built, the second during the first validation (read_ahead=False: not, to measure that)."""
    from tqdm import tqdm

    out = Path(tempfile.mkdtemp(prefix="run_", dir=work))
    cfg = trainer_config(store, out, device, amp, batch, compiled, model_flags)
    d = distributed.Dist(0, 0, 1, device, None)
    args = dict(rank=0, world_size=1, seed=0, num_workers=workers, pin_memory=device.type == "cuda")
    loaders = (train.loader(cfg.data, "train", batch_size=batch, train=True, **args),
               train.loader(cfg.data, "val", batch_size=batch * 4, train=False, **args),
               train.loader(cfg.data, "train", batch_size=batch, train=True, **{**args, "seed": 1, "num_workers": 0}))
    loader, val_loader, bn_loader = loaders
    try:
        if read_ahead:
            loader.read_ahead(0)
        state, amp_used, lr_factor = train.build(cfg, d, steps_per_epoch=len(loader))
        step_model = train.compile_for_training(state.model, d) if compiled else state.model
        log = train.StepLog(cfg, d, out, resumed_step=None)
        epochs = []
        for epoch in range(2):
            seconds, samples = train.train_epoch(cfg, d, state, step_model, loader, amp_used, lr_factor,
                                                 tqdm(disable=True), lambda: None, log)
            epochs.append((seconds, samples))
            if read_ahead and epoch == 0:
                loader.read_ahead(1)
            train.validate(cfg, d, state.model, val_loader, bn_loader, amp_used)
            state.end_epoch({}, math.nan)
        return epochs, 0.0
    finally:
        for each in loaders:
            each.close()


def measure(kind, store, work, device, amp, batch, model_flags, workers) -> dict:
    torch._dynamo.reset()  # each case compiles its own model: no cache limit, no stale CUDA graphs
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    run = ideal if kind.startswith("ideal") else trainer
    epochs, _ = run(store, work, device, amp, batch, kind.endswith("compiled") or kind.endswith("--compile"),
                    model_flags, workers)
    (t1, n1), (t2, n2) = epochs
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"steady": n2 / t2, "first": (n1 / t1) / (n2 / t2), "peak_mb": peak}


def table(results: dict, precisions, batches, on_gpu: bool) -> str:
    lines = ["| loop | precision | batch | samples/s (steady) | / ideal eager | first epoch / steady | peak GPU MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for kind in LOOPS:
        for amp in precisions:
            for batch in batches:
                r = results.get((kind, amp, batch))
                if r is None:
                    continue
                base = results[("ideal eager", amp, batch)]["steady"]
                peak = f"{r['peak_mb']:,.0f}" if r["peak_mb"] is not None else "n/a (CPU)"
                lines.append(f"| {kind} | {'fp32' if amp == 'off' else amp} | {batch} | {r['steady']:,.0f} | "
                             f"{r['steady'] / base:.2f} | {r['first']:.2f} | {peak} |")
    return "\n".join(lines)


def targets(results: dict, precisions, batches) -> str:
    """The issue's targets, as measured here (they are set for one H200-class GPU)."""
    amp, out = precisions[0], []
    for batch in batches:
        got = results.get(("trainer", amp, batch)), results.get(("ideal eager", amp, batch))
        if all(got):
            out.append(f"- eager trainer / ideal eager loop, batch {batch}: {got[0]['steady'] / got[1]['steady']:.2f} "
                       "(target >= 0.9)")
    big = max(batches)
    got = results.get(("trainer --compile", amp, big)), results.get(("trainer", amp, big))
    if all(got):
        out.append(f"- trainer --compile / eager trainer, batch {big}: {got[0]['steady'] / got[1]['steady']:.2f} "
                   "(target >= 1.5)")
    for batch in batches:
        got = results.get(("trainer", amp, batch))
        if got:
            out.append(f"- eager trainer, first epoch / steady, batch {batch}: {got['first']:.2f} (target >= 0.7)")
    if len(precisions) > 1:
        for kind in LOOPS:
            for batch in batches:
                a, b = results.get((kind, "bf16", batch)), results.get((kind, "off", batch))
                if a and b:
                    out.append(f"- {kind}, batch {batch}: bf16 / fp32 {a['steady'] / b['steady']:.2f}"
                               + (f", peak memory {a['peak_mb'] / b['peak_mb']:.2f}" if a["peak_mb"] else ""))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="a small size for CPUs and tests (automatic without CUDA)")
    p.add_argument("--tiny", action="store_true", help="a tiny model (tests)")
    p.add_argument("--work", type=Path, default=None, help="folder for the store and runs (default: a temp folder)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 32,256; small: 8,32)")
    p.add_argument("--precisions", default="off,bf16", help="comma-separated amp settings: off (fp32), bf16")
    p.add_argument("--rows", type=int, default=None, help="training rows (default 16384; small: 512)")
    p.add_argument("--seq-len", type=int, default=None, help="default 3020; small: 256")
    p.add_argument("--workers", type=int, default=None, help="trainer DataLoader workers (default 4; small: 0)")
    p.add_argument("--loops", default=",".join(LOOPS), help="comma-separated subset of: " + ", ".join(LOOPS))
    p.add_argument("--out", type=Path, default=None,
                   help="Markdown file rewritten after every case with the table so far (default: stdout only)")
    a = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = a.small or device.type != "cuda"
    batches = [int(b) for b in (a.batch_sizes or ("8,32" if small else "32,256")).split(",")]
    precisions = a.precisions.split(",")
    rows, seq_len = a.rows or (512 if small else 16384), a.seq_len or (256 if small else 3020)
    workers = a.workers if a.workers is not None else (0 if small else 4)
    loops = [k.strip() for k in a.loops.split(",")]
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = make_store(work, rows, seq_len)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = (f"## {name}, torch {torch.__version__}: {rows} rows x {seq_len} bp, 1 process, "
             f"{'tiny' if a.tiny else 'default'} model, trainer workers {workers}\n")
    print(title, flush=True)

    def report(final: bool) -> str:
        done = "" if final else "\n(cut short: the cases above are all that ran)"
        return (f"{title}\n{table(results, precisions, batches, device.type == 'cuda')}\n\n"
                f"{targets(results, precisions, batches)}{done}\n")

    results = {}
    for amp in precisions:
        for kind in [k for k in RUN_ORDER if k in loops]:
            for batch in batches:
                results[(kind, amp, batch)] = measure(kind, store, work, device, amp, batch,
                                                      TINY if a.tiny else [], workers)
                print(f"  {kind:18s} {amp:4s} batch {batch:4d}: {results[(kind, amp, batch)]['steady']:,.0f} "
                      f"samples/s", file=sys.stderr, flush=True)
                if a.out:
                    a.out.with_suffix(".tmp").write_text(report(final=False))
                    a.out.with_suffix(".tmp").replace(a.out)
    print(table(results, precisions, batches, device.type == "cuda"))
    print()
    print(targets(results, precisions, batches))
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    if a.out:
        a.out.with_suffix(".tmp").write_text(report(final=True) + f"\n({time.perf_counter() - t0:.0f} s in all)\n")
        a.out.with_suffix(".tmp").replace(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
