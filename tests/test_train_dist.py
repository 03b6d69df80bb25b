"""Two gloo processes (torchrun-style environment) train like one process on the same global batch,
and only rank 0 writes anything. An actual ``mpiexec`` run is in the slow set."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dre.train import run as run_training

from train_support import make_cfg, train_argv, write_tiny_lmdb

torch.set_num_threads(1)

# Runs `dre train` (through dre.cli.main, as `python -m dre` does) and, on ranks other than 0, records
# every filesystem write under the watched folder with an audit hook (open for writing, mkdir, rename,
# remove); the list is written next to the run by the wrapper itself at exit.
WRAPPER = textwrap.dedent(
    """
    import json, os, sys
    watched, record, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    writes = []
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE)
            paths = [path] if writing else []
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "shutil.move"):
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for p in paths:
            p = os.fsdecode(p) if not isinstance(p, int) else ""
            if p and os.path.abspath(p).startswith(watched):
                writes.append(f"{event} {p}")

    if os.environ.get("RANK", "0") != "0":
        sys.addaudithook(hook)
    from dre.cli import main
    rc = main(argv)
    if os.environ.get("RANK", "0") != "0":
        sys.stdout.flush()
        open(record, "w").write(json.dumps(writes))
    sys.exit(rc)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(cli_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items()
           if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "OMPI_", "PMI", "SLURM_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_gloo_processes_match_one_and_only_rank0_writes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    lmdb = write_tiny_lmdb(tmp_path / "data.lmdb", 7, seed=5)
    # dropout off: it is the one draw that depends on the process (per-rank RNG), by design
    common = ("--batch-size", "4", "--max-steps", "2", "--save-every", "2", "--log-every", "1", "--dropout", "0")
    ref = run_training(make_cfg(1, [lmdb], tmp_path / "one", tmp_path / "one.pt", *common))

    watched = tmp_path / "two"
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    argv = train_argv(1, [lmdb], watched / "run", watched / "model.pt", *common)
    env = _clean_env(cli_env)
    port = _free_port()
    procs = []
    for r in range(2):
        e = {**env, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(watched), str(tmp_path / f"writes{r}.json"),
                                       *argv], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs

    # only rank 0 wrote: rank 1's audit log of writes under the run folder and the output is empty
    assert json.loads((tmp_path / "writes1.json").read_text()) == []
    assert "step 2/2" in logs[0] and "step 2/2" not in logs[1]

    one = torch.load(ref, weights_only=True)
    two = torch.load(watched / "model.pt", weights_only=True)
    worst = 0.0
    for k, v in one["state_dict"].items():
        w = two["state_dict"][k]
        if v.is_floating_point():
            torch.testing.assert_close(w, v, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
            worst = max(worst, float((w - v).abs().max()))
        else:
            assert torch.equal(w, v), k
    # the comparison is not vacuous: training moved the weights far more than the tolerance
    moved = max(float((one["state_dict"][k] - v).abs().max()) for k, v in
                torch.load(ckpt_init(tmp_path, lmdb, common), weights_only=True)["state_dict"].items()
                if v.is_floating_point())
    assert moved > 10 * max(worst, 1e-7)  # measured: worst ≈ 2e-6, moved ≈ 2e-4 (per-process BN: 0.8)
    # the logged loss is the mean over ranks = the one-process loss of the same global batch
    la = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "one" / "metrics.csv"))]
    lb = [float(r["loss"]) for r in csv.DictReader(open(watched / "run" / "metrics.csv"))]
    assert la == pytest.approx(lb, rel=1e-4)


def ckpt_init(tmp_path: Path, lmdb: Path, common: tuple[str, ...]) -> Path:
    """The same run's weights after 0 steps (export of an untrained model with the same seed)."""
    from dre.model import save_model_file
    from dre.train.stage_model import build_model

    cfg = make_cfg(1, [lmdb], tmp_path / "zero", tmp_path / "zero.pt", *common)
    model, _, mcfg, dcfg = build_model(cfg)
    save_model_file(tmp_path / "zero.pt", model, mcfg, dcfg, {"stage": 1})
    return tmp_path / "zero.pt"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec (Open MPI/MPICH) is not installed here")
def test_mpiexec_two_ranks(tmp_path: Path, cli_env: dict[str, str]) -> None:
    pytest.importorskip("mpi4py.MPI", reason="mpi4py cannot load an MPI library")
    lmdb = write_tiny_lmdb(tmp_path / "data.lmdb", 4, seed=6)
    argv = train_argv(1, [lmdb], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "2", "--max-steps", "1",
                      "--save-every", "1")
    env = {**_clean_env(cli_env), "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    r = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", sys.executable, "-m", "dre", *argv], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    state = torch.load(tmp_path / "run" / "checkpoints" / "state-0000001.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
