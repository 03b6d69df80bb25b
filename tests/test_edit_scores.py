"""`dre edit` scores its own pictures and re-draws failures (--retry-failed), with a model made to fail on a seed.

The model stands in for a trained DiffusionRig: its ε̂ makes DDIM land exactly on the picture its rendered
buffer shows (a synthetic face the detector finds), except for the draws whose starting noise comes from the
seeds it is told to fail on, which it leaves as noise. Everything else is the real path: the edit engine, the
DDIM sampler, landmark detection and DECA/EMOCA re-extraction, the writer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests import _score_helpers as H

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64


class FailOnSeed(torch.nn.Module):
    """x̂₀ = the rendered buffer on a grey background, or the start noise itself for the failing draws."""

    def __init__(self, fail_noises: list[torch.Tensor]) -> None:
        super().__init__()
        from dre.diffusion import DiffusionConfig, GaussianDiffusion
        from dre.model import ModelConfig

        self.cfg = ModelConfig(image_size=SIZE, latent_dim=8)
        self.register_buffer("ac", GaussianDiffusion(DiffusionConfig()).alphas_cumprod.float())
        self.fail = [n.reshape(-1) for n in fail_noises]
        self._last_t = None
        self._mask = None
        self._start = None

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x0.shape[0], 8)

    def forward(self, x_t, t, cond, latent=None, x_start=None):
        if self._last_t is None or int(t[0]) > self._last_t:  # a new DDIM run starts at its largest t
            flat = x_t.reshape(x_t.shape[0], -1)
            self._mask = torch.tensor([any(torch.equal(row, f) for f in self.fail) for row in flat])
            self._start = x_t.clone()
        self._last_t = int(t[0])
        alpha = (cond.abs().sum(1, keepdim=True) > 0).float()
        face = 2 * (cond[:, :3].clamp(0, 1) + 0.45 * (1 - alpha)) - 1
        x0 = torch.where(self._mask[:, None, None, None], self._start, face)
        a = self.ac[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


@pytest.fixture(scope="module")
def scene(tmp_path_factory, synthetic_assets):
    src, tgt = H.make_scene(tmp_path_factory.mktemp("scene"), synthetic_assets, n_sources=2)
    return synthetic_assets, src, tgt


def _edit(scene, out: Path, monkeypatch, fail_seeds: list[int], retry: int):
    import dre.edit.runner
    from dre.diffusion import DiffusionConfig
    from dre.edit import Config, parse_modes, run
    from dre.edit.engine import seeded_noise

    model = FailOnSeed(list(seeded_noise(fail_seeds, (3, SIZE, SIZE))))
    meta = {"stage": 2, "extractor": "deca", "synthetic": True, "mean_shape": None,
            "diffusion_config": DiffusionConfig(), "model_config": model.cfg}
    monkeypatch.setattr(dre.edit.runner, "load_model_file", lambda *a, **k: (model, meta))
    assets, src, tgt = scene
    stand_in = scene[1].parent / "model.pt"  # never read (load_model_file is replaced); one path for reruns
    stand_in.write_bytes(b"stands in")
    cfg = Config(model=stand_in, assets=assets, source=src, target=tgt, out=out,
                     modes=parse_modes("exp,light"), target_extractor="emoca", steps=4, seed=5, device="cpu",
                     retry_failed=retry)
    return run(cfg)


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_retry_redraws_exactly_the_flagged_pictures_and_records_seeds(scene, tmp_path, monkeypatch):
    from dre.edit.engine import noise_seed
    from dre.edit.retry import retry_seed

    bad = noise_seed(5, "face01")  # the first draw of face01 (shared by its two modes) fails
    out = _edit(scene, tmp_path / "a" / "edit", monkeypatch, [bad], retry=2)
    table = pd.read_parquet(out / "edit.parquet").set_index("file")
    draws = pd.read_parquet(out / "attempts.parquet")
    assert not table["failed"].any(), table[["failure", "noise_excess", "landmarks_status"]]
    retried = draws[draws["attempt"] > 0]
    assert sorted(retried["file"]) == ["face01_exp.png", "face01_light.png"]
    for mode in ("exp", "light"):
        row = table.loc[f"face01_{mode}.png"]
        assert row["attempt"] == 1 and row["attempts"] == 2
        assert row["attempt_seed"] == retry_seed(5, "face01", mode, 1) and list(row["retry_seeds"]) == [row["attempt_seed"]]
        first = draws[(draws["file"] == f"face01_{mode}.png") & (draws["attempt"] == 0)].iloc[0]
        assert first["seed"] == bad and first["failed"] and first["noisy"] and not first["kept"]
    assert (table.loc["face00_exp.png", ["attempt", "attempts"]] == [0, 1]).all()
    assert table.loc["face00_exp.png", "attempt_seed"] == noise_seed(5, "face00")
    # the transfer of exp edits is measured, light edits keep their expression (no leakage there)
    assert table.loc[table["mode"] == "exp", "transfer"].notna().all()
    # rerun: same seeds, same draws, same bytes
    again = _edit(scene, tmp_path / "b" / "edit", monkeypatch, [bad], retry=2)
    assert _files(out) == _files(again)


def test_a_picture_that_fails_every_draw_stays_flagged_and_marked(scene, tmp_path, monkeypatch):
    from PIL import Image

    from dre.edit.engine import noise_seed
    from dre.edit.retry import retry_seed

    fails = [noise_seed(5, "face00"), retry_seed(5, "face00", "exp", 1), retry_seed(5, "face00", "light", 1)]
    out = _edit(scene, tmp_path / "edit", monkeypatch, fails, retry=1)
    table = pd.read_parquet(out / "edit.parquet").set_index("file")
    assert table.loc[["face00_exp.png", "face00_light.png"], "failed"].all()
    assert (table.loc[["face00_exp.png", "face00_light.png"], "attempts"] == 2).all()
    assert not table.loc[["face01_exp.png", "face01_light.png"], "failed"].any()
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_flagged"] == 2 and summary["n_retried"] == 2 and summary["synthetic"]
    grid = np.asarray(Image.open(out / "grid.png")).astype(int)
    red = (grid[..., 0] > 200) & (grid[..., 1] < 40) & (grid[..., 2] < 40)
    assert red.sum() > 200  # the red frames of the flagged cells (the banner is another red)


class _ZeroEps(torch.nn.Module):
    """ε̂ = 0 everywhere: DDIM then only rescales x_T and, with η > 0, adds its seeded per-step noise."""

    def forward(self, x_t, t, cond, latent=None, x_start=None):
        return torch.zeros_like(x_t)


def test_redraws_with_eta_are_a_function_of_their_own_seed() -> None:
    """With η > 0 each re-drawn job runs alone with a generator seeded from its own seed: the batch it was
    drawn in does not matter, and the recorded seed reproduces it."""
    from dre.diffusion import DiffusionConfig, GaussianDiffusion
    from dre.edit.engine import sample_seeded

    diffusion = GaussianDiffusion(DiffusionConfig())
    cond, latent = torch.zeros(2, 9, 8, 8), torch.zeros(2, 4)
    kw = dict(steps=5, eta=0.5, batch_size=2)
    both = sample_seeded(_ZeroEps(), diffusion, [11, 12], cond, latent, **kw)
    alone = sample_seeded(_ZeroEps(), diffusion, [12], cond[:1], latent[:1], **kw)
    assert torch.equal(both[1:], alone)
    assert not torch.equal(both, sample_seeded(_ZeroEps(), diffusion, [11, 13], cond, latent, **kw))
    plain = sample_seeded(_ZeroEps(), diffusion, [11, 12], cond, latent, steps=5, eta=0.0, batch_size=2)
    assert not torch.equal(both, plain)  # η really adds noise
