"""Command-line flags generated from config dataclasses, so that every setting is defined once.

A stage's ``Config`` dataclass is the one place a setting is written down: its field carries the type,
the default, the help text and (rarely) a flag name that differs from the field name. Everything else is
derived from it:

- :func:`add_flags` adds one argparse flag per field (``lr`` → ``--lr``, ``num_heads`` → ``--num-heads``),
  recursing into nested config dataclasses (an argument group each);
- :func:`from_namespace` builds the dataclass back from the parsed flags, turning comma lists into tuples
  and raising :class:`~dre.errors.DreError` naming the flag when a value does not parse;
- :func:`to_flags` goes the other way for the workflow: a section of the workflow config, whose keys are
  the flag names with ``_`` for ``-``, becomes argv words.

Two kinds of field:

- :func:`setting`: a tunable. It is a key of the stage's section in the workflow config
  (``workflow/schemas/config.schema.yaml``), whose default must equal the field's (a test checks both
  directions).
- :func:`run_arg`: what one run works on — inputs, outputs, a sheet row's values, a wildcard, a per-call
  choice. The workflow rule passes it explicitly; it is never a config-section key.

A plain ``dataclasses.field`` (or no field metadata) is not a flag: it is for Python callers only.

This module imports only the standard library: the Snakefile imports it (for :func:`to_flags`) without the
engine's dependencies.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from dre.errors import DreError

T = TypeVar("T")

META = "dre_cli"
"""Key of the field metadata this module reads."""

SETTING, RUN_ARG, NESTED = "setting", "run_arg", "nested"


def _field(
    kind: str,
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    choices: tuple[Any, ...] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field carrying its flag's description (shared by :func:`setting` and :func:`run_arg`).

    ``flag`` overrides the flag name (without ``--``). ``parse`` turns the flag's text into the field's
    value (for types argparse does not know); it may raise :class:`DreError` or ``ValueError``.
    """
    meta = {"kind": kind, "help": help, "flag": flag, "choices": choices, "metavar": metavar, "parse": parse}
    kw: dict[str, Any] = {"metadata": {META: meta}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    return dataclasses.field(**kw)


def setting(default: Any = dataclasses.MISSING, **options: Any) -> Any:
    """A tunable setting: a flag, and a key of the stage's workflow-config section (the flag name with
    ``_`` for ``-``). ``options``: ``help`` (required), ``flag``, ``choices``, ``metavar``, ``parse``,
    ``default_factory`` (see :func:`_field`)."""
    return _field(SETTING, default, **options)


def run_arg(default: Any = dataclasses.MISSING, **options: Any) -> Any:
    """An input, output or per-run value: a flag the rule fills, not a workflow-config key. Without a
    default the flag is required. ``options`` as for :func:`setting`."""
    return _field(RUN_ARG, default, **options)


def nested(cls: type, *, title: str) -> Any:
    """A nested config dataclass: its flags form an argument group titled ``title``."""
    return dataclasses.field(default_factory=cls, metadata={META: {"kind": NESTED, "title": title}})


# ---------------------------------------------------------------------------------------------- fields
@dataclasses.dataclass(frozen=True)
class Flag:
    """One generated flag: where it goes (``path``, dotted for nested configs) and how it parses."""

    path: str  # "lr", "model.image_size"
    name: str  # "--lr", "--image-size"
    kind: str  # SETTING or RUN_ARG
    type: Any  # the field's type with ``None`` removed (int, Path, tuple[int, ...], ...)
    field: dataclasses.Field

    @property
    def key(self) -> str:
        """The workflow-config key of this flag (its name without ``--``, ``-`` → ``_``)."""
        return self.name[2:].replace("-", "_")

    @property
    def meta(self) -> dict[str, Any]:
        return self.field.metadata[META]

    @property
    def default(self) -> Any:
        f = self.field
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return dataclasses.MISSING


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def flags(cls: type, prefix: str = "") -> Iterator[Flag]:
    """Every flag of ``cls`` in field order, nested configs expanded in place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(META)
        if meta is None:
            continue
        if meta["kind"] == NESTED:
            yield from flags(hints[f.name], prefix=f"{prefix}{f.name}.")
            continue
        yield _flag(f, hints[f.name], prefix)


def _flag(f: dataclasses.Field, hint: Any, prefix: str) -> Flag:
    meta = f.metadata[META]
    name = "--" + (meta["flag"] or f.name.replace("_", "-"))
    return Flag(path=prefix + f.name, name=name, kind=meta["kind"], type=_strip_optional(hint), field=f)


def settings(cls: type) -> dict[str, Flag]:
    """The settings of ``cls`` by workflow-config key (nested configs excluded: they are their own sections)."""
    return {fl.key: fl for fl in flags(cls) if fl.kind == SETTING and "." not in fl.path}


# ---------------------------------------------------------------------------------------------- argparse
def _seq_item(tp: Any) -> Any | None:
    """Item type of ``tuple[X, ...]`` / ``list[X]``, else None."""
    if typing.get_origin(tp) in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _show(value: Any) -> str:
    """A value as flag text; list items with a canonical ``name`` (edit modes) show that."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(getattr(v, "name", v)) for v in value)
    return str(value)


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per :func:`setting` / :func:`run_arg` field of ``cls`` (nested configs as groups).

    Booleans get ``--x`` / ``--no-x``; comma-list fields (``tuple[int, ...]``) take one ``a,b,c`` word;
    ``list[str]`` fields (e.g. ``--lmdb``) are repeated. The values are converted in :func:`from_namespace`.
    """
    groups: dict[str, Any] = {}
    for fl in sorted(flags(cls), key=lambda fl: "." in fl.path):  # the plain flags first, then each group
        head, nested_flag, _ = fl.path.partition(".")
        if nested_flag and head not in groups:
            groups[head] = parser.add_argument_group(cls.__dataclass_fields__[head].metadata[META]["title"])
        _add_one(groups[head] if nested_flag else parser, fl)


def _add_one(target: Any, fl: Flag) -> None:
    meta, default = fl.meta, fl.default
    help_text = meta["help"]
    shown = default is not dataclasses.MISSING and default is not None and not isinstance(default, bool)
    if shown and "default" not in help_text:
        help_text += f" (default {_show(default) if default != () else 'empty'})"
    kw: dict[str, Any] = {"dest": fl.path, "help": help_text, "metavar": meta.get("metavar") or fl.key.upper()}
    if fl.type is bool:
        kw.update(action=argparse.BooleanOptionalAction, default=bool(default))
        kw.pop("metavar")
        target.add_argument(fl.name, **kw)
        return
    item = _seq_item(fl.type)
    if default is dataclasses.MISSING:
        kw["required"] = True
    if item is not None and typing.get_origin(fl.type) is list and meta.get("parse") is None:
        kw["action"] = "append"  # repeated flag, e.g. --lmdb a --lmdb b
        kw["default"] = None
    else:
        if default is not dataclasses.MISSING:
            kw["default"] = default
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
            kw["metavar"] = meta.get("metavar") or "{" + ",".join(str(c) for c in meta["choices"]) + "}"
        if fl.type in (int, float):
            kw["type"] = fl.type
        if item is not None and not meta.get("metavar"):
            kw["metavar"] = "A,B,..."
    target.add_argument(fl.name, **kw)


def _convert(fl: Flag, value: Any) -> Any:
    """Flag text (or an already typed default) → the field's value; DreError naming the flag if it fails."""
    if value is None:
        return None
    parse = fl.meta.get("parse")
    if parse is not None:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except (DreError, ValueError) as exc:
            raise DreError(f"{fl.name} {value!r}: {exc}") from exc
    item = _seq_item(fl.type)
    if item is not None:
        if typing.get_origin(fl.type) is list:
            return [item(v) for v in value]
        if isinstance(value, str):
            words = [w.strip() for w in value.split(",") if w.strip()]
            try:
                return tuple(item(w) for w in words)
            except ValueError as exc:
                what = "integers" if item is int else "numbers" if item is float else "values"
                raise DreError(f"{fl.name} {value!r}: expected a comma list of {what}") from exc
        return tuple(value)
    if fl.type is Path:
        return Path(value)
    return value


def from_namespace(cls: type[T], args: argparse.Namespace, *, prefix: str = "") -> T:
    """Build ``cls`` from the namespace :func:`add_flags` filled (nested configs included)."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(META)
        if meta is None:
            continue
        path = prefix + f.name
        if meta["kind"] == NESTED:
            kw[f.name] = from_namespace(hints[f.name], args, prefix=path + ".")
            continue
        fl = _flag(f, hints[f.name], prefix)
        value = getattr(args, path)
        if value is None and fl.default is not dataclasses.MISSING:
            value = fl.default
        kw[f.name] = _convert(fl, value)
    return cls(**kw)


# ---------------------------------------------------------------------------------------------- workflow
def to_flags(section: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> list[str]:
    """A workflow-config section → argv words: key ``num_heads: 2`` → ``--num-heads 2``.

    Booleans become ``--x`` / ``--no-x``, lists a comma list (``[]`` → ``''``, i.e. the empty list),
    ``None`` is left out (the flag's own default applies). ``skip`` names keys that are not flags
    (workflow-only keys such as ``processes``).
    """
    words: list[str] = []
    for key, value in section.items():
        if key in skip or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, _show(value)]
        else:
            words += [flag, str(value)]
    return words
