"""Train BasenjiModel with DistributedDataParallel on a Zarr or WebDataset store.

    python -m maize_ddp.train --data DATA.zarr --out runs/r1                  # one process
    torchrun --nproc-per-node 4 -m maize_ddp.train --data DATA.zarr --out runs/r1
    python -m maize_ddp.train --check --data DATA.zarr --out runs/r1          # decide, start nothing

The story, top to bottom: set up the process group from torchrun's environment; build the model
for the store's sequence length and target count; Adam(W) with warm-up + cosine; wrap in DDP; every
epoch stream the rank's share of the shuffled training rows, validate on every row exactly once
with exact all-reduced Pearson/R²/MSE (--task classification: BCE with logits, accuracy and auROC
on the gathered predictions), write metrics and checkpoints; finally reload the best
checkpoint and write the test report (train_and_report reads in that order). What a checkpoint
saves and restores is one TrainingState (training_state.py). Rank 0 alone prints and writes;
every write is atomic.

The step never waits for the host: the loss and gradient norm are summed on the device
(StepMeter) and read every --log-every steps, where RUN/steps.jsonl gets a line, the progress
bar its figures and the non-finite check its decision (all-reduced, so every rank stops together).

A run folder belongs to one live run: rank 0 takes its lock (runlock.py) before writing anything,
and a folder that holds another run's files is never trained over without --resume. Errors a
user can act on end the run with one line naming the file or flag; a bug keeps its traceback.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from maize_ddp import checkpoint, config, distributed, errors, models, outputs, plots, runlock
from maize_ddp.data import StoreError, make_loader, open_store, read_ids
from maize_ddp.process_exit import exit_process
from maize_ddp.report import describe_report, evaluate_split, test_report
from maize_ddp.inference import Predictor, autocast, resolve_amp
from maize_ddp.model import GeometryWarning, ModelConfig, build_model, flat_length, recalibrate_batchnorm
from maize_ddp.training_state import TrainingError, TrainingState, seed_rank


# What a run leaves in its folder: any of them means the folder holds a run.
RUN_FILES = ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "test_metrics.json",
             "test_predictions.tsv", "scatter.png", "roc.png", "curves.png")
# The training loss of each task (the model outputs logits for classification).
LOSSES = {"regression": F.mse_loss, "classification": F.binary_cross_entropy_with_logits}


def lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_step(model, codes, y, optimizer, scaler, amp: str, grad_clip: float,
               loss_fn=F.mse_loss) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step, queued on the device without reading anything back. Returns the
    (local) loss and the global gradient norm as device tensors; DDP has averaged the gradients,
    so the norm is the same on every rank. A non-finite step is not refused here (that would
    be a host read every step): StepMeter finds it at the next check, which comes before any
    checkpoint is written. With a GradScaler (fp16) an overflowed step is skipped as ever."""
    with autocast(codes.device, amp):
        loss = loss_fn(model(codes).float(), y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if scaler is not None:
        scaler.step(optimizer)  # skips the step itself when the scaled gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    return loss.detach(), norm.detach()


def bn_batches(loader, count: int, device):
    loader.set_epoch(0)
    for i, (codes, _) in enumerate(loader):
        if i == count:
            break
        yield codes.to(device, non_blocking=True)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def launch_id() -> str | None:
    """What identifies this launch across its restarts: the SLURM job (kept on requeue), else
    torchrun's run id (kept across --max-restarts; --standalone draws one, --rdzv-id sets it).
    None for a plain `python -m`, and for torchrun's default id "none", which every launch
    without --rdzv-id shares and so cannot tell a restart from a second launch."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return os.environ.get("SLURM_JOB_ID") or (run_id if run_id != "none" else None)


def launch_round() -> list[int]:
    """Which round of its launch this is: [SLURM requeues, torchrun restarts]. A restart has a
    later round than the checkpoints and lock it left; a second trainer started in the same
    SLURM allocation or torchrun launch has the same round, and is no restart."""
    return [int(os.environ.get("SLURM_RESTART_COUNT") or 0), int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)]


def left_by_an_earlier_round(saved: dict) -> bool:
    """Whether a checkpoint was written by an earlier round of this very launch."""
    return (launch_id() is not None and saved.get("launch_id") == launch_id()
            and list(saved.get("launch_round", [0, 0])) < launch_round())


def store_identity(path) -> dict:
    """The store a checkpoint was trained on: its resolved path, the sha256 of its root metadata
    (zarr.json or manifest.json), which a re-conversion changes and a move does not, and the
    store's `origin` when it records one (the generator and its window geometry), so tools
    that interpret a run know the window it was trained on."""
    root = Path(path).resolve()
    found = {"path": str(root), "sha256": None}
    for name in ("zarr.json", "manifest.json"):
        if (root / name).is_file():
            found["sha256"] = hashlib.sha256((root / name).read_bytes()).hexdigest()
            break
    origin = store_origin(root)
    if origin is not None:
        found["origin"] = origin
    return found


def store_origin(root: Path):
    """StoreMeta.origin as plain data (a checkpoint must load without maize_ddp's classes), or None
    for a store, or a maize_ddp, that has none."""
    try:
        origin = getattr(getattr(open_store(root), "meta", None), "origin", None)
    except StoreError:
        return None
    if hasattr(origin, "to_dict"):
        return origin.to_dict()
    if dataclasses.is_dataclass(origin):
        return dataclasses.asdict(origin)
    return origin


def same_store(a: dict, b: dict) -> bool:
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    return a.get("path") == b.get("path")


def claim_run_dir(cfg, out: Path) -> tuple[runlock.RunLock, bool]:
    """Rank 0, before anything is written: make the folder, take its lock, remove the temp files
    killed writers left, and decide whether this start resumes. Returns (lock, resume)."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = runlock.RunLock(out, launch_id(), launch_round()).acquire()
    except (PermissionError, FileNotFoundError, NotADirectoryError, FileExistsError) as e:
        raise TrainingError(f"{out}: run folder is not writable ({e.strerror or e})") from None
    except BaseException:
        if created:
            remove_if_empty(out)
        raise
    try:
        if lock.took_over:
            h = lock.took_over
            launch = f" (launch {h['launch_id']})" if h.get("launch_id") else ""
            print(f"[maize_ddp] {lock.path}: took over the lock of pid {h.get('pid')} on {h.get('host')}"
                  f"{launch}, which is no longer running", flush=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        # Holding the lock, no other trainer writes here: a temp file is a killed writer's,
        # save one that a process alive on this host may still be writing (evaluate --out RUN).
        for folder in (out, out / "checkpoints"):
            checkpoint.remove_stale_temps(folder, live=runlock.alive)
        return lock, should_resume(cfg, out)
    except BaseException:
        lock.release()
        if created:  # a refused start leaves no empty run folder behind
            remove_empty_run_dir(out)
        raise


def remove_empty_run_dir(out: Path) -> None:
    remove_if_empty(out / "checkpoints")
    remove_if_empty(out)


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only an empty folder goes
    except OSError:
        pass


def should_resume(cfg, out: Path) -> bool:
    """--resume continues a checkpoint; a restarted launch continues its own. A run left by
    another launch is never taken over or trained over silently, not even by torchrun's
    automatic retry, whichever of its files are left."""
    last, best = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if last.exists():
        saved = checkpoint.load(last)  # read once for both decisions
        if cfg.resume or left_by_an_earlier_round(saved):
            refuse_changed_settings(cfg, saved, last)
            return True
        raise TrainingError(f"{out} already holds a run ({last}); pass --resume to continue it "
                            "or choose another --out")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return False
    if best.exists() and launch_id() is not None and left_by_an_earlier_round(checkpoint.load(best)):
        return False  # this launch's first epoch, cut short before last.pt: start it again
    raise TrainingError(f"{out} already holds a run ({', '.join(found)}) but no checkpoints/last.pt to "
                        "resume from; choose another --out")


# What decides the trained model: a resume that changed one would train half a run one way and
# half another, and config.json would describe neither. --epochs may grow (it is recorded), and
# settings of how the run goes (workers, logging, compile, device) may change.
TRAINED_BY = ("task", "lr", "weight_decay", "warmup_steps", "lr_min_ratio", "grad_clip", "batch_size", "seed",
              "reverse_complement", "max_shift", "sync_bn", "bn_recalibration_batches", "model_class", "model")


def refuse_changed_settings(cfg, state: dict, last: Path) -> None:
    saved, now = state["config"], cfg.to_dict()
    changed = [key for key in TRAINED_BY if key in saved and saved[key] != now[key]]
    if not changed:
        return
    def show(key):
        if key == "model":  # every key either side has: one may have been added or dropped
            diff = [k for k in set(now["model"]) | set(saved["model"]) if saved["model"].get(k) != now["model"].get(k)]
            # BasenjiModel's settings are flags; another class's are keys of the [model] table
            name = (lambda k: f"--{k.replace('_', '-')}") if now.get("model_class", "basenji") == "basenji" \
                else (lambda k: f"model.{k}")
            return ", ".join(f"{name(k)} {now['model'].get(k)} (the run: {saved['model'].get(k)})" for k in sorted(diff))
        return f"--{key.replace('_', '-')} {now[key]} (the run: {saved[key]})"
    raise TrainingError(f"{last}: a resume continues the run as it was trained, but "
                        f"{'; '.join(show(k) for k in changed)}; pass the run's values (its config.json: a "
                        "setting left out takes its default, not the run's), or start a new run with another --out")


def open_data(cfg) -> None:
    """The store, checked as training needs it; it decides the model's seq_len and targets."""
    # a run inside its store would go with the store's next --overwrite; a store inside its run
    # would be trained on while the run writes beside it
    problem = outputs.overlap(cfg.out, [cfg.data])
    if problem:
        raise TrainingError(problem.replace("choose an output", "choose an --out"))
    kind = outputs.output_kind(cfg.out)  # a store, dataset or report folder: its files are not the run's
    if kind:
        what = {name: text for name, _, text in outputs.OUTPUT_SIGNS}[kind]
        raise TrainingError(f"{cfg.out}: is {what} (it holds {kind}), not a run folder; choose another --out")
    store = open_store(cfg.data)
    for split in ("train", "val", "test"):
        store.check(split=split)
    read_ids(store, "test")  # the test report's ids: a damaged id file fails now, not after training
    if cfg.task == "classification":
        check_binary_stats(store)
    cfg.model.update(seq_len=store.seq_len, num_targets=store.num_targets)
    if cfg.model_class == "basenji":
        flat_length(ModelConfig.from_dict(cfg.model))  # a model too deep for these sequences fails now, naming the block


def check_binary_stats(store) -> None:
    """Refuse classification on labels that are not 0/1, before any process starts, from the
    split statistics the store records: values in [0, 1] have variance mean*(1 - mean) exactly
    when every one is 0 or 1. (Validation and the test report check every row they read.)"""
    for name, split in sorted(store.splits.items()):
        for t, (mean, std) in enumerate(zip(split.label_mean, split.label_std)):
            if not (0 <= mean <= 1 and math.isclose(std * std, mean * (1 - mean), rel_tol=1e-4, abs_tol=1e-6)):
                raise TrainingError(f"{store.path}: --task classification needs labels 0 or 1, but {name} target "
                                    f"{t} has mean {mean:.4g} and sd {std:.4g} (make high/low labels with "
                                    "convert.genome_to_npz --classes quartiles)")


def check(cfg) -> None:
    """--check, for launchers: the decisions a run takes before its first step (config, store,
    resume), printed on one line. Creates no folder, takes no lock, starts no process group."""
    open_data(cfg)
    resume = should_resume(cfg, Path(cfg.out))
    print(f"check: ok resume={'yes' if resume else 'no'} out={cfg.out}", flush=True)


def close_progress_bars() -> None:
    """End an interrupted epoch's bar on its own line, so that the error line comes last."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv=None) -> int:
    try:
        cfg = config.resolve(argv)
    except errors.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = None
    errors.raise_on_sigterm()
    errors.stacks_on_sigusr1()
    try:
        if cfg.check:
            check(cfg)
            return 0
        d = distributed.init(cfg.device, requested_backend=cfg.backend)
        # one write call, so the ranks' start-up lines do not interleave in a shared log
        sys.stdout.write(distributed.describe(d) + "\n")
        sys.stdout.flush()
        train(cfg, d)
        distributed.barrier(d)  # every rank ends together, after rank 0's last file
        return 0
    except errors.Terminated:
        close_progress_bars()
        if d is None or d.is_main:
            kept = (f"; {cfg.out} keeps its last checkpoint: continue with --resume"
                    if (Path(cfg.out) / "checkpoints" / "last.pt").exists() else "")
            print(f"error: terminated (SIGTERM: a time limit, preemption or a kill){kept}", file=sys.stderr,
                  flush=True)
        return 143
    except KeyboardInterrupt:
        close_progress_bars()
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except distributed.FailedOnRankZero:
        return 1  # rank 0 printed why
    except (errors.Error, StoreError, OSError, torch.distributed.DistError) as e:
        # Errors a user can act on print as one line; anything else is a bug and keeps its
        # traceback. Each rank says what it met: a rank's own failure (a broken tar among its
        # rows, say) reaches the others only as a closed connection.
        close_progress_bars()
        rank, world_size = (d.rank, d.world_size) if d is not None else distributed.env_rank()
        who = f"rank {rank}/{world_size}: " if world_size > 1 else ""
        # one write call, so that ranks failing together print a line each, not one run-on line
        sys.stderr.write(f"error: {who}{errors.describe(e)}\n")
        sys.stderr.flush()
        return 1
    finally:
        if d is not None:
            distributed.shutdown(d)


def loader(data, split: str, **settings):
    """make_loader, whose ValueErrors are settings the split cannot serve (a batch larger than
    the split): the user's to change, so they print as one line."""
    try:
        return make_loader(data, split, **settings)
    except StoreError:
        raise
    except ValueError as e:
        raise TrainingError(str(e)) from None


def train(cfg: config.TrainConfig, d: distributed.Dist) -> None:
    # ---- data: the store decides seq_len and the number of targets ------------------------
    open_data(cfg)
    loader_args = dict(rank=d.rank, world_size=d.world_size, seed=cfg.seed, num_workers=cfg.num_workers,
                       pin_memory=d.device.type == "cuda")
    loaders = []
    try:
        loaders.append(loader(cfg.data, "train", batch_size=cfg.batch_size, train=True,
                              reverse_complement=cfg.reverse_complement, max_shift=cfg.max_shift, **loader_args))
        loaders.append(loader(cfg.data, "val", batch_size=cfg.batch_size * 4, train=False, **loader_args))
        # A fixed sample of training batches for BatchNorm recalibration: same rows every epoch,
        # drawn without touching the RNG that training uses.
        loaders.append(loader(cfg.data, "train", batch_size=cfg.batch_size, train=True,
                              **{**loader_args, "seed": cfg.seed + 1, "num_workers": 0}))
        # ---- the run folder: one live run at a time, its lock taken before anything is written
        lock, created = None, False

        def claim():
            nonlocal lock, created
            created = not Path(cfg.out).exists()
            lock, resume = claim_run_dir(cfg, Path(cfg.out))
            return resume

        resume = distributed.on_main(d, claim)
        try:
            train_and_report(cfg, d, *loaders, resume)
        finally:
            if lock is not None:
                lock.release()
                if created:  # a start that failed before writing anything (a model that does not fit) leaves no folder
                    remove_empty_run_dir(Path(cfg.out))
    finally:
        for each in loaders:  # stop persistent workers now, not at interpreter exit
            each.close()


def train_and_report(cfg, d, train_loader, val_loader, bn_loader, resume: bool) -> None:
    """The run, top to bottom: build, resume, for each epoch (train, validate, save), report."""
    out = Path(cfg.out)
    last, best = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if not resume:
        train_loader.read_ahead(0)  # data-loader workers start, and read, while the model is built
    store = store_identity(cfg.data)
    state, amp, lr_factor = build(cfg, d, steps_per_epoch=len(train_loader))
    if resume:
        resume_from(state, last, cfg, d, store)
    if d.is_main:
        checkpoint.atomic_write_text(out / "config.json", config.dumps(cfg))
    ddp = DDP(state.model, device_ids=[d.device.index] if d.device.type == "cuda" else None) if d.enabled \
        else state.model
    # Only the training step is compiled; evaluation and checkpoints use state.model, eager, whose
    # state_dict keys carry no `_orig_mod.` prefix.
    step_model = compile_for_training(ddp, d) if cfg.compile else ddp
    steps_log = StepLog(cfg, d, out, resumed_step=state.step if resume else None)

    def save_last() -> None:
        saved = state.to_checkpoint(d, config=cfg.to_dict(), world_size=d.world_size, launch_id=launch_id(),
                                    launch_round=launch_round(), store=store)
        if saved is not None:
            checkpoint.save(last, saved)

    while state.epoch < cfg.epochs and not state.stopped_early(cfg.patience):
        bar = progress_bar(cfg, d, state)
        seconds, samples = train_epoch(cfg, d, state, step_model, train_loader, amp, lr_factor, bar, save_last,
                                       steps_log)
        if state.epoch + 1 < cfg.epochs:
            train_loader.read_ahead(state.epoch + 1)  # the next epoch's first windows load during validation
        val = validate(cfg, d, state.model, val_loader, bn_loader, amp)
        loss_sum, loss_count = distributed.all_reduce_sum(d, state.epoch_loss)
        row = {"epoch": state.epoch + 1, "step": state.step, "train_loss": loss_sum / max(loss_count, 1),
               **val_columns(cfg.task, val), "lr": state.optimizer.param_groups[0]["lr"],
               "samples_per_s": samples / seconds, "seconds": seconds, "peak_memory_mb": peak_memory_mb(d.device)}
        improved = state.end_epoch(row, row[VAL_SCORE[cfg.task]])
        steps_log.epoch(row)
        if d.is_main:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_loss=f"{row['val_loss']:.4f}",
                            **{VAL_SCORE[cfg.task]: f"{row[VAL_SCORE[cfg.task]]:.4f}"})
            bar.close()
            # best.pt first, with the launch id: a launch killed before its first last.pt
            # recognises its own files when restarted (should_resume)
            if improved or not best.exists():
                checkpoint.save(best, {"model": state.model.state_dict(), "config": cfg.to_dict(),
                                       "epoch": state.epoch, "val": val, "launch_id": launch_id(),
                                       "launch_round": launch_round(),
                                       "store": store})
            checkpoint.atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in state.history))
        save_last()
        if state.stopped_early(cfg.patience) and d.is_main:
            print(f"[maize_ddp] early stop: no better {VAL_SCORE[cfg.task]} for {state.stale_epochs} epochs",
                  flush=True)
    for each in (train_loader, val_loader, bn_loader):
        each.close()
    try:
        steps_log.test(report(cfg, d, state, best, amp), state.step)
    finally:
        steps_log.close()


# The validation figure that picks the best checkpoint and drives early stopping.
VAL_SCORE = {"regression": "val_pearson", "classification": "val_auroc"}


def val_columns(task: str, val: dict) -> dict:
    """An epoch's validation figures, as metrics.jsonl keeps them."""
    if task == "classification":
        return {"val_loss": val["bce"], "val_accuracy": val["accuracy"], "val_auroc": val["auroc"],
                "val_per_target": val["per_target"]}
    return {"val_loss": val["mse"], "val_pearson": val["pearson"], "val_r2": val["r2"],
            "val_per_target": val["per_target"]}


def model_with_warning(cfg, d) -> torch.nn.Module:
    """The run's model, checked to map [B, L] to [B, T]; BasenjiModel's GeometryWarning (a
    sequence too short for the pools) printed once, by rank 0, as one `warning:` line: every rank
    builds the model, the user needs it said once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeometryWarning)
        model = build_model(ModelConfig.from_dict(cfg.model)) if cfg.model_class == "basenji" \
            else models.build(cfg.model_class, cfg.model)
        models.check_output(model, cfg.model_class, cfg.model["seq_len"], cfg.model["num_targets"], "cpu")
    for w in caught:
        if not issubclass(w.category, GeometryWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        elif d.is_main:
            sys.stderr.write(f"warning: {w.message}\n")
            sys.stderr.flush()
    return model


def build(cfg, d, steps_per_epoch: int) -> tuple[TrainingState, str, object]:
    """Model, Adam(W), precision and the learning-rate schedule, seeded like every run."""
    torch.manual_seed(cfg.seed)
    model = model_with_warning(cfg, d).to(d.device)
    if cfg.sync_bn and d.device.type != "cuda":
        raise TrainingError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel)")
    if cfg.sync_bn and d.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    amp = resolve_amp(cfg.amp, d.device)
    # fused: one kernel for the whole update, and with fp16's GradScaler no host read of found_inf
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=True if d.device.type == "cuda" else None)
    if d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training shapes are fixed (the last partial batch is dropped)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    total_steps = cfg.epochs * steps_per_epoch
    # The learning rate is a function of the position in this run's schedule, not state: a run
    # resumed with another world size (other steps per epoch) carries on from where it was.
    lr_factor = lr_lambda(min(cfg.warmup_steps, total_steps // 10 + 1), total_steps, cfg.lr_min_ratio)
    seed_rank(cfg.seed, d.rank)
    return TrainingState(model, optimizer, scaler, steps_per_epoch), amp, lr_factor


def resume_from(state: TrainingState, last: Path, cfg, d, store: dict) -> None:
    saved = checkpoint.load_resumable(last)
    checkpoint.check_model_config(last, saved["config"]["model"], cfg.to_dict()["model"])
    trained_on = saved.get("store") or {"path": str(Path(saved["config"]["data"]).resolve()), "sha256": None}
    if not same_store(trained_on, store):
        if saved["batch"]:
            raise TrainingError(f"{last} was written mid-epoch on another store ({trained_on['path']}); its "
                                f"data position means nothing in {cfg.data}: resume it on that store")
        if d.is_main:
            print(f"[maize_ddp] note: {last} was trained on {trained_on['path']}; continuing on {cfg.data}",
                  flush=True)
    state.restore(saved, d, last)
    if d.is_main:
        print(f"[maize_ddp] resumed from {last} at epoch {state.epoch + 1} batch {state.batch} "
              f"(step {state.step})", flush=True)


def progress_bar(cfg, d, state: TrainingState):
    return tqdm(total=state.steps_per_epoch, initial=state.batch, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                disable=not d.is_main, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.2 if sys.stderr.isatty() else 30)  # a log file gets a line per 30 s


def train_epoch(cfg, d, state: TrainingState, model, loader, amp: str, lr_factor, bar, save_last,
                steps_log: "StepLog") -> tuple[float, int]:
    """The rest of the current epoch (all of it, unless resumed mid-way); returns its seconds
    and the samples all ranks took. Nothing in the loop reads the device, except at log points
    and before a checkpoint; the batches come from pinned memory, copied without waiting."""
    model.train()
    loader.set_epoch(state.epoch, start_batch=state.batch)
    steps_log.restart()
    t0, samples = time.perf_counter(), 0
    for codes, y in loader:
        errors.raise_if_stopped()  # a stop whose exception something swallowed stops here
        codes, y = codes.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        for group in state.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(state.step)
        if getattr(model, "cuda_graphs", False):
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are spent
        loss, norm = train_step(model, codes, y, state.optimizer, state.scaler, amp, cfg.grad_clip, LOSSES[cfg.task])
        state.took_step(loss, norm)
        samples += len(codes) * d.world_size
        steps_log.took(len(codes) * d.world_size)
        if d.is_main:
            bar.update(1)
        if state.step % cfg.log_every == 0 or state.batch == state.steps_per_epoch:
            steps_log.write(state, state.meter.read(d), bar)  # raises on every rank if a step was non-finite
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.batch < state.steps_per_epoch:
            state.meter.check(d)  # never save non-finite weights
            save_last()  # mid-epoch: it records the batch reached
    return time.perf_counter() - t0, samples


def compile_for_training(model, d):
    """torch.compile of the training forward (and so its backward). One process on a GPU gets
    CUDA graphs ("reduce-overhead"): the shapes are static, as the training loader drops the last
    partial batch. Under DDP the graphs would have to hold its gradient hooks' collectives, so
    there plain inductor; on CPU inductor's C++ kernels."""
    cuda_graphs = d.device.type == "cuda" and not d.enabled
    compiled = torch.compile(model, mode="reduce-overhead" if cuda_graphs else None, dynamic=False)
    compiled.cuda_graphs = cuda_graphs
    return compiled


class StepLog:
    """RUN/steps.jsonl, one line per log point (step, epoch, loss, lr, grad_norm, samples_per_s),
    and with --tensorboard the same as TensorBoard scalars; written by rank 0. Lines are appended
    in one write each; a resume first drops the lines past its checkpoint's step (and any line a
    kill cut short), so the file reads as one uninterrupted run."""

    def __init__(self, cfg, d, out: Path, resumed_step: int | None):
        self.main, self.path, self.tb = d.is_main, out / "steps.jsonl", None
        if self.main:
            keep_lines_to(self.path, resumed_step)
            if cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                # a resume purges the events past its step, as keep_lines_to does the lines
                self.tb = SummaryWriter(str(out / "tensorboard"),
                                        purge_step=resumed_step + 1 if resumed_step else None)
        self.restart()

    def restart(self) -> None:
        self.t0, self.samples = time.perf_counter(), 0

    def took(self, samples: int) -> None:
        self.samples += samples

    def write(self, state: TrainingState, read: dict, bar) -> None:
        """A log point, after the meter's read (which waited for the device, so the time is real)."""
        row = {"step": state.step, "epoch": state.epoch + 1, "loss": read["loss"],
               "lr": state.optimizer.param_groups[0]["lr"], "grad_norm": read["grad_norm"],
               "samples_per_s": self.samples / max(time.perf_counter() - self.t0, 1e-9)}
        if state.scaler is not None:
            row["skipped"] = read["skipped"]  # fp16 steps the scaler skipped (gradient overflow)
        self.restart()
        if not self.main:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        bar.set_postfix(loss=f"{row['loss']:.4f}", samples_s=f"{row['samples_per_s']:.0f}", refresh=False)
        if self.tb is not None:
            for key in ("loss", "lr", "grad_norm", "samples_per_s"):
                if row[key] is not None:
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def epoch(self, row: dict) -> None:
        if self.tb is not None:
            for key in ("val_loss", "val_pearson", "val_r2", "val_accuracy", "val_auroc"):
                if key in row:
                    self.tb.add_scalar(f"val/{key[4:]}", row[key], row["step"])
            self.tb.flush()

    def test(self, metrics: dict, step: int) -> None:
        """The test report's figures (test_metrics.json's numbers), at the run's last step."""
        if self.tb is not None and metrics:
            for key, value in metrics.items():
                if isinstance(value, float):  # pearson, r2, ...; not counts, flags or names
                    self.tb.add_scalar(f"test/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def keep_lines_to(path: Path, step: int | None) -> None:
    """Keep the lines of steps.jsonl up to `step` (a resume's); None, a fresh run: none."""
    if step is None:
        path.unlink(missing_ok=True)
        return
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            if line.endswith("\n") and json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a line a kill cut short
    checkpoint.atomic_write_text(path, "".join(kept))


def validate(cfg, d, model, val_loader, bn_loader, amp: str) -> dict:
    """Every validation row exactly once, exact moments merged across ranks. BatchNorm statistics
    are recomputed first on a fixed sample of training batches, with dropout off."""
    if cfg.bn_recalibration_batches:
        recalibrate_batchnorm(model, bn_batches(bn_loader, cfg.bn_recalibration_batches, d.device))
        distributed.average_buffers(d, model)
    else:
        distributed.broadcast_buffers(d, model)
    return evaluate_split(d, Predictor(model, d.device, amp), val_loader, cfg.task)


def report(cfg, d, state: TrainingState, best: Path, amp: str) -> dict:
    """The test report from the best checkpoint, and the training curves; returns its metrics."""
    out = Path(cfg.out)
    distributed.barrier(d)
    best_state = checkpoint.load(best)
    checkpoint.fit_weights(state.model, best_state["model"], best)
    loader_args = dict(rank=d.rank, world_size=d.world_size, seed=cfg.seed, num_workers=cfg.num_workers,
                       pin_memory=d.device.type == "cuda")
    with loader(cfg.data, "test", batch_size=cfg.batch_size * 4, train=False, **loader_args) as test_loader:
        result = test_report(d, Predictor(state.model, d.device, amp, cfg.rc_average), test_loader, out,
                             extra={"best_epoch": best_state["epoch"], "data": str(cfg.data)}, task=cfg.task)
    if d.is_main:
        plots.curves(out / "curves.png", state.history)
        print(f"[maize_ddp] {describe_report('test', result)}  -> {out}", flush=True)
    return result


if __name__ == "__main__":
    exit_process(main())
