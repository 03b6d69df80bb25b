"""Subcommands of the ``dre`` CLI, in the order they appear in ``dre --help``.

The stages, ``demo-album`` and ``video-frames`` are :class:`~dre.commands.stage.StageCommand` objects (flags
generated from the stage's ``Config``); ``assets`` and ``report`` are small modules with their own ``register``.
Every entry has ``NAME`` and ``register(subparsers, flags=...)``.
"""

from dre.commands import align, assets, demo_album, edit, extract, pack, report, score, train, video_frames

COMMANDS = (align.COMMAND, extract.COMMAND, pack.COMMAND, train.COMMAND, edit.COMMAND, score.COMMAND, assets,
            demo_album.COMMAND, video_frames.COMMAND, report)
