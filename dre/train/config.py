"""``TrainConfig``: every ``dre train`` flag as one typed, serialisable record.

The resolved config (stage defaults filled in) is written into every checkpoint and next to the run, so
a resumed run can check it is continuing *the same* training. Fields are split into the ones that
define the training trajectory (a mismatch on resume is an error naming the fields) and the runtime
ones that may change between attempts (more steps, another device, other logging intervals).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from dre.diffusion.config import DiffusionConfig
from dre.errors import DreError
from dre.launch import LAUNCHERS
from dre.model.arch import PRECISIONS, ModelConfig
from dre.utils.cliconfig import nested, run_arg, setting
from dre.utils.records import to_plain

STAGE_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"lr": 1e-4, "batch_size": 32, "max_steps": 50000},
    2: {"lr": 1e-5, "batch_size": 4, "max_steps": 5000},
}
"""The published recipe (README of DiffusionRig); ``batch_size`` here is the *global* batch."""

RUNTIME_FIELDS: frozenset[str] = frozenset(
    {
        "run_dir", "out", "resume", "max_steps", "save_every", "keep", "sample_every", "log_every",
        "num_workers", "device", "compile", "lmdb", "nodes", "processes", "launcher",
    }
)
"""Fields a resumed run may change. ``lmdb`` paths may move (the LMDBs' identity is checked by count); the job's
shape may change (the global batch, and so the trajectory, does not depend on how many ranks split it)."""


def _stage_help(key: str, what: str) -> str:
    return f"{what}; default {STAGE_DEFAULTS[1][key]:g} (stage 1) / {STAGE_DEFAULTS[2][key]:g} (stage 2)"


@dataclass
class TrainConfig:
    """One training run. ``None`` optimisation fields take the stage's default in :meth:`resolved`.

    Every field is a ``dre train`` flag (``dre.utils.cliconfig``); the settings are also the keys of the
    workflow config's ``stage1:`` / ``stage2:`` sections, and the nested ``model`` / ``diffusion``
    configs its ``model:`` / ``diffusion:`` sections.
    """

    stage: int = run_arg(choices=(1, 2), help="1 = prior on the prior LMDBs, 2 = fine-tune on one album")
    lmdb: list[str] = run_arg(help="LMDB folder; repeat to mix several (stage 1)")
    run_dir: str = run_arg(help="checkpoints, logs, sample grids (resumed if present)")
    out: str = run_arg(help="final exported model file")
    weights: tuple[float, ...] = run_arg((), help="comma list of mixing weights, one per --lmdb (empty = equal)")
    init: str | None = run_arg(None, help="stage 2: stage-1 model to initialise from (ours or official model*.pt)")
    resume: bool = run_arg(True, help="continue from the newest checkpoint in --run-dir (--no-resume starts over)")
    model: ModelConfig = nested(ModelConfig, title="model")
    diffusion: DiffusionConfig = nested(DiffusionConfig, title="diffusion")
    # optimisation
    lr: float | None = setting(None, help=_stage_help("lr", "Adam learning rate"))
    weight_decay: float = setting(0.0, help="Adam weight decay (L2 added to the gradient, as the original's Adam)")
    batch_size: int | None = setting(None, help=_stage_help("batch_size", "global batch (split over processes)"))
    max_steps: int | None = setting(None, help=_stage_help("max_steps", "optimiser steps"))
    warmup_steps: int = setting(0, help="linear learning-rate warm-up steps")
    grad_clip: float = setting(1.0, help="gradient max-norm (0 = off)")
    precision: str = setting("auto", choices=PRECISIONS, help="auto = bf16 autocast on GPU, fp32 on CPU")
    ema: float = setting(0.0, help="EMA decay (0 = off, as the original)")
    train_encoder_bn: bool = setting(
        False, help="stage 2: keep updating the frozen encoder's BatchNorm statistics (original behaviour)"
    )
    local_bn: bool = setting(
        False,
        help="normalise the encoder's BatchNorm per process (the original under DDP) instead of over the "
        "global batch; only matters with several processes",
    )
    save_every: int = setting(5000, help="checkpoint interval (steps)")
    keep: int = setting(2, help="checkpoints to keep besides the final one")
    sample_every: int = setting(0, help="DDIM sample grid every K steps (0 = off)")
    log_every: int = setting(10, help="metrics interval (steps)")
    num_workers: int = setting(2, help="data-loader worker processes")
    seed: int = setting(0, help="seed of the initialisation, data order and noise")
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N")
    compile: bool = setting(False, help="torch.compile the UNet")
    # the job's shape: the workflow launches this many ranks; the run checks it got them
    nodes: int = setting(
        1, help="nodes of the training job; with nodes × processes > 1 the run refuses to start with another "
        "number of ranks (1 × 1 accepts whatever the launcher started)"
    )
    processes: int = setting(1, help="training processes (GPUs) per node")
    launcher: str = setting(
        "auto", choices=LAUNCHERS,
        help="how the workflow starts the ranks: auto = python/torchrun on one node, srun on several; srun; "
        "mpiexec (Open MPI inside the SLURM allocation)",
    )

    # ------------------------------------------------------------------ construction
    def resolved(self) -> TrainConfig:
        """Fill the stage defaults and check every value; returns a new config (idempotent)."""
        if self.stage not in STAGE_DEFAULTS:
            raise DreError(f"--stage {self.stage}: must be 1 or 2")
        fill = {k: v for k, v in STAGE_DEFAULTS[self.stage].items() if getattr(self, k) is None}
        cfg = dataclasses.replace(
            self, **fill, lmdb=[str(p) for p in self.lmdb], weights=tuple(float(w) for w in self.weights)
        )
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        if not self.lmdb:
            raise DreError("--lmdb: at least one LMDB folder is required")
        if self.stage == 2 and len(self.lmdb) != 1:
            raise DreError(f"--lmdb given {len(self.lmdb)} times: stage 2 fine-tunes on exactly one album LMDB")
        if self.stage == 2 and not self.init:
            raise DreError("--init is required for --stage 2 (a stage-1 model file, ours or an official model*.pt)")
        if self.stage == 1 and self.init:
            raise DreError(
                "--init is only for --stage 2; to continue a stage-1 run, rerun the same command "
                "(it resumes from --run-dir)"
            )
        if self.weights:
            if len(self.weights) != len(self.lmdb):
                raise DreError(
                    f"--weights has {len(self.weights)} values but --lmdb is given {len(self.lmdb)} times; "
                    "give one weight per LMDB"
                )
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise DreError(f"--weights {list(self.weights)}: weights must be ≥ 0 and not all 0")
        positive = {
            "--batch-size": self.batch_size, "--max-steps": self.max_steps, "--save-every": self.save_every,
            "--log-every": self.log_every,
        }
        for flag, value in positive.items():
            if value is None or value <= 0:
                raise DreError(f"{flag} {value}: must be a positive integer")
        if self.lr is None or self.lr <= 0:
            raise DreError(f"--lr {self.lr}: must be > 0")
        if self.warmup_steps < 0 or self.sample_every < 0 or self.keep < 0 or self.num_workers < 0:
            raise DreError("--warmup-steps, --sample-every, --keep and --num-workers must be ≥ 0")
        if self.nodes < 1 or self.processes < 1:
            raise DreError(f"--nodes {self.nodes} --processes {self.processes}: both must be ≥ 1")
        if not 0.0 <= self.ema < 1.0:
            raise DreError(f"--ema {self.ema}: EMA decay must be in [0, 1) (0 = off)")
        if not self.weight_decay >= 0:
            raise DreError(f"--weight-decay {self.weight_decay}: must be ≥ 0 (0 = off)")
        if self.grad_clip < 0:
            raise DreError(f"--grad-clip {self.grad_clip}: must be ≥ 0 (0 = off)")
        if self.precision not in PRECISIONS:
            raise DreError(f"--precision {self.precision}: one of {', '.join(PRECISIONS)}")

    # ------------------------------------------------------------------ views
    def check_world(self, world_size: int, launcher: str) -> None:
        """Refuse a job whose launcher started another number of ranks than ``--nodes`` × ``--processes``.

        Why: a wrong srun/mpiexec line (or a profile that overrides the task count) would otherwise train
        with another split of the global batch than asked, or every rank alone on the whole batch. The
        default 1 × 1 declares nothing, so ``mpiexec -n 4 python -m dre train ...`` keeps working.
        """
        expected = self.nodes * self.processes
        if expected > 1 and world_size != expected:
            raise DreError(
                f"--nodes {self.nodes} × --processes {self.processes} = {expected} ranks expected, but the "
                f"launcher ({launcher}) started {world_size}; start one rank per process (srun --nodes "
                f"{self.nodes} --ntasks-per-node {self.processes}, torchrun --nproc_per_node {self.processes}) "
                "or set --nodes/--processes to the job's shape"
            )

    def mixing_weights(self) -> tuple[float, ...]:
        """Per-LMDB mixing weights, normalised; equal when ``--weights`` is not given."""
        w = self.weights or tuple(1.0 for _ in self.lmdb)
        s = sum(w)
        return tuple(x / s for x in w)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists) for checkpoints and ``config.json``.

        The nested configs are nested dicts (``{"model": {...}, "diffusion": {...}, "lr": ...}``).
        """
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["weights"] = tuple(kw.get("weights", ()))
        if "model" in kw:
            kw["model"] = ModelConfig.from_dict(kw["model"])
        if "diffusion" in kw:
            kw["diffusion"] = DiffusionConfig.from_dict(kw["diffusion"])
        return cls(**kw)

    def trajectory_diff(self, other: dict[str, Any]) -> list[str]:
        """Settings (other than runtime ones) whose value differs from ``other`` (a saved ``to_dict``).

        Nested configs are compared field by field and named ``model.<field>`` / ``diffusion.<field>``.
        """
        mine, theirs = _flatten(self.to_dict()), _flatten(other)
        diffs = []
        for key, value in mine.items():
            if key in RUNTIME_FIELDS or key not in theirs:
                continue
            saved = theirs[key]
            if isinstance(value, float) or isinstance(saved, float):
                same = saved is not None and value is not None and float(value) == float(saved)
            else:
                same = value == saved
            if not same:
                diffs.append(f"{key}: checkpoint has {saved!r}, this command has {value!r}")
        return diffs


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
