"""``TrainConfig``: every ``dre train`` flag as one typed, serialisable record.

The resolved config (stage defaults filled in) is written into every checkpoint and next to the run, so
a resumed run can check it is continuing *the same* training. Fields are split into the ones that
define the training trajectory (a mismatch on resume is an error naming the fields) and the runtime
ones that may change between attempts (more steps, another device, other logging intervals).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

from dre.errors import DreError

STAGE_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"lr": 1e-4, "batch_size": 32, "max_steps": 50000},
    2: {"lr": 1e-5, "batch_size": 4, "max_steps": 5000},
}
"""The published recipe (README of DiffusionRig); ``batch_size`` here is the *global* batch."""

RUNTIME_FIELDS: frozenset[str] = frozenset(
    {
        "run_dir", "out", "resume", "max_steps", "save_every", "keep", "sample_every", "log_every",
        "num_workers", "device", "compile", "lmdb",
    }
)
"""Fields a resumed run may change. ``lmdb`` paths may move (the LMDBs' identity is checked by count)."""


def _csv_ints(text: str | tuple[int, ...] | list[int], flag: str) -> tuple[int, ...]:
    if isinstance(text, (tuple, list)):
        return tuple(int(x) for x in text)
    text = (text or "").strip()
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise DreError(f"{flag} {text!r}: expected a comma list of integers") from exc


def _csv_floats(text: str | tuple[float, ...] | list[float], flag: str) -> tuple[float, ...]:
    if isinstance(text, (tuple, list)):
        return tuple(float(x) for x in text)
    text = (text or "").strip()
    if not text:
        return ()
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise DreError(f"{flag} {text!r}: expected a comma list of numbers") from exc


@dataclass
class TrainConfig:
    """One training run. ``None`` optimisation fields take the stage's default in :meth:`resolved`."""

    stage: int
    lmdb: list[str]
    run_dir: str
    out: str
    weights: tuple[float, ...] = ()
    init: str | None = None
    resume: bool = True
    # model
    image_size: int = 256
    model_channels: int = 128
    channel_mult: tuple[int, ...] = ()
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 1
    num_head_channels: int = -1
    dropout: float = 0.1
    latent_dim: int = 64
    encoder: str = "resnet18"
    # diffusion
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    p2_gamma: float = 1.0
    p2_k: float = 1.0
    # optimisation
    lr: float | None = None
    weight_decay: float = 0.0
    batch_size: int | None = None
    max_steps: int | None = None
    warmup_steps: int = 0
    grad_clip: float = 1.0
    precision: str = "auto"
    ema: float = 0.0
    train_encoder_bn: bool = False
    sync_bn: bool = True
    save_every: int = 5000
    keep: int = 2
    sample_every: int = 0
    log_every: int = 10
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
    compile: bool = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Build from the parsed ``dre train`` namespace (the CLI's only job is this call)."""
        cfg = cls(
            stage=args.stage,
            lmdb=list(args.lmdb),
            run_dir=args.run_dir,
            out=args.out,
            weights=_csv_floats(args.weights, "--weights"),
            init=args.init,
            resume=not args.no_resume,
            image_size=args.image_size,
            model_channels=args.model_channels,
            channel_mult=_csv_ints(args.channel_mult, "--channel-mult"),
            num_res_blocks=args.num_res_blocks,
            attention_resolutions=_csv_ints(args.attention_resolutions, "--attention-resolutions"),
            num_heads=args.num_heads,
            num_head_channels=args.num_head_channels,
            dropout=args.dropout,
            latent_dim=args.latent_dim,
            encoder=args.encoder,
            diffusion_steps=args.diffusion_steps,
            noise_schedule=args.noise_schedule,
            p2_gamma=args.p2_gamma,
            p2_k=args.p2_k,
            lr=args.lr,
            weight_decay=args.weight_decay,
            batch_size=args.batch_size,
            max_steps=args.max_steps,
            warmup_steps=args.warmup_steps,
            grad_clip=args.grad_clip,
            precision=args.precision,
            ema=args.ema,
            train_encoder_bn=args.train_encoder_bn,
            sync_bn=not args.local_bn,
            save_every=args.save_every,
            keep=args.keep,
            sample_every=args.sample_every,
            log_every=args.log_every,
            num_workers=args.num_workers,
            seed=args.seed,
            device=args.device,
            compile=args.compile,
        )
        return cfg.resolved()

    def resolved(self) -> TrainConfig:
        """Fill the stage defaults and check every value; returns a new config."""
        if self.stage not in STAGE_DEFAULTS:
            raise DreError(f"--stage {self.stage}: must be 1 or 2")
        d = STAGE_DEFAULTS[self.stage]
        kw = asdict(self)
        for key, default in d.items():
            if kw[key] is None:
                kw[key] = default
        kw["lmdb"] = [str(p) for p in kw["lmdb"]]
        kw["weights"] = tuple(float(w) for w in kw["weights"])
        kw["channel_mult"] = tuple(kw["channel_mult"])
        kw["attention_resolutions"] = tuple(kw["attention_resolutions"])
        cfg = TrainConfig(**kw)
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
            "--log-every": self.log_every, "--image-size": self.image_size, "--diffusion-steps": self.diffusion_steps,
        }
        for flag, value in positive.items():
            if value is None or value <= 0:
                raise DreError(f"{flag} {value}: must be a positive integer")
        if self.lr is None or self.lr <= 0:
            raise DreError(f"--lr {self.lr}: must be > 0")
        if self.warmup_steps < 0 or self.sample_every < 0 or self.keep < 0 or self.num_workers < 0:
            raise DreError("--warmup-steps, --sample-every, --keep and --num-workers must be ≥ 0")
        if not 0.0 <= self.ema < 1.0:
            raise DreError(f"--ema {self.ema}: EMA decay must be in [0, 1) (0 = off)")
        if self.grad_clip < 0:
            raise DreError(f"--grad-clip {self.grad_clip}: must be ≥ 0 (0 = off)")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise DreError(f"--precision {self.precision}: one of auto, fp32, bf16, fp16")

    # ------------------------------------------------------------------ views
    def mixing_weights(self) -> tuple[float, ...]:
        """Per-LMDB mixing weights, normalised; equal when ``--weights`` is not given."""
        w = self.weights or tuple(1.0 for _ in self.lmdb)
        s = sum(w)
        return tuple(x / s for x in w)

    def model_kwargs(self) -> dict[str, Any]:
        """Fields of ``dre.model.ModelConfig``."""
        return {
            "image_size": self.image_size, "in_channels": 12, "out_channels": 3,
            "model_channels": self.model_channels, "channel_mult": tuple(self.channel_mult),
            "num_res_blocks": self.num_res_blocks, "attention_resolutions": tuple(self.attention_resolutions),
            "num_heads": self.num_heads, "num_head_channels": self.num_head_channels, "dropout": self.dropout,
            "latent_dim": self.latent_dim, "encoder": self.encoder,
        }

    def diffusion_kwargs(self) -> dict[str, Any]:
        """Fields of ``dre.diffusion.DiffusionConfig``."""
        return {"steps": self.diffusion_steps, "schedule": self.noise_schedule,
                "p2_gamma": self.p2_gamma, "p2_k": self.p2_k}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists) for checkpoints and ``config.json``."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("weights", "channel_mult", "attention_resolutions"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def trajectory_diff(self, other: dict[str, Any]) -> list[str]:
        """Fields (other than runtime ones) whose value differs from ``other`` (a saved ``to_dict``)."""
        mine = self.to_dict()
        diffs = []
        for key, value in mine.items():
            if key in RUNTIME_FIELDS:
                continue
            if key not in other:
                continue
            theirs = other[key]
            if isinstance(value, float) or isinstance(theirs, float):
                same = theirs is not None and value is not None and float(value) == float(theirs)
            else:
                same = value == theirs
            if not same:
                diffs.append(f"{key}: checkpoint has {theirs!r}, this command has {value!r}")
        return diffs
