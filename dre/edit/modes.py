"""Edit modes and the FLAME code swaps they stand for.

A mode names which parts of the *target* face replace the *source* face's, as in DiffusionRig's inference
(docs/reference.md; the table of what each component takes and which buffers change is in docs/edits.md):
``exp`` the expression and the jaw, ``pose`` the head rotation, ``light`` the SH light (:func:`swap_codes`),
``latent`` the global latent (swapped at sampling time). ``shape``, ``tex`` and ``cam`` are never swapped:
identity, skin and framing stay the source's. Components combine with ``+`` (``exp+pose``); ``--modes`` is a
comma list of such modes.

A mode may also hold *rig terms* (:mod:`dre.edit.rigspec`): numbers set on the rig without a target photo,
e.g. ``pose:yaw=20`` or ``exp+light:azimuth=-60,elevation=20``. A term with a range (``yaw=-30..30:7``)
expands into the frames of a *sweep*; a target that is a folder of frames turns every mode that reads
the target into a *driven sequence* (:func:`drive`). Frames of a sequence are ordinary modes that also
carry their sequence's name and their frame number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dre.edit.rigspec import REF_TARGET, RIG_COMPONENTS, RigTerm, is_rig_text, parse_term, split_modes, split_terms
from dre.errors import DreError

if TYPE_CHECKING:  # annotations only: parsing modes (the CLI, sheet checks) needs no torch
    import torch

    from dre.face3d.codes import FlameCodes

COMPONENTS: tuple[str, ...] = ("exp", "pose", "light", "latent")
"""Known mode components, in the canonical order used in names (``exp+pose``, never ``pose+exp``)."""

GEOMETRY_COMPONENTS = frozenset({"exp", "pose"})
_RIG_BLOCKS = {"exp": frozenset({"exp", "jaw"}), "jaw": frozenset({"jaw"}), "pose": frozenset({"pose"}),
               "light": frozenset({"light"}), "latent": frozenset()}
"""The score blocks (``dre.tables.SCORE_BLOCKS``) each component or rig term changes."""


@dataclass(frozen=True)
class Mode:
    """One edit: components swapped from the target and rig terms, named canonically (rows use :attr:`name`,
    files :attr:`file_label`)."""

    components: frozenset[str]
    rig: tuple[RigTerm, ...] = ()  # in RIG_COMPONENTS order
    sequence: str | None = None  # the sweep's spec, or the driven mode's name; None: a still
    frame: int | None = None  # position in the sequence
    target_frame: int = 0  # which frame of the target the swaps read

    @property
    def name(self) -> str:
        return "+".join([c for c in COMPONENTS if c in self.components] + [t.text() for t in self.rig])

    @property
    def label(self) -> str:
        """:attr:`name` made safe for file names (equal to it for plain modes: ``exp+pose``)."""
        return "+".join([c for c in COMPONENTS if c in self.components] + [t.label() for t in self.rig])

    @property
    def file_label(self) -> str:
        """What the mode's files are called after the source stem: sequence frames are numbered."""
        if self.sequence is None:
            return self.label
        return f"{sequence_label(self.sequence)}_{self.frame:03d}"

    @property
    def swaps_latent(self) -> bool:
        return "latent" in self.components

    @property
    def moves_geometry(self) -> bool:
        """True when the mesh changes, so the head must be re-centred on the source's FFHQ centre."""
        return bool(self.components & GEOMETRY_COMPONENTS) or any(t.component != "light" for t in self.rig)

    @property
    def references(self) -> tuple[str, ...]:
        """Every reference the mode reads (``target`` for swaps; paths named by rig terms), in order."""
        refs = [REF_TARGET] if self.components else []
        for t in self.rig:
            refs += [r for r in t.references if r not in refs]
        return tuple(refs)

    @property
    def reads_target(self) -> bool:
        return REF_TARGET in self.references

    @property
    def params(self) -> dict[str, object]:
        """The rig parameters as ``{"pose.yaw": 20.0, ...}`` (edit.parquet's ``params``)."""
        return {f"{t.component}.{k}": v for t in self.rig for k, v in t.params}

    def score_components(self) -> tuple[frozenset[str], frozenset[str]]:
        """(components transferred from the target, score blocks moved by numbers) for the scores.

        A rig term that reads the target (``exp:towards=target``, ``light:from=target``) transfers its
        blocks like a swap; numbers (``pose:yaw``, ``jaw:open``, ``light:azimuth``) move blocks to no
        target, so those blocks (``dre.tables.SCORE_BLOCKS``: exp, jaw, pose, light) are neither transfer
        nor leakage. ``jaw:open`` moves the jaw block only: the expression coefficients can still leak.
        """
        moved, transferred = set(), set(self.components)
        for t in self.rig:
            if t.references == (REF_TARGET,):
                transferred.add(t.component)
            else:
                moved |= _RIG_BLOCKS[t.component]
        swapped = {b for c in transferred for b in _RIG_BLOCKS[c]}
        return frozenset(transferred), frozenset(moved - swapped)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.name


def parse_mode(text: str, *, flag: str = "--modes") -> Mode:
    """Parse one mode such as ``exp``, ``exp+pose`` or ``exp+pose:yaw=20`` (case-insensitive).

    A mode with a range (``pose:yaw=-30..30:7``) parses to its un-expanded form; :func:`parse_modes`
    expands it into frames.
    """
    terms = [p.strip() for p in split_terms(text)]
    if not text.strip() or any(not p for p in terms):
        raise DreError(f"{flag}: empty mode in {text!r} (use e.g. exp, pose, light, latent, exp+pose or pose:yaw=20)")
    parts = [p.lower() for p in terms if not is_rig_text(p)]
    rig = [parse_term(p, flag=flag) for p in terms if is_rig_text(p)]
    unknown = [p for p in parts if p not in COMPONENTS]
    if unknown:
        raise DreError(
            f"{flag}: unknown mode component {unknown[0]!r} in {text!r}; known: {', '.join(COMPONENTS)} "
            f"(or a rig term: {', '.join(c + ':' for c in RIG_COMPONENTS)})"
        )
    names = parts + [t.component for t in rig]
    if len(set(names)) != len(names):
        raise DreError(f"{flag}: mode {text!r} names a component twice (a swap and a rig term of the same part "
                       "contradict each other)")
    if sum(t.sweep is not None for t in rig) > 1:
        raise DreError(f"{flag}: mode {text!r} has two ranges; a sweep varies one number")
    rig.sort(key=lambda t: RIG_COMPONENTS.index(t.component))
    return Mode(frozenset(parts), tuple(rig))


def expand_sweep(mode: Mode) -> list[Mode]:
    """The frames of a mode with a range (one mode per value); a mode without one is returned as is."""
    for i, term in enumerate(mode.rig):
        found = term.sweep
        if found is None:
            continue
        key, sweep = found
        frames = []
        for k, v in enumerate(sweep.values()):
            rig = mode.rig[:i] + (term.with_value(key, v),) + mode.rig[i + 1 :]
            frames.append(Mode(mode.components, rig, sequence=mode.name, frame=k))
        return frames
    return [mode]


def is_sweep(mode: Mode) -> bool:
    return any(t.sweep is not None for t in mode.rig)


def parse_modes(text: str, *, flag: str = "--modes") -> list[Mode]:
    """Parse ``exp,pose,exp+pose`` into modes, keeping the user's order and rejecting duplicates.

    ``pose+exp`` and ``exp+pose`` are the same edit; naming both is an error rather than a silent
    duplicate, because both would write the same output file. Ranges expand into sweep frames.
    """
    modes: list[Mode] = []
    for item in split_modes(text):  # at least one item: "" parses to an empty mode, an error
        mode = parse_mode(item, flag=flag)
        if mode in modes or (is_sweep(mode) and any(m.sequence == mode.name for m in modes)):
            raise DreError(f"{flag}: mode {mode.name!r} is listed twice in {text!r}")
        modes.extend(expand_sweep(mode))
    return modes


def parse_sweep(text: str, *, flag: str = "--sweep") -> list[Mode]:
    """``--sweep``: one mode with exactly one range, expanded into its frames."""
    mode = parse_mode(text, flag=flag)
    if not is_sweep(mode):
        raise DreError(f"{flag}: {text!r} has no range; write one parameter as A..B:N, e.g. pose:yaw=-30..30:7")
    return expand_sweep(mode)


def drive(modes: list[Mode], n_frames: int, *, flag: str = "--target") -> list[Mode]:
    """With a target of ``n_frames`` > 1 frames, every mode that reads the target becomes a sequence.

    Modes that read no target (pure numbers) stay single pictures; a sweep cannot also be driven.
    """
    if n_frames <= 1:
        return modes
    out: list[Mode] = []
    for m in modes:
        if not m.reads_target:
            out.append(m)
            continue
        if m.sequence is not None:
            raise DreError(f"{flag}: the target is a sequence of {n_frames} frames, so mode {m.name!r} (a sweep) "
                           "would be driven twice; sweep with a single target photo")
        out.extend(Mode(m.components, m.rig, sequence=m.name, frame=f, target_frame=f) for f in range(n_frames))
    return out


def sequence_label(sequence: str) -> str:
    """A sequence's name made safe for file names (its frames and animations use it)."""
    return parse_mode(sequence).label.replace(":", "_")


def sequences(modes: list[Mode]) -> dict[str, list[int]]:
    """Sequence name → the indices of its frames in ``modes`` (frame order), in first-seen order."""
    out: dict[str, list[int]] = {}
    for j, m in enumerate(modes):
        if m.sequence is not None:
            out.setdefault(m.sequence, []).append(j)
    for idx in out.values():
        idx.sort(key=lambda j: modes[j].frame)
    return out


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
