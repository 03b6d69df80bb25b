"""Pure scoring functions: transfer / leakage / identity on code arrays, and the noise estimate."""

from __future__ import annotations

import numpy as np
import pytest

from dre.score import metrics, quality


def _codes(rng, n):
    return {"shape": rng.normal(size=(n, 100)), "exp": rng.normal(size=(n, 50)),
            "pose": 0.2 * rng.normal(size=(n, 6)), "light": rng.normal(size=(n, 27))}


def test_transfer_is_one_at_the_target_zero_at_the_source_and_half_halfway():
    rng = np.random.default_rng(0)
    s, g = metrics.code_blocks(_codes(rng, 1)), metrics.code_blocks(_codes(rng, 1))
    half = {b: (s[b] + g[b]) / 2 for b in s}
    for edit, want in ((g, 1.0), (s, 0.0), (half, 0.5)):
        cols = metrics.block_scores(edit, s, g, [metrics.mode_blocks({"exp"})])
        assert cols["transfer"][0] == pytest.approx(want, abs=1e-12)
        assert cols["transfer_pose"][0] != cols["transfer_pose"][0]  # NaN: pose is not transferred by exp


def test_moving_sideways_earns_no_transfer():
    s = {"exp": np.zeros((1, 2)), "jaw": np.zeros((1, 3)), "pose": np.zeros((1, 3)), "light": np.zeros((1, 27))}
    g = {**s, "exp": np.array([[1.0, 0.0]])}
    side = {**s, "exp": np.array([[0.0, 1.0]])}  # as far from the source as the target is, elsewhere
    cols = metrics.block_scores(side, s, g, [("exp",)])
    assert cols["transfer_exp"][0] == 0.0


def test_leakage_measures_untouched_blocks_in_source_target_units():
    rng = np.random.default_rng(1)
    s, g = metrics.code_blocks(_codes(rng, 1)), metrics.code_blocks(_codes(rng, 1))
    leaked = {**s, "exp": g["exp"], "jaw": g["jaw"], "pose": g["pose"]}  # an exp edit that took the head pose too
    clean = {**s, "exp": g["exp"], "jaw": g["jaw"]}
    blocks = [metrics.mode_blocks({"exp"})]
    bad, good = metrics.block_scores(leaked, s, g, blocks), metrics.block_scores(clean, s, g, blocks)
    assert bad["leak_pose"][0] == pytest.approx(1.0) and bad["leakage"][0] == pytest.approx(1.0)
    assert good["leakage"][0] == 0.0 and good["transfer"][0] == pytest.approx(1.0)


def test_the_album_spread_bounds_leakage_when_the_target_shares_the_source_value():
    s = {"exp": np.zeros((1, 50)), "jaw": np.zeros((1, 3)), "pose": np.zeros((1, 3)), "light": np.zeros((1, 27))}
    g = {**s, "exp": np.ones((1, 50)), "pose": np.array([[1e-3, 0.0, 0.0]])}  # the target's pose ≈ the source's
    e = {**g, "pose": np.array([[0.02, 0.0, 0.0]])}  # re-extraction jitter of 0.02 rad
    alone = metrics.block_scores(e, s, g, [("exp", "jaw")])
    assert alone["leak_pose"][0] == pytest.approx(20.0)  # in units of a 1e-3 rad source-target gap
    bounded = metrics.block_scores(e, s, g, [("exp", "jaw")], {"pose": 0.1, "exp": 0.5})
    assert bounded["leak_pose"][0] == pytest.approx(0.2) and bounded["leak_light"][0] != bounded["leak_light"][0]


def test_nothing_to_transfer_is_nan_not_a_score():
    s = metrics.code_blocks(_codes(np.random.default_rng(2), 1))
    cols = metrics.block_scores(s, s, s, [("exp", "jaw")])
    assert np.isnan(cols["transfer"][0]) and np.isnan(cols["leakage"][0])


def test_latent_mode_has_no_code_transfer_but_is_checked_for_leakage():
    assert metrics.mode_blocks({"latent"}) == ()
    assert metrics.mode_blocks({"pose", "exp"}) == ("exp", "jaw", "pose")


def test_identity_in_album_spread_units():
    shapes = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mean, spread = metrics.album_stats(shapes)
    assert np.allclose(mean, [1, 1]) and spread == pytest.approx(np.sqrt(2))
    ids = metrics.identity_scores(shapes[:1], shapes[:1], mean, spread)
    assert ids["shape_drift"][0] == 0.0 and ids["shape_to_album"][0] == pytest.approx(1.0)
    assert np.isnan(metrics.album_stats(shapes[:1])[1])


def test_noise_sigma_recovers_white_noise_and_ignores_smooth_ramps():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    ramp = np.repeat((40 + 0.5 * xx + 0.3 * yy)[..., None], 3, axis=2)
    clean = ramp.astype(np.uint8)
    noisy = np.clip(ramp + rng.normal(0, 12, ramp.shape[:2])[..., None], 0, 255).astype(np.uint8)
    sig = quality.noise_sigma(np.stack([clean, noisy]))
    assert sig[0] < 1.0
    assert sig[1] == pytest.approx(12.0, rel=0.1)
    assert quality.noise_excess(sig[1], sig[0]) == pytest.approx(sig[1], rel=0.01)
    assert quality.noise_excess(3.0, 5.0) == 0.0  # smoother than the source: nothing added
