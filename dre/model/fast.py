"""Speed switches that do not change the math: precision (autocast), channels-last, torch.compile.

They are separate from the architecture (``ModelConfig``) because the same weights are run under
different settings (fp32 on a CPU test box, bf16 on a GPU, the original recipe in benchmarks).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from dre.errors import DreError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` → bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU; others pass through."""
    if precision not in PRECISIONS:
        raise DreError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    if precision != "auto":
        return precision
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """Autocast for ``precision`` (``fp32`` = no autocast) on ``device``'s type."""
    dev = torch.device(device)
    prec = resolve_precision(precision, dev)
    if prec == "fp32":
        yield
        return
    with torch.autocast(device_type=dev.type, dtype=_DTYPES[prec]):
        yield


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert conv weights to channels-last and make the UNet feed channels-last activations."""
    from dre.model.unet import UNet

    model.to(memory_format=torch.channels_last)
    for mod in model.modules():
        if isinstance(mod, UNet):
            mod.channels_last = True
    return model


def set_recipe(model: nn.Module, recipe: str) -> nn.Module:
    """Select the ``fast`` (default) or the literal ``original`` arithmetic in every UNet of ``model``."""
    from dre.model.unet import UNet

    for mod in model.modules():
        if isinstance(mod, UNet):
            mod.set_recipe(recipe)
    return model


def maybe_compile(model: nn.Module, enabled: bool, **kwargs: object) -> nn.Module:
    """``torch.compile`` the UNet in place when asked (the wrapper and encoder stay eager).

    Only the UNet is compiled: it holds almost all FLOPs. ``nn.Module.compile`` works in place, so the
    ``state_dict`` keys stay official (no ``_orig_mod.`` prefix) and checkpoints stay interchangeable.
    """
    if not enabled:
        return model
    from dre.model.rig import DiffusionRig

    target = model.denoisingUNet if isinstance(model, DiffusionRig) else model
    target.compile(**kwargs)  # in place: parameter names (and so state-dict keys) are unchanged
    return model


def eps_fn(
    model: nn.Module,
    cond: Tensor,
    latent: Tensor,
    precision: str = "fp32",
) -> Callable[[Tensor, Tensor], Tensor]:
    """A sampler ``model_fn(x_t, t) -> ε̂`` (fp32) for fixed buffers and latents, under ``precision``.

    ``cond`` and ``latent`` must have the batch size of the ``x_t`` the sampler passes.
    """
    device = cond.device

    def fn(x_t: Tensor, t: Tensor) -> Tensor:
        with autocast(device, precision):
            return model(x_t, t, cond, latent=latent).float()

    return fn
