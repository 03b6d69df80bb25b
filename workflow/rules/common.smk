"""Sheets, validation and path helpers shared by every rule file.

Config flows one way: config/config.yaml + the two sheets are validated here, and the rules turn the
values into `dre` CLI flags. No `dre` module reads the config itself.
"""

import math
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from sheets import check_cross_references, load_sheet  # noqa: E402  (workflow/sheets.py: testable on its own)

SCHEMAS = Path(workflow.basedir) / "schemas"
DRE_ROOT = Path(workflow.basedir).resolve().parent  # this checkout (its `dre` package)
sys.path.insert(0, str(DRE_ROOT))
from dre.utils.images import list_images  # noqa: E402  (the photo suffixes `dre align` reads: one list)

validate(config, schema=str(SCHEMAS / "config.schema.yaml"))

EXTRACTORS = ("deca", "emoca")
NEVER = "(?!x)x"  # a wildcard constraint that matches nothing (an empty alternative list)


def prepare_demo_inputs():
    """`demo:` in the config: make the demo photos (album, prior, target) before the sheets are checked.

    They must exist at parse time (the sheets' folders are checked and listed then); `prepare_demo` is
    idempotent and leaves an existing, identical demo untouched, so file times and reruns stay stable.
    """
    demo = config.get("demo")
    if not demo:
        return
    from dre.demo import prepare_demo

    prepare_demo(demo["root"], n=demo.get("n", 12), n_prior=demo.get("n_prior", 24), seed=demo.get("seed", 0))


prepare_demo_inputs()

ALBUMS = load_sheet(config["albums"], SCHEMAS / "albums.schema.yaml", "album")
EDITS = load_sheet(config["edits"], SCHEMAS / "edits.schema.yaml", "edit")
PRIORS = config["stage1"]["priors"]
check_cross_references(config, ALBUMS, EDITS)


def _alternatives(names):
    return "|".join(sorted(names)) or NEVER


# Every job runs this checkout's `dre` package (`python -m dre`) with the environment's Python; the same
# command works in the project's own venv and in the per-rule conda envs (which hold the dependencies, not
# the package). The checkout goes on PYTHONPATH through the shell prefix, so moving the checkout is not a
# parameter change that would rerun everything.
# (The prefix is format()ted like a shell command, hence the doubled braces.) The Snakefile applies it.
_root = shlex.quote(str(DRE_ROOT)).replace("{", "{{").replace("}", "}}")
SHELL_PREFIX = f"set -euo pipefail; export PYTHONPATH={_root}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "


RAW_ALBUMS = [a for a, r in ALBUMS.items() if not r["aligned"]]
PREALIGNED_ALBUMS = [a for a, r in ALBUMS.items() if r["aligned"]]


# ---------------------------------------------------------------------------------------------- paths
def album_images(wildcards):
    """The album's image files: inputs of its align rule, so changing one photo reruns its chain.

    (Snakemake 9 reruns on a newer input only when its checksum changed too: a bare `touch` is no change.)
    """
    folder = Path(ALBUMS[wildcards.album]["path"])
    return [str(p) for p in list_images(folder)]


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


def report_targets(edit):
    """The report's figures and tables behind one edit (rules in report.smk).

    The stage-2 loss curve of its album, the stage-1 curve of the album's prior (none when an official
    checkpoint replaces stage 1), and counts by status of the alignment and extraction of every album the
    edit was trained on, plus its target's alignment.
    """
    row = EDITS[edit]
    album, ext = row["album"], row["source_extractor"]
    prior = ALBUMS[album]["prior"]
    albums = [album]
    targets = [f"results/report/loss/stage2/{album}.{ext}.png", f"results/report/align_target/{edit}.tsv"]
    if not PRIORS[prior].get("official_checkpoint", ""):
        targets.append(f"results/report/loss/stage1/{prior}.{ext}.png")
        albums += [a for a in PRIORS[prior]["albums"] if a not in albums]
    for a in albums:
        targets += [f"results/report/align/{a}.tsv", f"results/report/extract/{a}.{ext}.tsv"]
    return targets


def all_report_targets():
    return sorted({t for e in EDITS for t in report_targets(e)})


def demo_assets_input(wildcards):
    """With `demo:` the synthetic assets folder is a rule output (rule demo_assets), so jobs wait for it."""
    return config["assets"] if config.get("demo") else []
