"""A private two-node SLURM cluster with accounting, in a temp folder and two network namespaces.

What runs (all as children of this process, in the foreground, so nothing outlives a test run unnoticed):

- ``munged`` with its own key and socket;
- ``mariadbd`` from Debian with a private data dir, socket and pid file, listening on 127.0.0.1 only (a free
  port), ``--skip-grant-tables``: nothing but this cluster's ``slurmdbd`` ever connects to it;
- ``slurmdbd`` (accounting storage ``mysql``) and ``slurmctld`` in the machine's network namespace, the
  controller on a private bridge's address;
- two ``slurmd``, ``node1`` and ``node2``, each in its own network namespace (``ip netns``, a veth pair to
  the bridge) with its own host name (``unshare --uts``), its own ``/etc/hosts`` naming the nodes and this
  cluster's config dir mounted over ``/etc/slurm`` (a private mount namespace), so that jobs see what they
  would see on a real cluster: other nodes are other hosts, reached over TCP, and ``srun``/``squeue``
  inside a job find the cluster's config at the default place.

Why each choice (docs/slurm.md, "How this is tested"):

- Accounting (slurmdbd) is what real clusters run and what the Snakemake SLURM executor's default status
  command (``sacct``) needs; with it the profile runs exactly as users run it, no executor flags added.
- ``proctrack/linuxproc`` + ``task/none``: no systemd or cgroups needed; ``SlurmdParameters=config_overrides``
  lets each node announce more CPUs and memory than the machine has, so the user's profile (8 CPUs, 64 GB
  for stage 1) schedules unmodified; nothing enforces those limits, jobs share the real cores.
- A fake GPU per node (``gres.conf`` with ``File=/dev/null``) lets GPU requests schedule (the request's
  wiring is tested, not a GPU).
- PID 1 in these sandboxes may not reap: a stopped process may linger as a zombie, so stopping waits for
  ``/proc/PID/status`` to say ``Z`` (or the entry to vanish), not for ``kill -0`` to fail.

Stopping kills every process left in the node namespaces (job steps included), deletes the namespaces and
the bridge, then stops the daemons: :meth:`SlurmCluster.leftovers` lists anything that survived.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurmdbd", "slurm-client", "munge", "mariadb-server", "openmpi-bin",
            "libopenmpi-dev")
BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sinfo", "sbatch", "srun", "squeue", "scontrol", "sacct",
            "sacctmgr", "munged", "mungekey", "mariadbd", "mariadb-install-db", "ip", "unshare", "nsenter", "mpiexec")
NODES = ("node1", "node2")
CLUSTER = "dre"
ACCOUNT = "dre"

SLURM_CONF_TEMPLATE = """\
# Private two-node test cluster (tests/slurm/cluster.py). All paths absolute, nothing in /etc.
ClusterName={cluster}
SlurmctldHost=localhost({ctl_addr})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={ctl_addr}
AccountingStoragePort={dbd_port}
AccountingStoragePass={munge_socket}
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
MessageTimeout=20
KillWait=5
GresTypes=gpu
{node_lines}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

NODE_LINE = "NodeName={name} NodeHostname={name} NodeAddr={addr} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:{gpus} State=UNKNOWN"
GRES_LINE = "NodeName={name} Name=gpu File=/dev/null Count={gpus}"

SLURMDBD_CONF_TEMPLATE = """\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdAddr={ctl_addr}
DbdPort={dbd_port}
SlurmUser=root
PidFile={root}/run/slurmdbd.pid
LogFile={root}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=root
StorageLoc=slurm_acct_db
"""


class SlurmUnavailable(RuntimeError):
    """SLURM, MariaDB or the namespace tools are missing and cannot be installed here (a skip reason)."""


class ClusterError(RuntimeError):
    """Everything is installed but the cluster did not come up (a failure: the message has the logs' tails)."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin"):
        if Path(folder, name).exists():
            return str(Path(folder, name))
    return None


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def can_install() -> bool:
    return os.name == "posix" and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_installed(timeout: float = 900.0) -> None:
    """Install the Debian packages when missing and we may (root with apt-get).

    Raises :class:`SlurmUnavailable` where installing is impossible, :class:`ClusterError` where apt-get
    exists and failed (a broken set-up must not pass as a skip).
    """
    if not missing_binaries():
        return
    if not can_install():
        raise SlurmUnavailable(
            f"{', '.join(missing_binaries())} missing and not root with apt-get to install {' '.join(PACKAGES)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-y", "-q", "install", "--no-install-recommends", *PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:  # a stale package index is the usual cause: refresh once, retry
        subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, timeout=timeout)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or missing_binaries():
        raise ClusterError(f"apt-get could not install {' '.join(PACKAGES)} (missing: {missing_binaries()}): "
                           f"{r.stderr.strip()[-800:]}")


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``Z`` = zombie), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None
    return None


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    """True when ``pid`` has exited (gone or a zombie nobody reaps) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def _kill(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still alive after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, wait):
            return


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 30), **kw)


class SlurmCluster:
    """slurmctld + slurmdbd (MariaDB) + two slurmd in their own network namespaces; a context manager.

    ``env`` is the environment for clients and Snakemake on this machine (``SLURM_CONF`` set, no outer
    allocation's ``SLURM_*``). Inside the nodes the config is at the default ``/etc/slurm``.
    """

    def __init__(self, root: str | Path, *, cpus: int = 16, mem_mb: int = 131072, gpus: int = 1) -> None:
        self.root = Path(root).resolve()
        self.cpus, self.mem_mb, self.gpus = cpus, mem_mb, gpus
        self.etc = self.root / "etc"
        self.conf = self.etc / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.tag = f"{random.randrange(16**4):04x}"
        self.bridge = f"dreb{self.tag}"
        self.netns = {n: f"dre-{self.tag}-{n}" for n in NODES}
        self.net = self._pick_subnet()
        self.ctl_addr = f"{self.net}.1"
        self.addrs = {n: f"{self.net}.{11 + i}" for i, n in enumerate(NODES)}
        self._procs: dict[str, subprocess.Popen] = {}
        self._spawned: dict[str, int] = {}  # every daemon ever started here, for leftovers()
        self._made_links: list[str] = []
        self._made_netns: list[str] = []
        self.timings: dict[str, float] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        self.env["SLURM_CONF"] = str(self.conf)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _pick_subnet() -> str:
        used = _run(["ip", "-4", "addr"]).stdout if _which("ip") else ""
        for _ in range(100):
            net = f"10.213.{random.randrange(1, 255)}"
            if f" {net}." not in used:
                return net
        raise ClusterError("no free 10.213.x.0/24 subnet for the test cluster's bridge")

    def _write_files(self) -> None:
        for sub in ("state", "run", "log", "munge", "etc", "db", *(f"spool/{n}" for n in NODES)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses group/world-writable paths
        for path in (self.root, self.root / "munge"):
            os.chmod(path, 0o755)
        self.ports = {"ctld": _free_port(), "slurmd": _free_port(), "dbd": _free_port(), "db": _free_port()}
        common = dict(root=self.root, munge_socket=self.munge_socket, ctl_addr=self.ctl_addr)
        nodes = "\n".join(NODE_LINE.format(name=n, addr=self.addrs[n], cpus=self.cpus, mem_mb=self.mem_mb,
                                           gpus=self.gpus) for n in NODES)
        self.conf.write_text(SLURM_CONF_TEMPLATE.format(
            cluster=CLUSTER, node_lines=nodes, ctld_port=self.ports["ctld"], slurmd_port=self.ports["slurmd"],
            dbd_port=self.ports["dbd"], **common))
        (self.etc / "gres.conf").write_text("\n".join(GRES_LINE.format(name=n, gpus=self.gpus) for n in NODES) + "\n")
        dbd = self.etc / "slurmdbd.conf"  # found next to slurm.conf; slurmdbd insists on mode 600
        dbd.write_text(SLURMDBD_CONF_TEMPLATE.format(dbd_port=self.ports["dbd"], db_port=self.ports["db"], **common))
        dbd.chmod(0o600)
        hosts = ["127.0.0.1 localhost", f"{self.ctl_addr} {socket.gethostname()} slurm-controller"]
        hosts += [f"{self.addrs[n]} {n}" for n in NODES]
        (self.etc / "hosts").write_text("\n".join(hosts) + "\n")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self._procs[name] = subprocess.Popen(
            argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._spawned[name] = self._procs[name].pid
        log.close()

    def _fail(self, what: str) -> ClusterError:
        logs = []
        for path in sorted((self.root / "log").glob("*")):
            tail = path.read_text(errors="replace").strip().splitlines()[-10:]
            logs.append(f"--- {path.name}\n" + "\n".join(tail))
        self.stop()
        return ClusterError(f"{what}\n" + "\n".join(logs))

    def _wait(self, ready, timeout: float, *names: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if any(self._procs[n].poll() is not None for n in names):
                return False
            time.sleep(0.1)
        return bool(ready())

    def _ip(self, *args: str) -> None:
        r = _run(["ip", *args])
        if r.returncode != 0:
            raise self._fail(f"ip {' '.join(args)} failed: {r.stderr.strip()}")

    def _network(self) -> None:
        """A bridge with the controller's address and, per node, a namespace joined to it by a veth pair."""
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        self._ip("addr", "add", f"{self.ctl_addr}/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for i, node in enumerate(NODES):
            ns, outer, inner = self.netns[node], f"dre{self.tag}n{i + 1}", f"dre{self.tag}i{i + 1}"
            self._ip("netns", "add", ns)
            self._made_netns.append(ns)
            self._ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self._made_links.append(outer)
            self._ip("link", "set", inner, "netns", ns)
            self._ip("link", "set", outer, "master", self.bridge)
            self._ip("link", "set", outer, "up")
            for cmd in (["link", "set", "lo", "up"], ["link", "set", inner, "name", "eth0"],
                        ["addr", "add", f"{self.addrs[node]}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                        ["route", "add", "default", "via", self.ctl_addr]):
                self._ip("-n", ns, *cmd)

    def _database(self) -> None:
        """A private MariaDB (data dir, socket, pid file, port on 127.0.0.1) for slurmdbd."""
        datadir, sock = self.root / "db", self.root / "run" / "mariadb.sock"
        r = _run([_which("mariadb-install-db") or "mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                  "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db",
                  "--skip-name-resolve"], timeout=120)
        if r.returncode != 0:
            raise self._fail(f"mariadb-install-db failed: {r.stdout[-500:]} {r.stderr[-1500:]}")
        self._spawn("mariadbd", [
            _which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
            f"--port={self.ports['db']}", "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
            f"--pid-file={self.root / 'run' / 'mariadbd.pid'}", f"--log-error={self.root / 'log' / 'mariadbd.log'}",
            "--innodb-buffer-pool-size=32M", "--skip-name-resolve", "--skip-log-bin",
        ])

        def db_ready() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.ports["db"]), timeout=0.5).close()
                return True
            except OSError:
                return False

        if not self._wait(db_ready, 60.0, "mariadbd"):
            raise self._fail("mariadbd did not accept connections")

    def sacctmgr(self, *args: str) -> subprocess.CompletedProcess:
        return _run(["sacctmgr", "-i", *args], env=self.env)

    def _accounting(self) -> None:
        self._spawn("slurmdbd", [_which("slurmdbd") or "slurmdbd", "-D"])
        # the cluster, an account and this user's association, as an administrator sets them up
        if not self._wait(lambda: self.sacctmgr("add", "cluster", CLUSTER).returncode == 0, 60.0, "slurmdbd"):
            raise self._fail(f"slurmdbd did not come up: {self.sacctmgr('add', 'cluster', CLUSTER).stderr}")
        user = os.environ.get("USER") or "root"
        for args in (("add", "account", ACCOUNT, f"Cluster={CLUSTER}", "Description=tests", "Organization=dre"),
                     ("add", "user", user, f"Account={ACCOUNT}", f"DefaultAccount={ACCOUNT}", f"Cluster={CLUSTER}")):
            r = self.sacctmgr(*args)
            if r.returncode != 0:
                raise self._fail(f"sacctmgr {' '.join(args)} failed: {r.stdout} {r.stderr}")

    def _start_node(self, node: str) -> None:
        """slurmd in the node's namespace, with its host name, /etc/hosts and /etc/slurm."""
        script = (
            f"hostname {node} && mount --bind {self.etc / 'hosts'} /etc/hosts && "
            f"mount --bind {self.etc} /etc/slurm && exec {_which('slurmd') or 'slurmd'} -D -N {node}"
        )
        env = {k: v for k, v in self.env.items() if k != "SLURM_CONF"}  # the node uses /etc/slurm
        # nsenter, not `ip netns exec`: the latter mounts a fresh /sys, hiding /sys/fs/cgroup, which slurmd
        # 22.05 needs even with proctrack/linuxproc
        self._spawn(f"slurmd-{node}", [
            _which("nsenter") or "nsenter", f"--net=/run/netns/{self.netns[node]}", "unshare", "--uts", "--mount",
            "--propagation", "private", "sh", "-c", script], env=env)

    def node_states(self) -> dict[str, str]:
        r = _run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env, timeout=10)
        if r.returncode != 0:
            return {}
        return dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)

    def start(self, timeout: float = 45.0) -> SlurmCluster:
        t0 = time.monotonic()
        ensure_installed()
        Path(self.root).mkdir(parents=True, exist_ok=True)
        self._write_files()
        key = self.root / "munge" / "munge.key"
        r = _run([_which("mungekey") or "mungekey", "-c", "-f", "-k", str(key)])
        if r.returncode != 0:
            raise self._fail(f"mungekey failed: {r.stderr.strip()}")
        key.chmod(0o600)
        self._spawn("munged", [
            _which("munged") or "munged", "-F", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
            f"--pid-file={self.root / 'run' / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        ])
        if not self._wait(lambda: self.munge_socket.exists(), 10.0, "munged"):
            raise self._fail("munged did not create its socket")
        self._network()
        self._database()
        self._accounting()
        self._spawn("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-f", str(self.conf)])
        for node in NODES:
            self._start_node(node)
        names = ("slurmctld", *(f"slurmd-{n}" for n in NODES))
        if not self._wait(lambda: sorted(self.node_states().values()) == ["idle", "idle"], timeout, *names):
            raise self._fail(f"the nodes did not come up idle within {timeout:.0f} s: {self.node_states()}")
        self.timings["start_s"] = time.monotonic() - t0
        return self

    # ------------------------------------------------------------------ inspection
    def netns_pids(self, node: str) -> list[int]:
        r = _run(["ip", "netns", "pids", self.netns[node]])
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def leftovers(self) -> list[str]:
        """What would outlive :meth:`stop`: live daemons, namespaces, links (empty after a clean stop)."""
        out = [f"{name} (pid {pid})" for name, pid in self._spawned.items() if alive(pid)]
        names = _run(["ip", "netns", "list"]).stdout
        out += [f"netns {ns}" for ns in self.netns.values() if ns in names]
        links = _run(["ip", "-o", "link"]).stdout
        out += [f"link {link}" for link in (self.bridge, *(f"dre{self.tag}n{i + 1}" for i in range(len(NODES))))
                if f" {link}:" in links or f" {link}@" in links]
        for pidfile in (self.root / "run").glob("*.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if alive(pid):
                out.append(f"{pidfile.stem} (pid {pid})")
        return out

    # ------------------------------------------------------------------ tear-down
    def stop(self) -> None:
        """Stop the nodes (and every process in their namespaces), then the daemons; delete the network."""
        t0 = time.monotonic()
        for node in NODES:
            proc = self._procs.pop(f"slurmd-{node}", None)
            if proc is not None:
                _kill(proc.pid, 5.0)
            if self.netns[node] in self._made_netns:
                for pid in self.netns_pids(node):  # job steps, their processes
                    _kill(pid, 2.0)
        for ns in self._made_netns:
            _run(["ip", "netns", "del", ns])
        self._made_netns.clear()
        for link in reversed(self._made_links):
            _run(["ip", "link", "del", link])
        self._made_links.clear()
        for name in ("slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self._procs.pop(name, None)
            pids = {proc.pid} if proc else set()
            try:
                pids.add(int((self.root / "run" / f"{name}.pid").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
            for pid in pids:
                _kill(pid, 15.0)
            if proc is not None:
                try:
                    proc.wait(timeout=5.0)  # reap our own child
                except subprocess.TimeoutExpired:
                    pass
        for proc in self._procs.values():
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        self.timings["stop_s"] = time.monotonic() - t0

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
