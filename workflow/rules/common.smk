"""Sheets, validation and path helpers shared by every rule file.

Config flows one way: config/config.yaml + the two sheets are validated here (the schema fills in every
default), and the rules turn the values into `dre` CLI flags. A stage's config section holds that stage's
flags by name (key `batch_size` = flag `--batch-size`), so `stage_flags` passes a section on unchanged; no
`dre` module reads the config itself.
"""

import math
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from sheets import (  # noqa: E402  (workflow/sheets.py: testable on its own)
    check_cross_references, load_sheet, sheet_references, whole_numbers_to_int,
)

SCHEMAS = Path(workflow.basedir) / "schemas"
DRE_ROOT = Path(workflow.basedir).resolve().parent  # this checkout (its `dre` package)
sys.path.insert(0, str(DRE_ROOT))
from dre.utils.cliconfig import to_flags  # noqa: E402  (standard library only: no engine dependencies)
from dre.launch import JobShape, keep_attempt_log, launch_command, slurm_resources  # noqa: E402  (likewise)
from dre.utils.images import is_video_name, list_images  # noqa: E402  (the suffixes `dre` reads: one list)
from dre.edit.modes import parse_modes  # noqa: E402  (parsing only: no torch)
from dre.assets.catalog import EXTRACTORS  # noqa: E402  (deca, emoca: the one list)

validate(config, schema=str(SCHEMAS / "config.schema.yaml"))
whole_numbers_to_int(config, SCHEMAS / "config.schema.yaml")  # `max_steps: 5.0e+4` is --max-steps 50000

NEVER = "(?!x)x"  # a wildcard constraint that matches nothing (an empty alternative list)
WORKFLOW_KEYS = ("priors",)  # keys of the stage1/stage2 sections that are not `dre train` flags

# `demo:` in the config: the demo's photos are outputs of the checkpoint demo_album (demo.smk), so the sheets
# may name them before they exist (album_images waits for the checkpoint).
DEMO_PHOTOS = (
    {
        "personal": Path(config["demo"]["root"]) / "album",
        "prior": Path(config["demo"]["root"]) / "prior",
        "target": Path(config["demo"]["root"]) / "target.jpg",
        "frames": Path(config["demo"]["root"]) / "frames",
    }
    if config.get("demo")
    else {}
)

ALBUMS = load_sheet(config["albums"], SCHEMAS / "albums.schema.yaml", "album")
EDITS = load_sheet(config["edits"], SCHEMAS / "edits.schema.yaml", "edit")
PRIORS = config["stage1"]["priors"]
check_cross_references(config, ALBUMS, EDITS, made_by_rules=frozenset(DEMO_PHOTOS.values()))

# Reference photos a row's rig terms read besides its target (`light:from=lamp.jpg`): each is aligned by
# align_reference into results/references/<edit>/refK, and the edit reads that folder in its place.
REFERENCES = {
    edit: {ref: f"results/references/{edit}/ref{k}" for k, ref in enumerate(sheet_references(parse_modes(row["modes"])))}
    for edit, row in EDITS.items()
}


def _alternatives(names):
    return "|".join(sorted(names)) or NEVER


# Every job runs this checkout's `dre` package (`python -m dre`) with the environment's Python; the same
# command works in the project's own venv and in the per-rule conda envs (which hold the dependencies, not
# the package). The checkout goes on PYTHONPATH through the shell prefix, so moving the checkout is not a
# parameter change that would rerun everything.
# (The prefix is format()ted like a shell command, hence the doubled braces.) The Snakefile applies it.
_root = shlex.quote(str(DRE_ROOT)).replace("{", "{{").replace("}", "}}")
SHELL_PREFIX = f"set -euo pipefail; export PYTHONPATH={_root}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "


# ---------------------------------------------------------------------------------------------- paths
def as_input(path):
    """A path from a sheet or the config as an input file: `./x.jpg` and `x/` become `x.jpg` and `x`, because
    Snakemake finds the rule that writes an input by its plain relative path (`./resources/demo/target.jpg`
    is not the demo_album checkpoint's output, a missing input). Params keep the path as written, so an
    existing project sees no params change."""
    return str(Path(path))


def stage_flags(section, **values):
    """`dre` flags (one shell-quoted string) of a config section, with ``values`` added or overriding."""
    return shlex.join(to_flags({**section, **values}, skip=WORKFLOW_KEYS))


def album_images(wildcards):
    """The album's image files: inputs of its align rule, so changing one photo reruns its chain.

    (Snakemake 9 reruns on a newer input only when its checksum changed too: a bare `touch` is no change.)
    The demo's folders are written by the checkpoint demo_album: until it has run, asking for it makes its
    outputs this rule's inputs, and Snakemake asks again (and lists the photos) once it has.
    """
    folder = Path(ALBUMS[wildcards.album]["path"])
    if folder in DEMO_PHOTOS.values():
        checkpoints.demo_album.get()
    return [str(p) for p in list_images(folder)]


def album_backend(album):
    """The album's landmark back-end: its sheet column, else the config's `align.backend`."""
    return ALBUMS[album].get("backend") or config["align"]["backend"]


def album_align_flags(wildcards):
    """`dre align` settings for one album: the config's, with the sheet's back-end and "already aligned"
    (an already aligned album, e.g. FFHQ, is only indexed: landmarks detected, nothing warped)."""
    row = ALBUMS[wildcards.album]
    return stage_flags(config["align"], backend=album_backend(wildcards.album), already_aligned=row["aligned"])


def target_source(wildcards):
    """What align_target aligns: the sheet's target (a photo or a folder of frames), or for a video file
    the frames `dre video-frames` decoded from it (rule video_frames)."""
    target = EDITS[wildcards.edit]["target"]
    return f"results/frames/{wildcards.edit}" if is_video_name(target) else target


def target_input(wildcards):
    """target_source as an input file (as_input)."""
    return as_input(target_source(wildcards))


def target_align_flags(wildcards):
    """An edit's target: aligned like its album's photos (or indexed when the sheet says it is aligned)."""
    row = EDITS[wildcards.edit]
    return stage_flags(
        config["align"], backend=album_backend(row["album"]), multi_face="largest",
        already_aligned=row["target_aligned"],
    )


def reference_photo(wildcards):
    """The photo behind results/references/<edit>/<ref>."""
    return {folder: ref for ref, folder in REFERENCES[wildcards.edit].items()}[
        f"results/references/{wildcards.edit}/{wildcards.ref}"
    ]


def reference_input(wildcards):
    """reference_photo as an input file (as_input)."""
    return as_input(reference_photo(wildcards))


def reference_align_flags(wildcards):
    """A reference photo is aligned like the edit's target (largest face), never taken as already aligned."""
    album = EDITS[wildcards.edit]["album"]
    return stage_flags(config["align"], backend=album_backend(album), multi_face="largest", already_aligned=False)


def edit_modes(edit):
    """The row's modes with each reference photo replaced by its aligned folder (what `dre edit` reads)."""
    text = EDITS[edit]["modes"]
    for ref, folder in REFERENCES[edit].items():
        pattern = rf"((?:from|towards)\s*=\s*){re.escape(ref)}(?=\s*(?:$|[,+]))"
        text = re.sub(pattern, lambda m: m.group(1) + folder, text, flags=re.IGNORECASE)
    return text


def prior_lmdbs(wildcards):
    return [f"results/lmdb/{a}.{wildcards.extractor}.lmdb" for a in PRIORS[wildcards.prior]["albums"]]


def prior_lmdb_flags(wildcards):
    """The prior's LMDBs and sampling weights as flags. Built from the wildcards, not from ``input``:
    Snakemake leaves params that read ``input``/``output`` out of its params-changed rerun check, so a
    changed weight would not retrain stage 1."""
    flags = " ".join(f"--lmdb {shlex.quote(p)}" for p in prior_lmdbs(wildcards))
    weights = PRIORS[wildcards.prior]["weights"]
    if weights:
        flags += " --weights " + ",".join(str(w) for w in weights)
    return flags


def stage1_model(wildcards):
    """Stage-2 initialisation: our stage-1 model, or the configured official DiffusionRig checkpoint."""
    prior = ALBUMS[wildcards.album]["prior"]
    official = PRIORS[prior]["official_checkpoint"]
    if official:
        return as_input(official)
    return f"results/models/stage1/{prior}.{wildcards.extractor}/model.pt"


def pack_flags(wildcards):
    """`dre pack` settings: the config's `pack:` section, the aligned size and the album's mean-shape column."""
    return stage_flags(config["pack"], size=config["align"]["size"], mean_shape=ALBUMS[wildcards.album]["mean_shape"])


def edit_inputs(wildcards):
    """The model, album and codes of an edit, and its aligned target (a photo or a folder of frames) when
    the row names one (parametric-only rows have none)."""
    row = EDITS[wildcards.edit]
    album, ext = row["album"], row["source_extractor"]
    inputs = {
        "model": f"results/models/stage2/{album}.{ext}/model.pt",
        "aligned": f"results/aligned/{album}",
        "codes": f"results/codes/{album}.{ext}.parquet",
        "lmdb": f"results/lmdb/{album}.{ext}.lmdb",
    }
    if row.get("target"):
        inputs["target"] = f"results/targets/{wildcards.edit}"
    if REFERENCES[wildcards.edit]:
        inputs["references"] = list(REFERENCES[wildcards.edit].values())
    return inputs


def edit_flags(wildcards):
    """Every `dre edit` flag but the model, album and output paths: the edit's sheet row (target, modes,
    sources, extractors, seed, init), the config's `edit:` settings and `emoca_model`, the album's mean
    shape when the sheet asks for it, and the `score:` settings (the edit scores its own pictures).

    Takes only the wildcards: Snakemake leaves params that read ``input``/``output`` out of its
    params-changed rerun check, so a changed seed in the sheet would not rerun the edit."""
    row = EDITS[wildcards.edit]
    values = dict(
        modes=edit_modes(wildcards.edit),
        source_extractor=row["source_extractor"],
        target_extractor=row["target_extractor"],
        emoca_model=config["emoca_model"],
        init=row["init"],
        seed=row["seed"],
    )
    if row.get("target"):
        values["target"] = edit_inputs(wildcards)["target"]
    if row.get("sources"):
        values["source_stems"] = row["sources"]
    flags = stage_flags(config["edit"], **values)
    if ALBUMS[row["album"]]["mean_shape"]:
        lmdb = edit_inputs(wildcards)["lmdb"]
        flags += f" --mean-shape {shlex.quote(str(Path(lmdb) / 'mean_shape.npy'))}"
    return f"{flags} {stage_flags(config['score'])}"


def score_flags(wildcards):
    """`dre score` flags but the paths: the config's `score:` settings, the edit's batch size and device."""
    return stage_flags(config["score"], batch_size=config["edit"]["batch_size"], device=config["edit"]["device"],
                       emoca_model=config["emoca_model"])


def train_flags(stage):
    """Every `dre train` setting of one stage: the model and diffusion sections, then the stage's section."""
    return " ".join(stage_flags(config[s]) for s in ("model", "diffusion", f"stage{stage}"))


def job_shape(stage):
    """Nodes × processes per node (and the launcher) of one stage's training job, from its config section."""
    section = config[f"stage{stage}"]
    return JobShape(int(section["nodes"]), int(section["processes"]), section["launcher"])


def launcher(stage):
    """The words that start `dre` once per rank (dre/launch.py): python, torchrun, srun or mpiexec."""
    return launch_command(job_shape(stage))


def train_resources(stage):
    """SLURM resources of one stage's job: GPUs (per node), nodes and tasks (dre/launch.py says why)."""
    return slurm_resources(job_shape(stage))


def train_runtime(stage):
    """Minutes of wall time to ask for: a rough guess from the step count (override in the profile)."""
    steps = int(config[f"stage{stage}"]["max_steps"])
    return max(30, math.ceil(steps / 1000) * 30)


def final_edits():
    return [f"results/edits/{e}" for e in sorted(EDITS)]


def report_targets(edit):
    """The report's figures and tables behind one edit (rules in report.smk).

    The stage-2 loss curve of its album, the stage-1 curve of the album's prior (none when an official
    checkpoint replaces stage 1), and counts by status of the alignment and extraction of every album the
    edit was trained on, plus its target's and reference photos' alignment, and the edit's scores (table
    and scatter).
    """
    row = EDITS[edit]
    album, ext = row["album"], row["source_extractor"]
    prior = ALBUMS[album]["prior"]
    albums = [album]
    targets = [f"results/report/loss/stage2/{album}.{ext}.png"]
    if row.get("target"):
        targets.append(f"results/report/align_target/{edit}.tsv")
    targets += [f"results/report/align_reference/{edit}.{Path(f).name}.tsv" for f in REFERENCES[edit].values()]
    if not PRIORS[prior]["official_checkpoint"]:
        targets.append(f"results/report/loss/stage1/{prior}.{ext}.png")
        albums += [a for a in PRIORS[prior]["albums"] if a not in albums]
    for a in albums:
        targets += [f"results/report/align/{a}.tsv", f"results/report/extract/{a}.{ext}.tsv"]
    targets += [f"results/report/scores/{edit}.tsv", f"results/report/scores/{edit}.png"]
    return targets


def all_report_targets():
    return sorted({t for e in EDITS for t in report_targets(e)})


def demo_assets_input(wildcards):
    """With `demo:` the synthetic assets folder is a rule output (rule demo_assets), so jobs wait for it."""
    return config["assets"] if config.get("demo") else []
