"""Subcommands of the ``dre`` CLI, in the order they appear in ``dre --help``.

The five stages are :class:`~dre.commands.stage.StageCommand` objects (flags generated from the stage's
``Config``); ``assets``, ``demo-album`` and ``report`` are small modules with their own ``register``.
Every entry has ``NAME`` and ``register(subparsers, flags=...)``.
"""

from dre.commands import align, assets, demo_album, edit, extract, pack, report, train

COMMANDS = (align.COMMAND, extract.COMMAND, pack.COMMAND, train.COMMAND, edit.COMMAND, assets, demo_album, report)
