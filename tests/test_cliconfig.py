"""dre.utils.cliconfig: flags generated from dataclass fields, and back; the workflow's to_flags."""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dre.errors import DreError
from dre.utils.cliconfig import add_flags, from_namespace, nested, run_arg, setting, settings, to_flags

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    steps: int = setting(10, flag="inner-steps", help="steps")
    scale: float = setting(1.5, help="scale")


@dataclass
class Outer:
    out: Path = run_arg(help="output")
    names: list[str] = run_arg(help="repeat")
    sizes: tuple[int, ...] = setting((4, 8), help="sizes")
    fast: bool = setting(False, help="go fast")
    resume: bool = run_arg(True, help="resume")
    mode: str = setting("a", choices=("a", "b"), help="mode")
    note: str | None = run_arg(None, help="note")
    inner: Inner = nested(Inner, title="inner")
    internal: int = field(default=3)  # no metadata: not a flag


def parse(argv: list[str]) -> Outer:
    p = argparse.ArgumentParser()
    add_flags(p, Outer)
    return from_namespace(Outer, p.parse_args(argv))


def test_round_trip_with_defaults_lists_booleans_and_nesting() -> None:
    cfg = parse(["--out", "o", "--names", "x", "--names", "y"])
    assert cfg == Outer(out=Path("o"), names=["x", "y"])
    cfg = parse(["--out", "o", "--names", "x", "--sizes", "1,2,3", "--fast", "--no-resume", "--mode", "b",
                 "--inner-steps", "7", "--scale", "0.5", "--note", "n"])
    assert cfg.sizes == (1, 2, 3) and cfg.fast and not cfg.resume and cfg.mode == "b" and cfg.note == "n"
    assert cfg.inner == Inner(steps=7, scale=0.5) and cfg.internal == 3
    assert parse(["--out", "o", "--names", "x", "--sizes", ""]).sizes == ()


def test_errors_name_the_flag() -> None:
    with pytest.raises(DreError, match="--sizes '1,x': expected a comma list of integers"):
        parse(["--out", "o", "--names", "x", "--sizes", "1,x"])
    with pytest.raises(SystemExit):  # argparse: a required flag is missing / a choice is wrong
        parse(["--names", "x"])
    with pytest.raises(SystemExit):
        parse(["--out", "o", "--names", "x", "--mode", "c"])


def test_settings_are_keyed_by_flag_name_and_to_flags_inverts_them() -> None:
    assert set(settings(Outer)) == {"sizes", "fast", "mode"}
    assert set(settings(Inner)) == {"inner_steps", "scale"}
    words = to_flags({"inner_steps": 3, "sizes": [], "fast": True, "resume": False, "note": None, "x": 1}, skip=("x",))
    assert words == ["--inner-steps", "3", "--sizes", "", "--fast", "--no-resume"]
    cfg = parse(["--out", "o", "--names", "n", *words])
    assert cfg.inner.steps == 3 and cfg.sizes == () and cfg.fast and not cfg.resume


def test_engine_modules_do_not_parse_flags() -> None:
    """Only the CLI layer (dre/cli.py, dre/commands/) and the flag generator import argparse."""
    allowed = {REPO / "dre" / "cli.py", REPO / "dre" / "utils" / "cliconfig.py"}
    offenders = [
        str(p.relative_to(REPO)) for p in (REPO / "dre").rglob("*.py")
        if p not in allowed and "commands" not in p.parts and "import argparse" in p.read_text()
    ]
    assert offenders == []


@pytest.mark.parametrize("command", ["align", "extract", "pack", "train", "edit", "score"])
def test_stage_help_does_not_import_torch(command: str, dre_cmd: list[str], cli_env: dict[str, str]) -> None:
    """Only the invoked subcommand's Config is imported, and no Config needs torch: `dre <stage> --help`
    answers at once, without loading the training stack."""
    code = ("import sys; from dre.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    r = subprocess.run([dre_cmd[0], "-c", code], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
