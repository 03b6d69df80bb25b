"""`dre align` end to end through the CLI (this checkout's code, sidecar landmarks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from dre.align.sidecar import write_sidecar
from dre.tables import ALIGN, ALIGN_FILE

from _align_helpers import render_face, similarity, template_landmarks


def _album(root: Path) -> None:
    root.mkdir()
    for i, ang in enumerate((0.0, 15.0)):
        lm = similarity(template_landmarks(), 50.0, ang, (160.0, 140.0))
        render_face(lm, 320, 300, seed=i).save(root / f"p{i}.jpg", quality=95)
        write_sidecar(root / f"p{i}.jpg", lm)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")


def test_cli_end_to_end(tmp_path: Path, dre_cmd, cli_env) -> None:
    _album(tmp_path / "album")
    out = tmp_path / "results" / "aligned" / "mine"
    cmd = dre_cmd + ["align", "--input", str(tmp_path / "album"), "--output", str(out), "--size", "128",
                     "--backend", "sidecar", "--multi-face", "largest", "--min-face", "32"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 of 3 files aligned (2 faces); skipped: unreadable 1" in res.stdout
    df = ALIGN.read(out / ALIGN_FILE)[0]
    assert sorted(df.status) == ["ok", "ok", "unreadable"]
    for name in ("p0.png", "p1.png"):
        assert (out / name).is_file()
    alm = np.asarray(df[df.output == "p1.png"].aligned_landmarks.iloc[0]).reshape(68, 2)
    np.testing.assert_allclose(alm[36:42].mean(0), [63.5 - 16.0, 63.5 - 3.2], atol=1e-3)  # 128² frame


def test_cli_fails_with_summary_when_nothing_usable(tmp_path: Path, dre_cmd, cli_env) -> None:
    album = tmp_path / "album"
    album.mkdir()
    (album / "x.jpg").write_text("text")
    render_face(similarity(template_landmarks(), 50.0, 0.0, (100.0, 100.0)), 200, 200).save(album / "y.png")
    res = subprocess.run(dre_cmd + ["align", "--input", str(album), "--output", str(tmp_path / "o"), "--backend", "sidecar"],
                         capture_output=True, text=True, env=cli_env, timeout=120)
    assert res.returncode == 2
    assert "no usable face" in res.stderr and "not_image 1" in res.stderr and "no_face 1" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_cli_fan_without_weights_names_files(tmp_path: Path, dre_cmd, cli_env) -> None:
    _album(tmp_path / "album")
    env = dict(cli_env, TORCH_HOME=str(tmp_path / "torch"))
    res = subprocess.run(dre_cmd + ["align", "--input", str(tmp_path / "album"), "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    for needle in ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar", str(tmp_path / "torch" / "hub" / "checkpoints")):
        assert needle in res.stderr
    # what the align rule's log says (the rule sets TORCH_HOME=<assets>/torch): the command, and the offline back-end
    assert f"dre assets fetch fan --assets {tmp_path}" in res.stderr and "--backend mediapipe works offline" in res.stderr
    assert "Traceback" not in res.stderr
