"""The `dre` command: every subcommand has complete help, and user errors exit with a message, not a traceback."""

from __future__ import annotations

import subprocess

import pytest

SUBCOMMANDS = [
    ["align"],
    ["extract"],
    ["pack"],
    ["train"],
    ["edit"],
    ["score"],
    ["assets", "check"],
    ["assets", "synth"],
    ["assets", "fetch"],
    ["assets", "add"],
]


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_rule_command(dre_cmd, cli_env) -> None:
    result = run([*dre_cmd, "--help"], cli_env)
    assert result.returncode == 0, result.stderr
    for name in ("align", "extract", "pack", "train", "edit", "score", "assets"):
        assert name in result.stdout


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=lambda s: "-".join(s))
def test_subcommand_help_documents_its_flags(sub, dre_cmd, cli_env) -> None:
    result = run([*dre_cmd, *sub, "--help"], cli_env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("usage: dre " + " ".join(sub))
    flags = [line for line in text.splitlines() if line.strip().startswith("--")]
    assert len(flags) >= 1
    # argparse lists the flags under "options:" (the subcommand's own flags, not only -h)
    assert "options:" in text


def test_missing_required_flag_is_a_usage_error(dre_cmd, cli_env) -> None:
    result = run([*dre_cmd, "extract"], cli_env)
    assert result.returncode == 2
    assert "required" in result.stderr
    assert "Traceback" not in result.stderr
