"""System parts some tests need (MPI, SLURM): fail where they could have been installed, skip elsewhere.

Why: the README promises that `.ci/run` proves multi-process launches work. On a machine where we are
root with ``apt-get``, `.ci/run` installs Open MPI (and SLURM); a test that then *skips* because the
launcher is missing or cannot start would hide a broken set-up behind a green run. So there the test
fails; it may skip only where installing is impossible (not root, or no ``apt-get``), and says so.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def can_install() -> bool:
    """True where `.ci/run` installs system packages itself (root with apt-get)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def unavailable(what: str, why: str, install: str) -> NoReturn:
    """Fail (installable here) or skip (not installable here) a test whose system part is missing."""
    if can_install():
        pytest.fail(f"{what} is unavailable ({why}) on a machine that can install it (root with apt-get): "
                    f"`{install}` (as .ci/run does), then rerun", pytrace=False)  # fmt: skip
    pytest.skip(f"{what} is unavailable ({why}) and cannot be installed here (not root, or no apt-get)")
