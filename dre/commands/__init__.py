"""Subcommands of the ``dre`` CLI, in the order they appear in ``dre --help``.

The six stages are :class:`~dre.commands.stage.StageCommand` objects (flags generated from the stage's
``Config``); ``assets``, ``demo-album``, ``video-frames`` and ``report`` are small modules with their own ``register``.
Every entry has ``NAME`` and ``register(subparsers, flags=...)``.
"""

from dre.commands import align, assets, demo_album, edit, extract, pack, report, score, train, video_frames

COMMANDS = (align.COMMAND, extract.COMMAND, pack.COMMAND, train.COMMAND, edit.COMMAND, score.COMMAND, assets, demo_album, video_frames, report)
