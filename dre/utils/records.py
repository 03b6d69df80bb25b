"""Config dataclasses as the plain dicts stored in model files, checkpoints and ``config.json``, and back."""

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


def to_plain(record: Any) -> Any:
    """``dataclasses.asdict`` with tuples as lists (nested configs included): plain types that JSON and
    ``torch.load(weights_only=True)`` keep as they are."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        record = dataclasses.asdict(record)
    if isinstance(record, dict):
        return {k: to_plain(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [to_plain(v) for v in record]
    return record
