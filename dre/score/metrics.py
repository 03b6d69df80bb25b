"""Code-space scores of an edit: transfer, leakage and identity, from re-extracted FLAME codes.

Every number here compares three sets of codes that went through the *same* pipeline (landmarks on the
picture → DECA crop → encoder): ``e`` of the edited image, ``s`` of its source photo, ``g`` of the target
photo. Comparing re-extracted codes with re-extracted codes (never with the codes the edit was rendered
from) cancels the extractor's own bias: a picture that *is* the source scores exactly 0 transfer and 0
leakage, a picture that *is* the target scores exactly 1 transfer.

The codes are split into *blocks*, the units a mode swaps (:data:`BLOCKS`; :func:`code_blocks` says which
codes each holds and :data:`COMPONENT_BLOCKS` which mode swaps it, docs/scores.md has the table). Blocks
are scored one by one and then averaged, so a 3-number jaw rotation counts as much as the 50 expression
coefficients (their units differ; a concatenated distance would be the expression's alone).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Mapping

import numpy as np

BLOCKS: tuple[str, ...] = ("exp", "jaw", "pose", "light")
"""Transferable code blocks, in column order."""

COMPONENT_BLOCKS: dict[str, tuple[str, ...]] = {"exp": ("exp", "jaw"), "pose": ("pose",), "light": ("light",), "latent": ()}
"""The blocks each mode component swaps (``latent`` swaps no code)."""

MIN_DISTANCE = 1e-6
"""Below this source–target distance a block has nothing to transfer: its ratios are undefined (NaN)."""


def code_blocks(codes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(B, d) float64 arrays per block from FLAME code arrays (``exp``, ``pose``, ``light``; ``shape`` kept)."""
    pose = np.asarray(codes["pose"], dtype=np.float64).reshape(-1, 6)
    out = {
        "exp": np.asarray(codes["exp"], dtype=np.float64).reshape(pose.shape[0], -1),
        "jaw": pose[:, 3:],
        "pose": pose[:, :3],
        "light": np.asarray(codes["light"], dtype=np.float64).reshape(pose.shape[0], -1),
    }
    if "shape" in codes:
        out["shape"] = np.asarray(codes["shape"], dtype=np.float64).reshape(pose.shape[0], -1)
    return out


def mode_blocks(components: Iterable[str]) -> tuple[str, ...]:
    """The blocks a mode (given by its components) transfers, in :data:`BLOCKS` order."""
    wanted = {b for c in components for b in COMPONENT_BLOCKS[c]}
    return tuple(b for b in BLOCKS if b in wanted)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance of two (B, d) arrays (NaN rows stay NaN)."""
    return np.sqrt(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=-1))


def transfer_ratio(d_edit_target: np.ndarray, d_source_target: np.ndarray) -> np.ndarray:
    """1 − d(edit, target) / d(source, target), clipped to [0, 1]; NaN where source ≈ target.

    1: the re-extracted block equals the target's; 0: it is no closer to the target than the source was
    (unchanged, or moved elsewhere). Distance-based rather than a projection, so moving *sideways* (a
    different expression, not the target's) earns nothing.
    """
    d_et = np.asarray(d_edit_target, np.float64)
    d_st = np.asarray(d_source_target, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = 1.0 - d_et / d_st
    t = np.clip(t, 0.0, 1.0)
    return np.where(d_st > MIN_DISTANCE, t, np.nan)


def leak_ratio(d_edit_source: np.ndarray, d_source_target: np.ndarray, spread: float = float("nan")) -> np.ndarray:
    """d(edit, source) / max(d(source, target), spread) for a block that should not change.

    0: untouched; 1: it moved as far as the target's value is from the source's (an ``exp`` edit that
    also took the target's head pose scores ≈ 1 on ``pose``). Not clipped: drifting further is worse
    still. ``spread`` (the album's own variation of the block, see :func:`album_stats`) keeps the ratio
    meaningful when the target happens to share the source's value: a change smaller than what separates
    two photos of the album is then not read as a large leak. NaN where both are ≈ 0.
    """
    d_es = np.asarray(d_edit_source, np.float64)
    denom = np.fmax(np.asarray(d_source_target, np.float64), spread)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = d_es / denom
    return np.where(denom > MIN_DISTANCE, r, np.nan)


def _reduce_rows(cols: list[np.ndarray], reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Row-wise ``reduce`` (``np.nanmean`` / ``np.nanmax``) over the block columns; NaN where a row has no value."""
    with warnings.catch_warnings():  # an all-NaN row is NaN, as it should be, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        out = reduce(np.stack(cols, axis=1), axis=1)
    return np.where(np.isnan(out), np.nan, out)  # the plain NaN (nanmean's 0/0 sets the sign bit): stable bytes


def block_scores(
    edit: Mapping[str, np.ndarray],
    source: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    transferred: Iterable[tuple[str, ...]],
    spread: Mapping[str, float] | None = None,
    moved: Iterable[tuple[str, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-row transfer and leakage columns for B edits.

    ``edit``/``source``/``target`` hold (B, d) block arrays (row k: edit k, its source, the target
    repeated); ``transferred`` gives each row's transferred blocks (from :func:`mode_blocks`); ``spread``
    the album's variation per block (:func:`leak_ratio`; none: the source–target distance alone). Returns
    ``dist_<b>_edit_source``, ``dist_<b>_edit_target``, ``dist_<b>_source_target`` for every block,
    ``transfer_<b>`` (NaN where ``b`` is not transferred), ``leak_<b>`` (NaN where it is), and the row
    summaries ``transfer`` (mean over the transferred blocks) and ``leakage`` (max over the others).
    ``moved`` gives each row's blocks changed on purpose towards no target (parametric rig edits such as
    a yaw of +20°): they are neither transfer nor leakage (both NaN).
    """
    transferred = [set(t) for t in transferred]
    n = len(transferred)
    moved_sets = [set(m) for m in moved] if moved is not None else [set() for _ in range(n)]
    out: dict[str, np.ndarray] = {}
    t_cols, l_cols = [], []
    for b in BLOCKS:
        d_es = distance(edit[b], source[b])
        d_et = distance(edit[b], target[b])
        d_st = distance(source[b], target[b])
        out[f"dist_{b}_edit_source"], out[f"dist_{b}_edit_target"], out[f"dist_{b}_source_target"] = d_es, d_et, d_st
        moves = np.array([b in t for t in transferred], dtype=bool)
        t_b = np.where(moves, transfer_ratio(d_et, d_st), np.nan)
        free = np.array([b not in t and b not in m for t, m in zip(transferred, moved_sets)], dtype=bool)
        l_b = np.where(free, leak_ratio(d_es, d_st, (spread or {}).get(b, float("nan"))), np.nan)
        out[f"transfer_{b}"], out[f"leak_{b}"] = t_b, l_b
        t_cols.append(t_b)
        l_cols.append(l_b)
    out["transfer"] = _reduce_rows(t_cols, np.nanmean)
    out["leakage"] = _reduce_rows(l_cols, np.nanmax)
    return out


def album_stats(values: np.ndarray) -> tuple[np.ndarray, float]:
    """(mean, spread) of one block over the album's re-extracted photos; spread = mean distance to the mean.

    For the shape, the spread is the yardstick of identity: how far an ordinary photo of this person lands
    from the person's mean shape. NaN with fewer than two photos (one photo has no spread to compare with).
    """
    shapes = np.asarray(values, np.float64)
    mean = shapes.mean(axis=0)
    if shapes.shape[0] < 2:
        return mean, float("nan")
    spread = float(distance(shapes, mean[None]).mean())
    return mean, spread if spread > MIN_DISTANCE else float("nan")


def identity_scores(edit_shape: np.ndarray, source_shape: np.ndarray, album_mean: np.ndarray, spread: float) -> dict[str, np.ndarray]:
    """``shape_drift`` (edit vs its own source) and ``shape_to_album`` (edit vs the album's mean shape),
    both in units of the album's spread, plus the raw distances.

    ``shape_drift`` 0: the edited face re-extracts to its source's shape; 1: it moved as far as a typical
    album photo is from the person's mean; ≫ 1: another person. ``shape_to_album`` ≈ 1 is an ordinary
    photo of the person.
    """
    d_es = distance(edit_shape, source_shape)
    d_em = distance(edit_shape, np.asarray(album_mean)[None])
    return {
        "dist_shape_edit_source": d_es,
        "dist_shape_edit_album": d_em,
        "shape_drift": d_es / spread,
        "shape_to_album": d_em / spread,
    }
