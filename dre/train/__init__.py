"""Stage ``train``: both DiffusionRig stages, resumable, reproducible, distributed, observable.

``Config`` (:class:`~dre.train.config.TrainConfig`) holds every ``dre train`` flag; :func:`run`
(:func:`dre.train.loop.run`) runs or resumes the run in ``cfg.run_dir`` and returns the exported model file
(``cfg.out``). See ``loop`` for the step order, ``shards`` for the stateless data order and noise,
``train_state`` for the state files and ``distributed`` for launcher detection (torchrun, srun, mpiexec).
"""

from __future__ import annotations

from dre.train.config import TrainConfig as Config
from dre.utils.lazy import lazy_exports

__all__ = ["Config", "TrainingInterrupted", "run"]
# lazy: `dre train --help` needs only Config, not torch
__getattr__ = lazy_exports(__name__, {"run": "loop", "TrainingInterrupted": "loop"})
