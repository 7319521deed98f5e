"""More processes than GPUs on a node: one line per rank, before any process group forms."""
import os
import subprocess
import sys

import pytest
import torch

from maize_ddp import distributed
from maize_ddp.errors import ConfigError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@pytest.mark.parametrize("requested,gpus,procs,expected", [
    ("cpu", 0, 4, None),
    ("cpu", 1, 4, None),            # CPU processes need no GPU each
    ("auto", 0, 4, None),           # auto on a machine without GPUs: CPU
    ("auto", 4, 4, None),
    ("cuda", 8, 2, None),
    ("auto", 1, 4, "this node starts 4 processes but has 1 visible GPU: one process per GPU, so torchrun "
                   "--nproc-per-node 1 (launch/local.sh counts them for you), or train on CPU with --device cpu"),
    ("cuda", 2, 3, "this node starts 3 processes but has 2 visible GPUs: one process per GPU, so torchrun "
                   "--nproc-per-node 2"),
    ("cuda", 0, 1, "--device cuda was asked for but no CUDA device is visible; use --device cpu"),
])
def test_gpu_shortfall(requested, gpus, procs, expected):
    # gloo takes several processes on one GPU (the DDP path on CUDA tensors, on a one-GPU machine)
    assert distributed.gpu_shortfall(requested, gpus, procs, "gloo") == (
        "--device cuda was asked for but no CUDA device is visible; use --device cpu" if gpus == 0 and requested == "cuda"
        else None)
    assert distributed.gpu_shortfall(requested, gpus, procs, "nccl") == distributed.gpu_shortfall(requested, gpus, procs)
    found = distributed.gpu_shortfall(requested, gpus, procs)
    assert found == expected if expected is None else found.startswith(expected), found


def test_init_stops_before_the_process_group(monkeypatch):
    """A node that shows one GPU to four processes: init refuses before init_process_group."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *a, **k: pytest.fail("the process group formed"))
    for name, value in {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="starts 4 processes but has 1 visible GPU"):
        distributed.init("auto")
    with pytest.raises(ConfigError, match="starts 4 processes"):
        distributed.init("cuda")


def test_each_rank_says_it_on_its_own_line(tmp_path):
    """torchrun with 2 processes asking for CUDA on this CPU machine (the honest case this machine can
    show): a rank prints one whole `error: rank R/2:` line, exit non-zero, no traceback of ours. The
    first rank to fail ends the launch: torchrun stops the other, which may say so or not have got
    that far, as scheduling decides."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda would start")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "maize_ddp.train", "--data", str(tmp_path / "x.zarr"), "--out", str(tmp_path / "run"),
                          "--device", "cuda"], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    ours = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    said = [f"error: rank {r}/2: --device cuda was asked for but no CUDA device is visible; use --device cpu"
            for r in (0, 1)]
    assert any(line in said for line in ours), res.stderr[-3000:]
    assert all(line in said or line.startswith("error: terminated (SIGTERM") for line in ours), res.stderr[-3000:]
    assert len(ours) == len(set(ours)) <= 2, res.stderr[-3000:]
    assert "maize_ddp/" not in res.stderr  # torchrun prints its own traceback; none runs through our code
    assert not (tmp_path / "run").exists()


def test_backend_choice():
    assert distributed.pick_backend("auto", torch.device("cpu")) == "gloo"
    assert distributed.pick_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert distributed.pick_backend("gloo", torch.device("cuda", 0)) == "gloo"
    with pytest.raises(ConfigError, match="--backend nccl needs a GPU"):
        distributed.pick_backend("nccl", torch.device("cpu"))
    with pytest.raises(ConfigError, match="--backend must be auto, nccl or gloo"):
        distributed.pick_backend("mpi", torch.device("cpu"))


def test_gloo_shares_one_gpu_among_processes(monkeypatch):
    """--backend gloo: four processes on a node with one GPU all take cuda:0 and form a gloo group."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    formed = {}
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda backend, **k: formed.update(backend=backend, device_id=k.get("device_id")))
    for name, value in {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    d = distributed.init("auto", requested_backend="gloo")
    assert (d.device, d.backend, d.rank) == (torch.device("cuda", 0), "gloo", 2)
    assert formed == {"backend": "gloo", "device_id": None}
