"""The README's set-up and test commands are what CI runs (so the README stays true)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_block_after(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no bash block under '## {heading}'"
    return match.group(1).strip()


def test_ci_runs_the_readme_setup_and_test_commands() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    for heading in ("Set up", "Test", "The built-in demo (no licensed assets, no GPU)"):
        command = readme_block_after(heading)
        assert command in ci, f"README '{heading}' command not in .ci/run:\n{command}"


def test_ci_script_is_executable() -> None:
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111
