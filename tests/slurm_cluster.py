"""A throwaway, real SLURM cluster on loopback: munged + slurmctld + N slurmd on this host.

Used by the session fixture in tests/test_slurm.py and, through launch/slurm/dev-cluster.sh,
by people who want to try the sbatch scripts without a cluster:

    python tests/slurm_cluster.py up   [--dir DIR] [--nodes 2] [--cpus 2]
    python tests/slurm_cluster.py down [--dir DIR]
    python tests/slurm_cluster.py status [--dir DIR]

Everything lives in one folder (config, munge socket and key, state, spool, logs, pid files), so the
cluster touches nothing system-wide: its own munged on its own socket with its own key, its own
ports (picked free at start), and the client commands find it through SLURM_CONF. Every daemon is
stopped by the PID we started it with (never by name), after the cluster's own jobs are cancelled.

Needs root (slurmd launches jobs as the submitting user; munged runs as user `munge`) and the
Debian packages slurmctld, slurmd, slurm-client and munge (.ci/install_slurm.sh installs them).
Standard library only, so any python3 can run it.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
}
DEFAULT_DEV_DIR = "/tmp/maize-slurm-dev"


def which(name: str) -> str | None:
    """shutil.which, also looking in the sbin folders that a non-login PATH may lack."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which(name, path=path)


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [b for b in BINARIES if which(b) is None]
    if missing:
        return ("SLURM/munge binaries not found (" + ", ".join(missing) + "); "
                "install them with `bash .ci/install_slurm.sh` (Debian: slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        return "starting a test SLURM cluster needs root (slurmd launches jobs, munged runs as user munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no `munge` user on this machine (the munge package creates it)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if we can.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class SlurmCluster:
    """A SLURM cluster whose files all live under `root`."""

    def __init__(self, root: str | os.PathLike, nodes: int = 2, cpus: int = 2, partition: str = "debug"):
        self.root = Path(root).resolve()
        self.nodes = [f"node{i + 1}" for i in range(nodes)]
        self.cpus = cpus
        self.partition = partition
        self.conf = self.root / "etc" / "slurm.conf"
        self.state_file = self.root / "cluster.json"
        self.pids: dict[str, int] = {}

    # ---- environment for client commands and jobs -------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """os.environ plus SLURM_CONF, and sbin on PATH; pass to every sbatch/squeue/... call."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/usr/local/sbin:/sbin"
        # A SLURM variable inherited from an outer job would confuse sbatch/srun of this cluster.
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if key != "SLURM_CONF":
                del env[key]
        return env

    def run(self, *cmd: str, timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess:
        res = subprocess.run(list(cmd), env=kw.pop("env", self.env), capture_output=True, text=True,
                             timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (rc={res.returncode}):\n{res.stdout}{res.stderr}")
        return res

    # ---- bring up / down ---------------------------------------------------------------------
    def _write_files(self) -> None:
        munge_dir = self.root / "munge"
        for d in ("etc", "state", "log", "run", "tmp", *(f"spool/{n}" for n in self.nodes)):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        # munged insists: its folders owned by munge, traversable by all, the key private to munge.
        os.chmod(self.root, 0o755)
        munge_dir.mkdir(mode=0o755, exist_ok=True)
        os.chmod(munge_dir, 0o755)
        key = munge_dir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        pw = pwd.getpwnam("munge")
        for p in (munge_dir, key):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        (self.root / "etc" / "plugstack.conf").write_text("")

        self.ctld_port = free_port()
        node_ports = {}
        for n in self.nodes:
            port = free_port()
            while port in node_ports.values() or port == self.ctld_port:
                port = free_port()
            node_ports[n] = port
        r = self.root
        lines = [
            "# Written by tests/slurm_cluster.py: a throwaway cluster on loopback.",
            "ClusterName=maizetest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire also sets how long a requeued job waits before it may start again (120 s).
            f"AuthInfo=socket={munge_dir}/munge.socket,cred_expire=5",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            f"TmpFS={r}/tmp",
            f"PlugStackConfig={r}/etc/plugstack.conf",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2,bf_interval=2",  # a requeued job starts soon after it may
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "EnforcePartLimits=ALL",       # an oversized job is rejected at submit, not pending forever
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",  # trust CPUs= below, whatever this host has
            "MinJobAge=3600",              # keep finished jobs visible to `scontrol show job`
            "KillWait=10",
            "InactiveLimit=0",
            "MessageTimeout=20",
            "SlurmdTimeout=300",
            "SlurmctldTimeout=300",
        ]
        for n in self.nodes:
            lines.append(f"NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={node_ports[n]} "
                         f"CPUs={self.cpus} RealMemory=1000 State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes={','.join(self.nodes)} Default=YES "
                     "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, cmd: list[str], **kw) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        # Own session: the daemons outlive a `dev-cluster.sh up` and ignore the caller's Ctrl-C.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=self.env, start_new_session=True, **kw)
        out.close()
        self.pids[name] = proc.pid
        self._save()

    def _save(self) -> None:
        self.state_file.write_text(json.dumps({
            "conf": str(self.conf), "nodes": self.nodes, "cpus": self.cpus, "pids": self.pids,
        }, indent=1))

    def _daemon_log(self, name: str) -> str:
        text = ""
        for p in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log",
                  self.root / "munge" / "munged.log"):
            if p.exists() and (name in p.name):
                text += f"--- {p} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]) + "\n"
        return text

    def _check_alive(self, name: str) -> None:
        pid = self.pids[name]
        if not _pid_alive(pid):
            raise RuntimeError(f"{name} (pid {pid}) exited during start-up\n{self._daemon_log(name)}")

    def start(self, timeout: float = 60) -> "SlurmCluster":
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self._write_files()
        try:
            m = self.root / "munge"
            self._spawn("munged", [which("munged"), "-F", f"--socket={m}/munge.socket",
                                   f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
                                   f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                        user="munge", group="munge")
            self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged socket",
                       lambda: self._check_alive("munged"))
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            self._wait(lambda: self.run("scontrol", "ping", check=False, timeout=10).returncode == 0,
                       timeout, "slurmctld to answer `scontrol ping`", lambda: self._check_alive("slurmctld"))
            for n in self.nodes:
                self._spawn(f"slurmd-{n}", [which("slurmd"), "-D", "-N", n, "-f", str(self.conf)])

            def nodes_idle() -> bool:
                for n in self.nodes:
                    self._check_alive(f"slurmd-{n}")
                res = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=10)
                states = dict(line.split() for line in res.stdout.splitlines() if line.strip())
                return all(states.get(n, "").startswith("idle") for n in self.nodes)

            self._wait(nodes_idle, timeout, "all nodes idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, cond, timeout: float, what: str, check=None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check:
                check()
            try:
                if cond():
                    return
            except (subprocess.TimeoutExpired, OSError):
                pass
            if time.monotonic() > deadline:
                sinfo = self.run("sinfo", "-N", check=False, timeout=10) if self.conf.exists() else None
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                                   + (f"sinfo:\n{sinfo.stdout}{sinfo.stderr}\n" if sinfo else "")
                                   + "".join(self._daemon_log(k) for k in self.pids))
            time.sleep(0.3)

    def stop(self, timeout: float = 20) -> None:
        """Cancel this cluster's jobs, then stop each daemon we started, by its PID."""
        if not self.pids:
            return
        if self.pids.get("slurmctld") and _pid_alive(self.pids["slurmctld"]):
            try:
                self.run("scancel", "--user", pwd.getpwuid(os.geteuid()).pw_name, check=False, timeout=15)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    q = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        order = [k for k in self.pids if k.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            pid = self.pids.get(name)
            if pid is None:
                continue
            expected = "munged" if name == "munged" else name.split("-")[0]
            if _pid_alive(pid) and expected in _cmdline(pid):  # never signal a recycled PID
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            del self.pids[name]
        self._save()

    @classmethod
    def load(cls, root: str | os.PathLike) -> "SlurmCluster":
        root = Path(root)
        data = json.loads((root / "cluster.json").read_text())
        c = cls(root, nodes=len(data["nodes"]), cpus=data["cpus"])
        c.pids = {k: int(v) for k, v in data["pids"].items()}
        return c

    def alive(self) -> bool:
        return bool(self.pids) and all(_pid_alive(p) for p in self.pids.values())

    # ---- jobs --------------------------------------------------------------------------------
    def sbatch(self, *args: str, env: dict | None = None, cwd: str | os.PathLike | None = None) -> int:
        """Submit; returns the job id. `env` entries are added to the cluster environment."""
        full_env = self.env
        full_env.update(env or {})
        res = self.run("sbatch", "--parsable", *args, env=full_env, cwd=cwd)
        return int(res.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        res = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if res.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", res.stdout))

    def state(self, job_id: int) -> str:
        return self.job(job_id).get("JobState", "UNKNOWN")

    def log_path(self, job_id: int) -> Path | None:
        out = self.job(job_id).get("StdOut")
        return Path(out) if out else None

    def log(self, job_id: int) -> str:
        path = self.log_path(job_id)
        if path and path.exists():
            return path.read_text(errors="replace")
        return f"(no log file {path})"

    def wait(self, job_id: int, timeout: float, states=TERMINAL_STATES, until=None) -> str:
        """Poll until the job reaches one of `states` (or `until()` is true); returns the state.

        On time-out: raise with the job record and its log, so a failing test says why."""
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in states or (until is not None and until()):
                return state
            if state in TERMINAL_STATES:
                break
            time.sleep(0.5)
        ended = state in TERMINAL_STATES
        raise (RuntimeError if ended else TimeoutError)(
            f"job {job_id} {'ended' if ended else 'is still'} {state}"
            f"{'' if ended else f' after {timeout:.0f}s'}, waiting for {sorted(states)}"
            f"{' or a condition' if until else ''}\n{self.describe(job_id)}")

    def describe(self, job_id: int) -> str:
        info = self.job(job_id)
        keys = ("JobState", "Reason", "ExitCode", "RunTime", "NodeList", "StdOut")
        head = " ".join(f"{k}={info.get(k)}" for k in keys)
        return f"job {job_id}: {head}\n--- job log ---\n{self.log(job_id)}\n--- end of job log ---"

    def scancel(self, job_id: int, *args: str) -> None:
        self.run("scancel", *args, str(job_id))


def make_tiny_store(root: str | os.PathLike, python: str = sys.executable, fmt: str = "zarr") -> Path:
    """A tiny synthetic store for launch tests: 256/64/64 rows of 200 bp, via the real CLIs.

    Returns ROOT/tiny.zarr (or .wds); the npz source stays in ROOT/npz for the convert job tests."""
    root = Path(root)
    src, dst = root / "npz", root / f"tiny.{fmt}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not (src / "train").exists():
        subprocess.run([python, "-m", "convert.synth", str(src), "--train", "256", "--val", "64", "--test", "64",
                        "--seq-len", "200", "--shard-size", "128", "--seed", "0"],
                       check=True, capture_output=True, text=True, timeout=300, env=env)
    if not dst.exists():
        module = "convert.npz_to_zarr" if fmt == "zarr" else "convert.npz_to_wds"
        subprocess.run([python, "-m", module, str(src), str(dst), "--workers", "1", "--quiet"],
                       check=True, capture_output=True, text=True, timeout=300, env=env)
    return dst


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A throwaway SLURM cluster on loopback (for trying launch/slurm/).")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", default=os.environ.get("MAIZE_SLURM_DIR", DEFAULT_DEV_DIR),
                   help=f"folder for config, state and logs (default $MAIZE_SLURM_DIR or {DEFAULT_DEV_DIR})")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="CPUs per node as SLURM sees them")
    a = p.parse_args(argv)
    root = Path(a.dir)
    existing = SlurmCluster.load(root) if (root / "cluster.json").exists() else None
    if a.action == "up":
        if existing and existing.alive():
            print(f"already up: export SLURM_CONF={existing.conf}")
            return 0
        if existing:
            existing.stop()
        reason = unavailable_reason()
        if reason:
            print(f"error: {reason}", file=sys.stderr)
            return 1
        root.mkdir(parents=True, exist_ok=True)
        c = SlurmCluster(root, nodes=a.nodes, cpus=a.cpus)
        t0 = time.monotonic()
        try:
            c.start()
        except (RuntimeError, TimeoutError) as e:
            print(f"error: could not start the cluster: {e}", file=sys.stderr)
            return 1
        print(f"SLURM cluster up in {time.monotonic() - t0:.1f}s: {', '.join(c.nodes)} "
              f"({c.cpus} CPUs each), logs in {root}/log")
        print(f"export SLURM_CONF={c.conf}")
        return 0
    if a.action == "down":
        if not existing:
            print(f"no cluster recorded in {root}")
            return 0
        existing.stop()
        print(f"SLURM cluster in {root} stopped")
        return 0
    if not existing or not existing.alive():
        print(f"down ({root})")
        return 1
    print(f"up: export SLURM_CONF={existing.conf}")
    print(existing.run("sinfo", check=False).stdout, end="")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
