"""The Snakemake layer: lint, the full plan of the published edit, sheet rows as the only way to add work,
and the promised messages for bad sheets. Nothing runs a rule here (dry runs only)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.workflow_layout import REPO, Layout, make_layout

FULL_CHAIN = {
    "align": 3,  # affectnet + obama (raw albums) and ffhq (already aligned: indexed only)
    "align_target": 1,
    "extract": 3,  # ffhq, affectnet, obama with DECA (the edit's source extractor)
    "pack": 3,
    "train_stage1": 1,
    "train_stage2": 1,
    "edit": 1,
}


@pytest.fixture()
def layout(tmp_path: Path) -> Layout:
    return make_layout(tmp_path)


def planned_jobs(result) -> Counter:
    """Parse the 'Job stats' table of a dry run into rule -> count."""
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    table = text.split("Job stats:", 1)[1]
    counts: Counter = Counter()
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def use_official_stage1_checkpoint(layout: Layout) -> None:
    """Point the prior's `official_checkpoint` at a file (only its path is planned, never read)."""
    ckpt = layout.root / "official" / "model_300000.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"placeholder file: only its path is planned")
    layout.replace_in("config/config.yaml", 'official_checkpoint: ""', f'official_checkpoint: "{ckpt}"')


def test_lint_is_clean(layout: Layout) -> None:
    result = layout.snakemake("--lint")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "Lints for" not in text, text
    assert "Congratulations, your workflow is in a good condition!" in text


def test_dry_run_plans_the_whole_published_chain(layout: Layout) -> None:
    result = layout.snakemake("-n", "-p", "results/edits/obama12_exp")
    assert planned_jobs(result) == Counter(FULL_CHAIN)
    text = result.stdout
    # the edit's extractors come from its sheet row, the stage-2 init from our stage-1 model
    assert "--source-extractor deca --target-extractor emoca" in text
    assert "--init results/models/stage1/ffhq_affectnet.deca/model.pt" in text
    assert "--mean-shape results/lmdb/obama.deca.lmdb/mean_shape.npy" in text
    # the published stage-1/2 hyper-parameters reach the CLI
    assert "--lr 0.0001 --batch-size 32 --max-steps 50000" in text
    assert "--lr 1e-05 --batch-size 4 --max-steps 5000" in text
    assert "--latent-dim 64 --encoder resnet18" in text
    assert "--steps 20" in text
    # one align rule: the sheet's `aligned` column becomes --already-aligned (ffhq) / --no-already-aligned
    assert re.search(r"--input data/ffhq --output results/aligned/ffhq .*--already-aligned", text)
    assert re.search(r"--input data/obama --output results/aligned/obama .*--no-already-aligned", text)


def test_official_stage1_checkpoint_skips_stage1_training(layout: Layout) -> None:
    use_official_stage1_checkpoint(layout)
    jobs = planned_jobs(layout.snakemake("-n", "-p", "results/edits/obama12_exp"))
    assert "train_stage1" not in jobs
    # no prior album needs packing any more: only the personal album's chain and the edit remain
    assert jobs == Counter({"align": 1, "align_target": 1, "extract": 1, "pack": 1, "train_stage2": 1, "edit": 1})


REPORT_JOBS = {
    "report_loss_stage1": 1,  # the prior ffhq_affectnet, DECA conditions
    "report_loss_stage2": 1,  # obama
    "report_align": 3,  # ffhq, affectnet, obama
    "report_align_target": 1,
    "report_extract": 3,
    "report_scores": 1,  # the edit's score table and scatter
}


def test_default_target_adds_the_reports_figures_and_tables(layout: Layout) -> None:
    """No target = every edit + what `snakemake --report` shows: loss curves and counts by status."""
    result = layout.snakemake("-n", "-p")
    jobs = planned_jobs(result)
    assert jobs == Counter({**FULL_CHAIN, **REPORT_JOBS, "all": 1})
    text = result.stdout
    assert "--metrics results/runs/stage1/ffhq_affectnet.deca/metrics.csv" in text
    assert "--metrics results/runs/stage2/obama.deca/metrics.csv" in text
    assert "report status --table results/codes/affectnet.deca.parquet" in text
    assert "report scores --edits results/edits/obama12_exp" in text


def test_the_edit_scores_itself_and_the_score_rule_rescores(layout: Layout) -> None:
    """The edit rule passes the config's score settings; `results/scores/<edit>` re-scores without sampling."""
    text = layout.snakemake("-n", "-p", "results/edits/obama12_exp").stdout
    assert "--retry-failed 0" in text and "--scores" in text
    assert "--landmarks mediapipe --noise-threshold 20.0 --leak-threshold 0.5" in text
    result = layout.snakemake("-n", "-p", "results/scores/obama12_exp")
    assert planned_jobs(result)["score"] == 1
    assert "dre score --edits results/edits/obama12_exp" in result.stdout
    assert "--landmarks mediapipe --noise-threshold 20.0 --leak-threshold 0.5 --batch-size 16" in result.stdout


def test_report_has_no_stage1_curve_with_an_official_checkpoint(layout: Layout) -> None:
    use_official_stage1_checkpoint(layout)
    jobs = planned_jobs(layout.snakemake("-n"))
    assert "report_loss_stage1" not in jobs and jobs["report_loss_stage2"] == 1
    assert jobs["report_align"] == 1 and jobs["report_extract"] == 1  # only the personal album was used


def test_adding_rows_makes_a_new_edit_plannable(layout: Layout) -> None:
    layout.add_album("data/alice")
    (layout.root / "data" / "targets" / "smile.jpg").write_bytes(b"")
    layout.append_row(
        "albums.tsv", ["alice", "data/alice", "personal", "false", "true", "ffhq_affectnet", "mediapipe", "x"]
    )
    layout.append_row(
        "edits.tsv",
        ["alice_light", "alice", "data/targets/smile.jpg", "false", "light,exp+pose", "emoca", "emoca", "3",
         "inversion", "y"],
    )
    result = layout.snakemake("-n", "-p", "results/edits/alice_light")
    jobs = planned_jobs(result)
    assert jobs["edit"] == 1 and jobs["train_stage2"] == 1 and jobs["train_stage1"] == 1
    # EMOCA sources: the priors are extracted and packed with EMOCA for this chain
    assert "results/models/stage2/alice.emoca/model.pt" in result.stdout
    assert "results/lmdb/ffhq.emoca.lmdb" in result.stdout
    assert "--backend mediapipe" in result.stdout
    assert "--modes light,exp+pose" in result.stdout and "--init inversion --seed 3" in result.stdout


def test_sweep_and_sequence_rows_are_ordinary_edits(layout: Layout) -> None:
    """A parametric sweep needs no target (no align_target job, no --target); a frames folder is aligned
    by align_target like a photo; `sources` limits the photos edited."""
    frames = layout.root / "data" / "clip"
    frames.mkdir(parents=True)
    for k in range(3):
        (frames / f"f{k}.jpg").write_bytes(b"")
    layout.append_row("edits.tsv", ["obama_yaw", "obama", "", "false", "pose:yaw=-20..20:5+light:azimuth=30", "deca",
                                    "deca", "0", "noise", "sweep"])
    layout.append_row("edits.tsv", ["obama_clip", "obama", "data/clip", "false", "exp+pose", "deca", "emoca", "0",
                                    "inversion", "driven"])
    result = layout.snakemake("-n", "-p", "results/edits/obama_yaw")
    jobs = planned_jobs(result)
    assert jobs["edit"] == 1 and "align_target" not in jobs
    assert "--modes pose:yaw=-20..20:5+light:azimuth=30" in result.stdout and "--target " not in result.stdout
    result = layout.snakemake("-n", "-p", "results/edits/obama_clip")
    jobs = planned_jobs(result)
    assert jobs["align_target"] == 1 and jobs["edit"] == 1
    assert "--input data/clip" in result.stdout and "--target results/targets/obama_clip" in result.stdout


def test_rig_terms_may_read_other_photos_which_are_aligned_first(layout: Layout) -> None:
    """`light:from=PHOTO` / `towards=PHOTO` in a sheet: each distinct photo is aligned once by
    align_reference, and the edit reads the aligned folder in its place (the target is aligned as usual)."""
    lamp = layout.root / "data" / "lamp.jpg"
    lamp.parent.mkdir(parents=True, exist_ok=True)
    lamp.write_bytes(b"")
    layout.append_row("edits.tsv", ["obama_lamp", "obama", "data/targets/obama_12.png", "false",
                                    "exp+light:from=data/lamp.jpg,pose:towards=data/lamp.jpg,strength=0.5",
                                    "deca", "emoca", "0", "inversion", "light and half the pose of another photo"])
    result = layout.snakemake("-n", "-p", "results/edits/obama_lamp")
    jobs = planned_jobs(result)
    assert jobs["align_reference"] == 1 and jobs["align_target"] == 1 and jobs["edit"] == 1
    assert "--input data/lamp.jpg --output results/references/obama_lamp/ref0" in result.stdout
    folder = "results/references/obama_lamp/ref0"
    assert f"--modes exp+light:from={folder},pose:towards={folder},strength=0.5" in result.stdout
    assert "--target results/targets/obama_lamp" in result.stdout
    everything = planned_jobs(layout.snakemake("-n"))  # rule all: the report shows the reference's alignment
    assert everything["report_align_reference"] == 1 and everything["align_reference"] == 1


def test_a_video_target_is_decoded_into_frames_then_aligned(layout: Layout) -> None:
    """A driving clip in the target column: video_frames decodes it (with the config's `video:` settings),
    align_target aligns the frames, the edit reads them as a driving sequence."""
    clip = layout.root / "data" / "clip.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"")
    layout.append_row("edits.tsv", ["obama_video", "obama", "data/clip.mp4", "false", "exp+pose", "deca", "emoca",
                                    "0", "inversion", "driven by a clip"])
    result = layout.snakemake("-n", "-p", "results/edits/obama_video")
    jobs = planned_jobs(result)
    assert jobs["video_frames"] == 1 and jobs["align_target"] == 1 and jobs["edit"] == 1
    assert "dre video-frames --video data/clip.mp4 --fps 8.0 --max-frames 48 --start 0.0 --out results/frames/obama_video" \
        in result.stdout
    assert "--input results/frames/obama_video" in result.stdout
    assert "--target results/targets/obama_video" in result.stdout


BAD_ROWS = [
    # (sheet, row cells or None, config/sheet edit, expected fragments)
    pytest.param(
        "edits.tsv",
        ["e2", "nobody", "data/targets/obama_12.png", "false", "exp", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'album'", "unknown album 'nobody'"],
        id="unknown-album",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/obama_12.png", "false", "smile", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'modes'", "'smile' does not match"],
        id="bad-mode",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/obama_12.png", "false", "pose:yaw=200", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'modes'", "yaw=200 is out of range; allowed [-90, 90] degrees"],
        id="bad-rig-number",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "", "false", "exp,pose:yaw=10", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'target'", "mode(s) exp need a target"],
        id="swap-without-target",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/obama_12.png", "false", "light:from=data/x.png", "deca", "emoca", "0", "noise",
         ""],
        ["config/edits.tsv, row 3, column 'modes'", "reference photo 'data/x.png' does not exist"],
        id="rig-reads-a-missing-photo",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/obama_12.png", "false", "light:from=data/targets", "deca", "emoca", "0",
         "noise", ""],
        ["config/edits.tsv, row 3, column 'modes'", "reference 'data/targets' is a folder; a rig term reads one photo"],
        id="rig-reads-a-folder",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/obama_12.png", "false", "exp", "flame", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'source_extractor'", "'flame' is not one of"],
        id="bad-extractor",
    ),
    pytest.param(
        "edits.tsv",
        ["e2", "obama", "data/targets/missing.png", "false", "exp", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'target'", "does not exist"],
        id="missing-target",
    ),
    pytest.param(
        "albums.tsv",
        ["bob", "data/bob", "personal", "false", "true", "ffhq_affectnet", "", ""],
        ["config/albums.tsv, row 5, column 'path'", "album folder 'data/bob' does not exist"],
        id="missing-folder",
    ),
    pytest.param(
        "albums.tsv",
        ["obama", "data/obama", "personal", "false", "true", "ffhq_affectnet", "", ""],
        ["config/albums.tsv, row 5, column 'album'", "duplicate album 'obama' (first defined on row 4)"],
        id="duplicate-album",
    ),
    pytest.param(
        "albums.tsv",
        ["Obama", "data/obama", "personal", "false", "true", "ffhq_affectnet", "", ""],
        ["config/albums.tsv, row 5, column 'album'", "duplicate album 'Obama' (first defined on row 4 as 'obama'",
         "differ only in case"],
        id="duplicate-album-but-for-case",
    ),
    pytest.param(
        "edits.tsv",
        ["OBAMA12_exp", "obama", "data/targets/obama_12.png", "false", "exp", "deca", "emoca", "0", "noise", ""],
        ["config/edits.tsv, row 3, column 'edit'", "duplicate edit 'OBAMA12_exp'", "differ only in case"],
        id="duplicate-edit-but-for-case",
    ),
    pytest.param(
        "albums.tsv",
        ["bob", "data/targets/obama_12.png", "personal", "false", "true", "ffhq_affectnet", "", ""],
        ["config/albums.tsv, row 5, column 'path'", "'data/targets/obama_12.png' is a file, not a folder of photos"],
        id="album-path-is-a-file",
    ),
    pytest.param(
        "albums.tsv",
        ["carol", "data/obama", "personal", "maybe", "true", "ffhq_affectnet", "", ""],
        ["config/albums.tsv, row 5, column 'aligned'", "'maybe' is not of type 'boolean'"],
        id="bad-boolean",
    ),
    pytest.param(
        "albums.tsv",
        ["dave", "data/obama", "personal", "false", "true", "celebA", "", ""],
        ["config/albums.tsv, row 5, column 'prior'", "unknown prior 'celebA'"],
        id="unknown-prior",
    ),
    pytest.param(
        "albums.tsv",
        ["bad name", "data/obama", "prior", "false", "false", "", "", ""],
        ["config/albums.tsv, row 5, column 'album'", "does not match"],
        id="bad-name",
    ),
]


def check_sheets_in_process(layout: Layout, monkeypatch) -> None:
    """What common.smk does at start-up, without starting Snakemake (workflow/sheets.py)."""
    monkeypatch.chdir(layout.root)
    monkeypatch.syspath_prepend(str(REPO / "workflow"))
    import sheets

    config = yaml.safe_load((layout.root / "config" / "config.yaml").read_text())
    schemas = REPO / "workflow" / "schemas"
    albums = sheets.load_sheet(config["albums"], schemas / "albums.schema.yaml", "album")
    edits = sheets.load_sheet(config["edits"], schemas / "edits.schema.yaml", "edit")
    sheets.check_cross_references(config, albums, edits)


def test_example_sheets_pass_the_checks(layout: Layout, monkeypatch) -> None:
    check_sheets_in_process(layout, monkeypatch)


@pytest.mark.parametrize("sheet, cells, fragments", BAD_ROWS)
def test_bad_sheet_rows_stop_with_file_row_and_column(layout: Layout, monkeypatch, sheet, cells, fragments) -> None:
    from snakemake.exceptions import WorkflowError

    layout.append_row(sheet, cells)
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_bad_row_stops_the_snakemake_run_with_the_message(layout: Layout) -> None:
    """The same checks run at workflow start-up: one case end to end through Snakemake."""
    layout.append_row("edits.tsv", BAD_ROWS[0].values[1])
    result = layout.snakemake("-n", "results/edits/obama12_exp")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    for fragment in BAD_ROWS[0].values[2]:
        assert fragment in text, text


def test_bad_config_value_is_reported(layout: Layout) -> None:
    layout.replace_in("config/config.yaml", "model: {}", "model: {encoder: vgg16}")
    result = layout.snakemake("-n", "results/edits/obama12_exp")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "vgg16" in text and "encoder" in text, text


def test_unknown_config_key_is_reported(layout: Layout) -> None:
    """A stage section holds that stage's flags only: a misspelt key stops the run instead of being ignored."""
    layout.replace_in("config/config.yaml", "extract:\n  batch_size: 32", "extract:\n  batch_size: 32\n  batchsize: 8")
    result = layout.snakemake("-n", "results/edits/obama12_exp")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "batchsize" in text, text


def test_demo_photos_come_from_a_rule_not_from_planning(layout: Layout) -> None:
    """With the demo config, a dry run plans the demo_album checkpoint before both albums' alignment and
    writes no photo (they were made while Snakemake parsed the workflow before)."""
    result = layout.snakemake("-n", "-p", "--configfile=config/demo/config.yaml")
    jobs = planned_jobs(result)
    assert jobs["demo_album"] == 1 and jobs["align"] == 2
    assert jobs["align_target"] == 2  # the target photo and the driving frames (the yaw sweep has no target)
    assert "demo-album --out resources/demo/album --kind personal --n 12 --seed 0" in result.stdout
    assert "--frames resources/demo/frames --n-frames 4" in result.stdout
    assert not (layout.root / "resources").exists()


def test_missing_required_column_is_reported(layout: Layout, monkeypatch) -> None:
    from snakemake.exceptions import WorkflowError

    sheet = layout.sheet("albums.tsv")
    lines = sheet.read_text().splitlines()
    header = lines[0].split("\t")
    drop = header.index("role")
    sheet.write_text("\n".join("\t".join(c for j, c in enumerate(l.split("\t")) if j != drop) for l in lines) + "\n")
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    assert "config/albums.tsv, row 1, column 'role'" in str(info.value)


def _params_blocks(text: str) -> list[str]:
    """The `params:` blocks of a rules file: the indented lines after `params:` up to the next directive."""
    blocks = []
    for match in re.finditer(r"^(\s+)params:\n((?:\1\s+.*\n)+)", text, flags=re.M):
        blocks.append(match.group(2))
    return blocks


def test_no_params_function_reads_input_or_output() -> None:
    """Snakemake leaves params computed from ``input``/``output`` out of its params-changed check: such a
    param (say, a seed from the sheet) could change without rerunning the rule. Every params function must
    take the wildcards only."""
    sources = {p.name: p.read_text() for p in (REPO / "workflow").rglob("*.smk")}
    sources["Snakefile"] = (REPO / "workflow/Snakefile").read_text()
    signatures = {}
    for text in sources.values():
        for name, args in re.findall(r"^def (\w+)\(([^)]*)\)", text, flags=re.M):
            signatures[name] = [a.split(":")[0].split("=")[0].strip() for a in args.split(",") if a.strip()]
    checked = 0
    for file, text in sources.items():
        for block in _params_blocks(text):
            for key, value in re.findall(r"^\s+(\w+)=(.+?),?$", block, flags=re.M):
                lam = re.match(r"lambda ([^:]*):", value)
                used = [a.strip() for a in lam.group(1).split(",")] if lam else signatures.get(value.strip(), [])
                assert not {"input", "output"} & set(used), f"{file}: params {key}={value} reads input/output"
                checked += 1
    assert checked > 10, f"only {checked} params found: the parser no longer matches the rules files"


def _load_albums(layout: Layout, monkeypatch) -> dict[str, dict]:
    monkeypatch.chdir(layout.root)
    monkeypatch.syspath_prepend(str(REPO / "workflow"))
    import sheets

    return sheets.load_sheet("config/albums.tsv", REPO / "workflow" / "schemas" / "albums.schema.yaml", "album")


def test_rows_are_numbered_by_file_line_past_blank_and_comment_lines(layout: Layout, monkeypatch) -> None:
    """A blank line or a `#` comment line between rows is skipped but still counted: an error names the
    line the user sees in the editor, not the row's index among the data rows."""
    from snakemake.exceptions import WorkflowError

    with layout.sheet("albums.tsv").open("a", encoding="utf-8") as fh:
        fh.write("\n# people\n\t\t\n")  # blank, comment, a row of empty cells (all skipped): lines 5-7
    layout.append_row("albums.tsv", ["bob", "data/bob", "personal", "false", "true", "ffhq_affectnet", "", ""])
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    assert "config/albums.tsv, row 8, column 'path'" in str(info.value), str(info.value)


def test_a_hash_inside_a_cell_is_text_not_a_comment(layout: Layout, monkeypatch) -> None:
    """Only a line starting with `#` is a comment: `#` inside a path or description keeps the rest of the row."""
    layout.add_album("data/shoot #2")
    layout.append_row("albums.tsv", ["bob", "data/shoot #2", "personal", "false", "true", "ffhq_affectnet", "fan",
                                     "take #2 of the shoot"])
    albums = _load_albums(layout, monkeypatch)
    assert albums["bob"]["path"] == "data/shoot #2"
    assert albums["bob"]["backend"] == "fan" and albums["bob"]["description"] == "take #2 of the shoot"
    assert albums["bob"]["_line"] == 5


def test_windows_line_endings_a_bom_and_trailing_tabs_read_like_a_plain_sheet(layout: Layout, monkeypatch) -> None:
    """What a spreadsheet's "save as tab-separated text" writes: CRLF, a UTF-8 byte-order mark, empty
    cells past the last column."""
    sheet = layout.sheet("albums.tsv")
    lines = sheet.read_text(encoding="utf-8").splitlines()
    sheet.write_bytes(("\ufeff" + "\r\n".join(line + "\t\t" for line in lines) + "\r\n").encode("utf-8"))
    albums = _load_albums(layout, monkeypatch)
    assert sorted(albums) == ["affectnet", "ffhq", "obama"]
    assert albums["obama"]["prior"] == "ffhq_affectnet" and albums["obama"]["_line"] == 4


@pytest.mark.parametrize(
    "change, fragments",
    [
        pytest.param(lambda text: text + "bob\tdata/obama\tpersonal\tfalse\ttrue\tffhq_affectnet\tfan\tx\textra\n",
                     ["config/albums.tsv, row 5", "9 cells but the header has 8 columns"], id="too-many-cells"),
        pytest.param(lambda text: text.replace("backend", "backnd", 1),
                     ["config/albums.tsv, row 1, column 'backnd'", "unknown column 'backnd'"], id="misspelt-column"),
        pytest.param(lambda text: text.replace("description", "prior", 1),
                     ["config/albums.tsv, row 1, column 'prior'", "column 'prior' appears twice"],
                     id="duplicate-column"),
        pytest.param(lambda text: text.replace("personal album", "pérsonal album"),
                     ["config/albums.tsv", "is not UTF-8 text"], id="not-utf8"),
    ],
)
def test_malformed_sheets_stop_with_file_row_and_column(layout: Layout, monkeypatch, change, fragments) -> None:
    """Rows longer than the header, unknown or repeated header names (a misspelt optional column would be
    ignored: `backnd` would silently fall back to the config's back-end) and non-UTF-8 files stop with the
    sheet and row, like any bad cell."""
    from snakemake.exceptions import WorkflowError

    sheet = layout.sheet("albums.tsv")
    text = change(sheet.read_text(encoding="utf-8"))
    sheet.write_bytes(text.encode("latin-1" if "pérsonal" in text else "utf-8"))
    with pytest.raises(WorkflowError) as info:
        _load_albums(layout, monkeypatch)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)




@pytest.mark.parametrize(
    "column, album_folder, photo, target, modes, fragment",
    [
        ("path", "data/shoot {2}", "", "data/targets/obama_12.png", "exp", "album folder 'data/shoot {2}'"),
        ("path", "data/shoot", "img {1}.png", "data/targets/obama_12.png", "exp", "photo 'data/shoot/img {1}.png'"),
        ("target", "data/shoot", "", "data/targets/smile {a}.png", "exp", "target 'data/targets/smile {a}.png'"),
        ("modes", "data/shoot", "", "data/targets/obama_12.png", "exp+light:from=data/lamp {b}.jpg",
         "reference photo 'data/lamp {b}.jpg'"),
    ],
    ids=["album-folder", "album-photo", "target", "reference"],
)
def test_braces_in_sheet_paths_stop_with_file_row_and_column(layout: Layout, monkeypatch, column, album_folder,
                                                             photo, target, modes, fragment) -> None:
    """Snakemake reads `{...}` in an input path as a wildcard, with no way to escape it: a folder or photo named
    `shoot {2}` used to stop the DAG with a bare "WildcardError ... '2'". The sheet check names it instead."""
    from PIL import Image
    from snakemake.exceptions import WorkflowError

    layout.add_album(album_folder)
    for name in [f"{album_folder}/{photo}" if photo else "", "data/targets/smile {a}.png", "data/lamp {b}.jpg"]:
        if name:
            Image.new("RGB", (8, 8)).save(layout.root / name)
    layout.append_row("albums.tsv", ["bob", album_folder, "personal", "false", "true", "ffhq_affectnet", "", ""])
    layout.append_row("edits.tsv", ["bob_e", "bob", target, "false", modes, "deca", "emoca", "0", "noise", ""])
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    sheet, row = ("albums.tsv", 5) if column == "path" else ("edits.tsv", 3)
    for expected in (f"config/{sheet}, row {row}, column '{column}'", fragment, "rename"):
        assert expected in str(info.value), str(info.value)
    if column == "target":  # the same message stops a real run (not Snakemake's WildcardError)
        result = layout.snakemake("-n", "results/edits/bob_e")
        text = result.stdout + result.stderr
        assert result.returncode != 0 and fragment in text and "WildcardError" not in text, text


def test_braces_in_the_official_checkpoint_path_are_named(layout: Layout, monkeypatch) -> None:
    from snakemake.exceptions import WorkflowError

    layout.replace_in("config/config.yaml", 'official_checkpoint: ""', 'official_checkpoint: "ckpt/model_{1}.pt"')
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    assert "config stage1.priors.ffhq_affectnet.official_checkpoint 'ckpt/model_{1}.pt'" in str(info.value)


def test_sources_must_name_photos_of_the_album(layout: Layout, monkeypatch) -> None:
    """A misspelt stem in `sources` stops at start-up, not in `dre edit` after stage 2 has trained; the names
    align gives a second face (`img_01_1`) or a second photo with one stem (`img_00.jpg`) pass."""
    from snakemake.exceptions import WorkflowError

    sheet = layout.sheet("edits.tsv")
    sheet.write_text("\n".join(line + "\t" + ("sources" if i == 0 else "")
                               for i, line in enumerate(sheet.read_text().splitlines())) + "\n")
    layout.append_row("edits.tsv", ["ok", "obama", "", "false", "pose:yaw=10", "deca", "deca", "0", "noise", "",
                                    "img_00,img_01_1,img_00.jpg"])
    check_sheets_in_process(layout, monkeypatch)
    layout.append_row("edits.tsv", ["typo", "obama", "", "false", "pose:yaw=10", "deca", "deca", "0", "noise", "",
                                    "img_00,img_0l"])
    with pytest.raises(WorkflowError) as info:
        check_sheets_in_process(layout, monkeypatch)
    for fragment in ("config/edits.tsv, row 4, column 'sources'", "no photo 'img_0l' in album 'obama'",
                     "img_00, img_01"):
        assert fragment in str(info.value), str(info.value)


def test_sources_may_name_any_photo_stem(layout: Layout) -> None:
    """Photo names as cameras and downloads make them (`IMG 0001 (1).jpg`, `été.jpg`) can be listed in `sources`,
    with spaces after the commas; they reach `dre edit` as one quoted word."""
    from PIL import Image

    for name in ("IMG 0001 (1).jpg", "été.jpg"):
        Image.new("RGB", (8, 8)).save(layout.root / "data" / "obama" / name)
    sheet = layout.sheet("edits.tsv")
    sheet.write_text("\n".join(line + "\t" + ("sources" if i == 0 else "")
                               for i, line in enumerate(sheet.read_text().splitlines())) + "\n")
    layout.append_row("edits.tsv", ["picked", "obama", "", "false", "pose:yaw=10", "deca", "deca", "0", "noise", "",
                                    "IMG 0001 (1), été,img_00"])
    result = layout.snakemake("-n", "-p", "results/edits/picked")
    assert planned_jobs(result)["edit"] == 1
    assert "--source-stems 'IMG 0001 (1), été,img_00'" in result.stdout


def test_a_reference_may_be_a_photo_the_demo_makes(layout: Layout) -> None:
    """Like a target, a rig term's photo may be one a rule writes (the demo's target.jpg): the dry run plans
    demo_album before aligning it instead of stopping with "reference photo ... does not exist"."""
    layout.append_row("demo/edits.tsv", ["demo_lamp", "demo", "", "false", "light:from=resources/demo/target.jpg",
                                         "deca", "deca", "0", "inversion", "the demo target's light", "astronaut_000"])
    result = layout.snakemake("-n", "-p", "--configfile=config/demo/config.yaml", "results/edits/demo_lamp")
    jobs = planned_jobs(result)
    assert jobs["demo_album"] == 1 and jobs["align_reference"] == 1 and jobs["edit"] == 1
    assert "--input resources/demo/target.jpg --output results/references/demo_lamp/ref0" in result.stdout


def test_dot_slash_and_trailing_slash_paths_find_the_rule_that_writes_them(layout: Layout) -> None:
    """`./resources/demo/target.jpg` in a sheet is the demo_album checkpoint's output: Snakemake matches inputs to
    outputs by the plain relative path, so the workflow hands it `resources/demo/target.jpg` (it stopped with a
    MissingInputException). The command keeps the path as written: no params change for an existing project."""
    sheet = layout.sheet("demo/edits.tsv")
    text = sheet.read_text()
    sheet.write_text(text.replace("\tresources/demo/target.jpg\t", "\t./resources/demo/target.jpg\t", 1)
                     .replace("\tresources/demo/frames\t", "\tresources/demo/frames/\t", 1))
    result = layout.snakemake("-n", "-p", "--configfile=config/demo/config.yaml", "results/edits/demo_exp",
                              "results/edits/demo_drive")
    jobs = planned_jobs(result)
    assert jobs["demo_album"] == 1 and jobs["align_target"] == 2
    assert "input: resources/demo/target.jpg\n" in result.stdout and "input: resources/demo/frames\n" in result.stdout
    assert "--input ./resources/demo/target.jpg --output results/targets/demo_exp" in result.stdout
    assert "starts with './'" not in result.stdout + result.stderr
