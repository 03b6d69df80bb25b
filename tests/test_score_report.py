"""The report's score table and scatter, drawn from a scored edit table (here written by hand: what is
tested is the drawing, the scores themselves are tested in test_score_pipeline / test_edit_scores)."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
from PIL import Image

from dre import tables


def _rows():
    base = {"mode": "exp", "leakage": 0.2, "noise_excess": 1.0, "landmarks_status": "ok", "failure": "", "failed": False,
            "synthetic": True}
    return [
        {**base, "source_stem": "a", "file": "a_exp.png", "transfer": 0.8, "shape_drift": 0.4},
        {**base, "source_stem": "b", "file": "b_exp.png", "transfer": 0.5, "shape_drift": 1.1},
        {**base, "source_stem": "c", "file": "c_exp.png", "transfer": math.nan, "shape_drift": math.nan,
         "landmarks_status": "no_face", "failure": "no_face,noisy", "failed": True, "noise_excess": 60.0},
    ]


def _write(table, folder, rows):
    """``rows`` as ``table`` (its owner's writer): the columns not given are null, the metadata too."""
    full = [{name: r.get(name) for name in table.names} for r in rows]
    table.write(folder / table.name, full, {k: (True if k == "synthetic" else None) for k in table.meta_keys})


def _scored_folder(tmp_path, table=tables.EDIT):
    folder = tmp_path / "edit"
    folder.mkdir()
    _write(table, folder, _rows())
    return folder


@pytest.mark.parametrize("table", [tables.EDIT, tables.EDIT_V2, tables.SCORES], ids=lambda t: f"{t.name}-v{t.version}")
def test_report_scores_writes_a_table_flagged_first_and_a_scatter(tmp_path, dre_cmd, cli_env, table):
    folder = _scored_folder(tmp_path, table)
    out_t, out_p = tmp_path / "t.tsv", tmp_path / "p.png"
    r = subprocess.run([*dre_cmd, "report", "scores", "--edits", str(folder), "--table", str(out_t), "--plot",
                        str(out_p), "--title", "scores of demo"], capture_output=True, text=True, env=cli_env)
    assert r.returncode == 0, r.stderr
    lines = out_t.read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["source_stem", "mode", "transfer"] and lines[0].endswith("note")
    assert lines[1].startswith("c\texp\t\t") and "no_face,noisy" in lines[1]  # flagged first, empty scores
    assert lines[2].startswith("a\texp\t0.800")
    img = np.asarray(Image.open(out_p).convert("RGB")).astype(int)
    assert img.shape[0] > 300 and ((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum() > 20


def test_report_scores_on_an_unscored_folder_says_how_to_score_it(tmp_path, dre_cmd, cli_env):
    folder = tmp_path / "edit"
    folder.mkdir()
    _write(tables.EDIT_V1, folder, [{"file": "a_exp.png", "mode": "exp"}])  # written before scores existed
    r = subprocess.run([*dre_cmd, "report", "scores", "--edits", str(folder), "--table", str(tmp_path / "t.tsv"),
                        "--plot", str(tmp_path / "p.png")], capture_output=True, text=True, env=cli_env)
    assert r.returncode == 2 and "dre score --edits" in r.stderr


def test_report_scores_reruns_over_its_own_files_and_refuses_foreign_ones(tmp_path, dre_cmd, cli_env):
    folder = _scored_folder(tmp_path)
    out_t, out_p = tmp_path / "t.tsv", tmp_path / "p.png"

    def report(t, p):
        return subprocess.run([*dre_cmd, "report", "scores", "--edits", str(folder), "--table", str(t), "--plot",
                               str(p)], capture_output=True, text=True, env=cli_env)

    assert report(out_t, out_p).returncode == 0
    assert report(out_t, out_p).returncode == 0, "a rerun replaces the table and figure it wrote itself"
    foreign_t, foreign_p = tmp_path / "notes.tsv", tmp_path / "photo.png"
    foreign_t.write_text("my notes\n")
    Image.new("RGB", (4, 4)).save(foreign_p)
    r = report(foreign_t, out_p)
    assert r.returncode == 2 and "--table" in r.stderr and foreign_t.read_text() == "my notes\n"
    before = foreign_p.read_bytes()
    r = report(out_t, foreign_p)
    assert r.returncode == 2 and "--plot" in r.stderr and foreign_p.read_bytes() == before
