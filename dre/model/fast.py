"""Speed switches that do not change the math: channels-last, torch.compile, the sampler wrapper.

They are separate from the architecture (``ModelConfig``) because the same weights are run under
different settings (fp32 on a CPU test box, bf16 on a GPU; precision itself: :mod:`dre.model.precision`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from dre.model.precision import Precision
from dre.model.rig import DiffusionRig
from dre.model.unet import UNet

def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert conv weights to channels-last and make the UNet feed channels-last activations."""
    model.to(memory_format=torch.channels_last)
    for mod in model.modules():
        if isinstance(mod, UNet):
            mod.channels_last = True
    return model


def maybe_compile(model: nn.Module, enabled: bool, **kwargs: object) -> nn.Module:
    """``torch.compile`` the UNet in place when asked (the wrapper and encoder stay eager).

    Only the UNet is compiled: it holds almost all FLOPs. ``nn.Module.compile`` works in place, so the
    ``state_dict`` keys stay official (no ``_orig_mod.`` prefix) and checkpoints stay interchangeable.
    """
    if not enabled:
        return model

    target = model.denoisingUNet if isinstance(model, DiffusionRig) else model
    target.compile(**kwargs)  # in place: parameter names (and so state-dict keys) are unchanged
    return model


def eps_fn(
    model: nn.Module,
    cond: Tensor,
    latent: Tensor,
    precision: Precision | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """A sampler ``model_fn(x_t, t) -> ε̂`` (fp32) for fixed buffers and latents, under ``precision``
    (``None``: fp32; see :func:`dre.model.precision.resolve_precision`).

    ``cond`` and ``latent`` must have the batch size of the ``x_t`` the sampler passes.
    """
    prec = precision or Precision("fp32", cond.device.type)

    def fn(x_t: Tensor, t: Tensor) -> Tensor:
        with prec.autocast():
            return model(x_t, t, cond, latent=latent).float()

    return fn
