"""Sweeps and driven sequences through `dre edit`, with synthetic assets and a tiny random model.

What is checked: a sweep's frames are byte-identical to single edits with the same parameters and seed;
a parametric edit needs no target; a frames-folder target yields one picture per frame and source with
per-frame rows, scores, animations (GIF, MP4), a contact sheet and flicker figures; bad combinations
give clear errors.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("imageio_ffmpeg")

from PIL import Image  # noqa: E402

from dre import edit  # noqa: E402
from dre.edit import parse_modes  # noqa: E402
from dre.edit.inputs import list_sources  # noqa: E402
from dre.edit.modes import parse_sweep  # noqa: E402
from dre.errors import DreError  # noqa: E402
from dre.tables import EDIT, EDIT_FILE  # noqa: E402

from _edit_helpers import STEPS, crop_tforms_for, synthetic_codes, write_aligned, write_codes, write_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

@pytest.fixture(scope="module")
def case(tmp_path_factory, synthetic_assets):
    root = tmp_path_factory.mktemp("seq_case")
    write_aligned(root / "album", ["p1", "p2"], seed=30)
    write_aligned(root / "frames", ["f0", "f1", "f2"], seed=60)  # a driving sequence: 3 aligned frames
    faces = list_sources(root / "album")
    write_codes(root / "album.deca.parquet", faces, synthetic_codes(len(faces), 3), crop_tforms_for(faces), "deca")
    write_model(root / "model.pt")
    return {"root": root, "assets": synthetic_assets, "model": root / "model.pt", "album": root / "album",
            "codes": root / "album.deca.parquet", "frames": root / "frames"}


def _cfg(case, out, **kw) -> edit.Config:
    base = dict(model=case["model"], assets=case["assets"], source=case["album"], out=out,
                source_codes=case["codes"], steps=STEPS, seed=4, device="cpu", batch_size=1, scores=False)
    base.update(kw)
    return edit.Config(**base)


def test_sweep_frames_equal_single_edits_and_need_no_target(case, tmp_path):
    out = edit.run(_cfg(case, tmp_path / "sweep", sweep=parse_sweep("pose:yaw=-20..20:3"), scores=True))
    single = edit.run(_cfg(case, tmp_path / "single", modes=parse_modes("pose:yaw=20")))
    table = EDIT.read(out / EDIT_FILE)[0]
    assert len(table) == 6 and set(table["sequence"]) == {"pose:yaw=-20..20:3"}
    assert table["target"].isna().all() and table["target_frame"].isna().all()
    # scored without a target: nothing to transfer, the moved pose block is not a leak, the rest is measured
    assert table["noise"].notna().all() and table["transfer"].isna().all() and table["leak_pose"].isna().all()
    found = table["landmarks_status"] == "ok"  # a tiny random model draws few faces: where one was found
    assert found.any() and table.loc[found, "leak_light"].notna().all()
    assert [json.loads(p)["pose.yaw"] for p in table[table["source_stem"] == "p1"]["params"]] == [-20.0, 0.0, 20.0]
    for stem in ("p1", "p2"):
        frame = (out / f"{stem}_pose_yaw-20..20x3_002.png").read_bytes()
        assert frame == (single / f"{stem}_pose_yaw20.png").read_bytes()
        assert (out / f"{stem}_pose_yaw-20..20x3.gif").stat().st_size > 0
        assert (out / f"{stem}_pose_yaw-20..20x3.mp4").stat().st_size > 0
    with Image.open(out / "p1_pose_yaw-20..20x3.gif") as gif:
        assert gif.n_frames == 3
    assert (out / "pose_yaw-20..20x3_sheet.png").is_file()
    seqs = json.loads((out / "sequences.json").read_text())["sequences"]
    assert [s["source_stem"] for s in seqs] == ["p1", "p2"]
    f = seqs[0]["flicker"]
    assert f["images"] > 0 and f["conditions"] > 0 and f["ratio"] == pytest.approx(f["images"] / f["conditions"], rel=1e-3)
    assert EDIT.read_meta(out / EDIT_FILE)["sequences"] == seqs
    # reruns give the same bytes, animations included
    again = edit.run(_cfg(case, tmp_path / "again", sweep=parse_sweep("pose:yaw=-20..20:3"), scores=True))
    for name in ("p1_pose_yaw-20..20x3.gif", "p1_pose_yaw-20..20x3.mp4", EDIT_FILE):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_frames_folder_target_drives_one_picture_per_frame_with_scores(case, tmp_path):
    out = edit.run(_cfg(case, tmp_path / "drive", target=case["frames"], modes=parse_modes("exp+light,pose:yaw=10"),
                        scores=True, batch_size=8))
    table = EDIT.read(out / EDIT_FILE)[0]
    driven = table[table["sequence"] == "exp+light"]
    assert len(driven) == 2 * 3 and sorted(set(driven["frame"])) == [0, 1, 2]
    assert [str(p).rsplit("/", 1)[1] for p in driven[driven["source_stem"] == "p1"]["target_frame"]] == \
        ["f0.png", "f1.png", "f2.png"]
    still = table[table["sequence"].isna()]
    assert list(still["mode"]) == ["pose:yaw=10"] * 2 and still["target_frame"].isna().all()
    for stem in ("p1", "p2"):
        for k in range(3):
            assert (out / f"{stem}_exp+light_{k:03d}.png").is_file()
        assert (out / f"{stem}_exp+light.gif").is_file() and (out / f"{stem}_exp+light.mp4").is_file()
    # each frame carries its own target's light (swaps read frame k of the target)
    lights = np.stack(driven[driven["source_stem"] == "p1"]["light"].map(np.asarray))
    assert not np.allclose(lights[0], lights[1])
    assert np.allclose(lights, np.stack(driven[driven["source_stem"] == "p2"]["light"].map(np.asarray)))
    # every frame is scored like any edit
    assert driven["noise"].notna().all() and driven["landmarks_status"].notna().all()
    assert still["transfer"].isna().all()  # a yaw has no target to transfer from
    seqs = json.loads((out / "sequences.json").read_text())["sequences"]
    assert {s["driven"] for s in seqs} == {True} and len(seqs) == 2
    with Image.open(out / "exp+light_sheet.png") as img:
        sheet = np.asarray(img)
    assert sheet.shape[0] > 3 * 96  # target row + two sources
    # `dre score` on the folder scores each driven frame against its own target frame, as the edit did
    from dre.score import Config as ScoreConfig, run as score_run

    scores = score_run(ScoreConfig(edits=out, assets=case["assets"], out=tmp_path / "scores", device="cpu"))
    again = pq.read_table(scores / "scores.parquet").to_pandas().set_index("file")
    mine = table.set_index("file")
    for col in ("noise", "transfer", "leakage", "dist_light_edit_target"):
        np.testing.assert_allclose(again.loc[mine.index, col].astype(float), mine[col].astype(float), atol=1e-6,
                                   err_msg=col)
    assert again.loc["p1_pose_yaw10.png", "target"] is None or np.isnan(again.loc["p1_pose_yaw10.png", "target"])


def test_target_is_needed_only_by_modes_that_read_it(case, tmp_path):
    with pytest.raises(DreError, match="--target is needed by mode.*exp"):
        _cfg(case, tmp_path / "x", modes=parse_modes("exp,pose:yaw=10")).validate()
    with pytest.raises(DreError, match="--sweep replaces --modes"):
        _cfg(case, tmp_path / "x", modes=parse_modes("light"), sweep=parse_sweep("pose:yaw=-5..5:2")).validate()
    with pytest.raises(DreError, match="driven twice"):
        edit.run(_cfg(case, tmp_path / "y", target=case["frames"], sweep=parse_sweep("exp+pose:yaw=-5..5:2")))
    assert not (tmp_path / "y").exists()


def test_cli_rejects_a_bad_sweep_before_any_work(case, tmp_path, capsys):
    from dre.cli import main

    rc = main(["edit", "--model", str(case["model"]), "--assets", str(case["assets"]), "--source", str(case["album"]),
               "--sweep", "light:azimuth=-200..0:5", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--sweep" in err and "azimuth=-200 is out of range; allowed [-180, 180] degrees" in err, err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


def test_a_rig_term_reads_another_photo_exactly_as_it_reads_the_target(case, tmp_path):
    """`light:from=PATH` (what the workflow's align_reference feeds an edits.tsv row) gives the picture that
    `light:from=target` gives with that photo as the target, and needs no target of its own."""
    lamp = case["root"] / "lamp"
    if not lamp.exists():
        write_aligned(lamp, ["l0"], seed=61)
    by_path = edit.run(_cfg(case, tmp_path / "path", modes=parse_modes(f"light:from={lamp}")))
    by_target = edit.run(_cfg(case, tmp_path / "target", target=lamp, modes=parse_modes("light:from=target")))
    rows_path, rows_target = EDIT.read(by_path / EDIT_FILE)[0], EDIT.read(by_target / EDIT_FILE)[0]
    assert len(rows_path) == len(rows_target) == 2
    for a, b in zip(rows_path["file"], rows_target["file"]):
        assert (by_path / a).read_bytes() == (by_target / b).read_bytes()
    np.testing.assert_array_equal(np.stack(rows_path["light"].map(np.asarray)),
                                  np.stack(rows_target["light"].map(np.asarray)))
    own = EDIT.read(edit.run(_cfg(case, tmp_path / "own", modes=parse_modes("pose:yaw=0"))) / EDIT_FILE)[0]
    assert not np.allclose(np.stack(own["light"].map(np.asarray)), np.stack(rows_path["light"].map(np.asarray)))
    with pytest.raises(DreError, match="does not exist"):
        edit.run(_cfg(case, tmp_path / "missing", modes=parse_modes(f"light:from={case['root'] / 'nowhere.png'}")))


def test_score_reads_a_moved_frames_folder_given_as_target_frame_by_frame(case, tmp_path):
    """`dre score --target FRAMES` (the frames folder moved since the edit) scores each driven picture against its
    own frame, matched by file name, not every picture against one face of the folder."""
    import shutil

    from dre.score.inputs import read_edit_folder

    out = edit.run(_cfg(case, tmp_path / "drive", target=case["frames"], modes=parse_modes("exp")))
    moved = shutil.copytree(case["frames"], tmp_path / "moved_frames")
    ef = read_edit_folder(out, target=moved)
    assert len(ef.targets) == 3 and all(t.path.parent == moved for t in ef.targets)
    for row, mode in zip(ef.rows, ef.modes):
        assert ef.targets[mode.target_frame].path.name == row["target_frame"].rsplit("/", 1)[1]
    with pytest.raises(DreError, match=r"--target .*album: .*driven by the frames f0\.png, f1\.png, f2\.png"):
        read_edit_folder(out, target=case["album"])  # another sequence's frames: refused, not scored against


def test_a_photo_named_by_a_rig_term_is_an_input_the_output_stays_apart_from(case, tmp_path):
    """Like --target, a reference named in a mode (`light:from=FOLDER`) may not contain, be or lie inside --out."""
    ref = tmp_path / "ref"
    write_aligned(ref, ["r0"], seed=62)
    before = sorted(p.name for p in ref.iterdir())
    with pytest.raises(DreError, match=r"--out .*ref/edit is inside the input .*ref"):
        edit.run(_cfg(case, ref / "edit", modes=parse_modes(f"light:from={ref}")))
    assert sorted(p.name for p in ref.iterdir()) == before


def test_score_refuses_an_out_folder_holding_the_sources_before_any_scoring(case, tmp_path):
    """`dre score` reads the sources and targets edit.parquet names: --out may not be or contain them (an aligned
    album is a folder dre wrote, so only this check keeps it from being replaced), and the check comes first."""
    import shutil

    from dre.safety.ownership import write_marker
    from dre.score import Config as ScoreConfig, run as score_run

    album = shutil.copytree(case["album"], tmp_path / "album")
    write_marker(album, "dre align")  # as `dre align` leaves it
    out = edit.run(_cfg(case, tmp_path / "e", source=album, modes=parse_modes("pose:yaw=10")))

    class NoNetworks:
        def run(self, *a, **k):
            raise AssertionError("scored before the output folder was checked")

    with pytest.raises(DreError, match=r"--out .*album contains the input .*album/p1\.png"):
        score_run(ScoreConfig(edits=out, assets=case["assets"], out=album, device="cpu"), reextractor=NoNetworks())
    assert (album / "p1.png").is_file()
