"""``dre train``: stage 1 (generic prior) and stage 2 (personal fine-tune) DiffusionRig training."""

from __future__ import annotations

import argparse


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Architecture and diffusion flags (defaults = the published 256² configuration)."""
    g = p.add_argument_group("model")
    g.add_argument("--image-size", type=int, default=256)
    g.add_argument("--model-channels", type=int, default=128)
    g.add_argument("--channel-mult", default="", help="comma list; empty = by image size (256: 1,1,2,2,4,4)")
    g.add_argument("--num-res-blocks", type=int, default=2)
    g.add_argument("--attention-resolutions", default="16", help="comma list of resolutions")
    g.add_argument("--num-heads", type=int, default=1)
    g.add_argument("--num-head-channels", type=int, default=-1)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--latent-dim", type=int, default=64)
    g.add_argument("--encoder", choices=("resnet18", "resnet50"), default="resnet18")
    d = p.add_argument_group("diffusion")
    d.add_argument("--diffusion-steps", type=int, default=1000)
    d.add_argument("--noise-schedule", choices=("linear", "cosine"), default="linear")
    d.add_argument("--p2-gamma", type=float, default=1.0, help="P2 weighting exponent (0 disables)")
    d.add_argument("--p2-k", type=float, default=1.0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train stage 1 (prior LMDBs) or stage 2 (album LMDB); resumable and distributed",
        description=(
            "Train the DiffusionRig model. Stage 1 trains everything on one or more prior LMDBs; stage 2 "
            "initialises from a stage-1 model (ours or an official DiffusionRig model*.pt), freezes the "
            "global encoder and fine-tunes the UNet on a personal album. Checkpoints go to --run-dir; "
            "running the same command again resumes from the newest one. The final model is exported to --out. "
            "Under torchrun, srun or mpiexec every process trains its shard (torch.distributed)."
        ),
    )
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--lmdb", action="append", required=True, help="LMDB folder; repeat to mix several (stage 1)")
    p.add_argument("--weights", default="", help="comma list of mixing weights, one per --lmdb (default equal)")
    p.add_argument("--init", help="stage 2: stage-1 model to initialise from (ours or official model*.pt)")
    p.add_argument("--run-dir", required=True, help="checkpoints, logs, sample grids (resumed if present)")
    p.add_argument("--out", required=True, help="final exported model file")
    p.add_argument("--no-resume", action="store_true", help="start over even if --run-dir has checkpoints")
    add_model_flags(p)
    t = p.add_argument_group("optimisation")
    t.add_argument("--lr", type=float, default=None, help="default 1e-4 (stage 1) / 1e-5 (stage 2)")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--batch-size", type=int, default=None, help="global batch; default 32 (stage 1) / 4 (stage 2)")
    t.add_argument("--max-steps", type=int, default=None, help="default 50000 (stage 1) / 5000 (stage 2)")
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto = bf16 autocast on GPU, fp32 on CPU")
    t.add_argument("--ema", type=float, default=0.0, help="EMA decay (0 = off, as the original)")
    t.add_argument("--train-encoder-bn", action="store_true",
                   help="stage 2: keep updating the frozen encoder's BatchNorm statistics (original behaviour)")
    t.add_argument("--local-bn", action="store_true",
                   help="normalise the encoder's BatchNorm per process (the original under DDP) instead of "
                        "over the global batch; only matters with several processes")
    t.add_argument("--save-every", type=int, default=5000)
    t.add_argument("--keep", type=int, default=2, help="checkpoints to keep besides the final one")
    t.add_argument("--sample-every", type=int, default=0, help="DDIM sample grid every K steps (0 = off)")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--num-workers", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dre.train import TrainConfig, train

    cfg = TrainConfig.from_args(args)
    out = train(cfg)
    print(out)
    return 0
