"""DECA's coarse encoder (``E_flame``) and EMOCA's expression encoder (``E_expression``).

Both are the same network shape: a ResNet-50 trunk without its classifier (global average pool →
2048 features) followed by ``Linear(2048, 1024) → ReLU → Linear(1024, n)``. The module names are
chosen so that ``state_dict()`` keys are exactly those of the released checkpoints
(``encoder.conv1.weight`` … ``encoder.layer4.2.bn3.*``, ``layers.0.*``, ``layers.2.*``): the official
weights then load with ``strict=True`` and any mismatch is a user-visible error, not a silent skip (DECA's
own ``copy_state_dict`` skips missing keys silently). The trunk is torchvision's ``resnet50`` with
``fc`` replaced by an identity: DECA's ResNet-50 has the same module tree (Bottleneck [3, 4, 6, 3],
stride on the 3×3 conv, ``downsample.0/1``), and torchvision's adaptive average pool equals DECA's
``AvgPool2d(7)`` at the 224² input both use.

Input: (B, 3, 224, 224) RGB in [0, 1] with no mean/std normalisation (DECA's convention).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from torchvision.models import resnet50

from dre.assets.catalog import DEFAULT_EMOCA_MODEL, deca_path, emoca_path
from dre.errors import DreError
from dre.face3d.codes import CODE_DIMS, FlameCodes
from dre.face3d.encoder_files import EmocaFlags, load_deca_checkpoint, load_emoca

DECA_CODE_SIZE = sum(CODE_DIMS.values())  # 236
"""Width of E_flame's output: shape 100 | tex 50 | exp 50 | pose 6 | cam 3 | light 27."""

FEATURE_SIZE = 2048


class ResnetEncoder(nn.Module):
    """torchvision's ResNet-50 without its classifier (→ 2048 pooled features) + a 2-layer MLP: the key
    layout of DECA's ``ResnetEncoder``."""

    def __init__(self, out_size: int) -> None:
        super().__init__()
        self.encoder = resnet50(weights=None)
        self.encoder.fc = nn.Identity()  # no parameters: the state dict is the trunk's, as DECA stores it
        self.layers = nn.Sequential(nn.Linear(FEATURE_SIZE, 1024), nn.ReLU(), nn.Linear(1024, out_size))
        self.out_size = out_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(images))


@lru_cache(maxsize=8)
def expected_shapes(out_size: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of a ``ResnetEncoder(out_size)`` state dict (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = ResnetEncoder(out_size)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


OPTIONAL_KEY_SUFFIX = "num_batches_tracked"
"""BatchNorm counters: unused at inference, absent from checkpoints saved by torch < 0.4.1."""


def check_state_dict(state: Mapping[str, object], out_size: int, what: str) -> dict[str, torch.Tensor]:
    """Strict key and shape check of an encoder state dict; returns it with float tensors.

    Raises :class:`DreError` naming the file/section and the first offending keys. Only the BatchNorm
    ``num_batches_tracked`` counters may be missing (they do not affect inference).
    """
    expect = expected_shapes(out_size)
    missing = [k for k in expect if k not in state and not k.endswith(OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in state if k not in expect]
    wrong = []
    for k, shape in expect.items():
        v = state.get(k)
        if v is None:
            continue
        if not isinstance(v, torch.Tensor):
            wrong.append(f"{k}: not a tensor ({type(v).__name__})")
        elif tuple(v.shape) != shape:
            wrong.append(f"{k}: shape {tuple(v.shape)}, expected {shape}")
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} mismatched tensors ({'; '.join(wrong[:3])})")
        raise DreError(
            f"{what}: not a ResNet-50 encoder with {out_size} outputs in DECA's layout: " + ", ".join(parts)
        )
    return {k: v for k, v in state.items()}  # type: ignore[misc]


def load_encoder(state: Mapping[str, torch.Tensor], out_size: int, what: str) -> ResnetEncoder:
    """Build a ``ResnetEncoder`` and load ``state`` strictly (checked first for a readable message)."""
    state = dict(check_state_dict(state, out_size, what))
    for key in expected_shapes(out_size):  # the only keys allowed to be absent: fill them in
        if key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    with torch.device("meta"):  # no random init of 25 M parameters that are overwritten anyway
        model = ResnetEncoder(out_size)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def codes_from_outputs(
    deca_out: torch.Tensor, exp_out: torch.Tensor | None = None, flags: EmocaFlags | None = None
) -> FlameCodes:
    """Turn E_flame's (B, 236) output (and EMOCA's E_expression output) into :class:`FlameCodes`.

    DECA: split in DECA's parameter order. EMOCA: ``exp`` comes from E_expression; the global and/or
    jaw pose too when the model's flags say so; everything else (shape, tex, cam, light and the
    remaining pose) stays DECA's, as EMOCA's ``decompose_code`` does.
    """
    codes = FlameCodes.from_flat(deca_out)
    if exp_out is None:
        return codes
    flags = flags or EmocaFlags()
    if exp_out.ndim != 2 or exp_out.shape[1] != flags.out_size or exp_out.shape[0] != deca_out.shape[0]:
        raise ValueError(f"E_expression output {tuple(exp_out.shape)} does not match {flags}")
    extra = exp_out[:, flags.n_exp :]  # global pose, then jaw pose, each only when its flag is set
    glob = extra[:, :3] if flags.global_pose else codes.pose[:, :3]
    jaw = extra[:, -3:] if flags.jaw_pose else codes.pose[:, 3:]
    return replace(codes, exp=exp_out[:, : flags.n_exp], pose=torch.cat([glob, jaw], dim=1))


class FaceEncoder(nn.Module):
    """DECA (``E_flame`` only) or EMOCA (``E_flame`` + ``E_expression``): crops → :class:`FlameCodes`."""

    def __init__(
        self, e_flame: ResnetEncoder, e_expression: ResnetEncoder | None = None, flags: EmocaFlags | None = None
    ) -> None:
        super().__init__()
        if e_flame.out_size != DECA_CODE_SIZE:
            raise ValueError(f"E_flame must have {DECA_CODE_SIZE} outputs, has {e_flame.out_size}")
        self.E_flame = e_flame
        self.E_expression = e_expression
        self.flags = flags if e_expression is not None else None
        if e_expression is not None and e_expression.out_size != (flags or EmocaFlags()).out_size:
            raise ValueError("E_expression output size does not match the EMOCA flags")
        self.requires_grad_(False)  # inference only: no autograd bookkeeping even without no_grad()

    @property
    def kind(self) -> str:
        return "emoca" if self.E_expression is not None else "deca"

    def forward(self, crops: torch.Tensor) -> FlameCodes:
        """crops: (B, 3, 224, 224) RGB in [0, 1]."""
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) crops, got {tuple(crops.shape)}")
        deca_out = self.E_flame(crops)
        exp_out = self.E_expression(crops) if self.E_expression is not None else None
        return codes_from_outputs(deca_out.float(), None if exp_out is None else exp_out.float(), self.flags)


def build_deca_encoder(state: Mapping[str, torch.Tensor], what: str = "E_flame") -> FaceEncoder:
    """DECA encoder from an ``E_flame`` state dict (see :func:`dre.face3d.encoder_files.load_deca_checkpoint`)."""
    return FaceEncoder(load_encoder(state, DECA_CODE_SIZE, what)).eval()


def build_emoca_encoder(
    e_flame: Mapping[str, torch.Tensor], e_expression: Mapping[str, torch.Tensor], flags: EmocaFlags, what: str
) -> FaceEncoder:
    """EMOCA encoder from the two state dicts of an EMOCA checkpoint (prefixes stripped)."""
    ef = load_encoder(e_flame, DECA_CODE_SIZE, f"{what} (deca.E_flame)")
    ee = load_encoder(e_expression, flags.out_size, f"{what} (deca.E_expression)")
    return FaceEncoder(ef, ee, flags).eval()


def deca_encoder_from_file(path: Path) -> FaceEncoder:
    """DECA's encoder from ``deca_model.tar`` (strict keys and shapes: also how `dre assets check` validates it)."""
    return build_deca_encoder(load_deca_checkpoint(path), f"{path} (E_flame)")


def emoca_encoder_from_folder(folder: Path) -> FaceEncoder:
    """EMOCA's encoder from a model folder (cfg.yaml + best checkpoint; also how `dre assets check` validates it)."""
    em = load_emoca(folder)
    return build_emoca_encoder(em.e_flame, em.e_expression, em.flags, str(em.checkpoint))


def load_face_encoder(assets_dir: str | Path, kind: str, emoca_model: str = DEFAULT_EMOCA_MODEL) -> FaceEncoder:
    """The ``deca`` or ``emoca`` encoder from an assets folder (CPU, eval mode; move it with ``.to``)."""
    if kind == "deca":
        return deca_encoder_from_file(deca_path(assets_dir))
    if kind == "emoca":
        return emoca_encoder_from_folder(emoca_path(assets_dir, emoca_model))
    raise DreError(f"unknown extractor {kind!r}: use deca or emoca")
