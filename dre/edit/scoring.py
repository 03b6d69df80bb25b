"""``dre edit``'s own scores: every sampled picture scored as it is made, failures re-drawn on request.

The scorer (:mod:`dre.score`) re-extracts the sources and the target once; each picture then goes
through landmarks → extraction and gets transfer / leakage / identity / noise scores. With
``--retry-failed N`` the flagged pictures are re-sampled (:mod:`dre.edit.retry`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dre.edit import outputs
from dre.edit.retry import ScoredEdits, retry_failed
from dre.score.runner import build_scorer
from dre.score.summary import one_line, summarise

log = logging.getLogger(__name__)


def score_edits(
    cfg,
    *,
    plan,
    faces,
    targets,
    images: np.ndarray,
    first_seeds: Sequence[int | None],
    image_size: int,
    synthetic: bool,
    draw: Callable[[list[int], list[int]], np.ndarray],
) -> ScoredEdits:
    """Score every job's picture and re-draw the failed ones (``cfg.retry_failed`` times at most)."""
    scorer = build_scorer(Path(cfg.assets), cfg.source_extractor, cfg.target_extractor, cfg.scoring, sources=faces,
                          targets=list(targets), size=image_size, device=cfg.device, emoca_model=cfg.emoca_model,
                          batch_size=cfg.batch_size)
    job_src = plan.job_sources()
    job_modes = [plan.modes[plan.job(k)[1]] for k in range(plan.n_jobs)]

    def score(jobs: list[int], pics: np.ndarray) -> list[dict]:
        return scorer.score([job_src[k] for k in jobs], [job_modes[k] for k in jobs], list(outputs.to_uint8(pics)))

    rows = score(list(range(plan.n_jobs)), images)
    names = [(plan.stems[job_src[k]], job_modes[k].name) for k in range(plan.n_jobs)]
    res = retry_failed(cfg.retry_failed, images, rows, first_seeds=first_seeds, init=cfg.init, job_names=names,
                       seed=cfg.seed, draw=draw, score=score, retryable=[m.sequence is None for m in job_modes])
    summary_rows = [{**r, "mode": names[k][1], "file": f"{names[k][0]}_{job_modes[k].file_label}.png",
                     "attempts": sum(d.job == k for d in res.draws)} for k, r in enumerate(res.rows)]
    summary = summarise(summary_rows, scorer, synthetic=synthetic)
    summary["retry_failed"] = int(cfg.retry_failed)
    log.info("scores: %s", one_line(summary))
    res.summary = summary
    return res
