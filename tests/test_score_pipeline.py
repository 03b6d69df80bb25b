"""Scores computed through the real path: mediapipe landmarks → DECA crop → synthetic DECA/EMOCA encoders.

The album and the target are rendered from the synthetic FLAME (``dre assets synth``), so the face
detector finds them; the "edits" are pictures whose right answer is known: the target itself, the
source itself, noise.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests import _score_helpers as H

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory, synthetic_assets):
    root = tmp_path_factory.mktemp("scene")
    src, tgt = H.make_scene(root, synthetic_assets, n_sources=2)
    return synthetic_assets, src, tgt


@pytest.fixture(scope="module")
def rx(synthetic_assets):
    """Detector and extractors loaded once for the module (each test still runs the whole `dre score` stage)."""
    from dre.score.reextract import Reextractor

    return Reextractor(synthetic_assets, landmarks="mediapipe", device="cpu")


def _score(scene, rx, tmp_path, pictures, *, source_extractor="deca", target_extractor="deca", table=True, **flags):
    from dre.score import Config, ScoreSettings, run

    assets, src, tgt = scene
    folder = H.write_edit_folder(tmp_path / "edits", pictures, sources=src, target=tgt,
                                 source_extractor=source_extractor, target_extractor=target_extractor, table=table)
    out = run(Config(edits=folder, assets=assets, out=tmp_path / "scores", device="cpu",
                     source=None if table else src, target=None if table else tgt,
                     source_extractor=None if table else source_extractor,
                     target_extractor=None if table else target_extractor,
                     scoring=ScoreSettings(**flags)), reextractor=rx)
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    return {r["file"][:-4]: r for r in rows}, json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("kinds", [("deca", "emoca"), ("emoca", "deca")])
def test_the_target_itself_is_full_transfer_and_a_caught_pose_leak(scene, rx, tmp_path, kinds):
    """An "edit" that is exactly the target's picture: everything transferred; for an exp edit the
    target's head pose came along too, which the leakage score must catch. DECA and EMOCA on either side."""
    _, _, tgt = scene
    target = H.load_rgb(sorted(tgt.glob("*.png"))[0])
    rows, summary = _score(scene, rx, tmp_path, {"face00_exp": target, "face01_exp+pose+light": target},
                           source_extractor=kinds[0], target_extractor=kinds[1])
    full, exp = rows["face01_exp+pose+light"], rows["face00_exp"]
    assert full["transfer"] == pytest.approx(1.0, abs=1e-4)
    assert exp["transfer"] == pytest.approx(1.0, abs=1e-4)
    assert exp["dist_pose_edit_target"] == pytest.approx(0.0, abs=1e-4)  # the target's head pose came along
    assert exp["leak_pose"] > 0.5 and exp["leaked"]
    assert not exp["failed"] and exp["landmarks_status"] == "ok"
    assert summary["synthetic"] and summary["n_flagged"] == 0


def test_the_source_itself_is_zero_transfer_and_no_leakage(scene, rx, tmp_path):
    _, src, _ = scene
    pics = {"face00_exp": H.load_rgb(src / "face00.png"), "face01_pose+light": H.load_rgb(src / "face01.png")}
    rows, summary = _score(scene, rx, tmp_path, pics)
    for name, r in rows.items():
        assert r["transfer"] == pytest.approx(0.0, abs=1e-4), name
        assert r["leakage"] == pytest.approx(0.0, abs=1e-4), name
        assert r["shape_drift"] == pytest.approx(0.0, abs=1e-4) and r["noise_excess"] == 0.0
        assert not r["failed"] and not r["leaked"] and r["synthetic"]
    assert summary["references"]["sources_detected"] == 2 and summary["references"]["target_landmarks"] == "detected"
    assert summary["by_mode"]["exp"]["transfer_mean"] == pytest.approx(0.0, abs=1e-4)


def test_noise_is_flagged_and_clean_photos_are_not(scene, rx, tmp_path):
    from dre.demo import SOURCES
    from dre.edit.outputs import resize_square

    _, src, tgt = scene
    photo = SOURCES["astronaut"].loader()[:300, 100:400]  # a real photo, face in frame
    pics = {
        "face00_exp": H.noise_picture(0),
        "face01_exp": H.half_noised(H.load_rgb(src / "face01.png"), 1),
        "face00_pose": resize_square(photo, H.EDIT_SIZE),  # clean: a real photo
        "face01_pose": H.load_rgb(sorted(tgt.glob("*.png"))[0]),  # clean: another rendered face
    }
    rows, summary = _score(scene, rx, tmp_path, pics, table=False)
    noise, half = rows["face00_exp"], rows["face01_exp"]
    assert noise["failed"] and noise["noisy"] and noise["landmarks_status"] == "no_face"
    assert noise["failure"] == "no_face,noisy" and np.isnan(noise["transfer"])
    assert half["failed"] and half["noisy"]
    for name in ("face00_pose", "face01_pose"):
        assert not rows[name]["noisy"] and not rows[name]["failed"], (name, rows[name]["noise_excess"])
    assert summary["n_flagged"] == 2 and sorted(summary["flagged"]) == ["face00_exp.png", "face01_exp.png"]


def test_dre_score_cli_scores_a_folder_and_refuses_to_write_into_it(scene, tmp_path, dre_cmd, cli_env):
    assets, src, tgt = scene
    folder = H.write_edit_folder(tmp_path / "edits", {"face00_exp": H.load_rgb(src / "face00.png"),
                                                      "face01_exp": H.noise_picture(3)}, sources=src, target=tgt)
    bad = subprocess.run([*dre_cmd, "score", "--edits", str(folder), "--assets", str(assets), "--out",
                          str(folder / "scores")], capture_output=True, text=True, env=cli_env)
    assert bad.returncode == 2 and "--out" in bad.stderr and not (folder / "scores").exists()
    out = tmp_path / "scores"
    res = subprocess.run([*dre_cmd, "score", "--edits", str(folder), "--assets", str(assets), "--out", str(out),
                          "--device", "cpu"], capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stderr
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"scores.parquet", "summary.json", "grid.png"}
    table = pq.read_table(out / "scores.parquet")
    assert table.column("failed").to_pylist() == [False, True]
    assert json.loads(table.schema.metadata[b"dre"])["synthetic"] is True
