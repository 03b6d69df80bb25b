"""Stage ``train``: both DiffusionRig stages, resumable, reproducible, distributed, observable.

``Config`` (:class:`~dre.train.config.TrainConfig`) holds every ``dre train`` flag; :func:`run` runs or
resumes the run in ``cfg.run_dir`` and returns the exported model file (``cfg.out``). See ``loop`` for the
step order, ``shards`` for the stateless data order and noise, ``train_state`` for the state files and
``distributed`` for launcher detection (torchrun, srun, mpiexec).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dre.train.config import TrainConfig as Config

if TYPE_CHECKING:
    from dre.train.loop import TrainingInterrupted

__all__ = ["Config", "TrainingInterrupted", "run"]


def run(cfg: Config, *, on_step: Callable[[int], None] | None = None) -> Path:
    """Run or resume the training ``cfg`` describes (see :func:`dre.train.loop.run`)."""
    from dre.train.loop import run as run_stage  # lazy: `dre train --help` needs only Config, not torch

    return run_stage(cfg, on_step=on_step)


def __getattr__(name: str) -> Any:
    if name == "TrainingInterrupted":
        from dre.train.loop import TrainingInterrupted

        return TrainingInterrupted
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
