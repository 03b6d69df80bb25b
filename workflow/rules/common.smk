"""Sheets, validation and path helpers shared by every rule file.

Config flows one way: config/config.yaml + the two sheets are validated here, and the rules turn the
values into `dre` CLI flags. No `dre` module reads the config itself.
"""

import math
import shlex
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from snakemake.utils import validate

SCHEMAS = Path(workflow.basedir) / "schemas"
validate(config, schema=str(SCHEMAS / "config.schema.yaml"))

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXTRACTORS = ("deca", "emoca")
NEVER = "(?!x)x"  # a wildcard constraint that matches nothing (an empty alternative list)
TRUE_WORDS = {"true", "yes", "y", "1", "t"}
FALSE_WORDS = {"false", "no", "n", "0", "f"}


def _coerce(value, kind):
    """Turn a TSV cell into the schema's type; leave it as text when it does not parse (the schema says why)."""
    text = value.strip()
    if kind == "boolean":
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def _sheet_error(sheet_path, line, column, message):
    where = f"{sheet_path}, row {line}" + (f", column '{column}'" if column else "")
    return WorkflowError(f"Invalid sheet {where}: {message}")


def load_sheet(sheet_path, schema_path, key):
    """Read a TSV sheet, coerce types, validate every row; errors name file, row (file line) and column."""
    import yaml

    if not Path(sheet_path).is_file():
        raise WorkflowError(f"Sheet {sheet_path} (named in the config) does not exist")
    schema = yaml.safe_load(Path(schema_path).read_text())
    props = schema.get("properties", {})
    table = pd.read_csv(sheet_path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    missing = [c for c in schema.get("required", []) if c not in table.columns]
    if missing:
        raise _sheet_error(sheet_path, 1, missing[0], f"required column '{missing[0]}' is missing (header row)")
    # jsonschema directly (snakemake.utils.validate checks the config): its error carries the column.
    row_validator = Draft202012Validator(schema)
    rows = []
    for i, record in enumerate(table.to_dict("records")):
        line = i + 2  # header is line 1
        row = {}
        for col, val in record.items():
            kind = props.get(col, {}).get("type")
            if val.strip() == "" and col not in schema.get("required", []):
                continue
            row[col] = _coerce(val, kind)
        error = best_match(row_validator.iter_errors(row))
        if error is not None:
            path = list(error.absolute_path)
            column = str(path[0]) if path else None
            if column is None and error.validator == "required":
                column = str(error.message).split("'")[1]
            raise _sheet_error(sheet_path, line, column, error.message)
        row["_line"] = line
        rows.append(row)
    seen = {}
    for row in rows:
        name = row[key]
        if name in seen:
            raise _sheet_error(
                sheet_path, row["_line"], key, f"duplicate {key} '{name}' (first defined on row {seen[name]})"
            )
        seen[name] = row["_line"]
    return {row[key]: row for row in rows}


def prepare_demo_inputs():
    """`demo:` in the config: make the demo photos (album, prior, target) before the sheets are checked.

    They must exist at parse time (the sheets' folders are checked and listed then); `prepare_demo` is
    idempotent and leaves an existing, identical demo untouched, so file times and reruns stay stable.
    """
    demo = config.get("demo")
    if not demo:
        return
    import sys

    sys.path.insert(0, str(Path(workflow.basedir).resolve().parent))  # this checkout's dre
    from dre.demo import prepare_demo

    prepare_demo(demo["root"], n=demo.get("n", 12), n_prior=demo.get("n_prior", 24), seed=demo.get("seed", 0))


prepare_demo_inputs()

ALBUMS = load_sheet(config["albums"], SCHEMAS / "albums.schema.yaml", "album")
EDITS = load_sheet(config["edits"], SCHEMAS / "edits.schema.yaml", "edit")
PRIORS = config["stage1"]["priors"]


def _check_cross_references():
    """Checks a JSON schema cannot express: references between sheets and the config, existing folders."""
    sheet = config["albums"]
    for name, row in ALBUMS.items():
        if not Path(row["path"]).is_dir():
            raise _sheet_error(sheet, row["_line"], "path", f"album folder '{row['path']}' does not exist")
        if row["role"] == "personal":
            prior = row.get("prior", "")
            if not prior:
                raise _sheet_error(sheet, row["_line"], "prior", "a personal album needs a stage-1 prior")
            if prior not in PRIORS:
                raise _sheet_error(
                    sheet, row["_line"], "prior",
                    f"unknown prior '{prior}' (config stage1.priors has: {', '.join(sorted(PRIORS))})",
                )
    used = {row.get("prior") for row in ALBUMS.values() if row["role"] == "personal"}
    for prior, spec in PRIORS.items():
        if prior not in used:  # e.g. the default config's prior when a --configfile adds its own
            continue
        weights = spec.get("weights", [])
        if weights and len(weights) != len(spec["albums"]):
            raise WorkflowError(
                f"config stage1.priors.{prior}: {len(weights)} weights for {len(spec['albums'])} albums"
            )
        if spec.get("official_checkpoint"):
            continue
        for album in spec["albums"]:
            if album not in ALBUMS:
                raise WorkflowError(f"config stage1.priors.{prior}: album '{album}' is not a row of {sheet}")
            if ALBUMS[album]["role"] != "prior":
                raise WorkflowError(
                    f"config stage1.priors.{prior}: album '{album}' has role '{ALBUMS[album]['role']}' "
                    f"in {sheet}; only role 'prior' albums train stage 1"
                )
    esheet = config["edits"]
    for name, row in EDITS.items():
        album = row["album"]
        if album not in ALBUMS:
            raise _sheet_error(
                esheet, row["_line"], "album",
                f"unknown album '{album}' (rows of {sheet}: {', '.join(sorted(ALBUMS))})",
            )
        if ALBUMS[album]["role"] != "personal":
            raise _sheet_error(esheet, row["_line"], "album", f"album '{album}' is not a personal album")
        if not Path(row["target"]).is_file():
            raise _sheet_error(esheet, row["_line"], "target", f"target image '{row['target']}' does not exist")


_check_cross_references()


def _alternatives(names):
    return "|".join(sorted(names)) or NEVER


# Every job runs this checkout's `dre` package (`python -m dre`) with the environment's Python; the same
# command works in the project's own venv and in the per-rule conda envs (which hold the dependencies, not
# the package). The checkout goes on PYTHONPATH through the shell prefix, so moving the checkout is not a
# parameter change that would rerun everything.
DRE_ROOT = Path(workflow.basedir).resolve().parent
# (The prefix is format()ted like a shell command, hence the doubled braces.) The Snakefile applies it.
_root = shlex.quote(str(DRE_ROOT)).replace("{", "{{").replace("}", "}}")
SHELL_PREFIX = f"set -euo pipefail; export PYTHONPATH={_root}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "


RAW_ALBUMS = [a for a, r in ALBUMS.items() if not r["aligned"]]
PREALIGNED_ALBUMS = [a for a, r in ALBUMS.items() if r["aligned"]]


# ---------------------------------------------------------------------------------------------- paths
def album_images(wildcards):
    """The album's image files: inputs of its align rule, so touching one photo reruns its chain."""
    folder = Path(ALBUMS[wildcards.album]["path"])
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def album_backend(wildcards):
    return ALBUMS[wildcards.album].get("backend") or config["align"]["backend"]


def prior_lmdbs(wildcards):
    return [f"results/lmdb/{a}.{wildcards.extractor}.lmdb" for a in PRIORS[wildcards.prior]["albums"]]


def prior_lmdb_flags(wildcards, input):
    flags = " ".join(f"--lmdb {shlex.quote(p)}" for p in input.lmdbs)
    weights = PRIORS[wildcards.prior].get("weights", [])
    if weights:
        flags += " --weights " + ",".join(str(w) for w in weights)
    return flags


def stage1_model(wildcards):
    """Stage-2 initialisation: our stage-1 model, or the configured official DiffusionRig checkpoint."""
    prior = ALBUMS[wildcards.album]["prior"]
    official = PRIORS[prior].get("official_checkpoint", "")
    if official:
        return official
    return f"results/models/stage1/{prior}.{wildcards.extractor}/model.pt"


def album_mean_shape_flag(wildcards):
    return "--mean-shape" if ALBUMS[wildcards.album]["mean_shape"] else ""


def edit_row(wildcards):
    return EDITS[wildcards.edit]


def edit_inputs(wildcards):
    row = EDITS[wildcards.edit]
    album, ext = row["album"], row["source_extractor"]
    return {
        "model": f"results/models/stage2/{album}.{ext}/model.pt",
        "aligned": f"results/aligned/{album}",
        "codes": f"results/codes/{album}.{ext}.parquet",
        "lmdb": f"results/lmdb/{album}.{ext}.lmdb",
        "target": f"results/targets/{wildcards.edit}",
    }


def edit_mean_shape_flag(wildcards, input):
    row = EDITS[wildcards.edit]
    if ALBUMS[row["album"]]["mean_shape"]:
        return f"--mean-shape {shlex.quote(str(Path(input.lmdb) / 'mean_shape.npy'))}"
    return ""


def model_flags():
    """`dre train` architecture and diffusion flags from the config's model/diffusion sections."""
    m, d = config["model"], config["diffusion"]
    csv = lambda xs: ",".join(str(x) for x in xs)
    return (
        f"--image-size {m['image_size']} --model-channels {m['model_channels']} "
        f"--channel-mult '{csv(m.get('channel_mult', []))}' --num-res-blocks {m['num_res_blocks']} "
        f"--attention-resolutions '{csv(m.get('attention_resolutions', [16]))}' "
        f"--num-heads {m.get('num_heads', 1)} --num-head-channels {m.get('num_head_channels', -1)} "
        f"--dropout {m.get('dropout', 0.1)} --latent-dim {m['latent_dim']} --encoder {m['encoder']} "
        f"--diffusion-steps {d['steps']} --noise-schedule {d['schedule']} "
        f"--p2-gamma {d.get('p2_gamma', 1.0)} --p2-k {d.get('p2_k', 1.0)}"
    )


def train_flags(stage):
    """`dre train` optimisation flags for one stage's config section."""
    s = config[f"stage{stage}"]
    return (
        f"--lr {s['lr']} --batch-size {s['batch_size']} --max-steps {s['max_steps']} "
        f"--save-every {s['save_every']} --sample-every {s.get('sample_every', 0)} "
        f"--warmup-steps {s.get('warmup_steps', 0)} --weight-decay {s.get('weight_decay', 0.0)} "
        f"--grad-clip {s.get('grad_clip', 1.0)} --ema {s.get('ema', 0.0)} "
        f"--precision {s.get('precision', 'auto')} --num-workers {s.get('num_workers', 0)} "
        f"--seed {s.get('seed', 0)}"
    )


def launcher(stage):
    """Single process, or torchrun for several GPUs on one node (srun/mpiexec users: see README)."""
    n = int(config[f"stage{stage}"].get("processes", 1))
    if n <= 1:
        return "python -m dre"
    return f"torchrun --standalone --nproc_per_node {n} -m dre"


def train_gpus(stage):
    return int(config[f"stage{stage}"].get("processes", 1))


def train_runtime(stage):
    """Minutes of wall time to ask for: a rough guess from the step count (override in the profile)."""
    steps = int(config[f"stage{stage}"]["max_steps"])
    return max(30, math.ceil(steps / 1000) * 30)


def final_edits():
    return [f"results/edits/{e}" for e in sorted(EDITS)]


def demo_assets_input(wildcards):
    """With `demo:` the synthetic assets folder is a rule output (rule demo_assets), so jobs wait for it."""
    return config["assets"] if config.get("demo") else []
