"""Unit tests of dre.train's pieces that need no model: config, launcher detection, data order, RNG, files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dre.cli import parse_config
from dre.errors import DreError
from dre.train import train_state as ckpt
from dre.train.config import TrainConfig
from dre.train.distributed import DistEnv, detect_env, expand_hostlist
from dre.train.loop import lr_at
from dre.train.loss_log import MetricsWriter
from dre.train.shards import EpochStream, StepBatchSampler, derive_seed, rank_slice, step_noise, step_timesteps


def _cfg(*extra: str) -> TrainConfig:
    return parse_config(["train", "--stage", "1", "--lmdb", "a.lmdb", "--run-dir", "r", "--out", "m.pt", *extra]).resolved()


# ------------------------------------------------------------------------------------------ config
def test_config_from_cli_stage_defaults_and_lists() -> None:
    cfg = _cfg("--channel-mult", "1,2", "--attention-resolutions", "8,4", "--image-size", "64")
    assert (cfg.lr, cfg.batch_size, cfg.max_steps) == (1e-4, 32, 50000)
    assert cfg.model.channel_mult == (1, 2) and cfg.model.attention_resolutions == (8, 4)
    assert cfg.model.image_size == 64 and cfg.diffusion.steps == 1000
    assert cfg.resume and not cfg.local_bn and cfg.ema == 0.0
    cfg2 = parse_config(["train", "--stage", "2", "--lmdb", "x", "--init", "s1.pt", "--run-dir", "r",
                         "--out", "o", "--no-resume", "--local-bn", "--train-encoder-bn",
                         "--diffusion-steps", "50", "--noise-schedule", "cosine"]).resolved()
    assert (cfg2.lr, cfg2.batch_size, cfg2.max_steps) == (1e-5, 4, 5000)
    assert not cfg2.resume and cfg2.local_bn and cfg2.train_encoder_bn
    assert (cfg2.diffusion.steps, cfg2.diffusion.schedule) == (50, "cosine")
    # the dict round trip is exact (it is what checkpoints store)
    assert TrainConfig.from_dict(cfg2.to_dict()) == cfg2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--weights", "1,2"], "--weights has 2 values"),
        (["--weights", "0"], "not all 0"),
        (["--init", "x.pt"], "--init is only for --stage 2"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--ema", "1.0"], "--ema"),
        (["--weight-decay", "-0.1"], "--weight-decay -0.1"),
        (["--channel-mult", "1,x"], "--channel-mult"),
    ],
)
def test_config_errors_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(DreError, match=needle):
        _cfg(*argv)


def test_stage2_needs_init_and_one_lmdb() -> None:
    with pytest.raises(DreError, match="--init is required"):
        parse_config(["train", "--stage", "2", "--lmdb", "x", "--run-dir", "r", "--out", "o"]).resolved()
    with pytest.raises(DreError, match="exactly one album"):
        parse_config(["train", "--stage", "2", "--lmdb", "x", "--lmdb", "y", "--init", "i",
                      "--run-dir", "r", "--out", "o"]).resolved()


def test_trajectory_diff_ignores_runtime_fields() -> None:
    a = _cfg("--max-steps", "10")
    b = _cfg("--max-steps", "99", "--device", "cpu", "--save-every", "3", "--lr", "2e-4", "--seed", "5",
             "--num-heads", "2")
    diffs = a.trajectory_diff(b.to_dict())
    assert sorted(d.split(":")[0] for d in diffs) == ["lr", "model.num_heads", "seed"]
    assert "checkpoint has 0.0002" in " ".join(diffs)


def test_mixing_weights_normalised() -> None:
    cfg = TrainConfig(stage=1, lmdb=["a", "b"], run_dir="r", out="o", weights=(3.0, 1.0)).resolved()
    assert cfg.mixing_weights() == (0.75, 0.25)
    assert TrainConfig(stage=1, lmdb=["a", "b"], run_dir="r", out="o").resolved().mixing_weights() == (0.5, 0.5)


def test_lr_warmup() -> None:
    assert lr_at(0, 1e-4, 0) == 1e-4
    assert lr_at(0, 1e-4, 4) == pytest.approx(2.5e-5)
    assert lr_at(3, 1e-4, 4) == 1e-4 and lr_at(100, 1e-4, 4) == 1e-4


# ------------------------------------------------------------------------------------------ launchers
def test_detect_single_process() -> None:
    assert detect_env({}) == DistEnv()


def test_detect_torchrun() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "1234"}
    assert detect_env(env) == DistEnv(3, 4, 1, "n0", 1234, "torchrun")


def test_detect_openmpi_with_master_env() -> None:
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "4444",
           # SLURM variables of the surrounding allocation must not win over mpiexec's
           "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}
    assert detect_env(env) == DistEnv(1, 2, 1, "10.0.0.1", 4444, "mpi")


def test_detect_mpich_pmi() -> None:
    env = {"PMI_RANK": "2", "PMI_SIZE": "3", "MPI_LOCALRANKID": "0", "MASTER_ADDR": "h", "MASTER_PORT": "9"}
    assert detect_env(env) == DistEnv(2, 3, 0, "h", 9, "mpi")


def test_detect_mpi_without_rendezvous_is_clear() -> None:
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}
    with pytest.raises(DreError, match="MASTER_ADDR"):
        detect_env(env, use_mpi4py=False)


def test_detect_mpi_single_rank_is_single() -> None:
    assert detect_env({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}).launcher == "single"


def test_detect_slurm_srun() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
           "SLURM_STEP_NODELIST": "gpu[007-008,010],cpu1", "SLURM_JOB_ID": "123", "SLURM_STEP_ID": "0"}
    e = detect_env(env)
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.launcher) == (5, 8, 1, "gpu007", "slurm")
    # every task derives the same port from the job id, without talking
    assert e.master_port == detect_env({**env, "SLURM_PROCID": "0"}).master_port
    assert detect_env({**env, "MASTER_ADDR": "x", "MASTER_PORT": "77"}).master_addr == "x"


def test_detect_slurm_batch_script_is_single() -> None:
    # `sbatch -n 4` runs the batch script once: no srun step variables, so no peers to wait for
    assert detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "1"}).launcher == "single"
    assert detect_env({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}).launcher == "single"


def test_expand_hostlist() -> None:
    assert expand_hostlist("a[01-03],b") == ["a01", "a02", "a03", "b"]
    assert expand_hostlist("n[1,3-4]x") == ["n1x", "n3x", "n4x"]
    assert expand_hostlist("r[1-2]c[1-2]") == ["r1c1", "r1c2", "r2c1", "r2c2"]
    assert expand_hostlist("single") == ["single"]


# ------------------------------------------------------------------------------------------ data order
def test_epoch_stream_is_a_permutation_per_pass_and_mixes_by_weight() -> None:
    s = EpochStream([10, 30], [0.5, 0.5], seed=1)
    ep = s.epoch(0)
    assert len(ep) == 40
    small = ep[ep < 10]
    large = ep[ep >= 10]
    assert len(small) == 20 and len(large) == 20
    # the small dataset is walked in full passes: each of its 10 samples exactly twice per epoch
    assert np.bincount(small, minlength=10).tolist() == [2] * 10
    assert len(set(large.tolist())) == 20  # first 20 of a pass over the large one: no repeats
    # over two epochs the large dataset completes its 30-sample pass and starts the next
    both = np.concatenate([s.epoch(0), s.epoch(1)])
    assert set(both[both >= 10].tolist()) == set(range(10, 40))
    # stateless: a fresh stream reproduces any window
    assert (EpochStream([10, 30], [0.5, 0.5], seed=1).take(37, 9) == s.take(37, 9)).all()
    assert not (EpochStream([10, 30], [0.5, 0.5], seed=2).epoch(0) == ep).all()


def test_rank_slices_partition_the_global_batch() -> None:
    s = EpochStream([13], [1.0], seed=0)
    one = list(StepBatchSampler(s, 6, 0, 1, 3, 7))
    two = [list(StepBatchSampler(s, 6, r, 2, 3, 7)) for r in range(2)]
    for step in range(4):
        assert two[0][step] + two[1][step] == one[step]
    with pytest.raises(DreError, match="divisible"):
        rank_slice(6, 0, 4)


def test_noise_and_timesteps_depend_on_slot_not_rank() -> None:
    full = step_noise(7, 11, slice(0, 4), (3, 4, 4), torch.device("cpu"))
    lo = step_noise(7, 11, slice(0, 2), (3, 4, 4), torch.device("cpu"))
    hi = step_noise(7, 11, slice(2, 4), (3, 4, 4), torch.device("cpu"))
    assert torch.equal(torch.cat([lo, hi]), full)
    assert not torch.equal(step_noise(7, 12, slice(0, 4), (3, 4, 4), torch.device("cpu")), full)
    t = step_timesteps(7, 11, 8, slice(0, 8), 1000)
    assert torch.equal(torch.cat([step_timesteps(7, 11, 8, slice(0, 4), 1000),
                                  step_timesteps(7, 11, 8, slice(4, 8), 1000)]), t)
    assert int(t.min()) >= 0 and int(t.max()) < 1000
    assert derive_seed(1, "a") != derive_seed(1, "b") and derive_seed(1, "a") == derive_seed(1, "a")


# ------------------------------------------------------------------------------------------ files
def test_rng_capture_restore_roundtrip_through_a_weights_only_file(tmp_path: Path) -> None:
    dev = torch.device("cpu")
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    state = ckpt.capture_rng(dev)
    expect = (torch.rand(3), np.random.rand(3), random.random())
    path = ckpt.save_state(tmp_path, 12, {"rng": [state]})
    loaded = ckpt.load_state(path)  # weights_only=True inside
    torch.rand(5), np.random.rand(2), random.random()  # disturb
    ckpt.restore_rng(loaded["rng"][0], dev)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_state_listing_pruning_and_unreadable_newest(tmp_path: Path) -> None:
    for s in (5, 10, 15, 20):
        ckpt.save_state(tmp_path, s, {"x": torch.tensor(s)})
    ckpt.save_state(tmp_path, 50, {"x": torch.tensor(50)})  # the final one (max_steps = 50)
    (tmp_path / "checkpoints" / ".state-0000060.pt.xyz.tmp.pt").write_bytes(b"partial")  # an interrupted write
    assert [s for s, _ in ckpt.list_states(tmp_path)] == [5, 10, 15, 20, 50]
    removed = ckpt.prune_states(tmp_path, keep=2, final_step=50)
    assert [p.name for p in removed] == ["state-0000005.pt", "state-0000010.pt"]
    assert [s for s, _ in ckpt.list_states(tmp_path)] == [15, 20, 50]
    (tmp_path / "checkpoints" / "state-0000070.pt").write_bytes(b"not a torch file")
    path, state = ckpt.latest_state(tmp_path)
    assert path.name == "state-0000050.pt" and int(state["x"]) == 50
    with pytest.raises(DreError, match="could not be read"):
        ckpt.load_state(tmp_path / "checkpoints" / "state-0000070.pt")
    torch.save({"format": "other"}, tmp_path / "foreign.pt")
    with pytest.raises(DreError, match="not a dre training state"):
        ckpt.load_state(tmp_path / "foreign.pt")


def test_metrics_csv_drops_replayed_rows_on_resume(tmp_path: Path) -> None:
    m = MetricsWriter(tmp_path, 0, 30, tensorboard=True, progress=False)
    for s in (10, 20, 30):
        m.write(s, {"loss": 0.1, "mse": 0.2, "lr": 1e-4, "grad_norm": 1.0, "images_per_s": 5.0})
    m.close()
    assert (tmp_path / "tensorboard").is_dir()
    m = MetricsWriter(tmp_path, 20, 30, tensorboard=False, progress=False)  # resumed at 20: step 30 replays
    m.write(30, {"loss": 0.3})
    m.close()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,mse")
    assert [ln.split(",")[0] for ln in lines[1:]] == ["10", "20", "30"]
    assert lines[-1].split(",")[1] == "0.3"
