"""The scorer: references extracted once, then any number of edited pictures scored against them.

``dre edit`` keeps one :class:`Scorer` for the whole run, so re-drawn samples (``--retry-failed``) are
scored against exactly the same source and target codes as the first draw; ``dre score`` uses the
same object on a folder of pictures. Columns it returns are listed in :data:`SCORE_COLUMNS`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dre import tables
from dre.edit.outputs import resize_square
from dre.errors import DreError
from dre.score import metrics, quality
from dre.score.config import ScoreSettings
from dre.score.reextract import Extracted, Reextractor

if TYPE_CHECKING:
    from dre.edit.inputs import Face
    from dre.edit.modes import Mode

SCORE_COLUMNS: tuple[str, ...] = tuple(name for name, _ in tables.SCORE_COLUMNS)
"""Every column a score adds to an edit row (see docs/scores.md for their meaning)."""


class Scorer:
    """Source and target references at the edit's size, ready to score edited pictures."""

    def __init__(self, reextractor: Reextractor, source_kind: str, target_kind: str, settings: ScoreSettings,
                 sources: Sequence["Face"], targets: Sequence["Face"], size: int) -> None:
        """``sources``/``targets``: aligned faces (``dre.edit.inputs.Face``); several targets are the frames of a
        driving sequence, none are parametric edits only."""
        self.rx = reextractor
        self.source_kind, self.target_kind = source_kind, target_kind
        self.settings = settings
        self.size = int(size)
        self.n_sources, self.n_targets = len(sources), len(targets)
        imgs = [resize_square(f.image, self.size) for f in (*sources, *targets)]
        fallback = [_scale_landmarks(f.landmarks, f.image, self.size) for f in (*sources, *targets)]
        self.kinds = (target_kind, source_kind)
        ref = reextractor.run(imgs, self.kinds, fallback)
        bad = [k for k in range(len(imgs)) if ref.status[k] != "ok"]
        if bad:
            raise DreError(f"scoring: no landmarks for reference picture(s) {bad} (sources 0..{self.n_sources - 1}, "
                           f"target {self.n_sources}) and none from alignment")
        self.source_landmarks_from = ref.landmarks_from[: self.n_sources]
        self.target_landmarks_from = ref.landmarks_from[self.n_sources] if self.n_targets else None
        n, t = self.n_sources, self.n_targets
        self._tgt_blocks = metrics.code_blocks({c: v[n : n + t] for c, v in ref.codes[target_kind].items()}) if t else {}
        self._src_blocks = metrics.code_blocks({c: v[:n] for c, v in ref.codes[target_kind].items()})
        self._src_shape = ref.codes[source_kind]["shape"][:n]
        self.album_mean, self.album_spread = metrics.album_stats(self._src_shape)
        self._block_spread = {b: metrics.album_stats(v)[1] for b, v in self._src_blocks.items() if b in metrics.BLOCKS}
        self._src_noise = quality.noise_sigma(np.stack(imgs[:n]))

    def score(self, sources: Sequence[int], modes: Sequence["Mode"], pictures: Sequence[np.ndarray]) -> list[dict]:
        """Score rows (:data:`SCORE_COLUMNS`, plain Python values) of edited RGB uint8 pictures, in order: picture
        k edits source ``sources[k]`` in mode ``modes[k]``, which says what it transfers from the target (and
        from which of its frames) and which blocks it moves by numbers towards no target."""
        if not pictures:
            return []
        for s, p in zip(sources, pictures):
            if p.shape != (self.size, self.size, 3):
                raise DreError(f"edited pictures must all be {self.size}×{self.size} RGB (got {p.shape})")
            if not 0 <= s < self.n_sources:
                raise ValueError(f"picture source {s} outside 0..{self.n_sources - 1}")
        comps = [m.score_components() for m in modes]  # (transferred components, moved blocks) per picture
        ext: Extracted = self.rx.run(list(pictures), self.kinds)
        src = np.array(sources)
        edit_b = metrics.code_blocks(ext.codes[self.target_kind])
        src_b = {b: v[src] for b, v in self._src_blocks.items()}
        tgt = np.array([m.target_frame for m in modes])
        if self.n_targets == 0:  # parametric edits without a target: nothing to transfer (NaN), leaks vs source
            tgt_b = src_b
        elif tgt.min() < 0 or tgt.max() >= self.n_targets:
            raise ValueError(f"item target outside 0..{self.n_targets - 1}")
        else:
            tgt_b = {b: v[tgt] for b, v in self._tgt_blocks.items()}
        cols: dict[str, np.ndarray] = metrics.block_scores(
            edit_b, src_b, tgt_b, [metrics.mode_blocks(c[0]) for c in comps], self._block_spread,
            moved=[tuple(b for b in metrics.BLOCKS if b in c[1]) for c in comps],
        )
        cols.update(metrics.identity_scores(ext.codes[self.source_kind]["shape"], self._src_shape[src],
                                            self.album_mean, self.album_spread))
        sigma = quality.noise_sigma(np.stack(pictures))
        cols["noise"], cols["noise_source"] = sigma, self._src_noise[src]
        cols["noise_excess"] = quality.noise_excess(sigma, self._src_noise[src])
        no_face = ~ext.ok
        noisy = cols["noise_excess"] > float(self.settings.noise_threshold)  # grey levels added over the source
        cols["noisy"] = noisy
        cols["leaked"] = np.nan_to_num(cols["leakage"], nan=0.0) > self.settings.leak_threshold
        cols["failed"] = no_face | noisy
        cols["failure"] = np.array([",".join(w for w, f in (("no_face", a), ("noisy", b)) if f)
                                    for a, b in zip(no_face, noisy)], dtype=object)
        cols["landmarks_status"] = np.array(ext.status, dtype=object)
        cols["source_landmarks"] = np.array([self.source_landmarks_from[s] for s in src], dtype=object)
        return [{c: (cols[c][k].item() if isinstance(cols[c][k], np.generic) else cols[c][k]) for c in SCORE_COLUMNS}
                for k in range(len(pictures))]

    def references(self) -> dict:
        """How the references got their landmarks, and the album's shape spread (for summary.json)."""
        src = self.source_landmarks_from
        return {
            "sources": len(src),
            "sources_detected": sum(s == "detected" for s in src),
            "sources_alignment_landmarks": sum(s == "aligned" for s in src),
            "target_landmarks": self.target_landmarks_from,
            "album_shape_spread": None if not np.isfinite(self.album_spread) else round(float(self.album_spread), 6),
            "size": self.size,
        }


def rank_key(row: dict) -> tuple:
    """Sort key of one scored attempt, best first: not failed, then more transfer, then less noise."""
    t = row.get("transfer")
    t = 0.0 if t is None or (isinstance(t, float) and math.isnan(t)) else float(t)
    return (bool(row.get("failed")), -t, float(row.get("noise_excess") or 0.0))


def _scale_landmarks(lm: np.ndarray | None, image: np.ndarray, size: int) -> np.ndarray | None:
    """Alignment landmarks (pixels of ``image``) in the pixels of the picture resized to ``size``²."""
    if lm is None:
        return None
    a = np.asarray(lm, np.float64).reshape(68, 2)
    sx, sy = size / image.shape[1], size / image.shape[0]
    return np.c_[(a[:, 0] + 0.5) * sx - 0.5, (a[:, 1] + 0.5) * sy - 0.5]
