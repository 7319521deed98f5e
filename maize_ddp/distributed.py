"""Process-group set-up from torchrun's environment; plain `python` is a world of one."""
from __future__ import annotations

import gc
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from maize_ddp import errors
from maize_ddp.errors import ConfigError, Error
from maize_ddp.parent_death import die_with_parent

if dist.is_available():
    # torch.distributed.nn binds `group.WORLD` as default arguments when it is first imported,
    # which DDP does: imported after init_process_group, it keeps the process group alive for
    # good and shutdown() cannot stop its threads. Imported now, it binds None.
    import torch.distributed.nn  # noqa: F401


class DistributedError(Error, RuntimeError):
    pass


class FailedOnRankZero(Error):
    """Rank 0 met an error in a step it does alone and printed it; the other ranks stop quietly."""


@dataclass(frozen=True)
class Dist:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None: single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def env_rank() -> tuple[int, int]:
    """(rank, world size) as torchrun gave them: what an error before the process group names."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def gpu_shortfall(requested: str, visible_gpus: int, local_world_size: int, backend: str = "auto") -> str | None:
    """Why this node cannot give each of its processes a GPU of its own, or None when it can
    (or the run is on CPU). A pure function of what the node shows, so it is tested without GPUs.
    Two processes on one GPU are not a slower run but a failed one: NCCL refuses them
    ("Duplicate GPU detected"), one error per rank, long after start-up. Gloo takes them: that is
    how the DDP path on CUDA tensors is exercised on a machine with one GPU."""
    if requested == "cpu" or (requested == "auto" and visible_gpus == 0):
        return None
    if visible_gpus == 0:
        return "--device cuda was asked for but no CUDA device is visible; use --device cpu"
    if local_world_size > visible_gpus and backend != "gloo":
        return (f"this node starts {local_world_size} processes but has {visible_gpus} visible GPU"
                f"{'s' if visible_gpus != 1 else ''}: one process per GPU, so torchrun --nproc-per-node "
                f"{visible_gpus} (launch/local.sh counts them for you), or train on CPU with --device cpu "
                "(--backend gloo lets processes share a GPU, to test the DDP path)")
    return None


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pick_device(requested: str, local_rank: int, local_world_size: int = 1, backend: str = "auto") -> torch.device:
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, not {requested!r}")
    gpus = visible_gpus()
    problem = gpu_shortfall(requested, gpus, local_world_size, backend)
    if problem:
        raise ConfigError(problem)
    if requested == "cpu" or gpus == 0:
        return torch.device("cpu")
    return torch.device("cuda", local_rank % gpus)


def pick_backend(requested: str, device: torch.device) -> str:
    if requested not in ("auto", "nccl", "gloo"):
        raise ConfigError(f"--backend must be auto, nccl or gloo, not {requested!r}")
    if requested == "nccl" and device.type != "cuda":
        raise ConfigError("--backend nccl needs a GPU; this process runs on the CPU (use gloo or auto)")
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return requested


def init(requested_device: str = "auto", timeout_s: float = 1800, requested_backend: str = "auto") -> Dist:
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # a rank of torchrun (its parent): a killed torchrun must not leave its ranks training as
        # orphans that hold the run folder. A plain `python -m` keeps running when its shell ends.
        die_with_parent(os.getppid())
    rank, world_size = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # before the process group forms: a node with more processes than GPUs stops here, one line a rank
    device = pick_device(requested_device, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                         requested_backend)
    backend = None
    if world_size > 1:
        backend = pick_backend(requested_backend, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            # device_id binds NCCL's communicator to this GPU at once; gloo has no such binding
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                    device_id=device if backend == "nccl" else None)
        except Exception as e:
            restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
            if restarted and os.environ.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE") != "1":
                raise DistributedError(f"process group set-up failed after a torchrun restart ({e}); export "
                                       "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun (launch/ scripts do)") from e
            raise
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(rank, local_rank, world_size, device, backend)


def describe(d: Dist) -> str:
    return (f"[maize_ddp] rank {d.rank}/{d.world_size} local_rank {d.local_rank} host {socket.gethostname()} "
            f"device {d.device} backend {d.backend or 'none'}")


def on_main(d: Dist, step):
    """Run step() on rank 0 alone and hand its result to every rank. When it fails with an error
    a user can act on, rank 0 raises it and the other ranks raise FailedOnRankZero, so the
    message is printed once rather than once per rank."""
    failure, result = None, None
    if d.is_main:
        try:
            result = step()
        except (Error, OSError) as e:
            failure = e
    if d.enabled:
        box = [errors.describe(failure) if failure is not None else None, result]
        dist.broadcast_object_list(box, 0)
        if box[0] is not None and not d.is_main:
            raise FailedOnRankZero(box[0])
        result = box[1]
    if failure is not None:
        raise failure
    return result


def all_gather_objects(d: Dist, obj) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(d: Dist, values: list[float]) -> list[float]:
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor(d: Dist, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of `t` (sum or min over ranks), on t's device; `t` is left as it was."""
    t = t.clone()
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t


def broadcast_buffers(d: Dist, module: torch.nn.Module) -> None:
    """Make BatchNorm running statistics identical on every rank (rank 0's), so evaluation
    and the saved checkpoint agree whichever rank computes them."""
    if d.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, 0)


def average_buffers(d: Dist, module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm statistics) over ranks."""
    if d.enabled:
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= d.world_size


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    """Destroy the process group and with it gloo's worker threads, before Python finalizes.

    A gloo worker drops its last reference to a finished collective after the caller has moved
    on; when that collective's tensors were Python's (all_gather_object's), the drop needs the
    GIL. A worker still alive when the interpreter finalizes is killed as it takes the GIL, and
    the unwinding through C++ ends in std::terminate: "terminate called without an active
    exception", SIGABRT, and torchrun fails the whole job. Destroying the group here joins the
    workers (the destructor waits with the GIL released) while Python still runs.
    """
    if d.enabled and dist.is_initialized():
        gc.collect()  # DDP sits in reference cycles and holds the group until collected
        dist.destroy_process_group()
        gc.collect()


def run_command(device: str, work, say) -> int:
    """The main of a command that may run under torchrun: `work(d)` between init and shutdown;
    rank 0's result goes to `say`, whose line is printed; errors are one line (errors.run_main)."""
    def run() -> str | None:
        d = init(device)
        try:
            result = work(d)
        finally:
            shutdown(d)
        return result and say(result)
    return errors.run_main(run, extra=(dist.DistError,))
