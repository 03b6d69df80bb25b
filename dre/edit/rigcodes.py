"""Apply a mode to code tensors: the target swaps first, then each rig term in order (exp, pose, jaw, light).

Every term touches only the codes it names (``pose:`` → ``pose[:, :3]``, ``jaw:`` → ``pose[:, 3:]``,
``exp:`` → ``exp`` and the jaw, ``light:`` → ``light``); identity, texture and camera are never changed.
"""

from __future__ import annotations

from typing import Mapping

from dre.edit import rigmath
from dre.edit.modes import Mode, swap_codes
from dre.edit.rigspec import REF_TARGET, RigTerm
from dre.face3d.codes import FlameCodes


def reference(refs: Mapping[str, FlameCodes], name: str, mode: Mode) -> FlameCodes:
    """One face (B = 1) of a reference: the mode's frame of the target, the only face of any other."""
    codes = refs[name]
    return codes.index(mode.target_frame if name == REF_TARGET else 0)


def apply_term(codes: FlameCodes, term: RigTerm, refs: Mapping[str, FlameCodes], mode: Mode) -> FlameCodes:
    """The codes (edited in place and returned) with one rig term applied to every face."""
    p = dict(term.params)
    b = codes.batch_size
    named = p.get("towards", p.get("from"))  # the reference the term reads, if any
    ref = None if named is None else reference(refs, str(named), mode).to(codes.pose.device)
    if term.component == "pose":
        if ref is not None:
            codes.pose[:, :3] = rigmath.lerp(codes.pose[:, :3], ref.pose[:, :3].expand(b, -1), float(p.get("strength", 1.0)))
        else:
            delta = rigmath.head_rotation(float(p.get("yaw", 0.0)), float(p.get("pitch", 0.0)), float(p.get("roll", 0.0)))
            codes.pose[:, :3] = rigmath.rotate_pose(codes.pose[:, :3], delta)
    elif term.component == "jaw":
        codes.pose[:, 3:] = rigmath.rotate_pose(codes.pose[:, 3:], rigmath.rot_x(float(p["open"])))
    elif term.component == "exp":
        s = float(p.get("strength", 1.0))
        codes.exp = rigmath.lerp(codes.exp, ref.exp.expand(b, -1), s)
        codes.pose[:, 3:] = rigmath.lerp(codes.pose[:, 3:], ref.pose[:, 3:].expand(b, -1), s)
    elif term.component == "light":
        if "from" in p:
            codes.light = ref.light.expand(b, -1, -1).clone()
        elif "towards" in p:
            codes.light = rigmath.lerp(codes.light, ref.light.expand(b, -1, -1), float(p.get("strength", 1.0)))
        else:
            codes.light = rigmath.relight(codes.light, p.get("azimuth"), p.get("elevation"), p.get("intensity"))
    else:  # pragma: no cover - parse_term admits only the four
        raise ValueError(f"unknown rig term {term.component}")
    return codes


def edit_codes(source: FlameCodes, refs: Mapping[str, FlameCodes], mode: Mode) -> FlameCodes:
    """The source codes edited by ``mode`` (a new object): swaps from the target's frame, then the rig terms."""
    out = source.clone()
    if mode.components - {"latent"}:
        out = swap_codes(source, reference(refs, REF_TARGET, mode), mode)
    for term in mode.rig:
        out = apply_term(out, term, refs, mode)
    return out
