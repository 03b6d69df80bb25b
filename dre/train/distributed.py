"""Process-group set-up for 1..N processes, whatever launched them.

One code path: every process finds its rank and the world size in its environment, joins a
``torch.distributed`` group (NCCL for CUDA devices, gloo for CPU) and trains its shard of each global
batch. Launchers understood, in priority order:

- torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``),
- MPI (``mpiexec -n N``): Open MPI's ``OMPI_COMM_WORLD_*`` or MPICH/Intel/PMIx ``PMI_RANK``/``PMI_SIZE``/
  ``PMIX_RANK``; the rendezvous address comes from ``MASTER_ADDR``/``MASTER_PORT`` or, failing that, is
  broadcast from rank 0 with mpi4py (PyPI torch has no MPI backend, so MPI only starts the processes),
- SLURM ``srun`` (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``); the
  address is ``MASTER_ADDR`` or the first host of the step's node list, the port ``MASTER_PORT`` or one
  derived from the job id (so every task agrees without talking).

A plain single process (or a one-task SLURM job step) runs without a process group.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist

from dre.errors import DreError
from dre.utils.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"  # single | torchrun | mpi | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], key: str) -> int | None:
    value = env.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise DreError(f"environment variable {key}={value!r} is not an integer") from exc


def expand_hostlist(spec: str) -> list[str]:
    """Expand a SLURM host list such as ``gpu[01-03,07],login1`` into host names (zero padding kept)."""
    hosts: list[str] = []
    for part in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", spec.strip()):  # commas outside brackets split
        m = re.fullmatch(r"([^\[\]]*)\[([^\]]+)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        prefix, ranges, suffix = m.groups()
        for rng in ranges.split(","):
            lo, _, hi = rng.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                hosts.extend(expand_hostlist(f"{prefix}{i:0{len(lo)}d}{suffix}"))
    return hosts


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _mpi_rendezvous(rank: int) -> tuple[str, int]:
    """Rank 0's host name and a free port on it, broadcast over MPI (the original's approach)."""
    try:
        from mpi4py import MPI  # optional: needs a system MPI library
    except Exception as exc:  # ImportError, or RuntimeError when libmpi is missing
        raise DreError(
            "started under MPI (mpiexec) but mpi4py could not be used to agree on a rendezvous address "
            f"({exc}); install mpi4py with a working MPI library, or export MASTER_ADDR and MASTER_PORT "
            "to every process (e.g. mpiexec -x MASTER_ADDR=host0 -x MASTER_PORT=29500 ...)"
        ) from exc
    comm = MPI.COMM_WORLD
    payload = (socket.gethostname(), _free_port()) if comm.Get_rank() == 0 else None
    addr, port = comm.bcast(payload, root=0)
    return str(addr), int(port)


_MPI_VARS = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"),
    ("PMIX_SIZE", "PMIX_RANK", "PMIX_LOCAL_RANK"),
)


def detect_env(env: Mapping[str, str] | None = None, *, use_mpi4py: bool = True) -> DistEnv:
    """Read rank, world size, local rank and the rendezvous address from the launcher's variables."""
    env = os.environ if env is None else env
    addr_env = env.get("MASTER_ADDR")
    port_env = _int(env, "MASTER_PORT")

    # torchrun / torch.distributed.launch / any launcher that already speaks env://
    if env.get("RANK") is not None and env.get("WORLD_SIZE") is not None:
        world = _int(env, "WORLD_SIZE") or 1
        rank = _int(env, "RANK") or 0
        local = _int(env, "LOCAL_RANK")
        return DistEnv(rank, world, rank if local is None else local, addr_env or "127.0.0.1",
                       port_env or 29500, "torchrun" if world > 1 else "single")

    # MPI: Open MPI, then MPICH/Intel MPI (PMI), then PMIx (size, rank and local-rank variables)
    mpi_rank = mpi_world = mpi_local = None
    for size_key, rank_key, local_key in _MPI_VARS:
        if env.get(size_key) is not None and env.get(rank_key) is not None:
            mpi_rank, mpi_world, mpi_local = _int(env, rank_key), _int(env, size_key), _int(env, local_key)
            break
    if mpi_world is not None and mpi_rank is not None:
        if mpi_world <= 1:
            return DistEnv(launcher="single")
        if mpi_local is None:
            mpi_local = mpi_rank
        if addr_env and port_env:
            addr, port = addr_env, port_env
        elif use_mpi4py:
            addr, port = _mpi_rendezvous(mpi_rank)
        else:
            raise DreError("MPI launch without MASTER_ADDR/MASTER_PORT and without mpi4py")
        return DistEnv(mpi_rank, mpi_world, mpi_local, addr, port, "mpi")

    # SLURM srun: the step's task count, not the allocation's (a batch script itself is one task)
    if env.get("SLURM_PROCID") is not None and env.get("SLURM_STEP_NUM_TASKS") is not None:
        # srun sets SLURM_STEP_NUM_TASKS for every step; a batch script (sbatch -n N running the command
        # once) has only SLURM_NTASKS and is a single process, so it must not wait for N-1 peers.
        world = _int(env, "SLURM_STEP_NUM_TASKS") or 1
        rank = _int(env, "SLURM_PROCID") or 0
        if world <= 1:
            return DistEnv(launcher="single")
        local = _int(env, "SLURM_LOCALID") or 0
        addr = addr_env
        if not addr:
            nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
            hosts = expand_hostlist(nodes) if nodes else []
            addr = hosts[0] if hosts else "127.0.0.1"
        port = port_env
        if not port:
            job = _int(env, "SLURM_JOB_ID") or 0
            step = _int(env, "SLURM_STEP_ID") or 0
            port = 15000 + (job * 7 + step) % 20000
        return DistEnv(rank, world, local, addr, port, "slurm")

    return DistEnv(launcher="single")


class Distributed:
    """A joined process group (or the single-process stand-in) with the few collectives training uses."""

    def __init__(self, env: DistEnv, device: Any) -> None:
        self.env = env
        self.device = device
        self._initialised = False
        # copies of the (frozen) env's answers, under the names the training loop reads
        self.rank, self.world, self.is_main, self.distributed = env.rank, env.world_size, env.is_main, env.distributed

    def init(self, timeout_s: float = 1800.0) -> Distributed:
        """Join the group: NCCL when this process trains on CUDA, gloo otherwise."""
        if not self.distributed:
            return self

        if dist.is_initialized():  # e.g. a test harness already joined
            self._initialised = True
            return self
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = self.device
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{self.env.master_addr}:{self.env.master_port}",
            rank=self.env.rank,
            world_size=self.env.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
            **kwargs,
        )
        self._initialised = True
        return self

    def close(self) -> None:
        if self._initialised:
            if dist.is_initialized():
                dist.destroy_process_group()
            self._initialised = False

    # --- collectives (no-ops for one process) -------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_mean(self, tensor: Any) -> Any:
        """Mean over ranks (in place on a copy); used for logged metrics only."""
        if not self.distributed:
            return tensor

        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.env.world_size

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]

        out: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the decision to resume and from which file)."""
        if not self.distributed:
            return obj

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any_true(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (stop requests, errors)."""
        if not self.distributed:
            return flag

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)


def select_device(spec: str, env: DistEnv) -> Any:
    """The device this rank trains on: ``cuda:<local_rank>`` under a multi-GPU launch, else ``--device``."""
    dev = resolve_device(spec)
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if env.distributed:
            if env.local_rank >= n and n > 0 and spec in ("auto", "cuda"):
                raise DreError(
                    f"process with local rank {env.local_rank} found only {n} CUDA device(s) on this node; "
                    "start one process per GPU"
                )
            index = dev.index if dev.index is not None and spec not in ("auto", "cuda") else env.local_rank % max(n, 1)
            dev = torch.device("cuda", index)
        elif dev.index is None:
            dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
    return dev
