"""Mixed precision: which autocast dtype, and a GradScaler only where fp16 needs one.

``auto`` is bf16 autocast on CUDA (same exponent range as fp32: no loss scaling, no overflow skips)
and plain fp32 on CPU. ``fp16`` reproduces the original recipe (fp16 autocast + a GradScaler, whose
state we save in checkpoints, unlike the original).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from dre.errors import DreError


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def autocast(self) -> ContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (dynamic loss scaling), ``None`` otherwise."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device_type)


def resolve_precision(flag: str, device: torch.device) -> Precision:
    """Turn ``--precision`` into a concrete mode for ``device`` (the rule is ``dre.model``'s, shared with edit)."""
    from dre.model.fast import resolve_precision as resolve_name

    name = resolve_name(flag, device)
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DreError("--precision bf16: this GPU has no bf16 support; use --precision fp16 or auto")
    return Precision(name, device.type)
