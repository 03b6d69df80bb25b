"""``dre report loss|status``: the figures and tables that `snakemake --report` shows."""

from __future__ import annotations

import argparse
from pathlib import Path

from dre.errors import DreError

NAME = "report"


def register(sub: argparse._SubParsersAction, *, flags: bool = True) -> None:
    """Sub-subcommands and their flags (cheap to build: nothing heavy is imported here)."""
    p = sub.add_parser("report", help="loss-curve plots and per-status tables for the Snakemake report")
    rsub = p.add_subparsers(dest="report_command", metavar="<loss|status>", required=True)
    loss = rsub.add_parser("loss", help="PNG of training loss against step from metrics.csv files")
    loss.add_argument("--metrics", action="append", required=True, help="a run's metrics.csv; repeat to overlay")
    loss.add_argument("--label", action="append", help="legend label per --metrics (default: the run folder)")
    loss.add_argument("--model", help="the run's exported model file: its meta says whether assets were synthetic")
    loss.add_argument("--title", default="")
    loss.add_argument("--out", required=True, help="PNG to write")
    loss.set_defaults(func=run_loss)
    st = rsub.add_parser("status", help="TSV of counts by status of an align.parquet or codes parquet")
    st.add_argument("--table", required=True, help="align.parquet (or its folder) or codes parquet")
    st.add_argument("--out", required=True, help="TSV to write")
    st.set_defaults(func=run_status)


def _synthetic(model: str | None) -> bool:
    if not model:
        return False
    import torch  # lazy: building the CLI must not load torch

    blob = torch.load(model, map_location="cpu", weights_only=True)
    return bool(isinstance(blob, dict) and blob.get("meta", {}).get("synthetic"))


def run_loss(args: argparse.Namespace) -> int:
    from dre.report import plot_losses  # lazy: building the CLI must not load matplotlib

    labels = args.label or [Path(m).parent.name for m in args.metrics]
    if len(labels) != len(args.metrics):
        raise DreError(f"{len(labels)} --label for {len(args.metrics)} --metrics: give one per file or none")
    plot_losses(args.metrics, labels, args.out, title=args.title, synthetic=_synthetic(args.model))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from dre.report import write_status_table  # lazy: building the CLI must not load pyarrow

    write_status_table(args.table, args.out)
    return 0
