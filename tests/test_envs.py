"""Static checks of the conda environments (conda cannot run on the CI machines; users create these envs).

They must be valid env files, agree with pyproject.toml's pins, and keep the two environments apart: the
alignment env has no rendering/training stack, the main env no landmark back-ends.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def load_env(name: str) -> dict:
    env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    assert set(env) >= {"name", "channels", "dependencies"}
    assert "defaults" not in env["channels"]
    return env


def package_specs(env: dict) -> dict[str, str]:
    """name -> version spec, for conda and pip entries alike."""
    specs: dict[str, str] = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", item)
            assert match, item
            specs[match.group(1).lower()] = match.group(2)
    return specs


def pyproject_extra(name: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = {}
    for req in project["optional-dependencies"][name] + project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        specs[match.group(1).lower()] = match.group(2)
    return specs


def test_envs_pin_python_and_the_torch_stack() -> None:
    main, align = package_specs(load_env("main")), package_specs(load_env("align"))
    assert main["python"] == "=3.11" and align["python"] == "=3.11"
    assert main["torch"] == "==2.12.1"
    assert main["torchvision"] == "==0.27.1"
    assert main["easypytorch3d"] == "==0.7.9.post1"
    assert align["torch"] == "==2.12.1"
    assert align["face-alignment"] == "==1.5.0"
    assert align["mediapipe"] == "==0.10.14"


def test_envs_agree_with_pyproject() -> None:
    aliases = {"python-lmdb": "lmdb"}
    # The no-conda path installs mediapipe with --no-deps and lists the libraries it imports in the
    # `align` extra; the conda env installs mediapipe with its declared dependencies, which bring them.
    mediapipe_deps = {"absl-py", "attrs", "flatbuffers", "protobuf"}
    for env_name in ("main", "align"):
        env = {aliases.get(k, k): v for k, v in package_specs(load_env(env_name)).items()}
        extra = pyproject_extra(env_name)
        for pkg, spec in extra.items():
            if pkg == "mpi4py" or pkg.startswith("dre") or (pkg in mediapipe_deps and "mediapipe" in env):
                continue
            assert pkg in env, f"envs/{env_name}.yaml lacks {pkg} (pyproject extra '{env_name}')"
            if spec.startswith("=="):
                assert env[pkg] == spec, f"{pkg}: env {env[pkg]} vs pyproject {spec}"
    assert "mpi4py" in package_specs(load_env("main"))


def test_environments_stay_apart() -> None:
    align = package_specs(load_env("align"))
    main = package_specs(load_env("main"))
    for training_only in ("easypytorch3d", "pytorch3d", "python-lmdb", "lmdb", "mpi4py", "tensorboard", "torchvision"):
        assert training_only not in align, f"{training_only} does not belong in the alignment env"
    assert "face-alignment" not in main, "face-alignment does not belong in the main env"
    assert main["mediapipe"] == align["mediapipe"] == "==0.10.14"  # scores detect landmarks on edited pictures


def test_every_rule_names_an_existing_env() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            path = (smk.parent / rel).resolve()
            assert path.is_file(), f"{smk.name}: conda env {rel} does not exist"
            expected = "align.yaml" if smk.name == "align.smk" else "main.yaml"
            assert path.name == expected, f"{smk.name} uses {path.name}"
