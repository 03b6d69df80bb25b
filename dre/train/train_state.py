"""Training-state files: one self-contained, atomically written file per save, and exact resume.

A state file holds the model, optimiser, GradScaler and EMA states, the step, every RNG state (torch
CPU and CUDA per rank, numpy, python; the data order is a function of the step, see ``sampling``) and
the resolved config. It is a ``torch.save`` of plain types and tensors, so it loads with
``weights_only=True``. Files are ``<run_dir>/checkpoints/state-<step:07d>.pt``; the newest that loads
is the resume point. Pruning keeps the newest ``keep`` plus the final one (the step ``max_steps``) and the one
just saved.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dre.errors import DreError
from dre.safety.atomic import atomic_path

log = logging.getLogger(__name__)

STATE_FORMAT = "dre-train-state/1"
_NAME = re.compile(r"^state-(\d{7,})\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def state_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"state-{step:07d}.pt"


def list_states(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete state file, oldest first (temporaries never match the name)."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


# ------------------------------------------------------------------------------------------ RNG
def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as weights-only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [int(py_state[0]), [int(x) for x in py_state[1]],
                   None if py_state[2] is None else float(py_state[2])],
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))


# ------------------------------------------------------------------------------------------ files
def save_state(run_dir: str | Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` for ``step`` atomically (temp file + rename); returns the final path."""
    path = state_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": STATE_FORMAT, "step": int(step), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one state file (``weights_only=True``) and check its format tag."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, foreign or unsafe file
        raise DreError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DreError(f"{path} is not a dre training state ({STATE_FORMAT}); remove it or use another --run-dir")
    return state


def latest_state(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """The newest state that loads; unreadable newer files are reported and skipped (never deleted)."""
    for step, path in reversed(list_states(run_dir)):
        try:
            return path, load_state(path, map_location)
        except DreError as exc:
            log.warning("skipping unreadable checkpoint %s: %s", path, exc)
    return None


def prune_states(run_dir: str | Path, keep: int, final_step: int, newest: int | None = None) -> list[Path]:
    """Delete all but the newest ``keep`` states, never the final one (step ``final_step``) nor the one just
    saved (step ``newest``): that one is the resume point, so even ``--keep 0`` leaves a run resumable."""
    states = [(s, p) for s, p in list_states(run_dir) if s != final_step]
    doomed = [(s, p) for s, p in states[: max(0, len(states) - keep)] if s != newest]
    for _, p in doomed:
        p.unlink(missing_ok=True)
    return [p for _, p in doomed]
