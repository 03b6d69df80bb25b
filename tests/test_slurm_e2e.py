"""SLURM for real: a private one-node cluster (tests/slurm/cluster.py) runs workflows through our profile.

Marked ``slurm`` (deselected by default; ``pytest -m slurm`` or ``.ci/run`` runs them). Each test is
skipped, with the reason, where the daemons cannot be installed or started.

1. A tiny standalone Snakefile (two dependent rules + one ``gpu=1`` rule) proves the harness and the
   profile's GPU mapping independently of the engines.
2. The built-in demo workflow end to end under SLURM (needs the engines; ~5-10 min on 2 cores).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.slurm.cluster import TEST_EXECUTOR_FLAGS, LocalSlurm, SlurmUnavailable

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("slurm")
    c = LocalSlurm(root)
    try:
        c.start()
    except (SlurmUnavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no local SLURM cluster: {exc}")
    yield c
    c.stop()


def run_snakemake_slurm(cluster: LocalSlurm, workdir: Path, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """``snakemake --executor slurm --profile profiles/slurm`` + the test-cluster flags, under ``timeout -k 5``.

    The executor can hang instead of failing when status polling breaks (docs/reference.md), so the
    hard ``timeout`` is what guarantees this test ends.
    """
    env = dict(cluster.env)
    env["XDG_CACHE_HOME"] = str(workdir / ".cache")
    # Jobs run `python -m dre` (and the jobstep `python -m snakemake`): this interpreter first on PATH,
    # after the srun wrapper, as an activated venv would have it.
    env["PATH"] = os.pathsep.join([str(cluster.bin), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [
        "timeout", "-k", "5", str(timeout),
        sys.executable, "-m", "snakemake", "--executor", "slurm", "--profile", str(PROFILE),
        *TEST_EXECUTOR_FLAGS, "--slurm-logdir", str(workdir / "slurm_logs"), "--jobs", "2", *args,
    ]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)


TINY_SNAKEFILE = """
rule all:
    input: "b.txt", "gpu.txt"

rule a:
    output: "a.txt"
    log: "logs/a.log"
    shell: "echo from-a > {output}; echo ${{SLURM_JOB_ID:-local}} > {log}"

rule b:
    input: "a.txt"
    output: "b.txt"
    log: "logs/b.log"
    shell: "cat {input} > {output}; echo from-b >> {output}; echo ${{SLURM_JOB_ID:-local}} > {log}"

rule gpu:
    output: "gpu.txt"
    log: "logs/gpu.log"
    resources: gpu=1
    shell: "echo gpus=${{CUDA_VISIBLE_DEVICES:-none}} job=${{SLURM_JOB_ID:-local}} > {output}; scontrol show job ${{SLURM_JOB_ID}} > {log}"
"""


def sbatch_calls(log: str) -> dict[str, str]:
    """Rule -> the sbatch command line the executor logged for it (``--verbose``).

    The plugin tags each job ``--comment rule_<rule>`` or ``rule_<rule>_wildcards_<values>``.
    """
    calls = {}
    for line in log.splitlines():
        m = re.search(r"sbatch .*--comment (\S+)", line)
        if m:
            rule = shlex.split(m.group(1))[0].removeprefix("rule_").split("_wildcards_", 1)[0]
            calls.setdefault(rule, line)
    return calls


def test_tiny_workflow_runs_under_slurm(cluster: LocalSlurm, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(TINY_SNAKEFILE))
    r = run_snakemake_slurm(cluster, tmp_path, [], timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert (tmp_path / "b.txt").read_text().split() == ["from-a", "from-b"]
    # Each rule ran as its own SLURM job (a job id, not the local fallback).
    ids = {n: (tmp_path / "logs" / f"{n}.log").read_text().split()[0] for n in ("a", "b")}
    assert all(v.isdigit() for v in ids.values()) and ids["a"] != ids["b"], ids
    # The gpu=1 rule was granted the (fake) GPU through the profile: SLURM set CUDA_VISIBLE_DEVICES.
    gpu = (tmp_path / "gpu.txt").read_text()
    assert "gpus=0" in gpu and "job=local" not in gpu, gpu
    job = (tmp_path / "logs" / "gpu.log").read_text()
    assert "gres/gpu=1" in job or "gpu:1" in job, job
    # A rerun has nothing to do.
    again = run_snakemake_slurm(cluster, tmp_path, [], timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_demo_runs_under_slurm(cluster: LocalSlurm, tmp_path: Path) -> None:
    """The built-in demo through the unmodified profile: every rule a SLURM job, GPU rules on the fake GPU."""
    from tests.demo_project import CONFIG_FLAG, DEMO_TARGET, make_project, planned_jobs

    project = make_project(tmp_path / "project")
    r = run_snakemake_slurm(cluster, project.root, ["--verbose", CONFIG_FLAG, DEMO_TARGET], timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert planned_jobs(r).get("train_stage1") == 1 and planned_jobs(r).get("edit") == 1
    for path in ("results/models/stage2/demo.deca/model.pt", f"{DEMO_TARGET}/grid.png", f"{DEMO_TARGET}/edit.parquet"):
        assert (project.root / path).exists(), path
    # GPU rules asked SLURM for a GPU (the plugin's sbatch lines), CPU rules did not; training got its runtime.
    calls = sbatch_calls(out)
    assert {"align", "train_stage1", "train_stage2", "edit"} <= set(calls), (sorted(calls), out[-6000:])
    assert "--gpus=1" in calls["train_stage1"] and "--gpus" not in calls["align"], calls
    assert re.search(r" -t '?2880'? ", calls["train_stage1"]), calls["train_stage1"]
    again = run_snakemake_slurm(cluster, project.root, [CONFIG_FLAG, DEMO_TARGET], timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
