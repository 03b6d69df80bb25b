"""dre report: loss curves from metrics.csv and per-status tables for the Snakemake report."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dre.errors import DreError
from dre.report import moving_average, read_metrics, status_counts, write_status_table
from dre.tables import ALIGN, ALIGN_FILE


def _metrics(path: Path, steps: range, loss) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "loss", "mse", "lr"])
        w.writeheader()
        for s in steps:
            w.writerow({"step": s, "loss": loss(s), "mse": loss(s) / 2, "lr": 1e-4})
    return path


def test_read_metrics_sorts_by_step(tmp_path: Path) -> None:
    p = _metrics(tmp_path / "m.csv", range(10, 0, -1), lambda s: 1.0 / s)
    m = read_metrics(p)
    assert list(m["step"]) == list(range(1, 11))
    assert np.allclose(m["loss"], 1.0 / m["step"])


def test_moving_average_matches_a_direct_trailing_mean() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    got = moving_average(x, 3)
    want = []
    for i in range(len(x)):
        w = x[max(0, i - 2) : i + 1]
        want.append(np.nanmean(w))
    assert np.allclose(got, want)


def test_bad_metrics_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DreError, match="no such file"):
        read_metrics(tmp_path / "missing.csv")
    (tmp_path / "e.csv").write_text("step,loss\n")
    with pytest.raises(DreError, match="no rows"):
        read_metrics(tmp_path / "e.csv")


def test_status_counts_and_table(tmp_path: Path) -> None:
    folder = tmp_path / "aligned"
    folder.mkdir()
    statuses = {"a": ("ok", ""), "b": ("no_face", "no face found in b"), "c": ("ok", ""),
                "d": ("not_image", "d: not an image suffix")}
    rows = [{"source": src, "face_index": 0 if st == "ok" else -1, "status": st, "message": msg, "landmarks": None,
             "aligned_landmarks": None, "quad": None, "confidence": 0.0, "backend": "sidecar", "output": None}
            for src, (st, msg) in statuses.items()]
    meta = {"backend": "sidecar", "size": 64, "already_aligned": False, "multi_face": "largest", "min_face": 64.0,
            "transform_size": 256}
    ALIGN.write(folder / ALIGN_FILE, rows, meta)
    assert status_counts(folder) == [("ok", 2, ""), ("no_face", 1, "no face found in b"),
                                     ("not_image", 1, "d: not an image suffix")]
    write_status_table(folder / ALIGN_FILE, tmp_path / "s.tsv")
    table = pd.read_csv(tmp_path / "s.tsv", sep="\t", keep_default_na=False)
    assert list(table["status"]) == ["ok", "no_face", "not_image", "total"]
    assert list(table["count"]) == [2, 1, 1, 4]


def test_cli_loss_plot(tmp_path: Path, dre_cmd: list[str], cli_env: dict[str, str]) -> None:
    a = _metrics(tmp_path / "runA" / "metrics.csv", range(1, 51), lambda s: 1.0 / s + 0.01)
    b = _metrics(tmp_path / "runB" / "metrics.csv", range(1, 31), lambda s: 2.0 / s + 0.02)
    out = tmp_path / "loss.png"
    r = subprocess.run([*dre_cmd, "report", "loss", "--metrics", str(a), "--metrics", str(b), "--title", "stage 1",
                        "--out", str(out)], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 10  # a real figure, not a blank canvas
    bad = subprocess.run([*dre_cmd, "report", "loss", "--metrics", str(a), "--label", "x", "--label", "y",
                          "--out", str(out)], capture_output=True, text=True, env=cli_env, timeout=120)
    assert bad.returncode == 2 and "--label" in bad.stderr
