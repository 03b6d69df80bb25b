"""Device selection shared by every GPU-capable subcommand (``--device auto|cpu|cuda|cuda:N``)."""

from __future__ import annotations

import torch

from dre.errors import DreError

DEVICE_CHOICES_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def resolve_device(spec: str = "auto") -> "torch.device":
    """Turn a ``--device`` value into a :class:`torch.device`, failing clearly if CUDA is missing."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise DreError(f"--device {spec} was asked for, but torch sees no CUDA device; use --device cpu or auto")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise DreError(f"--device {spec!r} is not a device ({DEVICE_CHOICES_HELP})") from exc
