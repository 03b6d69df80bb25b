"""Commands replace only what dre wrote: user folders and files are refused, never deleted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import face_like_cond, index_image, png_bytes, write_legacy_lmdb
from dre.errors import DreError
from dre.safety.ownership import MARKER, check_apart, claim_dir, claim_file, claim_run_dir, owned_dir, parquet_is_ours


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "precious.txt").write_text("the user's own file")
    return path


def test_check_apart_refuses_same_inside_and_containing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for dest, word in ((src, "is the input"), (src / "sub", "is inside"), (tmp_path, "contains")):
        with pytest.raises(DreError, match=word):
            check_apart(dest, [src], "--out")
    check_apart(tmp_path / "other", [src, None], "--out")


def test_owned_folders_are_replaced_foreign_ones_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with owned_dir(out, "dre test") as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / MARKER).is_file()
    with owned_dir(out, "dre test") as tmp:  # ours, unchanged: replaced
        (tmp / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2"
    (out / "added.txt").write_text("user")  # the user put a file into our folder: theirs again
    with pytest.raises(DreError, match=r"added\.txt.*refusing"):
        claim_dir(out)
    (out / "added.txt").unlink()
    (out / "a.txt").write_text("changed size")
    with pytest.raises(DreError, match=r"a\.txt"):
        claim_dir(out)
    user = _user_folder(tmp_path / "user")
    with pytest.raises(DreError, match=rf"{user}.*did not write.*delete the folder yourself"):
        with owned_dir(user, "dre test"):
            pass
    assert (user / "precious.txt").read_text() == "the user's own file"
    (tmp_path / "empty").mkdir()
    claim_dir(tmp_path / "empty")  # an empty folder has nothing to lose


def test_files_need_evidence(tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    theirs = tmp_path / "theirs.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(theirs)
    with pytest.raises(DreError, match="not a table written by dre"):
        claim_file(theirs, evidence=parquet_is_ours, what="a table written by dre")
    ours = tmp_path / "ours.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({"dre": "{}"}), ours)
    claim_file(ours, evidence=parquet_is_ours, what="a table written by dre")
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(DreError):
        claim_file(garbage, evidence=parquet_is_ours, what="a table written by dre")


def test_run_dirs_are_continued_not_taken(tmp_path: Path) -> None:
    user = _user_folder(tmp_path / "run")
    with pytest.raises(DreError, match="precious.txt"):
        claim_run_dir(user, "dre train", known=("checkpoints",))
    old_layout = tmp_path / "old_run"
    (old_layout / "checkpoints").mkdir(parents=True)
    claim_run_dir(old_layout, "dre train", known=("checkpoints",))
    assert (old_layout / MARKER).is_file()


# ----------------------------------------------------------------------------------- the CLI, end to end
def _dre(args: list[str], cli_env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dre", *args], env=cli_env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_assets_synth_never_replaces_a_real_asset(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "generic_model.pkl").write_bytes(b"the user's registration-gated FLAME model")
    r = _dre(["assets", "synth", "--out", str(assets)], cli_env)
    assert r.returncode == 2 and "did not write" in r.stderr, r.stderr
    assert (assets / "generic_model.pkl").read_bytes() == b"the user's registration-gated FLAME model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets"]


@pytest.mark.slow
def test_assets_synth_replaces_its_own_folder_but_not_a_swapped_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "synth"
    assert _dre(["assets", "synth", "--out", str(out)], cli_env).returncode == 0
    assert _dre(["assets", "synth", "--out", str(out)], cli_env).returncode == 0  # ours: replaced
    real = (out / "generic_model.pkl").read_bytes()[:-1] + b"\0"  # same size, other content
    (out / "generic_model.pkl").write_bytes(real)
    r = _dre(["assets", "synth", "--out", str(out)], cli_env)
    assert r.returncode == 2 and "generic_model.pkl" in r.stderr, r.stderr
    assert (out / "generic_model.pkl").read_bytes() == real


def test_pack_import_legacy_onto_its_input_is_refused(tmp_path: Path, cli_env: dict[str, str]) -> None:
    old = tmp_path / "old.lmdb"
    write_legacy_lmdb(old, [png_bytes(index_image(0, 16))], [face_like_cond(16, 0)])
    before = sorted((p.name, p.stat().st_size) for p in old.iterdir())
    r = _dre(["pack", "--import-legacy", str(old), "--out", str(old)], cli_env)
    assert r.returncode == 2 and "is the input" in r.stderr, r.stderr
    assert sorted((p.name, p.stat().st_size) for p in old.iterdir()) == before
    user = _user_folder(tmp_path / "user.lmdb")
    r = _dre(["pack", "--import-legacy", str(old), "--out", str(user)], cli_env)
    assert r.returncode == 2 and "did not write" in r.stderr and (user / "precious.txt").is_file(), r.stderr
    # a manifest path that is someone else's Parquet file
    theirs = tmp_path / "theirs.parquet"
    import pandas as pd

    pd.DataFrame({"a": [1]}).to_parquet(theirs)
    r = _dre(["pack", "--import-legacy", str(old), "--out", str(tmp_path / "new.lmdb"), "--manifest", str(theirs)],
             cli_env)  # fmt: skip
    assert r.returncode == 2 and "not a table written by dre" in r.stderr, r.stderr
    assert not (tmp_path / "new.lmdb").exists()
    r = _dre(["pack", "--import-legacy", str(old), "--out", str(tmp_path / "new.lmdb")], cli_env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new.lmdb" / MARKER).is_file() and parquet_is_ours(tmp_path / "new.parquet")
    r = _dre(["pack", "--import-legacy", str(old), "--out", str(tmp_path / "new.lmdb")], cli_env)
    assert r.returncode == 0, r.stderr  # its own output: replaced


def test_align_refuses_an_unrelated_output_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(png_bytes(index_image(0, 32)))
    np.savetxt(photos / "a.txt", np.tile([[10.0, 12.0]], (68, 1)))
    user = _user_folder(tmp_path / "thesis")
    r = _dre(["align", "--input", str(photos), "--output", str(user), "--backend", "sidecar"], cli_env)
    assert r.returncode == 2 and "--output" in r.stderr and "did not write" in r.stderr, r.stderr
    assert sorted(p.name for p in user.iterdir()) == ["precious.txt"]
    r = _dre(["align", "--input", str(photos), "--output", str(photos / "aligned"), "--backend", "sidecar"], cli_env)
    assert r.returncode == 2 and "inside" in r.stderr, r.stderr


def test_edit_refuses_a_folder_it_did_not_write(tmp_path: Path, cli_env: dict[str, str]) -> None:
    user = _user_folder(tmp_path / "edits")
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    r = _dre(["edit", "--model", str(model), "--assets", str(tmp_path / "assets"), "--source", str(tmp_path / "s"),
              "--target", str(tmp_path / "t.png"), "--out", str(user), "--modes", "exp"], cli_env)  # fmt: skip
    assert r.returncode == 2 and str(user) in r.stderr and "did not write" in r.stderr, r.stderr
    assert sorted(p.name for p in user.iterdir()) == ["precious.txt"]
