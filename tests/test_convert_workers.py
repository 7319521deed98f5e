"""The converters' worker pool: results come back in job order, exact, through shared slots."""
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.workers import WorkerPool

ROOT = Path(__file__).resolve().parents[1]


def decoded(k, rows):
    """A job's result: a tuple of arrays of different dtypes, built from k, in a worker."""
    codes = np.full((rows, 7), k % 5, np.uint8)
    labels = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + k
    return codes, labels, np.int64(os.getpid())


def single(k):
    return np.arange(k, dtype=np.float64)


def fail_at(k, bad):
    if k == bad:
        raise ValueError(f"job {k} failed")
    return np.zeros(3, np.uint8)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_in_job_order_through_reused_slots(workers):
    sizes = [5, 0, 9, 1, 12, 3, 7, 12, 0, 2, 11, 4, 6]  # many more jobs than slots, empty ones too
    largest = max(sizes) * (7 + 8) + 8
    with WorkerPool(workers, largest) as pool:
        results = list(pool.ordered_map(decoded, ((k, rows) for k, rows in enumerate(sizes))))
    assert len(results) == len(sizes)
    pids = set()
    for k, (rows, (codes, labels, pid)) in enumerate(zip(sizes, results)):
        want_codes, want_labels, _ = decoded(k, rows)
        assert codes.dtype == np.uint8 and labels.dtype == np.float32
        assert np.array_equal(codes, want_codes) and np.array_equal(labels, want_labels)
        pids.add(int(pid))
    # results are copies: none changes when later jobs reuse its slot
    assert all(np.array_equal(r[1], decoded(k, n)[1]) for k, (n, r) in enumerate(zip(sizes, results)))
    # which workers take which jobs is the scheduler's business (a busy machine may let one take
    # them all); that several run at once is test_jobs_run_in_several_workers_at_once's
    assert (pids == {os.getpid()}) if workers == 1 else os.getpid() not in pids


_rendezvous = None  # a Barrier the forked workers inherit


def meet(k):
    """The first jobs wait for one another: they pass only when that many workers hold one each."""
    if k < _rendezvous.parties:
        _rendezvous.wait(timeout=600)  # the limit only stops a hung test
    return np.int64([os.getpid()])


@pytest.mark.parametrize("workers", [2, 3])
def test_jobs_run_in_several_workers_at_once(workers):
    import multiprocessing

    global _rendezvous
    _rendezvous = multiprocessing.get_context("fork").Barrier(workers)
    with WorkerPool(workers, 8) as pool:
        pids = [int(r[0]) for r in pool.ordered_map(meet, ((k,) for k in range(3 * workers)))]
    assert len(set(pids[:workers])) == workers and os.getpid() not in pids


def test_a_single_array_comes_back_as_an_array():
    with WorkerPool(2, 8 * 20) as pool:
        results = list(pool.ordered_map(single, ((k,) for k in range(20))))
    assert all(isinstance(r, np.ndarray) and np.array_equal(r, np.arange(k)) for k, r in enumerate(results))


def test_a_worker_error_reaches_the_caller():
    with pytest.raises(ValueError, match="job 5 failed"):
        with WorkerPool(2, 3) as pool:
            list(pool.ordered_map(fail_at, ((k, 5) for k in range(12))))


def test_a_result_larger_than_its_slot_is_an_error():
    with pytest.raises(RuntimeError, match="does not fit"):
        with WorkerPool(2, 8 * 10) as pool:
            list(pool.ordered_map(single, [(10,), (500,)]))


def run_script(code: str, timeout: int) -> subprocess.CompletedProcess:
    """Python code in a fresh process, so that a hang fails the test instead of stalling the suite."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_a_killed_worker_is_an_error_not_a_hang():
    # What the OOM killer does to a worker decoding a large shard.
    result = run_script("""
import os, signal, sys
import numpy as np
from convert.shards import ConvertError
from convert.workers import WorkerPool

def job(k):
    if k == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.zeros(3, np.uint8)

try:
    with WorkerPool(2, 3) as pool:
        list(pool.ordered_map(job, ((k,) for k in range(20))))
except ConvertError as e:
    sys.exit(f"error: {e}")
""", timeout=60)
    assert result.returncode == 1 and "error: a worker process died" in result.stderr, result.stderr


def test_shutting_down_after_errors_never_hangs():
    # Each error shuts a pool down with jobs in flight; killing workers there instead could leave
    # the result queue's lock held and hang the parent, in some hundreds of tries.
    result = run_script("""
import numpy as np
from convert.workers import WorkerPool

def fail_at(k, bad):
    if k == bad:
        raise ValueError("bad shard")
    return np.zeros(3, np.uint8)

errors = 0
for attempt in range(1000):
    try:
        with WorkerPool(2, 3) as pool:
            list(pool.ordered_map(fail_at, ((k, attempt % 4) for k in range(12))))
    except ValueError:
        errors += 1
print(errors)
""", timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["1000"], result.stderr


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for a parent to reap it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_their_parent():
    # SIGKILL of the converter runs no cleanup: before, both workers waited for jobs forever.
    proc = subprocess.Popen([sys.executable, "-c", """
import time
import numpy as np
from convert.workers import WorkerPool

def slow(k):
    time.sleep(60)
    return np.zeros(1)

with WorkerPool(2, 8) as pool:
    print(*pool.executor._processes, flush=True)
    list(pool.ordered_map(slow, ((k,) for k in range(4))))
"""], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(map(alive, workers))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 120  # the limit only stops a hung test
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:  # so that a failure here leaves no orphan either
        os.kill(pid, signal.SIGKILL)
    assert not survivors
