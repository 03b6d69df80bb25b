"""Global latent encoder: a randomly initialised torchvision ResNet whose ``fc`` maps to ``latent_dim``.

It reads the clean image in [-1, 1] (no ImageNet normalisation) and is trained jointly with the UNet
through the diffusion loss only, as in the published model. torchvision's own module names are kept
(``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``), which is what the official checkpoint stores
under ``encoder.*``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet50

from dre.errors import DreError


def build_encoder(kind: str, latent_dim: int) -> nn.Module:
    """A ResNet-18/50 (random init) with ``fc`` = ``Linear(512|2048 → latent_dim)``."""
    builders = {"resnet18": resnet18, "resnet50": resnet50}
    if kind not in builders:
        raise DreError(f"unknown encoder {kind!r}; choose one of {sorted(builders)}")
    return builders[kind](weights=None, num_classes=latent_dim)
