"""Edit modes and the FLAME code swaps they stand for.

A mode names which parts of the *target* face replace the *source* face's, as in DiffusionRig's
inference (docs/reference.md):

| component | replaced from the target              | buffers change? |
|-----------|---------------------------------------|-----------------|
| ``exp``   | ``exp`` (50) and the jaw ``pose[3:]`` | geometry        |
| ``pose``  | the global head rotation ``pose[:3]`` | geometry        |
| ``light`` | the 9×3 SH ``light``                  | shading only    |
| ``latent``| the global latent (encoder of target) | none            |

``shape``, ``tex`` and ``cam`` are never swapped: identity, skin and framing stay the source's.
Components combine with ``+`` (``exp+pose``); ``--modes`` is a comma list of such modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dre.errors import DreError

if TYPE_CHECKING:  # annotations only: parsing modes (the CLI, sheet checks) needs no torch
    import torch

    from dre.face3d.codes import FlameCodes

COMPONENTS: tuple[str, ...] = ("exp", "pose", "light", "latent")
"""Known mode components, in the canonical order used in names (``exp+pose``, never ``pose+exp``)."""

GEOMETRY_COMPONENTS = frozenset({"exp", "pose"})


@dataclass(frozen=True)
class Mode:
    """One edit: a set of components, named canonically (file names and table rows use :attr:`name`)."""

    components: frozenset[str]

    @property
    def name(self) -> str:
        return "+".join(c for c in COMPONENTS if c in self.components)

    @property
    def swaps_latent(self) -> bool:
        return "latent" in self.components

    @property
    def moves_geometry(self) -> bool:
        """True when the mesh changes, so the head must be re-centred on the source's FFHQ centre."""
        return bool(self.components & GEOMETRY_COMPONENTS)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.name


def parse_mode(text: str, *, flag: str = "--modes") -> Mode:
    """Parse one mode such as ``exp`` or ``exp+pose`` (case-insensitive, spaces ignored)."""
    parts = [p.strip().lower() for p in text.split("+")]
    if not text.strip() or any(not p for p in parts):
        raise DreError(f"{flag}: empty mode in {text!r} (use e.g. exp, pose, light, latent or exp+pose)")
    unknown = [p for p in parts if p not in COMPONENTS]
    if unknown:
        raise DreError(
            f"{flag}: unknown mode component {unknown[0]!r} in {text!r}; known: {', '.join(COMPONENTS)}"
        )
    if len(set(parts)) != len(parts):
        raise DreError(f"{flag}: mode {text!r} names a component twice")
    return Mode(frozenset(parts))


def parse_modes(text: str | list[str], *, flag: str = "--modes") -> list[Mode]:
    """Parse ``exp,pose,exp+pose`` into modes, keeping the user's order and rejecting duplicates.

    ``pose+exp`` and ``exp+pose`` are the same edit; naming both is an error rather than a silent
    duplicate, because both would write the same output file.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    modes: list[Mode] = []
    for item in items:
        mode = parse_mode(item, flag=flag)
        if mode in modes:
            raise DreError(f"{flag}: mode {mode.name!r} is listed twice in {text!r}")
        modes.append(mode)
    if not modes:
        raise DreError(f"{flag}: no mode given")
    return modes


def swap_codes(source: "FlameCodes", target: "FlameCodes", mode: Mode) -> "FlameCodes":
    """The source codes with the mode's parts taken from the target (a new object; inputs untouched).

    ``target`` holds one face (B = 1) and is broadcast over the B source faces. The ``latent``
    component does not touch the codes: the latent is swapped at sampling time.
    """
    if target.batch_size != 1:
        raise ValueError(f"swap_codes expects one target face, got {target.batch_size}")
    out = source.clone()
    b = source.batch_size
    tgt = target.to(source.shape.device)
    if "exp" in mode.components:
        out.exp = tgt.exp.expand(b, -1).clone()
        out.pose[:, 3:] = tgt.pose[:, 3:].expand(b, -1)
    if "pose" in mode.components:
        out.pose[:, :3] = tgt.pose[:, :3].expand(b, -1)
    if "light" in mode.components:
        out.light = tgt.light.expand(b, -1, -1).clone()
    return out


def with_shape(codes: "FlameCodes", shape: "torch.Tensor | None") -> "FlameCodes":
    """Codes whose identity shape is replaced by ``shape`` (1, 100) for every face; None keeps it."""
    if shape is None:
        return codes
    out = codes.clone()
    out.shape = shape.reshape(1, -1).to(codes.shape).expand(codes.batch_size, -1).clone()
    return out
