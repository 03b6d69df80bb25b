"""Rebuilding config dataclasses from the plain dicts stored in model files."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from dre.errors import DreError

T = TypeVar("T")


def from_dict_strict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """``cls(**d)``, refusing keys ``cls`` does not have: a file written by a newer dre must not be
    half-read with its new settings silently dropped (``what`` names the record in the message)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise DreError(f"{what} has unknown fields {unknown}; the file was written by a newer dre")
    return cls(**d)
