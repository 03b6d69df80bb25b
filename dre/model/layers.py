"""Small building blocks of the UNet: time embedding, fp32-statistics GroupNorm, up/down sampling.

The parameterised pieces keep the exact module nesting of the published network (``Sequential``
indices included) because the official checkpoint's state-dict keys depend on it
(``in_layers.0`` = norm, ``in_layers.2`` = conv, ``emb_layers.1``, ``out_layers.3`` ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: ``[cos(t·f), sin(t·f)]`` (B, dim).

    Frequencies are ``max_period^(-i/half)`` for ``i < half``; cosines come first, as in the
    published model (its weights were trained against this exact layout). Odd ``dim`` gets a zero
    column at the end.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm whose statistics are always computed in fp32, output in the input's dtype.

    The original casts to fp32 and back. Here the kernel is asked to do the same thing directly: the
    CUDA/CPU group-norm kernels accumulate low-precision inputs in fp32, so running them on the bf16/
    fp16 tensor under a locally disabled autocast gives fp32 statistics without materialising an
    fp32 copy of the activation (autocast would otherwise promote the output to fp32 and double the
    memory traffic of every following elementwise op).
    """

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return group_norm_fp32(x, self.num_groups, self.weight, self.bias, self.eps)


def group_norm_fp32(x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """Group norm with fp32 statistics and output dtype == input dtype (see :class:`GroupNorm32`)."""
    if x.dtype == torch.float32 or x.dtype == torch.float64:
        return F.group_norm(x, groups, weight, bias, eps)
    with torch.autocast(device_type=x.device.type, enabled=False):
        w = weight.to(x.dtype) if weight is not None else None
        b = bias.to(x.dtype) if bias is not None else None
        return F.group_norm(x, groups, w, b, eps)


def downsample(x: Tensor) -> Tensor:
    """2×2 average pooling (the parameter-free resampling of ``resblock_updown`` down blocks)."""
    return F.avg_pool2d(x, kernel_size=2, stride=2)


def upsample(x: Tensor) -> Tensor:
    """Nearest-neighbour ×2 (the parameter-free resampling of ``resblock_updown`` up blocks)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SampleDropout(nn.Dropout):
    """Dropout whose mask for each sample is drawn from that sample's own seed.

    Why: plain dropout draws its mask from the process's RNG, so two processes that split a batch drop
    other units than one process holding the whole batch, and N-process training could not equal
    one-process training. With :attr:`seeds` set (one int per sample of the batch; the trainer derives
    them from the run seed, the step and the sample's position in the *global* batch), sample b's mask
    depends only on its seed and this layer's :attr:`index`, so one process, N processes and a resumed
    run drop exactly the same units. Without seeds (or in eval mode) it is ``nn.Dropout``. It has no
    parameters, so state dicts (and the published checkpoint's keys) are unchanged.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.seeds: list[int] | None = None
        self.index = 0
        self._gen: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if not self.training or self.p == 0.0 or self.seeds is None:
            return super().forward(x)
        if len(self.seeds) != x.shape[0]:
            raise RuntimeError(f"SampleDropout got {len(self.seeds)} seeds for a batch of {x.shape[0]}")
        if self._gen is None or self._gen.device != x.device:
            self._gen = torch.Generator(device=x.device)
        masks = []
        for s in self.seeds:
            self._gen.manual_seed((s * 0x9E3779B97F4A7C15 + self.index) & ((1 << 63) - 1))
            masks.append(torch.rand(x.shape[1:], generator=self._gen, device=x.device) >= self.p)
        return x * torch.stack(masks).to(x.dtype) * (1.0 / (1.0 - self.p))


def set_dropout_seeds(model: nn.Module, seeds: list[int] | None) -> None:
    """Give every :class:`SampleDropout` of ``model`` the per-sample ``seeds`` of the next forward
    (``None``: back to ordinary dropout). Layers are numbered in module order."""
    for i, m in enumerate(mod for mod in model.modules() if isinstance(mod, SampleDropout)):
        m.index, m.seeds = i, seeds
