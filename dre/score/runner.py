"""``dre score``: score an existing folder of edits without re-sampling.

Reads the folder (:mod:`dre.score.inputs`), re-extracts the sources, the target and every edited picture
(:mod:`dre.score.reextract`), scores them (:mod:`dre.score.scorer`) and writes, into a *new* folder
(the edit folder itself belongs to ``dre edit`` and is never touched): ``scores.parquet`` (one row per
edited picture: ``dre.tables.SCORES``), ``summary.json`` and ``grid.png`` (flagged cells framed in red);
docs/scores.md describes them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dre.edit import outputs
from dre.safety.ownership import claim_dir, owned_dir
from dre.score.config import ScoreConfig, ScoreSettings
from dre.score.grid import marked_grid
from dre.score.inputs import read_edit_folder, read_pictures
from dre.score.reextract import Reextractor
from dre.score.scorer import Scorer
from dre.score.summary import one_line, summarise
from dre.tables import SCORES, SCORES_FILE
from dre.utils.synthetic import is_synthetic_assets, warn_synthetic

log = logging.getLogger(__name__)


def build_scorer(assets: Path, source_kind: str, target_kind: str, settings: ScoreSettings, *, sources, targets,
                 size: int, device: str, emoca_model: str | None, batch_size: int = 16, reextractor=None):
    """A :class:`~dre.score.scorer.Scorer` for aligned source and target faces (``dre.edit.inputs.Face``;
    several targets: the frames of a driving sequence).

    ``reextractor`` reuses loaded networks (several scorers in one process); by default one is made.
    """
    rx = reextractor or Reextractor(assets, landmarks=settings.landmarks, device=device, emoca_model=emoca_model,
                                    batch_size=batch_size)
    return Scorer(rx, source_kind, target_kind, settings, sources, targets, size)


def run(cfg: ScoreConfig, *, reextractor=None) -> Path:
    """Score ``cfg.edits`` into ``cfg.out``; returns the output folder (``reextractor``: networks already loaded)."""
    cfg.validate()
    ef = read_edit_folder(Path(cfg.edits), source=cfg.source, target=cfg.target,
                          source_extractor=cfg.source_extractor, target_extractor=cfg.target_extractor)
    # every file read, the sources and targets edit.parquet names included; checked before any scoring
    inputs = [cfg.edits, cfg.source, cfg.target, cfg.assets, *dict.fromkeys(f.path for f in (*ef.sources, *ef.targets))]
    claim_dir(cfg.out, inputs=inputs)
    pictures = read_pictures(ef)
    synthetic = ef.synthetic or is_synthetic_assets(cfg.assets)
    if synthetic:
        warn_synthetic("dre score")
    size = pictures[0].shape[0]
    scorer = build_scorer(Path(cfg.assets), ef.source_extractor, ef.target_extractor, cfg.scoring,
                          sources=ef.sources, targets=ef.targets, size=size, device=cfg.device,
                          emoca_model=cfg.emoca_model, batch_size=cfg.batch_size, reextractor=reextractor)
    scores = scorer.score(ef.row_source, ef.modes, pictures)
    rows = [{"source": str(ef.sources[s].path), "source_stem": ef.sources[s].stem,
             "target": str(ef.targets[m.target_frame].path) if m.reads_target else None,
             "mode": m.name, "file": str(r["file"]), "synthetic": bool(synthetic), **sc}
            for r, s, m, sc in zip(ef.rows, ef.row_source, ef.modes, scores)]
    summary = summarise(rows, scorer, synthetic=synthetic)
    meta = {"settings": summary["settings"], "references": summary["references"], "edits": str(cfg.edits),
            "source_extractor": ef.source_extractor, "target_extractor": ef.target_extractor,
            "synthetic": bool(synthetic), "summary": one_line(summary)}
    grid = marked_grid(ef, pictures, rows, size=size, synthetic=synthetic)
    with owned_dir(cfg.out, "dre score", inputs=inputs) as tmp:
        SCORES.write(tmp / SCORES_FILE, rows, meta)
        outputs.write_json(tmp / outputs.SUMMARY_NAME, summary)
        outputs.save_png(tmp / outputs.GRID_NAME, grid)
    log.info("scored %s: %s", cfg.edits, one_line(summary))
    return Path(cfg.out)
