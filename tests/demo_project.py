"""A throw-away copy of the project for running the built-in demo for real (the demo workflow tests).

The copy holds this checkout's workflow, config, envs and profiles, and a symlink to its ``dre``
package (the workflow puts the project root on ``PYTHONPATH`` for every job). ``resources/`` and
``results/`` start empty: the demo photos and synthetic assets are made by the workflow itself.

The full demo takes minutes on 2 cores, so one run per test session is shared by every test that only
inspects its outputs or plans reruns (:func:`demo_run`); tests that change files work on their own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "config/demo/config.yaml"
DEMO_EDIT = "demo_exp"
DEMO_TARGET = f"results/edits/{DEMO_EDIT}"
# Snakemake's --configfile takes several values: with "=" it cannot swallow the target that follows.
CONFIG_FLAG = f"--configfile={DEMO_CONFIG}"

@dataclass
class Project:
    root: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["XDG_CACHE_HOME"] = str(self.root / ".cache")
        # Jobs run `python -m dre`: this interpreter's folder first on PATH, as an activated venv has it.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def snakemake(self, *args: str, timeout: float = 900, base_env: dict[str, str] | None = None,
                  ) -> subprocess.CompletedProcess[str]:
        """This environment's Snakemake in the project (no --use-conda: no conda here)."""
        return subprocess.run(
            ["timeout", "-k", "5", str(int(timeout)), sys.executable, "-m", "snakemake", *args],
            cwd=self.root, env=self.env(base_env), capture_output=True, text=True,
        )

    def demo(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.snakemake("-c2", CONFIG_FLAG, *args, timeout=timeout)


def make_project(root: Path) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    for part in ("workflow", "config", "envs", "profiles"):
        shutil.copytree(REPO / part, root / part)
    (root / "dre").symlink_to(REPO / "dre", target_is_directory=True)
    return Project(root)


def clone_project(src: Project, dest: Path) -> Project:
    """A copy of a finished demo (results, resources, Snakemake's metadata), for tests that change it."""
    shutil.copytree(src.root, dest, symlinks=True, ignore=shutil.ignore_patterns(".cache", "locks"))
    return Project(dest)


@dataclass
class DemoRun:
    project: Project
    result: subprocess.CompletedProcess[str]
    seconds: float


_RUNS: dict[str, DemoRun] = {}


def demo_run(base: Path) -> DemoRun:
    """Run the README's demo command once per session (cached): snakemake -c2 --configfile=config/demo/config.yaml.

    No target: rule all, i.e. the demo edit and the report's figures and tables.
    """
    if "demo" not in _RUNS:
        project = make_project(base / "demo_project")
        t0 = time.monotonic()
        result = project.demo()
        _RUNS["demo"] = DemoRun(project, result, time.monotonic() - t0)
    return _RUNS["demo"]


def planned_jobs(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Rule -> count from the 'Job stats' table of a run or dry run ({} when there is nothing to do)."""
    text = result.stdout + result.stderr
    if "Job stats:" not in text:
        return {}
    counts: dict[str, int] = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def tail(result: subprocess.CompletedProcess[str], n: int = 6000) -> str:
    return (result.stdout + result.stderr)[-n:]
