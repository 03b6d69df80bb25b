"""SLURM for real: a private two-node cluster with accounting (tests/slurm/cluster.py) runs workflows through
``snakemake --profile profiles/slurm`` exactly as a user runs it (default ``sacct`` status, no executor flags).

Marked ``slurm`` (deselected by default; ``pytest -m slurm`` or ``.ci/run`` runs them). Where root and apt-get
exist the cluster must start: a cluster that cannot is a failure, not a skip; elsewhere they skip.

1. The cluster starts and stops in under a minute and leaves no process, namespace or link behind.
2. A tiny standalone Snakefile (two dependent rules + one ``gpu=1`` rule): the profile's GPU mapping.
3. Stage 1 on 2 nodes × 1 process (srun; gloo on CPU) through the workflow equals one process on the same
   global batch; the same with Open MPI's ``mpiexec`` across the two nodes; a rank killed on one node fails
   the job and the profile's retry resumes from the checkpoint to the same final weights. The three runs
   are submitted at once: most of a short job's time is the executor's status-check waits (40 s, then
   longer), which then overlap.
4. ``scancel`` of a running job: the executor plugin (2.8.0) hangs (xfail, strict: turns green when fixed).
5. The built-in demo end to end under SLURM (slow: ~15 jobs).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.slurm.cluster import NODES, ClusterError, SlurmCluster, SlurmUnavailable, alive
from tests.train_support import make_cfg, write_tiny_lmdb
from tests.workflow_layout import make_layout

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
STAGE1_MODEL = "results/models/stage1/ffhq_affectnet.deca/model.pt"
RUN_DIR = "results/runs/stage1/ffhq_affectnet.deca"
STEPS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM cluster: {exc}")
    except ClusterError as exc:
        pytest.fail(f"the local SLURM cluster did not start on a machine that can run it: {exc}", pytrace=False)
    yield c
    c.stop()


def slurm_env(cluster: SlurmCluster, workdir: Path) -> dict[str, str]:
    env = dict(cluster.env)
    env["XDG_CACHE_HOME"] = str(workdir / ".cache")
    # Jobs run `python -m dre` (and the job step `python -m snakemake`): this interpreter first on PATH, as an
    # activated venv has it. We are root here; Open MPI refuses root unless told (a user's job is not root).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    return env


def snakemake_cmd(timeout: int, *args: str) -> list[str]:
    """``snakemake --profile profiles/slurm`` under ``timeout -k 5`` (a hung executor must not hang the test)."""
    return ["timeout", "-k", "5", str(timeout), sys.executable, "-m", "snakemake", "--profile", str(PROFILE), *args]


def run_snakemake(cluster: SlurmCluster, workdir: Path, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(timeout, *args), cwd=workdir, env=slurm_env(cluster, workdir),
                          capture_output=True, text=True)


def sbatch_calls(log: str) -> dict[str, str]:
    """Rule -> the sbatch command line the executor logged for it (``--verbose``)."""
    calls = {}
    for line in log.splitlines():
        m = re.search(r"sbatch .*--comment (\S+)", line)
        if m:
            rule = shlex.split(m.group(1))[0].removeprefix("rule_").split("_wildcards_", 1)[0]
            calls.setdefault(rule, line)
    return calls


def sacct(cluster: SlurmCluster, *args: str) -> list[dict[str, str]]:
    fields = ["JobID", "State", "NNodes", "NTasks", "NodeList", "ExitCode"]
    r = subprocess.run(["sacct", "-P", "-n", "-o", ",".join(fields), *args], env=cluster.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [dict(zip(fields, line.split("|"))) for line in r.stdout.splitlines() if line]


# ---------------------------------------------------------------------------------------------- the cluster
def test_cluster_starts_and_stops_fast_and_leaves_nothing(tmp_path: Path) -> None:
    c = SlurmCluster(tmp_path / "c")
    try:
        c.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM cluster: {exc}")
    except ClusterError as exc:
        pytest.fail(f"the local SLURM cluster did not start: {exc}", pytrace=False)
    try:
        assert c.node_states() == {"node1": "idle", "node2": "idle"}
        # accounting is on: sacct answers from slurmdbd, the user has an account
        r = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", "format=cluster,account,user"], env=c.env,
                           capture_output=True, text=True, timeout=30)
        assert "dre|dre|" in r.stdout, r.stdout + r.stderr
        # each node is its own host: own name, own address, reaches the other over the bridge
        job = subprocess.run(["srun", "-N2", "-n2", "-l", "sh", "-c", "hostname; hostname -I; getent hosts node1 node2"],
                             env=c.env, capture_output=True, text=True, timeout=60)
        assert job.returncode == 0, job.stdout + job.stderr
        lines = job.stdout
        assert re.search(r"^0: node1$", lines, re.M) and re.search(r"^1: node2$", lines, re.M), lines
        assert c.addrs["node1"] in lines and c.addrs["node2"] in lines, lines
    finally:
        c.stop()
    print(f"cluster start {c.timings['start_s']:.1f} s, stop {c.timings['stop_s']:.1f} s")
    assert c.timings["start_s"] + c.timings["stop_s"] < 60, c.timings
    assert c.leftovers() == []


# ---------------------------------------------------------------------------------------------- tiny workflow
TINY_SNAKEFILE = """
rule all:
    input: "b.txt", "gpu.txt"

rule a:
    output: "a.txt"
    log: "logs/a.log"
    shell: "echo from-a > {output}; echo ${{SLURM_JOB_ID:-local}} $(hostname) > {log}"

rule b:
    input: "a.txt"
    output: "b.txt"
    log: "logs/b.log"
    shell: "cat {input} > {output}; echo from-b >> {output}; echo ${{SLURM_JOB_ID:-local}} $(hostname) > {log}"

rule gpu:
    output: "gpu.txt"
    log: "logs/gpu.log"
    resources: gpu=1
    shell: "echo gpus=${{CUDA_VISIBLE_DEVICES:-none}} job=${{SLURM_JOB_ID:-local}} > {output}; scontrol show job ${{SLURM_JOB_ID}} > {log}"
"""


def test_tiny_workflow_runs_under_slurm(cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(TINY_SNAKEFILE))
    r = run_snakemake(cluster, tmp_path, [], timeout=400)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert (tmp_path / "b.txt").read_text().split() == ["from-a", "from-b"]
    # each rule ran as its own SLURM job, on a node of the cluster
    logs = {n: (tmp_path / "logs" / f"{n}.log").read_text().split() for n in ("a", "b")}
    assert all(v[0].isdigit() and v[1] in NODES for v in logs.values()) and logs["a"][0] != logs["b"][0], logs
    gpu = (tmp_path / "gpu.txt").read_text()
    assert "gpus=0" in gpu and "job=local" not in gpu, gpu
    job = (tmp_path / "logs" / "gpu.log").read_text()
    assert "gres/gpu=1" in job or "gpu:1" in job, job
    # the executor's default status command answered: accounting saw every job complete
    states = {row["State"] for row in sacct(cluster, "-X", "-j", ",".join(v[0] for v in logs.values()))}
    assert states == {"COMPLETED"}, states
    again = run_snakemake(cluster, tmp_path, [], timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


# ---------------------------------------------------------------------------------------------- multi-node
TINY_CONFIG = """
model: {{image_size: 32, model_channels: 32, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [16],
        latent_dim: 8, dropout: 0.1}}
diffusion: {{diffusion_steps: 100}}
stage1:
  batch_size: 4
  max_steps: {steps}
  save_every: 1
  keep: 10
  log_every: 1
  num_workers: 0
  device: cpu
  precision: fp32
  nodes: 2
  processes: 1
  launcher: {launcher}
"""
COMMON = ("--batch-size", "4", "--log-every", "1", "--dropout", "0.1", "--weights", "0.5,0.5", "--precision", "fp32")


def stage1_project(root: Path, launcher: str) -> Path:
    """The real workflow, the prior's two LMDBs already packed (tiny), stage 1 set to 2 nodes."""
    layout = make_layout(root)
    for i, album in enumerate(("ffhq", "affectnet")):
        write_tiny_lmdb(root / "results" / "lmdb" / f"{album}.deca.lmdb", 6, seed=10 + i)
    (root / "config" / "tiny.yaml").write_text(TINY_CONFIG.format(steps=STEPS, launcher=launcher))
    return layout.root


def stage1_args(*extra: str) -> list[str]:
    # The LMDBs are made above (the packing rules are not what is tested): only train_stage1 may run.
    # (`=`: both options take several values and would swallow the target)
    return ["--configfile=config/tiny.yaml", "--allowed-rules=train_stage1", *extra, STAGE1_MODEL]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-process reference on the same LMDBs and global batch, every step's state kept."""
    from dre.train import run as run_training

    root = tmp_path_factory.mktemp("one")
    lmdbs = [write_tiny_lmdb(root / f"{a}.lmdb", 6, seed=10 + i) for i, a in enumerate(("ffhq", "affectnet"))]
    torch.set_num_threads(1)
    run_training(make_cfg(1, lmdbs, root / "run", root / "one.pt", *COMMON, "--max-steps", STEPS + 1,
                          "--save-every", "1", "--keep", STEPS + 2))  # fmt: skip
    return root / "run" / "checkpoints"


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().double().reshape(-1) for v in state.values() if v.is_floating_point()])


def assert_matches_one_process(model: Path, one: Path) -> float:
    """The tolerance of tests/test_train_dist.py, measured there: the split changes only the order of float
    sums; a step missed or doubled moves the weights ~100× further than the tolerance. Returns max |Δ|."""
    two = torch.load(model, weights_only=True)["state_dict"]

    def at(step: int) -> dict[str, torch.Tensor]:
        return torch.load(one / f"state-{step:07d}.pt", weights_only=True)["model"]

    same = at(STEPS)
    worst = 0.0
    for k, v in same.items():
        if v.is_floating_point():
            torch.testing.assert_close(two[k], v, rtol=0, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
            worst = max(worst, float((two[k].double() - v.double()).abs().max()))
        else:
            assert torch.equal(two[k], v), k
    w2 = _flat(two)
    d_same = float((w2 - _flat(same)).norm())
    d_other = min(float((w2 - _flat(at(s))).norm()) for s in (STEPS - 1, STEPS + 1))
    assert d_same < 0.01 * d_other, (d_same, d_other)
    return worst


def job_of(out: str) -> str:
    """The SLURM job id of the (last) job the executor submitted."""
    ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    assert ids, out[-3000:]
    return ids[-1]


@dataclass
class Stage1Run:
    root: Path
    proc: subprocess.Popen
    out: str = ""
    killed: int | None = None
    seen: str = ""

    @property
    def log(self) -> Path:
        return self.root / "logs" / "train_stage1" / "ffhq_affectnet.deca.log"

    def failure(self) -> str:
        return self.out[-4000:] + (self.log.read_text()[-3000:] if self.log.exists() else "")


@pytest.fixture(scope="module")
def stage1_runs(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stage1Run]:
    """Three stage-1 trainings on 2 nodes × 1 process, submitted at once (their jobs share the nodes, so the
    executor's status-check waits overlap): srun, mpiexec, and srun with a rank on node2 killed as soon as
    the first checkpoint exists (the profile's retry must finish it)."""
    runs: dict[str, Stage1Run] = {}
    for name, launcher in (("srun", "auto"), ("mpiexec", "mpiexec"), ("kill", "auto")):
        root = stage1_project(tmp_path_factory.mktemp(name), launcher)
        proc = subprocess.Popen(snakemake_cmd(900, *stage1_args("--verbose")), cwd=root, env=slurm_env(cluster, root),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs[name] = Stage1Run(root, proc)
    # drain the outputs in threads (a full pipe would block Snakemake) while watching the kill run
    readers = {name: _reader(run) for name, run in runs.items()}
    kill = runs["kill"]
    first = kill.root / RUN_DIR / "checkpoints" / "state-0000001.pt"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and kill.proc.poll() is None:
            if first.exists():
                kill.killed = _rank_on(cluster, "node2", kill.root)
                if kill.killed is not None:
                    os.kill(kill.killed, signal.SIGKILL)
                    break
                kill.seen = kill.seen or f"netns pids {cluster.netns_pids('node2')}; dre processes:\n{_dre_processes()}"
            time.sleep(0.05)
        for name, run in runs.items():
            run.proc.wait(timeout=900)
            readers[name].join(timeout=30)
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
    return runs


def _reader(run: Stage1Run) -> threading.Thread:
    def read() -> None:
        run.out = run.proc.stdout.read()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_two_nodes_with_srun_train_like_one_process(cluster: SlurmCluster, stage1_runs, one_process: Path) -> None:
    run = stage1_runs["srun"]
    assert run.proc.returncode == 0, run.failure()
    root, out = run.root, run.out
    call = sbatch_calls(out)["train_stage1"]
    for flag in ("--nodes=2", "--ntasks=2", "--gres=gpu:1", "--cpus-per-task=8"):
        assert flag in call, call
    assert "--gpus" not in call, call
    # accounting: the training step ran 2 tasks on both nodes
    steps = sacct(cluster, "-j", job_of(out))
    assert any(s["NTasks"] == "2" and s["NNodes"] == "2" and s["State"] == "COMPLETED" for s in steps), steps
    state = torch.load(root / RUN_DIR / "checkpoints" / f"state-{STEPS:07d}.pt", weights_only=True)
    assert state["world_size"] == 2
    worst = assert_matches_one_process(root / STAGE1_MODEL, one_process)
    print(f"2 nodes x 1 process (srun) vs 1 process: max |dw| = {worst:.3g}")
    log = (root / "logs" / "train_stage1" / "ffhq_affectnet.deca.attempt1.log").read_text()
    assert "attempt 1 " in log and "on node1" in log, log


def test_two_nodes_with_mpiexec_train_like_one_process(cluster: SlurmCluster, stage1_runs, one_process: Path) -> None:
    run = stage1_runs["mpiexec"]
    assert run.proc.returncode == 0, run.failure()
    root, out = run.root, run.out
    call = sbatch_calls(out)["train_stage1"]
    assert "--nodes=2" in call and "--ntasks=2" in call, call
    # mpiexec ran on the batch node and started its daemon on the other node through srun (a step there)
    steps = {s["JobID"].split(".", 1)[1]: s for s in sacct(cluster, "-j", job_of(out)) if "." in s["JobID"]}
    batch_node = steps["batch"]["NodeList"]
    daemon_nodes = {s["NodeList"] for k, s in steps.items() if k.isdigit()}
    assert {batch_node} | daemon_nodes == set(NODES) and batch_node not in daemon_nodes, steps
    state = torch.load(root / RUN_DIR / "checkpoints" / f"state-{STEPS:07d}.pt", weights_only=True)
    assert state["world_size"] == 2
    worst = assert_matches_one_process(root / STAGE1_MODEL, one_process)
    srun_model = torch.load(stage1_runs["srun"].root / STAGE1_MODEL, weights_only=True)["state_dict"]
    mpi_model = torch.load(root / STAGE1_MODEL, weights_only=True)["state_dict"]
    vs_srun = max(float((mpi_model[k].double() - v.double()).abs().max()) for k, v in srun_model.items()
                  if v.is_floating_point())
    print(f"2 nodes x 1 process (mpiexec) vs 1 process: max |dw| = {worst:.3g}; vs srun: {vs_srun:.3g}")


def _rank_on(cluster: SlurmCluster, node: str, root: Path) -> int | None:
    """The pid of the training rank of the project ``root`` on ``node`` (srun marks each task's environment)."""
    for pid in cluster.netns_pids(node):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cwd = Path(f"/proc/{pid}/cwd").resolve()
        except OSError:
            continue
        if (cmd[:1] != [b"srun"] and b"train" in cmd and f"SLURMD_NODENAME={node}".encode() in environ
                and cwd == root.resolve() and alive(pid)):
            return pid
    return None


def _dre_processes() -> str:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "dre" in cmd and "train" in cmd:
                out.append(f"{proc.name}: {cmd[:120]}")
    return "\n".join(out)


def test_killed_rank_fails_the_job_and_the_retry_resumes_to_the_same_weights(stage1_runs) -> None:
    run = stage1_runs["kill"]
    logs = run.root / "logs" / "train_stage1"
    first = logs / "ffhq_affectnet.deca.attempt1.log"
    assert run.killed is not None, ("no rank found on node2 after the first checkpoint", run.seen,
                                    first.read_text()[-2000:] if first.exists() else "", run.out[-2000:])
    assert run.proc.returncode == 0, run.failure()
    first_log = first.read_text()
    second_log = (logs / "ffhq_affectnet.deca.attempt2.log").read_text()
    assert "node2: task 1: Killed" in first_log, first_log  # srun saw the rank die and ended the step...
    assert f"step {STEPS}/{STEPS}" not in first_log, first_log  # ...before the first attempt finished
    assert "resuming from" in second_log, second_log  # and the retry continued from its checkpoint
    # the same weights as the uninterrupted two-node run, bit for bit
    want = torch.load(stage1_runs["srun"].root / STAGE1_MODEL, weights_only=True)["state_dict"]
    got = torch.load(run.root / STAGE1_MODEL, weights_only=True)["state_dict"]
    assert want.keys() == got.keys()
    assert all(torch.equal(got[k], v) for k, v in want.items()), [k for k, v in want.items() if not torch.equal(got[k], v)]


# ---------------------------------------------------------------------------------------------- scancel
SLEEPY_SNAKEFILE = """
rule sleepy:
    output: "done.txt"
    log: "logs/sleepy.log"
    shell: "echo $SLURM_JOB_ID > {log}; sleep 600; touch {output}"
"""


@pytest.mark.xfail(
    strict=True,
    reason="snakemake-executor-plugin-slurm 2.8.0 compares sacct's State to exact strings; a job cancelled with "
    "scancel reads 'CANCELLED by 0', so the run polls it forever (docs/slurm.md: Ctrl-C and rerun)",
)
def test_scancel_ends_the_run(cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SLEEPY_SNAKEFILE))
    proc = subprocess.Popen(snakemake_cmd(300, "--retries", "0"), cwd=tmp_path, env=slurm_env(cluster, tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = tmp_path / "logs" / "sleepy.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (log.exists() and log.read_text().strip()):
            time.sleep(0.2)
        job = log.read_text().strip()
        subprocess.run(["scancel", job], env=cluster.env, check=True, timeout=30)
        # a fixed plugin sees the cancelled job at its first status check, 40 s after the submission
        try:
            proc.wait(timeout=75)
        except subprocess.TimeoutExpired:
            pass
        state = sacct(cluster, "-X", "-j", job)[0]["State"]
        assert state.startswith("CANCELLED"), state
        assert proc.poll() is not None, f"snakemake still polling job {job} ({state!r}) 75 s after scancel"
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:  # the way out docs/slurm.md gives: Ctrl-C
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------------------------- the demo
def test_demo_runs_under_slurm(cluster: SlurmCluster, tmp_path: Path) -> None:
    """The built-in demo through the unmodified profile: every rule a SLURM job, GPU rules on the fake GPU,
    report rules local."""
    from tests.demo_project import CONFIG_FLAG, DEMO_TARGET, make_project, planned_jobs

    project = make_project(tmp_path / "project")
    r = run_snakemake(cluster, project.root, ["--verbose", CONFIG_FLAG], timeout=2400)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    plan = planned_jobs(r)
    assert plan.get("train_stage1") == 1 and plan.get("edit", 0) >= 1, plan
    for path in ("results/models/stage2/demo.deca/model.pt", f"{DEMO_TARGET}/grid.png", f"{DEMO_TARGET}/edit.parquet"):
        assert (project.root / path).exists(), path
    calls = sbatch_calls(out)
    assert {"align", "train_stage1", "train_stage2", "edit"} <= set(calls), (sorted(calls), out[-6000:])
    assert not [rule for rule in calls if rule.startswith("report_")], sorted(calls)
    assert "--gpus=1" in calls["train_stage1"] and "--gpus" not in calls["align"], calls
    assert re.search(r" -t '?2880'? ", calls["train_stage1"]), calls["train_stage1"]
    again = run_snakemake(cluster, project.root, [CONFIG_FLAG], timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
