"""The one shape of a stage subcommand: flags generated from the stage's ``Config``, then ``run(cfg)``.

A stage package (``dre.align``, ``dre.extract``, ``dre.pack``, ``dre.train``, ``dre.edit``; likewise ``dre.demo``
and ``dre.edit.video``, whose config classes have other names) exposes a ``Config`` dataclass and ``run(cfg)``.
Its entry in ``dre.commands`` only names it and says what to print when the run is done; this class adds the flags
(``dre.utils.cliconfig``), builds the ``Config`` from the parsed namespace and calls ``run``. The stage package
is imported only when its flags are needed, so ``dre align`` never imports the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from dre.utils.cliconfig import add_flags, from_namespace


@dataclass(frozen=True)
class StageCommand:
    name: str  # the subcommand, e.g. "align"
    package: str  # the stage package exposing Config and run(cfg), e.g. "dre.align"
    help: str  # one line for `dre --help`
    description: str  # the paragraph of `dre <name> --help`
    done: Callable[[Any, Any], str]  # (cfg, what run returned) -> the line printed on success
    config_name: str = "Config"  # the package's config dataclass
    progress: bool = False  # `done` is progress text for stderr (the command has no result line for stdout)

    @property
    def NAME(self) -> str:  # noqa: N802  (the attribute every entry of dre.commands.COMMANDS has)
        return self.name

    def stage(self) -> ModuleType:
        return importlib.import_module(self.package)

    def register(self, sub: argparse._SubParsersAction, *, flags: bool = True) -> argparse.ArgumentParser:
        """Add the subparser; its flags only when ``flags`` (the CLI skips them for other subcommands)."""
        p = sub.add_parser(self.name, help=self.help, description=self.description)
        if flags:
            add_flags(p, getattr(self.stage(), self.config_name))
        p.set_defaults(func=self.main)
        return p

    def config(self, args: argparse.Namespace) -> Any:
        """The stage ``Config`` the parsed flags describe."""
        return from_namespace(getattr(self.stage(), self.config_name), args)

    def main(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        result = self.stage().run(cfg)
        print(self.done(cfg, result), file=sys.stderr if self.progress else sys.stdout, flush=True)
        return 0
