"""The sheets (albums.tsv, edits.tsv): typed rows, validated against their JSON schemas, cross-checked.

Lives beside the Snakefile as a plain module (common.smk imports it) so that every error case can be tested
in-process, without starting Snakemake. Errors name the sheet file, the row (the file's line number, as an
editor shows it: blank and comment lines count) and the column, because a user fixing a sheet needs exactly
those three. The config's whole-number fixup (whole_numbers_to_int) lives here for the same reason.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match
from snakemake.exceptions import WorkflowError

TRUE_WORDS = {"true", "yes", "y", "1", "t"}
FALSE_WORDS = {"false", "no", "n", "0", "f"}


def _coerce(value: str, kind: str | None) -> object:
    """Turn a TSV cell into the schema's type; leave it as text when it does not parse (the schema says why)."""
    text = value.strip()
    if kind == "boolean":
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def _sheet_error(sheet_path: str | Path, line: int, column: str | None, message: str) -> WorkflowError:
    where = f"{sheet_path}, row {line}" + (f", column '{column}'" if column else "")
    return WorkflowError(f"Invalid sheet {where}: {message}")


def _read_tsv(sheet_path: str | Path, columns: set[str]) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header (its file line and stripped names) and the data rows (each with the file line it starts on).

    Written for sheets saved by hand or by a spreadsheet: blank lines, rows of empty cells and lines whose
    first cell starts with ``#`` are skipped but still counted, so a row's number is the line an editor
    shows; ``#`` inside a cell is text (a path or a description may hold one); CRLF line ends, a UTF-8
    byte-order mark and empty cells past the last column are accepted; cells may be quoted as spreadsheets
    quote them. Header names must be the schema's columns, each once: a misspelt optional column would
    otherwise be ignored without a word.
    """
    try:
        with open(sheet_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            records, start = [], 1
            for cells in reader:
                if any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#"):
                    records.append((start, cells))
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise WorkflowError(f"Invalid sheet {sheet_path}: it is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "save it as UTF-8 (a spreadsheet's 'UTF-8 tab-separated text')") from None
    if not records:
        raise _sheet_error(sheet_path, 1, None, "no header row (the first line names the columns)")
    (header_line, header), rows = records[0], records[1:]
    header = [c.strip() for c in header]
    while header and not header[-1]:
        header.pop()
    for i, name in enumerate(header):
        if not name:
            raise _sheet_error(sheet_path, header_line, None, f"column {i + 1} of the header has no name")
        if name not in columns:
            raise _sheet_error(sheet_path, header_line, name,
                               f"unknown column '{name}' (columns: {', '.join(sorted(columns))})")
        if name in header[:i]:
            raise _sheet_error(sheet_path, header_line, name, f"column '{name}' appears twice in the header")
    for line, cells in rows:
        if any(c.strip() for c in cells[len(header):]):
            raise _sheet_error(sheet_path, line, None, f"{len(cells)} cells but the header has {len(header)} columns "
                               "(a tab inside a cell? quote the cell or remove the tab)")
    return header_line, header, rows


def load_sheet(sheet_path: str | Path, schema_path: str | Path, key: str) -> dict[str, dict]:
    """Read a TSV sheet, coerce types, validate every row; errors name file, row (file line) and column."""
    if not Path(sheet_path).is_file():
        raise WorkflowError(f"Sheet {sheet_path} (named in the config) does not exist")
    schema = yaml.safe_load(Path(schema_path).read_text())
    props = schema.get("properties", {})
    header_line, header, records = _read_tsv(sheet_path, set(props))
    missing = [c for c in schema.get("required", []) if c not in header]
    if missing:
        raise _sheet_error(sheet_path, header_line, missing[0],
                           f"required column '{missing[0]}' is missing (header row)")
    # jsonschema directly (snakemake.utils.validate checks the config): its error carries the column.
    row_validator = Draft202012Validator(schema)
    rows = []
    for line, cells in records:
        row = {}
        for col, val in zip(header, cells + [""] * (len(header) - len(cells))):
            kind = props.get(col, {}).get("type")
            if val.strip() == "" and col not in schema.get("required", []):
                continue
            row[col] = _coerce(val, kind)
        error = best_match(row_validator.iter_errors(row))
        if error is not None:
            path = list(error.absolute_path)
            column = str(path[0]) if path else None
            if column is None and error.validator == "required":
                column = str(error.message).split("'")[1]
            raise _sheet_error(sheet_path, line, column, error.message)
        row["_line"] = line
        rows.append(row)
    seen: dict[str, tuple[str, int]] = {}  # lower-case name -> (name, row)
    for row in rows:
        name = row[key]
        if name.lower() in seen:
            first, line = seen[name.lower()]
            why = "" if first == name else (f" as '{first}': names that differ only in case share one output "
                                            "folder on macOS and Windows")
            raise _sheet_error(sheet_path, row["_line"], key,
                               f"duplicate {key} '{name}' (first defined on row {line}{why})")
        seen[name.lower()] = (name, row["_line"])
    return {row[key]: row for row in rows}



def whole_numbers_to_int(config: dict, schema_path: str | Path) -> None:
    """Turn whole floats that sit where the schema wants an integer into ints, in place.

    JSON Schema counts ``50000.0`` as an integer, so YAML such as ``max_steps: 5.0e+4`` or ``batch_size: 32.0``
    passes validation; written back as ``--max-steps 50000.0`` it would then stop `dre train` (argparse's
    ``int``) when the job starts, hours into a run. Run after validation (which has rejected 2.5 already).
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = validators.extend(Draft202012Validator, type_checker=checker)(schema)
    for error in strict.iter_errors(config):
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        value = error.instance
        if error.validator == "type" and "integer" in wanted and isinstance(value, float) and value.is_integer():
            *parents, last = error.absolute_path
            holder = config
            for part in parents:
                holder = holder[part]
            holder[last] = int(value)


def check_cross_references(config: dict, albums: dict, edits: dict, made_by_rules: frozenset[Path] = frozenset()) -> None:
    """Checks a JSON schema cannot express: references between sheets and the config, existing folders.

    ``made_by_rules``: paths a rule of the workflow writes (the demo's photos); they need not exist yet.
    """
    from dre.utils.images import list_images  # the checkout is on sys.path (common.smk)

    priors = config["stage1"]["priors"]
    sheet = config["albums"]
    for name, row in albums.items():
        if Path(row["path"]) not in made_by_rules and not Path(row["path"]).is_dir():
            problem = "is a file, not a folder of photos" if Path(row["path"]).exists() else "does not exist"
            raise _sheet_error(sheet, row["_line"], "path", f"album folder '{row['path']}' {problem}")
        _check_no_braces(sheet, row["_line"], "path", f"album folder '{row['path']}'", row["path"])
        if Path(row["path"]).is_dir():  # the align rule's inputs are the photos themselves
            for photo in list_images(row["path"]):
                _check_no_braces(sheet, row["_line"], "path", f"photo '{photo}'", photo.name)
        if row["role"] == "personal":
            prior = row.get("prior", "")
            if not prior:
                raise _sheet_error(sheet, row["_line"], "prior", "a personal album needs a stage-1 prior")
            if prior not in priors:
                raise _sheet_error(
                    sheet, row["_line"], "prior",
                    f"unknown prior '{prior}' (config stage1.priors has: {', '.join(sorted(priors))})",
                )
    used = {row.get("prior") for row in albums.values() if row["role"] == "personal"}
    for prior, spec in priors.items():
        if prior not in used:  # e.g. the default config's prior when a --configfile adds its own
            continue
        weights = spec.get("weights", [])
        if weights and len(weights) != len(spec["albums"]):
            raise WorkflowError(
                f"config stage1.priors.{prior}: {len(weights)} weights for {len(spec['albums'])} albums"
            )
        if spec.get("official_checkpoint"):
            if "{" in spec["official_checkpoint"] or "}" in spec["official_checkpoint"]:
                raise WorkflowError(f"config stage1.priors.{prior}.official_checkpoint '{spec['official_checkpoint']}' "
                                    "has '{' or '}' in its name, which Snakemake reads as a wildcard; rename it")
            continue
        for album in spec["albums"]:
            if album not in albums:
                raise WorkflowError(f"config stage1.priors.{prior}: album '{album}' is not a row of {sheet}")
            if albums[album]["role"] != "prior":
                raise WorkflowError(
                    f"config stage1.priors.{prior}: album '{album}' has role '{albums[album]['role']}' "
                    f"in {sheet}; only role 'prior' albums train stage 1"
                )
    esheet = config["edits"]
    for name, row in edits.items():
        album = row["album"]
        if album not in albums:
            raise _sheet_error(
                esheet, row["_line"], "album",
                f"unknown album '{album}' (rows of {sheet}: {', '.join(sorted(albums))})",
            )
        if albums[album]["role"] != "personal":
            raise _sheet_error(esheet, row["_line"], "album", f"album '{album}' is not a personal album")
        modes = _parse_modes(esheet, row)
        target = row.get("target")
        if not target:
            reading = [m.name for m in modes if m.reads_target]
            if reading:
                raise _sheet_error(esheet, row["_line"], "target",
                                   f"mode(s) {', '.join(dict.fromkeys(reading))} need a target; only parametric "
                                   "modes (pose:yaw=20, jaw:open=10, light:azimuth=-60) edit without one")
        elif Path(target) not in made_by_rules and not (Path(target).is_file() or Path(target).is_dir()):
            raise _sheet_error(esheet, row["_line"], "target",
                               f"target image or frames folder '{target}' does not exist")
        if target:
            _check_no_braces(esheet, row["_line"], "target", f"target '{target}'", target)
        for ref in sheet_references(modes):
            _check_reference(esheet, row["_line"], ref, made_by_rules)
        folder = Path(albums[album]["path"])
        if row.get("sources") and folder not in made_by_rules and folder.is_dir():
            _check_sources(esheet, row["_line"], row["sources"], album, [p.stem for p in list_images(folder)])


def _check_sources(sheet: str | Path, line: int, sources: str, album: str, stems: list[str]) -> None:
    """Each stem of ``sources`` names a photo of the album: `dre edit` would refuse an unknown one only after
    stage 2 has trained. An aligned face may be called ``<stem>_<k>`` (the k-th face of a photo) or
    ``<stem>.<ext>`` (two photos with one stem), so a name that extends a photo's stem that way passes."""
    for name in (s.strip() for s in sources.split(",")):
        if not any(name == st or name.startswith((st + "_", st + ".")) for st in stems):
            close = sorted(st for st in stems if st.lower().startswith(name[:3].lower()))[:5] or sorted(stems)[:5]
            raise _sheet_error(sheet, line, "sources", f"no photo '{name}' in album '{album}' "
                               f"(photo stems such as: {', '.join(close)}{' ...' if len(stems) > 5 else ''})")


def _parse_modes(sheet: str | Path, row: dict) -> list:
    """The row's modes parsed as `dre edit` parses them (rig terms validated: name, range, units)."""
    from dre.edit.modes import parse_modes  # the checkout is on sys.path (common.smk); no torch is loaded
    from dre.errors import DreError

    try:
        return parse_modes(row["modes"], flag="modes")
    except DreError as exc:
        raise _sheet_error(sheet, row["_line"], "modes", str(exc)) from None


def sheet_references(modes: list) -> list[str]:
    """The reference photos a row's rig terms read besides its target (``light:from=lamp.jpg``), in order of
    first use, each once. The workflow aligns each one (rule align_reference) before the edit reads it."""
    refs: list[str] = []
    for m in modes:
        refs += [r for r in m.references if r != "target" and r not in refs]
    return refs


def _check_reference(sheet: str | Path, line: int, ref: str, made_by_rules: frozenset[Path] = frozenset()) -> None:
    """A reference in a sheet is one photo: the workflow aligns it and the edit reads its single face. Like a
    target, it may be a photo a rule writes (the demo's target.jpg), which need not exist yet."""
    from dre.utils.images import is_image_name, is_video_name

    path = Path(ref)
    if path.is_dir() or is_video_name(ref):
        raise _sheet_error(sheet, line, "modes",
                           f"reference '{ref}' is a {'folder' if path.is_dir() else 'video'}; a rig term reads one "
                           "photo (to drive an edit by frames, put the folder or clip in the target column)")
    if not is_image_name(ref):
        raise _sheet_error(sheet, line, "modes", f"reference '{ref}' is not a photo file name")
    if not path.is_file() and path not in made_by_rules:
        raise _sheet_error(sheet, line, "modes", f"reference photo '{ref}' does not exist")
    _check_no_braces(sheet, line, "modes", f"reference photo '{ref}'", ref)


def _check_no_braces(sheet: str | Path, line: int, column: str, what: str, path: str) -> None:
    """Snakemake reads ``{...}`` in an input path as a wildcard and has no escape for it (a folder named
    ``shoot {2}`` stops the DAG with a bare WildcardError), so a sheet path must not hold a brace."""
    if "{" in str(path) or "}" in str(path):
        raise _sheet_error(sheet, line, column, f"{what} has '{{' or '}}' in its name, which Snakemake reads as a "
                           "wildcard (there is no escape for it); rename it")


