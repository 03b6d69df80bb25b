"""A private one-node SLURM cluster in a temp folder, for testing the workflow's SLURM profile for real.

Why this shape (docs/reference.md; all verified on this kind of machine):
- Debian's ``slurmctld slurmd slurm-client munge`` need no systemd and no cgroups with
  ``proctrack/linuxproc`` + ``task/none``; everything (munge key and socket, state, spool, logs, pid
  files, slurm.conf) lives in one folder, nothing in /etc.
- A fake GPU (``Gres=gpu:1``, ``gres.conf`` with ``File=/dev/null``) lets ``resources: gpu=1`` rules
  schedule, which proves the profile's GPU request and wiring (not a GPU).
- The Snakemake jobstep plugin strips ``SLURM_*`` before its nested ``srun``, so a non-default
  ``SLURM_CONF`` is lost inside jobs: an ``srun`` wrapper first on ``PATH`` re-exports it.
- Without accounting, the executor must poll with ``squeue`` (``sacct`` fails and the plugin then hangs);
  :data:`TEST_EXECUTOR_FLAGS` are for this test cluster only, never for a user's profile.
- ``SlurmdParameters=config_overrides`` lets the node announce more CPUs and memory than the machine
  has, so the user's profile (8 CPUs, 64 GB for stage 1) schedules unmodified on a 2-core test box;
  nothing enforces those limits without cgroups, so jobs simply share the real cores.
- PID 1 in these sandboxes does not reap, so a stopped process may linger as a zombie: stopping waits
  for ``/proc/PID/status`` to say ``Z`` (or for the entry to vanish), not for ``kill -0`` to fail.

The daemons run in the foreground as children of this process (``-D`` / ``-F``), so they are reaped
here and cannot outlive a test run unnoticed; their pid files are still written and used for stopping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "openmpi-bin", "libopenmpi-dev")
BINARIES = ("slurmctld", "slurmd", "sinfo", "sbatch", "srun", "squeue", "scontrol", "munged", "mungekey")

# Flags the Snakemake SLURM executor needs on *this* accounting-less test cluster (docs/reference.md).
TEST_EXECUTOR_FLAGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-no-account",
    "--seconds-between-status-checks", "3",  # squeue is cheap here; the default 10 s only adds waiting
)

SLURM_CONF_TEMPLATE = """\
# Private single-node test cluster (tests/slurm/cluster.py). All paths absolute, nothing in /etc.
ClusterName=local
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:{gpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

GRES_CONF_TEMPLATE = "NodeName=localhost Name=gpu File=/dev/null Count={gpus}\n"

SRUN_WRAPPER_TEMPLATE = """\
#!/bin/sh
# The jobstep plugin strips SLURM_* (plugin issue #164); put this cluster's config back, then run srun.
export SLURM_CONF={conf}
exec /usr/bin/srun "$@"
"""


class SlurmUnavailable(RuntimeError):
    """The cluster cannot run here; the message is the skip reason shown to the user."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def ensure_installed(timeout: float = 600.0) -> None:
    """Install Debian's SLURM + munge (+ Open MPI) when missing and we may; else raise SlurmUnavailable."""
    if not missing_binaries():
        return
    if os.name != "posix" or not Path("/proc").is_dir():
        raise SlurmUnavailable("the local SLURM test cluster needs Linux")
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            f"SLURM/munge not installed ({', '.join(missing_binaries())} missing) and not root to apt-get them"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("SLURM/munge not installed and no apt-get to install them (not Debian/Ubuntu)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-y", "-q", "install", "--no-install-recommends", *PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:  # a stale package index is the usual cause: refresh once, retry
        subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, timeout=timeout)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or missing_binaries():
        raise SlurmUnavailable(f"apt-get could not install {' '.join(PACKAGES)}: {r.stderr.strip()[-500:]}")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``Z`` = zombie), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return None


def wait_gone(pid: int, timeout: float) -> bool:
    """True when ``pid`` has exited (gone or a zombie nobody reaps) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.05)
    return process_state(pid) in (None, "Z", "X")


class LocalSlurm:
    """Start/stop slurmctld + slurmd + munged under ``root``; use as a context manager.

    ``env`` is the environment for clients and for Snakemake: ``SLURM_CONF`` set and the ``srun``
    wrapper first on ``PATH``.
    """

    def __init__(self, root: str | Path, *, cpus: int = 16, mem_mb: int = 131072, gpus: int = 1) -> None:
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.mem_mb = mem_mb
        self.gpus = gpus
        self.conf = self.root / "slurm.conf"
        self.bin = self.root / "bin"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = str(self.conf)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"
        # A cluster of our own: never let an outer SLURM allocation's variables leak into it.
        for key in [k for k in self.env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del self.env[key]

    # ------------------------------------------------------------------ set-up
    def _write_files(self) -> None:
        for sub in ("state", "spool", "run", "log", "munge", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses group/world-writable paths: the folder and its socket folder are 0755.
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "munge", 0o755)
        self.conf.write_text(
            SLURM_CONF_TEMPLATE.format(
                root=self.root, munge_socket=self.munge_socket, cpus=self.cpus, mem_mb=self.mem_mb,
                gpus=self.gpus, ctld_port=_free_port(), slurmd_port=_free_port(),
            )
        )
        (self.root / "gres.conf").write_text(GRES_CONF_TEMPLATE.format(gpus=self.gpus))
        wrapper = self.bin / "srun"
        wrapper.write_text(SRUN_WRAPPER_TEMPLATE.format(conf=self.conf))
        wrapper.chmod(0o755)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self._procs[name] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def _fail(self, what: str) -> SlurmUnavailable:
        logs = []
        for path in sorted((self.root / "log").glob("*")):
            tail = path.read_text(errors="replace").strip().splitlines()[-8:]
            logs.append(f"--- {path.name}\n" + "\n".join(tail))
        self.stop()
        return SlurmUnavailable(f"{what}\n" + "\n".join(logs))

    def start(self, timeout: float = 30.0) -> LocalSlurm:
        ensure_installed()
        self._write_files()
        key = self.root / "munge" / "munge.key"
        r = subprocess.run([_sbin("mungekey"), "-c", "-f", "-k", str(key)], capture_output=True, text=True)
        if r.returncode != 0:
            raise self._fail(f"mungekey failed: {r.stderr.strip()}")
        key.chmod(0o600)
        self._spawn("munged", [
            _sbin("munged"), "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
            f"--pid-file={self.root / 'run' / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        ])
        if not self._wait(lambda: self.munge_socket.exists(), 10.0, "munged"):
            raise self._fail("munged did not create its socket")
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
        if not self._wait(lambda: self.node_state() in ("idle", "idle*"), timeout, "slurmctld", "slurmd"):
            raise self._fail(f"the node did not come up idle within {timeout:.0f} s (state: {self.node_state()!r})")
        return self

    def _wait(self, ready, timeout: float, *names: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if any(self._procs[n].poll() is not None for n in names):
                return False
            time.sleep(0.1)
        return bool(ready())

    def node_state(self) -> str:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""

    # ------------------------------------------------------------------ tear-down
    def stop(self, timeout: float = 15.0) -> None:
        """Stop slurmd, slurmctld and munged (in that order); zombies count as stopped."""
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            pids = {proc.pid} if proc else set()
            pidfile = self.root / "run" / f"{name}.pid"
            try:
                pids.add(int(pidfile.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
            for pid in pids:
                if process_state(pid) in (None, "Z", "X"):
                    continue
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                if not wait_gone(pid, timeout):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    wait_gone(pid, 5.0)
            if proc is not None:
                try:
                    proc.wait(timeout=5.0)  # reap our own child
                except subprocess.TimeoutExpired:
                    pass

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
