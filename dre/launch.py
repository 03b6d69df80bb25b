"""How a training job starts its processes, and keeps each attempt's log: shell text for the workflow's rules.

The train rules run one shell command per job. What that command looks like depends on the job's shape,
``nodes`` × ``processes`` (processes per node), from the stage's config section:

- 1 × 1: ``python -m dre`` (one process, no process group);
- 1 × P: ``torchrun --standalone --nproc_per_node P -m dre`` (torchrun sets ``RANK``/``WORLD_SIZE``/...);
- N × P, N > 1: ``srun --nodes N --ntasks-per-node P ... python -m dre``, one rank per SLURM task; every
  rank finds its rank, the world size and rank 0's node in SLURM's step variables
  (:mod:`dre.train.distributed`), so nothing has to be passed between nodes;
- the same with ``launcher: mpiexec``: Open MPI's ``mpiexec`` started inside the allocation (the original
  DiffusionRig's launcher), ``--map-by ppr:P:node`` over the allocation's nodes.

Why srun is called with explicit sizes: the Snakemake SLURM job-step executor removes the allocation's
``SLURM_*`` variables (all but the job id) before it runs a rule's command, so an ``srun`` there does not
inherit the task layout; given the sizes, it starts a step of exactly that shape in the job. For the same
reason the mpiexec launcher puts back the two variables Open MPI reads to find the allocation's nodes.

Why attempt logs: Snakemake deletes a rule's declared log before it runs the job again (``--retries``), and
with it the first attempt's "stopped by a signal after step N". :func:`keep_attempt_log` hard-links the
declared log to ``<log stem>.attemptN.log`` (the first free N) before the command writes to it, so every
attempt's text survives under its own name while the declared log still shows the latest one.

Standard library only: the Snakefile imports this module without the engines.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dre.errors import DreError

LAUNCHERS = ("auto", "srun", "mpiexec")
"""``auto``: plain/torchrun on one node, srun on several; ``srun``: always one rank per SLURM task;
``mpiexec``: Open MPI's mpiexec inside the SLURM allocation."""


@dataclass(frozen=True)
class JobShape:
    """How many nodes, and how many training processes (one per GPU) on each."""

    nodes: int = 1
    processes: int = 1
    launcher: str = "auto"

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.processes < 1:
            raise DreError(f"nodes {self.nodes} × processes {self.processes}: both must be ≥ 1")
        if self.launcher not in LAUNCHERS:
            raise DreError(f"launcher {self.launcher!r}: one of {', '.join(LAUNCHERS)}")

    @property
    def ranks(self) -> int:
        return self.nodes * self.processes

    @property
    def uses_slurm_tasks(self) -> bool:
        """True when the job's ranks are SLURM tasks (srun or mpiexec inside the allocation).

        One rank never is: the SLURM executor refuses an MPI-style job of one task, and one process needs no
        launcher whatever ``launcher`` says.
        """
        return self.nodes > 1 or (self.launcher != "auto" and self.ranks > 1)


def launch_command(shape: JobShape, python: str = "python") -> str:
    """The shell words that start ``dre`` once per rank (the rule appends ``train ...``)."""
    dre = f"{shlex.quote(python)} -m dre"
    if not shape.uses_slurm_tasks:
        if shape.processes == 1:
            return dre
        return f"torchrun --standalone --nproc_per_node {shape.processes} -m dre"
    if shape.launcher == "mpiexec":
        # Open MPI finds the allocation from SLURM_JOB_ID + the node list (SLURM_JOB_NODELIST, or SLURM_NODELIST in
        # older releases) + SLURM_TASKS_PER_NODE and starts its daemons with srun; the job-step executor removed
        # all but the job id, so they are read back (squeue) or restated (the shape) first.
        return (
            'SLURM_JOB_NODELIST="$(squeue -h -j "$SLURM_JOB_ID" -o %N)" '
            'SLURM_NODELIST="$(squeue -h -j "$SLURM_JOB_ID" -o %N)" '
            f'SLURM_TASKS_PER_NODE="{shape.processes}(x{shape.nodes})" '
            f"mpiexec -n {shape.ranks} --map-by ppr:{shape.processes}:node --bind-to none {dre}"
        )
    # --kill-on-bad-exit: a rank that dies (a node lost, an error on one rank) ends the step at once, so the
    # job fails and is retried instead of the other ranks waiting in a collective until the wall time.
    return (
        f"srun --nodes {shape.nodes} --ntasks {shape.ranks} --ntasks-per-node {shape.processes} "
        f"--kill-on-bad-exit=1 {dre}"
    )


def slurm_resources(shape: JobShape, gpus_per_process: int = 1) -> dict[str, object]:
    """Snakemake resources that make the SLURM executor ask for this shape.

    One node: ``gpu`` = processes (``--gpus=P``), as before. Several nodes: ``nodes`` (``--nodes=N``), the
    tasks (``--ntasks=N·P`` for one per node, ``--ntasks-per-node=P`` otherwise: the executor refuses
    ``tasks_per_node`` 1) and ``gres`` ``gpu:P`` (GPUs *per node*; ``--gpus`` would be a job total that SLURM
    may place unevenly). ``mpi`` marks the job as one whose command starts its own tasks: the job-step
    executor then runs it as is, not inside ``srun -n1``.
    """
    gpus = shape.processes * gpus_per_process
    if not shape.uses_slurm_tasks:
        return {"gpu": gpus, "nodes": 1}
    res: dict[str, object] = {"nodes": shape.nodes, "mpi": "mpiexec" if shape.launcher == "mpiexec" else "srun"}
    if shape.processes > 1:
        res["tasks_per_node"] = shape.processes
    else:
        res["tasks"] = shape.ranks
    if gpus:
        res["gres"] = f"gpu:{gpus}"
        res["tasks_per_gpu"] = 0  # with a GPU request the executor would turn `tasks` into --ntasks-per-gpu
    return res


def keep_attempt_log(log: str) -> str:
    """Shell text that keeps this attempt's log as ``<stem>.attemptN.log`` (see the module doc).

    ``log`` is the rule's declared log pattern (wildcards in braces are filled by Snakemake); it must end in
    ``.log``. The text ends with ``;`` and prints nothing; the command after it appends to ``log``.
    """
    if not log.endswith(".log"):
        raise DreError(f"log {log!r}: a train rule's log must end in .log")
    stem = log[: -len(".log")]
    q_log, q_stem = shlex.quote(log), shlex.quote(stem + ".attempt")
    return (
        f"n=1; while [ -e {q_stem}$n.log ]; do n=$((n+1)); done; "
        f": > {q_log}; ln -f {q_log} {q_stem}$n.log; "
        f'echo "attempt $n (snakemake log {log}), $(date -u +%FT%TZ) on $(hostname)" >> {q_log};'
    )
