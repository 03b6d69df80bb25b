"""Shared fixtures. Area-specific fixtures live in the area's own test modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def synthetic_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic assets folder written by our own `dre.face3d.synth` (never real licensed files)."""
    from dre.face3d.synth import write_synthetic_assets

    out = tmp_path_factory.mktemp("assets")
    write_synthetic_assets(out, seed=0)
    return out


@pytest.fixture()
def dre_cmd() -> list[str]:
    """Command prefix that runs this checkout's `dre` (not whatever `dre` is on PATH)."""
    return [sys.executable, "-m", "dre"]


@pytest.fixture()
def cli_env() -> dict[str, str]:
    """Environment for subprocess CLI runs: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors on a shared 2-core box: one intra-op thread is many times faster than two.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
