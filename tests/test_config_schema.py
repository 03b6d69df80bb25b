"""The workflow config and the stage configs describe the same settings, once.

Every key of a stage's section in workflow/schemas/config.schema.yaml is the flag of exactly one field of
that stage's ``Config`` (and every setting field has its key), the schema's defaults are the fields'
defaults, and a validated config section turned into flags (what the rules do) builds a ``Config`` whose
fields hold exactly the section's values.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import yaml

from dre.align.config import AlignConfig
from dre.cli import parse_config
from dre.demo import AlbumConfig
from dre.diffusion.config import DiffusionConfig
from dre.edit.config import EditConfig
from dre.edit.video import FramesConfig
from dre.extract.config import ExtractConfig
from dre.assets.catalog import DEFAULT_EMOCA_MODEL
from dre.model.arch import ModelConfig
from dre.pack.config import PackConfig
from dre.score.config import ScoreSettings
from dre.train.config import STAGE_DEFAULTS, TrainConfig
from dre.utils.cliconfig import add_flags, settings, to_flags

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
PROPS = SCHEMA["properties"]
TRAIN_STAGE = SCHEMA["definitions"]["train_stage"]["properties"]
WORKFLOW_ONLY = {"priors"}  # a stage key for the planner, not a `dre train` flag

SECTIONS = {
    "align": AlignConfig,
    "extract": ExtractConfig,
    "pack": PackConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "edit": EditConfig,
    "score": ScoreSettings,  # nested in EditConfig (scoring) and ScoreConfig
    "video": FramesConfig,
}


def section_props(name: str) -> dict:
    return PROPS[name]["properties"]


def _plain(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _option_dests(cls: type) -> dict[str, list[str]]:
    """Flag → the dests of the actions that take it, in the parser the CLI builds for ``cls``."""
    parser = argparse.ArgumentParser()
    add_flags(parser, cls)
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            out.setdefault(opt, []).append(action.dest)
    return out


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_section_keys_are_exactly_the_stage_settings(name: str) -> None:
    cls = SECTIONS[name]
    assert set(section_props(name)) == set(settings(cls)), name


def test_train_stage_keys_are_exactly_the_train_settings() -> None:
    assert set(TRAIN_STAGE) - WORKFLOW_ONLY == set(settings(TrainConfig))
    stage1_extra = set(PROPS["stage1"]["allOf"][1]["properties"]) - set(TRAIN_STAGE)
    assert stage1_extra == {"priors"}


@pytest.mark.parametrize(
    ("keys", "prefix"),
    [
        (lambda: set(TRAIN_STAGE) - WORKFLOW_ONLY, ""),
        (lambda: set(section_props("model")), "model."),
        (lambda: set(section_props("diffusion")), "diffusion."),
    ],
    ids=["stage", "model", "diffusion"],
)
def test_every_train_key_is_the_flag_of_exactly_one_field(keys, prefix: str) -> None:
    """Through the parser `dre train` really builds: one action per key, each on its own field."""
    dests = _option_dests(TrainConfig)
    seen: set[str] = set()
    for key in keys():
        found = dests.get("--" + key.replace("_", "-"), [])
        assert len(found) == 1, (key, found)
        dest = found[0]
        assert dest.startswith(prefix) and "." not in dest[len(prefix):], (key, dest)
        assert dest not in seen
        seen.add(dest)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_section_defaults_are_the_field_defaults(name: str) -> None:
    fields = settings(SECTIONS[name])
    for key, prop in section_props(name).items():
        assert "default" in prop, f"{name}.{key} has no default in the schema"
        assert _plain(prop["default"]) == _plain(fields[key].default), f"{name}.{key}"


def test_train_stage_defaults_are_the_field_and_stage_defaults() -> None:
    fields = settings(TrainConfig)
    for key, prop in TRAIN_STAGE.items():
        if key in WORKFLOW_ONLY:
            continue
        if key in STAGE_DEFAULTS[1]:
            assert "default" not in prop and fields[key].default is None  # per stage, below
        else:
            assert _plain(prop["default"]) == _plain(fields[key].default), key
    for stage in (1, 2):
        per_stage = PROPS[f"stage{stage}"]["allOf"][1]["properties"]
        assert {k: per_stage[k]["default"] for k in STAGE_DEFAULTS[stage]} == STAGE_DEFAULTS[stage]


def test_shared_defaults() -> None:
    assert PROPS["emoca_model"]["default"] == DEFAULT_EMOCA_MODEL
    assert ExtractConfig.__dataclass_fields__["emoca_model"].default == DEFAULT_EMOCA_MODEL
    assert EditConfig.__dataclass_fields__["emoca_model"].default == DEFAULT_EMOCA_MODEL
    demo = PROPS["demo"]["properties"]
    assert demo["n"]["default"] == AlbumConfig.__dataclass_fields__["n"].default
    assert demo["seed"]["default"] == AlbumConfig.__dataclass_fields__["seed"].default


def validated(*files: str) -> dict:
    """config/config.yaml (+ overrides merged as Snakemake merges --configfile) validated with defaults."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for f in files:
        update_config(config, yaml.safe_load((REPO / f).read_text()))
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


@pytest.mark.parametrize("files", [("config/config.yaml",), ("config/config.yaml", "config/demo/config.yaml")],
                         ids=["published", "demo"])
def test_config_sections_reach_the_stage_configs(files: tuple[str, ...]) -> None:
    """The flags the rules build from each section give a Config holding exactly the section's values."""
    config = validated(*files)
    for stage in (1, 2):
        section = config[f"stage{stage}"]
        argv = ["train", "--stage", str(stage), "--lmdb", "x.lmdb", "--run-dir", "r", "--out", "o.pt",
                *to_flags(config["model"]), *to_flags(config["diffusion"]), *to_flags(section, skip=tuple(WORKFLOW_ONLY))]
        cfg = parse_config(argv)
        for key, value in section.items():
            if key not in WORKFLOW_ONLY:
                assert _plain(getattr(cfg, key)) == _plain(value), (stage, key)
        for key, fl in settings(ModelConfig).items():
            assert _plain(getattr(cfg.model, fl.path)) == _plain(config["model"][key]), key
        for key, fl in settings(DiffusionConfig).items():
            assert getattr(cfg.diffusion, fl.path) == config["diffusion"][key], key
    runs = {
        "align": ["align", "--input", "in", "--output", "out"],
        "extract": ["extract", "--images", "i", "--extractor", "deca", "--assets", "a", "--out", "o.parquet"],
        "pack": ["pack", "--out", "o.lmdb", "--codes", "c.parquet"],
        "edit": ["edit", "--model", "m", "--assets", "a", "--source", "s", "--target", "t", "--out", "o"],
    }
    for name, argv in runs.items():
        cfg = parse_config([*argv, *to_flags(config[name])])
        for key, fl in settings(SECTIONS[name]).items():
            assert _plain(getattr(cfg, fl.path)) == _plain(config[name][key]), (name, key)
    for argv in (runs["edit"], ["score", "--edits", "e", "--assets", "a", "--out", "o"]):  # both score their pictures
        cfg = parse_config([*argv, *to_flags(config["score"])])
        for key, fl in settings(ScoreSettings).items():
            assert getattr(cfg.scoring, fl.path) == config["score"][key], (argv[0], key)


def test_defaults_fill_a_minimal_config() -> None:
    """A config that names only the sheets, the assets and a prior gets every stage setting."""
    config = {"albums": "a.tsv", "edits": "e.tsv", "assets": "assets", "stage1": {"priors": {"p": {"albums": ["x"]}}}}
    from snakemake.utils import validate

    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["stage2"]["lr"] == STAGE_DEFAULTS[2]["lr"] and config["stage1"]["max_steps"] == 50000
    assert config["model"]["num_head_channels"] == ModelConfig().num_head_channels
    assert config["emoca_model"] == DEFAULT_EMOCA_MODEL
    assert config["stage1"]["priors"]["p"] == {"albums": ["x"], "weights": [], "official_checkpoint": ""}
    assert copy.deepcopy(config["edit"]) == {k: _plain(f.default) for k, f in settings(EditConfig).items()}


def test_whole_floats_for_integer_keys_become_integer_flags(monkeypatch) -> None:
    """JSON Schema counts 50000.0 as an integer, so `max_steps: 5.0e+4` passes validation; the workflow turns
    such values into ints, or `--max-steps 50000.0` would stop `dre train` (argparse int) when the job starts."""
    monkeypatch.syspath_prepend(str(REPO / "workflow"))
    import sheets

    config = validated("config/config.yaml")
    config["stage1"].update(max_steps=5.0e4, batch_size=32.0, nodes=1.0, lr=1.0)  # lr is a number: stays a float
    config["model"]["attention_resolutions"] = [16.0, 8.0]
    config["edit"]["steps"] = 20.0
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    from snakemake.utils import validate

    validate(config, str(schema))  # the schema alone accepts them
    sheets.whole_numbers_to_int(config, schema)
    section = config["stage1"]
    argv = ["train", "--stage", "1", "--lmdb", "x.lmdb", "--run-dir", "r", "--out", "o.pt",
            *to_flags(config["model"]), *to_flags(section, skip=tuple(WORKFLOW_ONLY))]
    cfg = parse_config(argv)
    assert (cfg.max_steps, cfg.batch_size, cfg.model.attention_resolutions) == (50000, 32, (16, 8))
    assert "--max-steps" in argv and argv[argv.index("--max-steps") + 1] == "50000"
    assert argv[argv.index("--lr") + 1] == "1.0"
    edit = parse_config(["edit", "--model", "m", "--assets", "a", "--source", "s", "--target", "t", "--out", "o",
                         *to_flags(config["edit"])])
    assert edit.steps == 20
