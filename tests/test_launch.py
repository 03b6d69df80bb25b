"""How training jobs start their ranks and keep their logs (dre/launch.py), and that the train rules use it.

- Every attempt's log survives a retry: a real Snakemake run (local executor, ``--retries 1``) of a rule
  whose first attempt fails after printing "stopped by a signal after step 3"; Snakemake deletes the declared
  log before the retry, the hard-linked ``.attempt1.log`` keeps that text.
- The launch command and the SLURM resources for each job shape, one job per training stage.
- The workflow plans them: a dry run with ``nodes: 2`` shows srun with the sizes and the resources.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dre.errors import DreError
from dre.launch import JobShape, keep_attempt_log, launch_command, slurm_resources
from tests.workflow_layout import REPO, make_layout

RETRY_SNAKEFILE = """
import sys
sys.path.insert(0, {repo!r})
from dre.launch import keep_attempt_log

LOG = "logs/train/{{name}}.log"

rule all:
    input: "out/x.txt"

rule train:
    output: "out/{{name}}.txt"
    log: LOG
    params: keep_log=keep_attempt_log(LOG)
    shell:
        "{{params.keep_log}} "
        "if [ ! -e first.done ]; then touch first.done; echo 'stopped by a signal after step 3' >> {{log}}; exit 1; fi; "
        "echo 'finished at step 5' >> {{log}}; echo ok > {{output}}"
"""


def test_every_attempt_keeps_its_log_through_a_retry(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(RETRY_SNAKEFILE.format(repo=str(REPO))))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / ".cache")}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "--retries", "1"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    logs = tmp_path / "logs" / "train"
    first, second = (logs / "x.attempt1.log").read_text(), (logs / "x.attempt2.log").read_text()
    assert "attempt 1 " in first and "stopped by a signal after step 3" in first, first
    assert "attempt 2 " in second and "finished at step 5" in second and "stopped" not in second, second
    # the declared log is the latest attempt's (one file, two names)
    assert (logs / "x.log").read_text() == second
    assert os.path.samefile(logs / "x.log", logs / "x.attempt2.log")
    # a later run (after a manual rerun) takes the next number instead of overwriting
    (tmp_path / "out" / "x.txt").unlink()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-c1"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["x.attempt1.log", "x.attempt2.log", "x.attempt3.log", "x.log"]
    assert (logs / "x.attempt1.log").read_text() == first


def test_keep_attempt_log_needs_a_dot_log_name() -> None:
    with pytest.raises(DreError, match="must end in .log"):
        keep_attempt_log("logs/train/x.txt")


@pytest.mark.parametrize(
    ("shape", "command", "resources"),
    [
        (JobShape(1, 1), "python -m dre", {"gpu": 1, "nodes": 1}),
        (JobShape(1, 4), "torchrun --standalone --nproc_per_node 4 -m dre", {"gpu": 4, "nodes": 1}),
        (JobShape(2, 1), "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit=1 python -m dre",
         {"nodes": 2, "mpi": "srun", "tasks": 2, "gres": "gpu:1", "tasks_per_gpu": 0}),
        (JobShape(3, 4), "srun --nodes 3 --ntasks 12 --ntasks-per-node 4 --kill-on-bad-exit=1 python -m dre",
         {"nodes": 3, "mpi": "srun", "tasks_per_node": 4, "gres": "gpu:4", "tasks_per_gpu": 0}),
        (JobShape(1, 2, "srun"), "srun --nodes 1 --ntasks 2 --ntasks-per-node 2 --kill-on-bad-exit=1 python -m dre",
         {"nodes": 1, "mpi": "srun", "tasks_per_node": 2, "gres": "gpu:2", "tasks_per_gpu": 0}),
        (JobShape(1, 1, "mpiexec"), "python -m dre", {"gpu": 1, "nodes": 1}),
    ],
    ids=["1x1", "1x4", "2x1", "3x4", "1x2-srun", "1x1-mpiexec"],
)
def test_launch_command_and_resources(shape: JobShape, command: str, resources: dict) -> None:
    assert launch_command(shape) == command
    assert slurm_resources(shape) == resources


def test_mpiexec_launcher_restores_the_allocation_for_open_mpi() -> None:
    cmd = launch_command(JobShape(2, 2, "mpiexec"))
    assert cmd.endswith("mpiexec -n 4 --map-by ppr:2:node --bind-to none python -m dre")
    assert 'SLURM_TASKS_PER_NODE="2(x2)"' in cmd and "squeue -h -j" in cmd
    assert slurm_resources(JobShape(2, 2, "mpiexec"))["mpi"] == "mpiexec"
    assert slurm_resources(JobShape(2, 1, "mpiexec"), gpus_per_process=0) == {"nodes": 2, "mpi": "mpiexec", "tasks": 2}


@pytest.mark.parametrize("bad", [dict(nodes=0), dict(processes=0), dict(launcher="ssh")])
def test_bad_shapes_are_refused(bad: dict) -> None:
    with pytest.raises(DreError):
        JobShape(**bad)


def test_train_refuses_another_number_of_ranks() -> None:
    from tests.train_support import make_cfg

    cfg = make_cfg(1, [Path("x.lmdb")], Path("r"), Path("o.pt"), "--nodes", "2", "--processes", "1").resolved()
    cfg.check_world(2, "slurm")
    with pytest.raises(DreError, match=r"--nodes 2 × --processes 1 = 2 ranks expected, but the launcher \(single\) started 1"):
        cfg.check_world(1, "single")
    one = make_cfg(1, [Path("x.lmdb")], Path("r"), Path("o.pt")).resolved()
    one.check_world(4, "mpi")  # 1 × 1 declares nothing: `mpiexec -n 4 python -m dre train` still works


def test_workflow_plans_multi_node_training(tmp_path: Path) -> None:
    """A dry run with stage 1 on 2 nodes: srun with the sizes, the log kept per attempt, nodes/tasks/GPUs."""
    layout = make_layout(tmp_path)
    layout.replace_in("config/config.yaml", "  nodes: 1                    #", "  nodes: 2                    #")
    r = layout.snakemake("-n", "-p", "results/models/stage1/ffhq_affectnet.deca/model.pt")
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    train = text[text.index("rule train_stage1:"):]
    assert "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit=1 python -m dre train --stage 1" in train
    assert "--nodes 2 --processes 1 --launcher auto" in train  # the run checks it got its ranks
    assert "logs/train_stage1/ffhq_affectnet.deca.attempt" in train
    res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", train).group(1).split(", "))
    assert {k: res.get(k) for k in ("nodes", "mpi", "tasks", "gres", "gpu")} == {
        "nodes": "2", "mpi": "srun", "tasks": "2", "gres": "gpu:1", "gpu": None}, res
