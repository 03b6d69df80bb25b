"""End-to-end training on tiny LMDBs written by dre.data: stage 1, exact resume, stage 2 freezing, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dre.errors import DreError
from dre.train import train_state as ckpt
from dre.train import run as run_training

from train_support import make_cfg, train_argv, write_tiny_lmdb

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lmdb")
    return {
        "ffhq": write_tiny_lmdb(d / "ffhq.lmdb", 6, seed=1),
        "affect": write_tiny_lmdb(d / "affect.lmdb", 3, seed=2),
        "album": write_tiny_lmdb(d / "album.lmdb", 5, seed=3, mean_shape=[0.1] * 100),
    }


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def stage1(lmdbs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-step stage-1 run mixing two LMDBs, with EMA, a sample grid and pruned checkpoints."""
    root = tmp_path_factory.mktemp("stage1")
    cfg = make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], root / "run", root / "model.pt",
                   "--weights", "3,1", "--batch-size", "4", "--max-steps", "3", "--save-every", "1", "--keep", "1",
                   "--sample-every", "3", "--log-every", "1", "--ema", "0.9")
    assert run_training(cfg) == root / "model.pt"
    return {"run": root / "run", "model": root / "model.pt"}


def test_stage1_exports_logs_and_prunes(stage1: dict[str, Path], lmdbs: dict[str, Path]) -> None:
    from dre.model import load_model_file

    f = _load(stage1["model"])
    assert f["format"] == "dre-model/1"
    assert f["meta"]["stage"] == 1 and f["meta"]["step"] == 3 and f["meta"]["synthetic"] is True
    assert f["meta"]["extractor"] == "deca" and f["meta"]["lmdbs"] == [str(lmdbs["ffhq"]), str(lmdbs["affect"])]
    assert f["ema_state_dict"] is not None
    # the weights moved (zero-initialised output conv is non-zero after 3 Adam steps) and EMA differs from raw
    assert f["state_dict"]["denoisingUNet.out.2.weight"].abs().sum() > 0
    assert not torch.equal(f["ema_state_dict"]["denoisingUNet.out.2.weight"], f["state_dict"]["denoisingUNet.out.2.weight"])
    model, meta = load_model_file(stage1["model"], weights="raw")
    assert model.cfg.latent_dim == 8 and meta["stage"] == 1
    # keep=1 plus the final state
    assert [s for s, _ in ckpt.list_states(stage1["run"])] == [2, 3]
    state = ckpt.load_state(ckpt.state_path(stage1["run"], 3))
    assert set(state) >= {"model", "optimizer", "scaler", "ema", "rng", "config", "step", "data_lengths"}
    assert state["config"]["weights"] == [3.0, 1.0] and state["data_lengths"] == [6, 3]
    rows = list(csv.DictReader(open(stage1["run"] / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) > 0 and float(r["mse"]) > 0 and float(r["images_per_s"]) > 0 for r in rows)
    assert float(rows[0]["loss"]) < float(rows[0]["mse"])  # P2 weights are < 1
    assert (stage1["run"] / "tensorboard").is_dir() and any((stage1["run"] / "tensorboard").iterdir())
    grids = sorted(p.name for p in (stage1["run"] / "samples").iterdir())
    assert grids == ["step-0000003.png"]
    from PIL import Image

    im = Image.open(stage1["run"] / "samples" / grids[0])
    assert im.size == (4 * 34 + 2, 3 * 34 + 2)  # as many samples as the batch; rows: image | buffer | sample
    assert json.loads((stage1["run"] / "config.json").read_text())["stage"] == 1


def test_resume_after_interruption_is_bit_identical(lmdbs: dict[str, Path], tmp_path: Path) -> None:
    common = ("--batch-size", "2", "--max-steps", "4", "--save-every", "2", "--ema", "0.5", "--warmup-steps", "3",
              "--sample-every", "3", "--log-every", "2")
    ref = run_training(make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], tmp_path / "a", tmp_path / "a.pt", *common))

    cfg = make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], tmp_path / "b", tmp_path / "b.pt", *common)

    class Crash(Exception):
        pass

    def crash_at(step: int) -> None:
        if step == 3:  # after the save at 2 and the grid at 3: step 3 is lost and must be replayed
            raise Crash

    with pytest.raises(Crash):
        run_training(cfg, on_step=crash_at)
    assert not (tmp_path / "b.pt").exists()
    assert [s for s, _ in ckpt.list_states(tmp_path / "b")] == [2]
    resumed = run_training(cfg)  # the same command again
    a, b = _load(ref), _load(resumed)
    for key in ("state_dict", "ema_state_dict"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), f"{key}.{k} differs after resume"
    sa = ckpt.load_state(ckpt.state_path(tmp_path / "a", 4))
    sb = ckpt.load_state(ckpt.state_path(tmp_path / "b", 4))
    for k, v in sa["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], sb["optimizer"]["state"][k]["exp_avg_sq"])
    # the metrics were not logged twice for the replayed steps
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "metrics.csv"))]
    assert steps == [2, 4]
    # and dropout really was on (otherwise the RNG restore would be untested)
    assert sa["config"]["model"]["dropout"] == pytest.approx(0.1)


def test_truncated_newest_state_falls_back_to_the_previous(lmdbs: dict[str, Path], tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A newest checkpoint cut short (a disk that lost its tail) is skipped with a warning naming it; the run
    resumes from the one before and ends where an uninterrupted run ends."""
    common = ("--batch-size", "2", "--max-steps", "4", "--save-every", "2", "--keep", "2", "--log-every", "2")
    ref = run_training(make_cfg(1, [lmdbs["ffhq"]], tmp_path / "a", tmp_path / "a.pt", *common))
    cfg = make_cfg(1, [lmdbs["ffhq"]], tmp_path / "b", tmp_path / "b.pt", *common)
    run_training(cfg)
    (tmp_path / "b.pt").unlink()
    newest = ckpt.state_path(tmp_path / "b", 4)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        resumed = run_training(cfg)
    assert any("skipping unreadable checkpoint" in r.getMessage() and newest.name in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    a, b = _load(ref), _load(resumed)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_rerun_of_finished_run_only_exports(stage1: dict[str, Path], lmdbs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again.pt"
    cfg = make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], stage1["run"], out, "--weights", "3,1", "--batch-size", "4",
                   "--max-steps", "3", "--save-every", "1", "--keep", "1", "--ema", "0.9")
    run_training(cfg)
    assert torch.equal(_load(out)["state_dict"]["denoisingUNet.out.2.weight"],
                       _load(stage1["model"])["state_dict"]["denoisingUNet.out.2.weight"])


def test_resume_past_max_steps_is_refused(stage1: dict[str, Path], lmdbs: dict[str, Path], tmp_path: Path) -> None:
    cfg = make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], stage1["run"], tmp_path / "x.pt", "--weights", "3,1",
                   "--batch-size", "4", "--max-steps", "2", "--ema", "0.9")
    with pytest.raises(DreError, match="at step 3, past --max-steps 2"):
        run_training(cfg)


def test_checkpoint_of_another_configuration_is_refused(stage1: dict[str, Path], lmdbs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    cfg = make_cfg(1, [lmdbs["ffhq"], lmdbs["affect"]], stage1["run"], tmp_path / "x.pt", "--weights", "3,1",
                   "--batch-size", "4", "--max-steps", "3", "--ema", "0.9", "--lr", "3e-4", "--seed", "1")
    with pytest.raises(DreError, match=r"another configuration(.|\n)*lr: checkpoint has 0.0001(.|\n)*seed"):
        run_training(cfg)


def _encoder(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def test_stage2_freezes_encoder_weights_and_bn_stats(stage1: dict[str, Path], lmdbs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    cfg = make_cfg(2, [lmdbs["album"]], tmp_path / "run", tmp_path / "s2.pt", "--init", stage1["model"],
                   "--batch-size", "2", "--max-steps", "3", "--save-every", "3")
    run_training(cfg)
    init, out = _load(stage1["model"]), _load(tmp_path / "s2.pt")
    start = init["ema_state_dict"]  # stage 2 starts from the EMA weights of a file that has them
    for k, v in _encoder(start).items():
        assert torch.equal(out["state_dict"][k], v), f"{k} changed in stage 2"
    assert any(not torch.equal(out["state_dict"][k], v) for k, v in start.items() if k.startswith("denoisingUNet."))
    assert out["meta"]["stage"] == 2 and out["meta"]["mean_shape"] == [0.1] * 100
    state = ckpt.load_state(ckpt.state_path(tmp_path / "run", 3))
    n_unet = sum(1 for k in init["state_dict"] if k.startswith("denoisingUNet.") and not k.endswith("running_mean"))
    assert len(state["optimizer"]["state"]) <= n_unet  # only UNet parameters are optimised


def test_stage2_train_encoder_bn_reproduces_the_original(stage1: dict[str, Path], lmdbs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    cfg = make_cfg(2, [lmdbs["album"]], tmp_path / "run", tmp_path / "s2.pt", "--init", stage1["model"],
                   "--batch-size", "2", "--max-steps", "2", "--save-every", "2", "--train-encoder-bn")
    run_training(cfg)
    start, out = _load(stage1["model"])["ema_state_dict"], _load(tmp_path / "s2.pt")["state_dict"]
    changed = [k for k, v in _encoder(start).items() if not torch.equal(out[k], v)]
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)


def test_stage2_from_official_layout(stage1: dict[str, Path], lmdbs: dict[str, Path], tmp_path: Path) -> None:
    official = tmp_path / "model004999.pt"  # a bare state dict, as DiffusionRig's train.py saves it
    torch.save(_load(stage1["model"])["state_dict"], official)
    cfg = make_cfg(2, [lmdbs["album"]], tmp_path / "run", tmp_path / "s2.pt", "--init", official,
                   "--batch-size", "2", "--max-steps", "1", "--save-every", "1")
    run_training(cfg)
    out = _load(tmp_path / "s2.pt")
    for k, v in _encoder(_load(official)).items():
        assert torch.equal(out["state_dict"][k], v)
    assert out["meta"]["init"] == str(official)


def test_stage2_init_of_another_architecture(stage1: dict[str, Path], lmdbs: dict[str, Path], tmp_path: Path) -> None:
    argv = train_argv(2, [lmdbs["album"]], tmp_path / "run", tmp_path / "s2.pt", "--init", stage1["model"],
                      "--max-steps", "1")
    argv[argv.index("--latent-dim") + 1] = "16"
    from dre.cli import parse_config

    with pytest.raises(DreError, match="latent_dim: file 8 vs flags 16"):
        run_training(parse_config(argv))


def test_stage2_init_with_another_noise_schedule(stage1: dict[str, Path], lmdbs: dict[str, Path], tmp_path: Path) -> None:
    """Fine-tuning under other diffusion steps than stage 1 trained with would silently change what each
    timestep means: refused, naming both values."""
    argv = train_argv(2, [lmdbs["album"]], tmp_path / "run", tmp_path / "s2.pt", "--init", stage1["model"],
                      "--max-steps", "1")
    argv[argv.index("--diffusion-steps") + 1] = "500"
    from dre.cli import parse_config

    with pytest.raises(DreError, match="another noise schedule .*steps: file 100 vs flags 500"):
        run_training(parse_config(argv))


def test_lmdb_errors_name_the_file(lmdbs: dict[str, Path], tmp_path: Path) -> None:
    big = write_tiny_lmdb(tmp_path / "big.lmdb", 2, size=64)
    with pytest.raises(DreError, match=r"big\.lmdb holds 64² images .* --image-size 32"):
        run_training(make_cfg(1, [lmdbs["ffhq"], big], tmp_path / "r", tmp_path / "o.pt", "--max-steps", "1"))
    with pytest.raises(DreError, match="no such LMDB folder"):
        run_training(make_cfg(1, [tmp_path / "nope.lmdb"], tmp_path / "r", tmp_path / "o.pt", "--max-steps", "1"))
    empty = write_tiny_lmdb(tmp_path / "empty.lmdb", 0)
    with pytest.raises(DreError, match=r"empty\.lmdb is empty"):
        run_training(make_cfg(1, [empty], tmp_path / "r", tmp_path / "o.pt", "--max-steps", "1"))


def test_bf16_autocast_step_on_cpu(lmdbs: dict[str, Path], tmp_path: Path) -> None:
    out = run_training(make_cfg(1, [lmdbs["affect"]], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "2",
                         "--max-steps", "1", "--precision", "bf16", "--log-every", "1"))
    row = next(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert 0 < float(row["loss"]) < 10 and _load(out)["state_dict"]["denoisingUNet.out.2.weight"].dtype == torch.float32


@pytest.mark.slow  # a fresh interpreter importing torch; the 2-process test also goes through the CLI
def test_cli_runs_stage1_and_prints_the_model(lmdbs: dict[str, Path], tmp_path: Path, dre_cmd: list[str],
                                              cli_env: dict[str, str]) -> None:
    argv = train_argv(1, [lmdbs["affect"]], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "2",
                      "--max-steps", "1")
    r = subprocess.run(dre_cmd + argv, env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "m.pt") and "SYNTHETIC" in r.stderr
    assert _load(tmp_path / "m.pt")["meta"]["step"] == 1


def test_out_of_memory_suggests_a_batch_size(lmdbs: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import dre.train.loop as loop

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "_step", oom)
    with pytest.raises(DreError, match=r"out of memory on cpu at 4 samples per process .* try --batch-size 2"):
        run_training(make_cfg(1, [lmdbs["affect"]], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "4",
                       "--max-steps", "1"))


def test_sigterm_saves_and_exits_for_a_retry(lmdbs: dict[str, Path], tmp_path: Path) -> None:
    import os
    import signal

    from dre.train import TrainingInterrupted

    cfg = make_cfg(1, [lmdbs["affect"]], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "2",
                   "--max-steps", "2", "--save-every", "100", "--precision", "fp16")

    def term(step: int) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends before the wall-time kill

    with pytest.raises(TrainingInterrupted, match="rerun the same command") as info:
        run_training(cfg, on_step=term)
    assert info.value.exit_code == 75
    state = ckpt.load_state(ckpt.state_path(tmp_path / "run", 1))
    assert state["scaler"] and state["scaler"]["scale"] > 0  # fp16 GradScaler state travels with the run
    assert run_training(cfg) == tmp_path / "m.pt" and _load(tmp_path / "m.pt")["meta"]["step"] == 2


def test_keep_0_never_prunes_the_state_it_just_saved(lmdbs: dict[str, Path], tmp_path: Path) -> None:
    """--keep 0 keeps no *older* states; the newest one is the resume point (and what a signal stop promises)."""
    import os
    import signal

    from dre.train import TrainingInterrupted

    cfg = make_cfg(1, [lmdbs["affect"]], tmp_path / "run", tmp_path / "m.pt", "--batch-size", "2",
                   "--max-steps", "4", "--save-every", "1", "--keep", "0")

    def term(step: int) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="state saved"):
        run_training(cfg, on_step=term)
    assert [s for s, _ in ckpt.list_states(tmp_path / "run")] == [2]
    resumed: list[int] = []
    assert run_training(cfg, on_step=resumed.append) == tmp_path / "m.pt"
    assert resumed == [3, 4]  # continued from step 2, not from scratch
    assert [s for s, _ in ckpt.list_states(tmp_path / "run")] == [4]  # at the end: the final state alone
