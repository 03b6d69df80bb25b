"""Architecture configuration of the DiffusionRig model.

Every size is a field so that the published 256² network, the tiny test networks and the demo
network are built by the same code. The defaults are the published configuration (see
docs/reference.md). The dataclass is stored verbatim in every model file
(``dre.model.modelfile``), so a model file always says how to rebuild its network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dre.errors import DreError
from dre.utils.cliconfig import setting
from dre.utils.records import from_dict_strict, to_plain

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""``--precision`` of ``dre train`` and ``dre edit`` (resolved per device by :mod:`dre.model.precision`).
Defined here, beside the other torch-free model settings, so both commands' flags can name it."""

#: ``channel_mult`` used by the original code when none is given, keyed by image size.
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

ENCODERS = ("resnet18", "resnet50")


@dataclass
class ModelConfig:
    """Sizes of the UNet and of the global latent encoder (defaults = the published model).

    The settings are also the ``dre train`` flags and the keys of the workflow config's ``model:``
    section (``dre.utils.cliconfig``); the plain fields are fixed by the method and not exposed.
    """

    image_size: int = setting(256, help="image and buffer resolution the network works at")
    in_channels: int = 12  # noisy image (3) + the three buffers (9)
    out_channels: int = 3
    model_channels: int = setting(128, help="base channel width of the UNet")
    channel_mult: tuple[float, ...] = setting(
        (), help="comma list of per-level width multipliers; empty = by image size (256: 1,1,2,2,4,4)"
    )
    num_res_blocks: int = setting(2, help="residual blocks per UNet level")
    attention_resolutions: tuple[int, ...] = setting(
        (16,), help="comma list of resolutions (pixels, not downsample factors) that get self-attention"
    )
    num_heads: int = setting(1, help="attention heads (used when --num-head-channels is -1)")
    num_head_channels: int = setting(-1, help="channels per attention head; -1 = use --num-heads")
    dropout: float = setting(0.1, help="dropout in the residual blocks")
    latent_dim: int = setting(64, help="size of the global latent code of the image encoder")
    encoder: str = setting("resnet18", choices=ENCODERS, help="global image encoder")
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    # GroupNorm groups: each norm uses gcd(norm_groups, its channels) — exactly 32 for the published widths
    norm_groups: int = field(default=32)

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        self.validate()

    # ------------------------------------------------------------------ derived values
    def resolved_channel_mult(self) -> tuple[float, ...]:
        """The channel multipliers actually used (the original's per-size default when empty)."""
        if self.channel_mult:
            return tuple(self.channel_mult)
        if self.image_size not in DEFAULT_CHANNEL_MULT:
            raise DreError(
                f"image size {self.image_size} has no default channel_mult (known: "
                f"{sorted(DEFAULT_CHANNEL_MULT)}); pass --channel-mult explicitly"
            )
        return DEFAULT_CHANNEL_MULT[self.image_size]

    def attention_downsample_factors(self) -> set[int]:
        """Downsample factors at which attention is used (the original converts resolutions so)."""
        return {self.image_size // r for r in self.attention_resolutions if r > 0}

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Reject configurations the network cannot be built with, naming the field."""
        if self.image_size <= 0:
            raise DreError(f"model image_size must be positive, got {self.image_size}")
        mult = self.resolved_channel_mult()
        if not mult or any(m <= 0 for m in mult):
            raise DreError(f"model channel_mult must be positive numbers, got {mult}")
        if self.image_size % (2 ** (len(mult) - 1)) != 0:
            raise DreError(
                f"image_size {self.image_size} is not divisible by 2^{len(mult) - 1} "
                f"(channel_mult {mult} has {len(mult)} levels)"
            )
        if self.norm_groups < 1:
            raise DreError(f"norm_groups must be >= 1, got {self.norm_groups}")
        if self.num_head_channels != -1 and self.num_head_channels <= 0:
            raise DreError(f"num_head_channels must be -1 or positive, got {self.num_head_channels}")
        if self.num_heads <= 0:
            raise DreError(f"num_heads must be positive, got {self.num_heads}")
        if self.encoder not in ENCODERS:
            raise DreError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if not self.use_scale_shift_norm:
            # The original's latent FiLM is 2C wide and only fits the scale-shift path; without it the
            # original crashes with a shape error. Say so instead of building a different network.
            raise DreError("use_scale_shift_norm=False is not supported: the latent FiLM needs scale-shift norm")
        if self.num_res_blocks < 1:
            raise DreError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise DreError(f"dropout must be in [0, 1), got {self.dropout}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so the dict survives ``torch.load(weights_only=True)``."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (a newer file format)."""
        return from_dict_strict(cls, d, "model_config")
