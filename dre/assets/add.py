"""``dre assets add``: put the files a user downloaded after registering into the assets folder.

Each input (``FLAME2020.zip``, the FLAME texture space, ``deca_model.tar``, an EMOCA model zip, or a
single asset file) is recognised by content (:mod:`dre.assets.recognise`); only the members an asset
needs are extracted (:mod:`dre.assets.archive`, which refuses hostile archives outright), into a staging
folder inside the assets folder. Everything staged from one input is validated by the loaders
``dre assets check`` runs; only then is each piece moved into place by one rename. So an input either
adds all its assets or none, nothing is ever written outside the assets folder, and an interrupted run
leaves only its staging folder, which the next run removes. Valid files already in place are left
untouched, and an invalid file that dre did not place is never replaced (:mod:`dre.assets.placement`).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from dre.assets.archive import Archive, Limits, Member
from dre.assets.config import AddConfig
from dre.assets.catalog import EMOCA_DIR, FLAME_FILE, best_checkpoint
from dre.assets.placement import Placed, folder_lock, record, valid_in_place
from dre.assets.recognise import file_role, member_role
from dre.assets.check import check_assets, file_validator, format_table, problem
from dre.errors import DreError
from dre.safety.atomic import publish_dir, publish_file, sweep
from dre.utils.synthetic import is_synthetic_assets

STAGING = "dre-add"  # staging folders are .dre-add.<random>.tmp inside the assets folder
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_CFG_BYTES = 1 << 20
_ARCHIVE_SUFFIX = re.compile(r"\.(tar\.gz|tar\.bz2|tar\.xz|tgz|zip|tar)$", re.IGNORECASE)  # model names may have dots


class _Stager:
    """Stages the assets of one input inside ``staging``; :meth:`publish` moves them into ``root``."""

    def __init__(self, root: Path, staging: Path, src: Path, official: bool) -> None:
        self.root, self.staging, self.src, self.official = root, staging, src, official
        self.staged: dict[str, str] = {}  # rel -> source description
        self.present: list[str] = []

    def wanted(self, rel: str) -> bool:
        """False when a valid file is already in place (or staged from this input)."""
        if rel in self.staged or rel in self.present:
            return False
        if valid_in_place(self.root, rel, file_validator(rel, self.official)):
            self.present.append(rel)
            return False
        return True

    def check(self, rel: str) -> str | None:
        """Validate the staged ``rel``; the problem, or None."""
        return problem(file_validator(rel, self.official), self.staging / rel)

    def publish(self) -> list[Placed]:
        out = [Placed(rel, "present", str(self.src)) for rel in self.present]
        for rel, source in self.staged.items():
            staged, dest = self.staging / rel, self.root / rel
            (publish_dir if staged.is_dir() else publish_file)(staged, dest)
            record(self.root, rel, source)
            out.append(Placed(rel, "added", source))
        return out


def _stage_file(st: _Stager, rel: str) -> None:
    """A single asset file given as is: copied into staging and validated there."""
    if not st.wanted(rel):
        return
    dest = st.staging / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(st.src, dest)
    why = st.check(rel)
    if why is not None:
        raise DreError(f"{st.src}: looks like {rel} but is not valid ({why})")
    st.staged[rel] = str(st.src)


def _emoca_pieces(arc: Archive) -> list[tuple[str, Member, Member]]:
    """(model name, cfg.yaml member, best checkpoint member) of every EMOCA model folder in ``arc``."""
    found = []
    for m in arc.members:
        p = PurePosixPath(m.name)
        if p.name != "cfg.yaml" or m.size > _CFG_BYTES:
            continue
        try:
            cfg = yaml.safe_load(b"".join(arc.chunks(m)).decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if not (isinstance(cfg, dict) and ({"coarse", "detail"} & set(cfg) or "model" in cfg)):
            continue
        folder = p.parent
        every = sorted(PurePosixPath(n) for n in arc.by_name if n.endswith(".ckpt"))
        ckpts = [c for c in every if c.is_relative_to(folder / "detail")] or [c for c in every if c.is_relative_to(folder)]
        best = best_checkpoint(ckpts)
        if best is None:
            raise DreError(f"{arc.path}: {m.name} has no EMOCA checkpoint ('...=<val_loss>.ckpt') beside it")
        name = folder.name if folder.name else _ARCHIVE_SUFFIX.sub("", arc.path.name)
        if not _MODEL_NAME.match(name):
            raise DreError(f"{arc.path}: EMOCA model folder name {name!r} is not a plain name; refusing it")
        found.append((name, m, arc.by_name[best.as_posix()]))
    return found


def _stage_archive(st: _Stager, limits: Limits) -> None:
    with Archive(st.src, limits) as arc:
        used: set[str] = set()
        for name, cfg, ckpt in _emoca_pieces(arc):
            rel = f"{EMOCA_DIR}/{name}"
            used.update((cfg.name, ckpt.name))
            if not st.wanted(rel):
                continue
            folder = st.staging / rel
            ck_rel = PurePosixPath(ckpt.name).relative_to(PurePosixPath(cfg.name).parent)
            (folder / ck_rel).parent.mkdir(parents=True, exist_ok=True)
            arc.extract(cfg, folder / "cfg.yaml")
            arc.extract(ckpt, folder / ck_rel)
            why = st.check(rel)
            if why is not None:
                raise DreError(f"{st.src}: the EMOCA model {name} in it is not valid ({why})")
            st.staged[rel] = f"{st.src}!{PurePosixPath(cfg.name).parent}"
        # single-file assets: guess by first bytes, extract, and let the loader decide
        candidates: dict[str, list[Member]] = {}
        probes = []
        for m in arc.members:
            if m.name in used:
                continue
            role = member_role(m.name, arc.head(m, 4096))
            if role == "probe":
                probes.append(m)
            elif role not in (None, "cfg"):
                candidates.setdefault(role, []).append(m)
        for i, m in enumerate(probes):  # zip-based or torch files: extract, then tell them apart
            tmp = st.staging / f".probe-{i}"
            arc.extract(m, tmp)
            try:
                role = file_role(tmp)
            except DreError:
                role = None
            if role is None or not st.wanted(role):
                tmp.unlink()
                continue
            _accept(st, role, m, tmp)
        for role, members in candidates.items():
            canonical = [m for m in members if PurePosixPath(m.name).name == PurePosixPath(role).name]
            if role == FLAME_FILE and len(members) > 1:
                members = canonical  # male/female models share the structure: only the generic one is wanted
                if not members:
                    raise DreError(f"{st.src}: holds several FLAME-like models but no {FLAME_FILE}")
            else:
                members = canonical + [m for m in members if m not in canonical]
            if not st.wanted(role):
                continue
            for j, m in enumerate(members):
                tmp = st.staging / f".cand-{len(st.staged)}-{j}"
                arc.extract(m, tmp)
                if _accept(st, role, m, tmp, quiet=j + 1 < len(members)):
                    break


def _accept(st: _Stager, rel: str, m: Member, tmp: Path, quiet: bool = False) -> bool:
    """Move ``tmp`` (extracted from ``m``) to ``staging/rel`` when valid; DreError (unless ``quiet``) if not."""
    dest = st.staging / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(dest)
    why = st.check(rel)
    if why is None:
        st.staged[rel] = f"{st.src}!{m.name}"
        return True
    dest.unlink()
    if not quiet:
        raise DreError(f"{st.src}: no valid {rel} in it ({m.name}: {why})")
    return False


def add_one(root: Path, src: Path, *, limits: Limits = Limits(), official: bool = True) -> list[Placed]:
    """Add every asset found in ``src`` to ``root``: all of them, or (on any error) none."""
    src = Path(src)
    if src.is_dir():
        raise DreError(f"{src} is a folder; give the downloaded files in it (e.g. {src}/*.zip)")
    if not src.is_file():
        raise DreError(f"{src}: no such file")
    staging = Path(tempfile.mkdtemp(prefix=f".{STAGING}.", suffix=".tmp", dir=root))
    try:
        st = _Stager(root, staging, src, official)
        role = file_role(src)
        if role is None:
            _stage_archive(st, limits)
        else:
            _stage_file(st, role)
        if not st.staged and not st.present:
            raise DreError(
                f"{src}: found no asset in it (expected FLAME2020.zip, the FLAME texture space, deca_model.tar, an "
                "EMOCA model zip, face-alignment weights or DECA's data files)"
            )
        return st.publish()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run(cfg: AddConfig, stream: Any = None) -> list[Placed]:
    """Add every input (each all-or-nothing), print the ``dre assets check`` table, then report failures."""
    out = sys.stderr if stream is None else stream
    root = Path(cfg.assets)
    if not cfg.inputs:
        raise DreError("give at least one downloaded archive or file")
    placed: list[Placed] = []
    errors: list[str] = []
    with folder_lock(root, "dre assets add"):
        official = not is_synthetic_assets(root)
        sweep(root / STAGING)  # staging folders an interrupted run left behind
        for src in cfg.inputs:
            try:
                got = add_one(root, Path(src), limits=cfg.limits, official=official)
            except DreError as exc:
                errors.append(str(exc))
                print(f"{src}: not added: {exc}", file=out, flush=True)
                continue
            for p in got:
                what = f"added from {p.source}" if p.action == "added" else "already present and valid, left untouched"
                print(f"{p.rel}: {what}", file=out, flush=True)
            placed += got
    model = cfg.emoca_model or next(
        (p.rel.split("/", 1)[1] for p in placed if p.rel.startswith(EMOCA_DIR + "/")), None
    )
    rows = check_assets(root, require=cfg.require.split(","), **({"emoca_model": model} if model else {}))
    print(format_table(rows), flush=True)
    if errors:
        raise DreError(f"{len(errors)} of {len(cfg.inputs)} input(s) not added (nothing from them was written):\n"
                       + "\n".join(errors))  # fmt: skip
    return placed
