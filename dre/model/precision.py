"""Mixed precision for training and sampling: which autocast dtype, and a GradScaler only where fp16 needs one.

One resolver for ``--precision`` (``dre train`` and ``dre edit`` alike): ``auto`` is bf16 autocast on a
CUDA GPU that supports it (same exponent range as fp32: no loss scaling, no overflow skips), fp16 on one
that does not, and plain fp32 elsewhere (CPU). ``fp16`` also reproduces the original training recipe
(fp16 autocast + a GradScaler, whose state training saves in checkpoints, unlike the original).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from dre.errors import DreError
from dre.model.arch import PRECISIONS

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device type."""

    name: str  # fp32 | bf16 | fp16
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    def autocast(self) -> ContextManager[Any]:
        """``torch.autocast`` for bf16/fp16; nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (dynamic loss scaling), ``None`` otherwise."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device_type)


def resolve_precision(flag: str, device: torch.device | str) -> Precision:
    """Turn ``--precision`` into a concrete mode for ``device`` (see the module docstring)."""
    if flag not in PRECISIONS:
        raise DreError(f"--precision must be one of {PRECISIONS}, got {flag!r}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if flag == "auto":
        name = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    else:
        name = flag
    if name == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise DreError("--precision bf16: this GPU has no bf16 support; use --precision fp16 or auto")
    return Precision(name, dev.type)
