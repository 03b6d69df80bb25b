"""User-facing errors.

Anything the user can fix (a missing asset, a bad image folder, a checkpoint of another configuration)
raises :class:`DreError`. The CLI prints its message without a traceback and exits with status 2, so the
message itself must say which file, which row and what to do.
"""

from __future__ import annotations


class DreError(Exception):
    """An error caused by input, configuration or assets, with a message meant for the user."""

    exit_code = 2
