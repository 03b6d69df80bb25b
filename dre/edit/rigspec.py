"""Rig specs: parse and validate parametric edit terms such as ``pose:yaw=+20`` or ``light:azimuth=-60``.

A *term* names one part of the FLAME rig (``pose:``, ``jaw:``, ``exp:``, ``light:``) and the numbers to set
on it: :data:`NUMERIC` and :data:`REFERENCES` below hold each term's parameters, units and ranges (the table
for users is in docs/rig.md). ``REF`` is ``target`` (the edit's target, or each frame of a frames-folder
target) or the path of an aligned image or ``dre align`` folder. A number may be a range ``A..B:N`` (N
evenly spaced values from A to B, both included): the mode then expands into a *sweep* of N frames. This
module only parses (no torch): the CLI and the workflow's sheet checks use it; :mod:`dre.edit.rigcodes`
applies the terms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from dre.errors import DreError

REF_TARGET = "target"
"""The reference word for the edit's own target (every frame of it, for a frames-folder target)."""

MAX_FRAMES = 240


@dataclass(frozen=True)
class Param:
    """One numeric parameter: its unit and the closed range of allowed values (``low_open``: > low)."""

    name: str
    unit: str
    low: float
    high: float
    help: str
    low_open: bool = False

    def check(self, value: float, where: str) -> float:
        ok = (value > self.low if self.low_open else value >= self.low) and value <= self.high
        if not math.isfinite(value) or not ok:
            lo = f"({self.low:g}" if self.low_open else f"[{self.low:g}"
            raise DreError(f"{where}: {self.name}={value:g} is out of range; allowed {lo}, {self.high:g}] "
                           f"{self.unit} ({self.help})")
        return value


STRENGTH = Param("strength", "(fraction)", 0.0, 1.0, "0 = the source, 1 = the reference")
NUMERIC: dict[str, dict[str, Param]] = {
    "pose": {
        "yaw": Param("yaw", "degrees", -90, 90, "turn about the vertical axis, + = nose towards the image's right"),
        "pitch": Param("pitch", "degrees", -60, 60, "nod, + = nose up"),
        "roll": Param("roll", "degrees", -60, 60, "tilt, + = counter-clockwise in the image"),
        "strength": STRENGTH,
    },
    "jaw": {"open": Param("open", "degrees", -20, 40, "jaw rotation added to the source's, + = opens the mouth")},
    "exp": {"strength": STRENGTH},
    "light": {
        "azimuth": Param("azimuth", "degrees", -180, 180, "light direction about the vertical axis, 0 = from the "
                         "camera, + = from the image's right"),
        "elevation": Param("elevation", "degrees", -90, 90, "light direction above (+) or below (-) the horizon"),
        "intensity": Param("intensity", "x", 0, 4, "factor on all 27 SH coefficients", low_open=True),
        "strength": STRENGTH,
    },
}
REFERENCES: dict[str, tuple[str, ...]] = {"pose": ("towards",), "jaw": (), "exp": ("towards",),
                                          "light": ("from", "towards")}
"""The parameters of each term whose value is a reference (``target`` or a path), not a number."""

RIG_COMPONENTS: tuple[str, ...] = ("exp", "pose", "jaw", "light")
"""Terms in the order they are applied (and named): expression first, so ``jaw:open`` adds to its jaw."""

_EXCLUSIVE = {  # parameter groups that contradict each other within one term
    "pose": (("yaw", "pitch", "roll"), ("towards",)),
    "light": (("azimuth", "elevation", "intensity"), ("from",), ("towards",)),
}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})\.\.({_NUMBER}):(\d+)$")


@dataclass(frozen=True)
class Sweep:
    """A range ``A..B:N`` given for one parameter."""

    start: float
    stop: float
    count: int

    def values(self) -> list[float]:
        """N ≥ 2 evenly spaced values, both ends exact (``start + k·step``, the last one set to ``stop``)."""
        step = (self.stop - self.start) / (self.count - 1)
        return [self.start + k * step for k in range(self.count - 1)] + [self.stop]

    def text(self) -> str:
        return f"{fmt(self.start)}..{fmt(self.stop)}:{self.count}"


@dataclass(frozen=True)
class RigTerm:
    """One parsed term: its component and its parameters (name → float, reference text, or :class:`Sweep`)."""

    component: str
    params: tuple[tuple[str, object], ...]  # in canonical (declared) order

    @property
    def sweep(self) -> tuple[str, Sweep] | None:
        """(parameter, range) of the term's range, None for plain numbers."""
        return next(((k, v) for k, v in self.params if isinstance(v, Sweep)), None)

    def with_value(self, name: str, value: float) -> "RigTerm":
        return RigTerm(self.component, tuple((k, value if k == name else v) for k, v in self.params))

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(str(v) for k, v in self.params if k in REFERENCES[self.component])

    def text(self) -> str:
        return f"{self.component}:" + ",".join(f"{k}={_value_text(v)}" for k, v in self.params)

    def label(self) -> str:
        """File-name-safe text (references that are paths appear as their file stem)."""
        parts = [self.component] + [f"{k}{_label_value(v)}" for k, v in self.params]
        return "_".join(parts)


def fmt(value: float) -> str:
    """A number as names and rows show it: up to 6 significant digits, no trailing zeros (``20``, ``-0.5``)."""
    return f"{value:.6g}"


def _value_text(v: object) -> str:
    if isinstance(v, Sweep):
        return v.text()
    if isinstance(v, float):
        return fmt(v)
    return str(v)


def _label_value(v: object) -> str:
    if isinstance(v, (float, Sweep)):
        return re.sub(r"[^A-Za-z0-9.+-]", "x", _value_text(v))
    text = str(v)
    return text if text == REF_TARGET else "-" + re.sub(r"[^A-Za-z0-9._-]", "_", Path(text).stem)


def is_rig_text(term: str) -> bool:
    """True for ``component:params`` (and for ``jaw``, which only exists as a rig term)."""
    return ":" in term or term.strip().lower() == "jaw"


def parse_term(text: str, *, flag: str = "--modes") -> RigTerm:
    """Parse ``pose:yaw=20,pitch=-5`` into a validated :class:`RigTerm` (errors name the flag and the term)."""
    comp, _, body = text.partition(":")
    comp = comp.strip().lower()
    where = f"{flag}: {text.strip()!r}"
    if comp not in RIG_COMPONENTS:
        known = ", ".join(f"{c}:" for c in RIG_COMPONENTS)
        raise DreError(f"{where}: unknown rig term {comp!r}; known: {known} (latent takes no numbers)")
    allowed = (*NUMERIC[comp], *REFERENCES[comp])
    if not body.strip():
        raise DreError(f"{where}: {comp}: needs parameters (allowed: {', '.join(allowed)}), e.g. "
                       f"{_EXAMPLES[comp]}")
    given: dict[str, object] = {}
    for item in body.split(","):
        key, eq, raw = item.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not eq or not key or not raw:
            raise DreError(f"{where}: {item.strip()!r} is not NAME=VALUE (allowed names: {', '.join(allowed)})")
        if key not in allowed:
            raise DreError(f"{where}: unknown parameter {key!r} for {comp}:; allowed: {', '.join(allowed)}")
        if key in given:
            raise DreError(f"{where}: parameter {key!r} is given twice")
        given[key] = _parse_value(comp, key, raw, where)
    present = [g for g in _EXCLUSIVE.get(comp, ()) if any(k in given for k in g)]
    if len(present) > 1:
        a, b = present[0], present[1]
        raise DreError(f"{where}: {'/'.join(a)} and {'/'.join(b)} cannot be combined in one {comp}: term "
                       "(use one kind of change per term)")
    if "strength" in given and "towards" not in given:
        raise DreError(f"{where}: strength needs towards=REF (e.g. {comp}:towards=target,strength=0.5)")
    if comp == "exp" and "towards" not in given:
        raise DreError(f"{where}: exp: needs towards=REF (e.g. exp:towards=target,strength=0.5)")
    if sum(isinstance(v, Sweep) for v in given.values()) > 1:
        raise DreError(f"{where}: only one parameter may be a range A..B:N (a sweep varies one number)")
    order = (*REFERENCES[comp], *NUMERIC[comp])
    return RigTerm(comp, tuple((k, given[k]) for k in order if k in given))


_EXAMPLES = {"pose": "pose:yaw=20", "jaw": "jaw:open=10", "exp": "exp:towards=target,strength=0.5",
             "light": "light:azimuth=-60,elevation=20,intensity=1.2"}


def _parse_value(comp: str, key: str, raw: str, where: str) -> object:
    if key in REFERENCES[comp]:
        return REF_TARGET if raw.lower() == REF_TARGET else raw
    param = NUMERIC[comp][key]
    m = _RANGE.match(raw)
    if m:
        count = int(m.group(3))
        if not 2 <= count <= MAX_FRAMES:
            raise DreError(f"{where}: {key}={raw}: a range needs 2 to {MAX_FRAMES} frames (got {count})")
        sweep = Sweep(float(m.group(1)), float(m.group(2)), count)
        param.check(sweep.start, where)
        param.check(sweep.stop, where)
        return sweep
    if not re.fullmatch(_NUMBER, raw):
        raise DreError(f"{where}: {key}={raw!r} is not a number ({param.unit}; or a range A..B:N)")
    return param.check(float(raw), where)


def split_terms(mode_text: str) -> list[str]:
    """A mode's ``+``-joined terms; a ``+`` directly before a digit or dot is a sign (``yaw=+20``)."""
    return re.split(r"\+(?![\d.])", mode_text)


def split_modes(text: str) -> list[str]:
    """Comma list of modes, where a ``NAME=VALUE`` piece continues the rig term before it.

    ``exp,light:azimuth=-60,elevation=20`` → ``["exp", "light:azimuth=-60,elevation=20"]``.
    """
    items: list[str] = []
    for piece in text.split(","):
        head = piece.split("=", 1)[0]
        continues = "=" in piece and ":" not in head and "+" not in head
        if continues and items and ":" in items[-1]:
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items
