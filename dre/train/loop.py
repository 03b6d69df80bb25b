"""The training loop for both stages (one code path for 1..N processes).

Order of one step s (0-based; after it the model has seen s+1 updates and the step counter is s+1):
global batch of s → this rank's slice → timesteps and noise of s → loss under autocast → backward
(DDP averages gradients) → unscale → clip → optimiser (lr of s) → EMA. Every ``log_every`` steps the
loss and mse are averaged over ranks and written by rank 0; every ``sample_every`` steps rank 0 writes
a DDIM sample grid; every ``save_every`` steps (and at the end, or on SIGTERM/SIGUSR1) rank 0 writes a
state file. The final model file is exported by rank 0 and is the rule's output.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dre.errors import DreError
from dre.model import maybe_compile, save_model_file, to_channels_last
from dre.model.layers import set_dropout_seeds
from dre.model.precision import Precision, resolve_precision
from dre.train import train_state as ckpt
from dre.train.config import TrainConfig
from dre.train.data import DataInfo, LmdbData, MemoryData, inspect_lmdbs
from dre.train.distributed import Distributed, detect_env, select_device
from dre.train.ema import EMA
from dre.train.sample_grid import write_training_grid
from dre.train.loss_log import MetricsWriter
from dre.train.shards import EpochStream, derive_seed, rank_slice, step_noise, step_timesteps
from dre.train.stage_model import build_model, load_init, set_train_modes, trainable_params
from dre.safety.atomic import atomic_write_text, sweep_folder
from dre.safety.ownership import claim_file, claim_run_dir, model_file_is_ours
from dre.train.syncbn import convert_global_bn
from dre.utils.signals import handling
from dre.utils.synthetic import warn_synthetic

log = logging.getLogger(__name__)


class TrainingInterrupted(DreError):
    """SIGTERM/SIGUSR1 (e.g. a SLURM wall-time warning): state saved; rerun the command to continue."""

    exit_code = 75  # EX_TEMPFAIL: a retry (snakemake --retries) resumes from the saved state


def lr_at(step: int, base_lr: float, warmup: int) -> float:
    """Constant learning rate with an optional linear warm-up over the first ``warmup`` steps."""
    if warmup <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup)


RUN_DIR_LAYOUT = ("checkpoints", "config.json", "metrics.csv", "tensorboard", "samples")
"""What a run folder holds (how ``--run-dir`` folders from before ownership markers are recognised)."""


def claim_outputs(cfg: TrainConfig) -> None:
    """Refuse a ``--run-dir`` or ``--out`` that dre did not write or that overlaps an input; create the
    run folder with our marker. Rank 0 only, before anything is written."""
    inputs = [*cfg.lmdb, cfg.init]
    claim_run_dir(cfg.run_dir, "dre train", known=RUN_DIR_LAYOUT, inputs=inputs)
    claim_file(cfg.out, evidence=model_file_is_ours, what="a model file written by dre train", inputs=inputs)


def run(cfg: TrainConfig, *, on_step: Callable[[int], None] | None = None) -> Path:
    """Run (or resume) the training described by ``cfg``; returns the exported model file.

    ``on_step(step)`` is called after every completed step (monitoring, and tests that interrupt a run).
    """
    cfg = cfg.resolved()
    env = detect_env()
    cfg.check_world(env.world_size, env.launcher)
    device = select_device(cfg.device, env)
    dist = Distributed(env, device).init()
    try:
        info = inspect_lmdbs(cfg.lmdb, cfg.model.image_size)
        data: LmdbData | MemoryData
        data = MemoryData(info, device) if cfg.stage == 2 else LmdbData(info, cfg.num_workers, cfg.seed)
        return run_training(cfg, data, dist, device, on_step=on_step)
    finally:
        dist.close()


def run_training(cfg: TrainConfig, data: LmdbData | MemoryData, dist: Distributed, device: torch.device, *,
                 on_step: Callable[[int], None] | None = None) -> Path:
    """The loop proper, on already opened data and an already joined process group."""
    run_dir, out = Path(cfg.run_dir), Path(cfg.out)
    info: DataInfo = data.info
    rank, world = dist.rank, dist.world
    part = rank_slice(cfg.batch_size, rank, world)
    local_batch = part.stop - part.start
    precision = resolve_precision(cfg.precision, device)

    model, diffusion = build_model(cfg)
    init_meta: dict[str, Any] = {}
    if cfg.stage == 2:
        init_meta = load_init(model, cfg)
    synthetic = info.synthetic or bool(init_meta.get("synthetic", False))
    if synthetic and dist.is_main:
        warn_synthetic("dre train")
    if dist.distributed and not cfg.local_bn:
        convert_global_bn(model.encoder)
    model.to(device)
    if device.type == "cuda":
        to_channels_last(model)
    params = trainable_params(cfg, model)
    # fused Adam: the same update rule as the original's Adam, in one kernel (≈8× faster on CPU)
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 fused=device.type in ("cpu", "cuda"))
    scaler = precision.make_scaler()
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None

    # ---------------------------------------------------------------- resume or start
    start_step = 0
    if dist.is_main:
        claim_outputs(cfg)
        sweep_folder(ckpt.checkpoint_dir(run_dir))  # temporaries of a save that was killed
        if not cfg.resume:
            for _, p in ckpt.list_states(run_dir):
                log.info("--no-resume: removing %s", p)
                p.unlink()
    dist.barrier()
    found = ckpt.latest_state(run_dir) if (cfg.resume and dist.is_main) else None
    resume_path = dist.broadcast_object(str(found[0]) if found else None)
    if resume_path:
        state = found[1] if found else ckpt.load_state(resume_path)
        diffs = cfg.trajectory_diff(state["config"])
        if diffs:
            raise DreError(
                f"--run-dir {run_dir} holds a checkpoint of another configuration ({resume_path}):\n  "
                + "\n  ".join(diffs)
                + "\nuse another --run-dir, or --no-resume to start over (deletes its checkpoints)"
            )
        if list(state.get("data_lengths", info.lengths)) != list(info.lengths):
            raise DreError(
                f"{resume_path} was trained on LMDBs with {state['data_lengths']} samples but --lmdb now gives "
                f"{info.lengths}; the data changed: use another --run-dir or --no-resume"
            )
        if int(state["step"]) > cfg.max_steps:
            raise DreError(
                f"{resume_path} is at step {state['step']}, past --max-steps {cfg.max_steps}; raise --max-steps, "
                "use another --run-dir, or --no-resume to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        start_step = int(state["step"])
        rngs = state.get("rng") or []
        if len(rngs) == world:
            ckpt.restore_rng(rngs[rank], device)
        else:
            log.warning("checkpoint saved by %d process(es), now %d: dropout RNG reseeded", len(rngs), world)
            torch.manual_seed(derive_seed(cfg.seed, "rank", rank, start_step))
        if dist.is_main:
            log.info("resuming from %s (step %d)", resume_path, start_step)
        del state
    else:
        torch.manual_seed(derive_seed(cfg.seed, "rank", rank))
        if device.type == "cuda":
            torch.cuda.manual_seed(derive_seed(cfg.seed, "cuda", rank))
    if dist.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")

    set_train_modes(cfg, model)
    maybe_compile(model, cfg.compile)
    net: nn.Module = model
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None, broadcast_buffers=False,
            find_unused_parameters=False, gradient_as_bucket_view=True,
        )
    stream = EpochStream(info.lengths, cfg.mixing_weights(), cfg.seed)
    metrics = MetricsWriter(run_dir, start_step, cfg.max_steps) if dist.is_main else None

    fixed: tuple[torch.Tensor, torch.Tensor] | None = None
    if cfg.sample_every and dist.is_main:
        fixed = data.fixed(min(8, cfg.batch_size), device)

    def save(step: int) -> None:
        rngs = dist.all_gather_object(ckpt.capture_rng(device))
        if dist.is_main:
            ckpt.save_state(run_dir, step, {
                "config": cfg.to_dict(),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "rng": rngs,
                "data_lengths": list(info.lengths),
                # the data order is a pure function of these (see dre.train.shards): stream position
                # step·batch of the EpochStream(lengths, weights, seed)
                "data_order": {"seed": cfg.seed, "position": step * cfg.batch_size,
                               "weights": list(cfg.mixing_weights()), "stream": "EpochStream/1"},
                "world_size": world,
                "images_seen": step * cfg.batch_size,
            })
            ckpt.prune_states(run_dir, cfg.keep, cfg.max_steps, newest=step)
        dist.barrier()

    loss_sum = torch.zeros((), device=device)
    mse_sum = torch.zeros((), device=device)
    n_acc = 0
    t_last = time.perf_counter()
    step = start_step
    last_saved = start_step if resume_path else -1
    grad_norm = torch.zeros((), device=device)
    stop_requested: list[bool] = []  # SIGTERM/SIGUSR1 (e.g. a SLURM wall-time warning): save, then exit for a retry
    try:
        with handling(lambda signum, frame: stop_requested.append(True), "SIGTERM", "SIGUSR1"):
            batches = data.batches(stream, cfg.batch_size, rank, world, start_step, cfg.max_steps, device)
            for step in range(start_step, cfg.max_steps):
                x0, cond = next(batches)
                if device.type == "cuda":
                    x0 = x0.contiguous(memory_format=torch.channels_last)
                    cond = cond.contiguous(memory_format=torch.channels_last)
                t = step_timesteps(cfg.seed, step, cfg.batch_size, part, cfg.diffusion.steps).to(device)
                noise = step_noise(cfg.seed, step, part, x0.shape[1:], device)
                # dropout masks: a function of (seed, step, position in the global batch), not of the process
                set_dropout_seeds(model, [derive_seed(cfg.seed, "dropout", step, row) for row in range(part.start, part.stop)])
                lr = lr_at(step, cfg.lr, cfg.warmup_steps)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                try:
                    loss, mse, grad_norm = _step(cfg, model, net, diffusion, optimizer, scaler, precision,
                                                 params, x0, cond, t, noise)
                except torch.OutOfMemoryError as exc:
                    raise DreError(
                        f"out of memory on {device} at {local_batch} samples per process (global --batch-size "
                        f"{cfg.batch_size} over {world} process(es)); try --batch-size {max(world, cfg.batch_size // 2)} "
                        "or more processes"
                    ) from exc
                if ema is not None:
                    ema.update(model)
                loss_sum += loss
                mse_sum += mse
                n_acc += 1
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.max_steps:
                    stats = dist.all_reduce_mean(torch.stack([loss_sum / n_acc, mse_sum / n_acc, grad_norm.float()]))
                    now = time.perf_counter()
                    values = {
                        "loss": float(stats[0]), "mse": float(stats[1]), "grad_norm": float(stats[2]), "lr": lr,
                        "images_per_s": n_acc * cfg.batch_size / max(now - t_last, 1e-9),
                    }
                    if not math.isfinite(values["loss"]):
                        raise DreError(
                            f"the loss became {values['loss']} at step {done}; lower --lr, use --precision fp32 "
                            f"or bf16, or resume from the last checkpoint in {run_dir / 'checkpoints'}"
                        )
                    if metrics is not None:
                        metrics.write(done, values)
                    loss_sum.zero_()
                    mse_sum.zero_()
                    n_acc, t_last = 0, now
                if cfg.sample_every and done % cfg.sample_every == 0 and dist.is_main and fixed is not None:
                    write_training_grid(cfg, model, ema, diffusion, fixed, done, run_dir, metrics, device, precision)
                if done % cfg.save_every == 0 or done == cfg.max_steps:
                    save(done)
                    last_saved = done
                if on_step is not None:
                    on_step(done)
                if dist.any_true(bool(stop_requested)) and done < cfg.max_steps:
                    if last_saved != done:
                        save(done)
                    raise TrainingInterrupted(
                        f"stopped by a signal after step {done}; state saved in {run_dir / 'checkpoints'}: "
                        "rerun the same command to continue"
                    )
        final = cfg.max_steps
        if last_saved != final:
            save(final)
    finally:
        if metrics is not None:
            metrics.close()

    if dist.is_main:
        meta = {
            "stage": cfg.stage,
            "extractor": info.extractor,
            "lmdbs": list(info.lmdbs),
            "mean_shape": info.mean_shape,
            "synthetic": synthetic,
            "step": cfg.max_steps,
        }
        if cfg.stage == 2:
            meta["init"] = str(cfg.init)
        save_model_file(out, model, cfg.model, cfg.diffusion, meta, ema_state=ema.state_dict() if ema else None)
        log.info("exported %s", out)
    dist.barrier()
    return out


def _step(cfg: TrainConfig, model: nn.Module, net: nn.Module, diffusion: Any, optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler | None, precision: Precision, params: list[nn.Parameter],
          x0: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
          noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        if cfg.stage == 2:
            with torch.no_grad():  # frozen encoder: the latent is a constant of the step
                z = model.encode(x0)

            def model_fn(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                return net(x_t, tt, cond, latent=z)
        else:
            def model_fn(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                return net(x_t, tt, cond, x_start=x0)

        losses = diffusion.training_losses(model_fn, x0, t, noise)
        loss = losses["loss"].float().mean()
        mse = losses["mse"].float().mean().detach()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).detach()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss.detach(), mse, grad_norm
