"""Subcommand modules of the ``dre`` CLI, in the order they appear in ``dre --help``."""

from dre.commands import align, assets, demo_album, edit, extract, pack, report, score, train

COMMAND_MODULES = (align, extract, pack, train, edit, score, assets, demo_album, report)
