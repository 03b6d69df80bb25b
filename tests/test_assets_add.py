"""`dre assets add` on archives in the official layouts (built from synthetic files) and hostile ones."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from dre.assets.add import add_one, run
from dre.assets.archive import Limits
from dre.assets.catalog import (
    DECA_FILE,
    DEFAULT_EMOCA_MODEL,
    EMOCA_DIR,
    FAN_DIR,
    FLAME_FILE,
    LANDMARK_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
)
from dre.assets.check import check_assets
from dre.assets.config import AddConfig
from dre.assets.placement import read_manifest
from dre.cli import main
from dre.errors import DreError
from dre.face3d.synth import EMOCA_CKPT
from tests._asset_archives import deca_tar, emoca_zip, fan_weights, flame_zip, synthetic_target, texture_zip
from tests._loopback import Behaviour, serve

S3FD = "s3fd-619a316812.pth"
FAN4 = "2DFAN4-11f355bf06.pth.tar"


@pytest.fixture(scope="module")
def downloads(synthetic_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What a registered user has in ~/Downloads (synthetic stand-ins in the official layouts)."""
    d = tmp_path_factory.mktemp("Downloads")
    return {
        "flame": flame_zip(synthetic_assets, d / "FLAME2020.zip"),
        "texture": texture_zip(synthetic_assets, d / "TextureSpace.zip"),
        "deca": deca_tar(synthetic_assets, d / "deca_model.tar"),
        "emoca": emoca_zip(synthetic_assets, d / f"{DEFAULT_EMOCA_MODEL}.zip"),
    }


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def test_add_official_layouts(tmp_path: Path, downloads: dict[str, Path], synthetic_assets: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assets = synthetic_target(tmp_path / "assets")
    t0 = time.perf_counter()
    placed = run(AddConfig(assets=assets, inputs=tuple(downloads.values())), stream=io.StringIO())
    took = time.perf_counter() - t0
    rels = {p.rel for p in placed if p.action == "added"}
    model = f"{EMOCA_DIR}/{DEFAULT_EMOCA_MODEL}"
    assert rels == {FLAME_FILE, TEXTURE_FILE, DECA_FILE, model}
    for rel in (FLAME_FILE, TEXTURE_FILE, DECA_FILE):  # the generic model, not the male/female ones
        assert (assets / rel).read_bytes() == (synthetic_assets / rel).read_bytes(), rel
    assert (assets / model / "cfg.yaml").is_file() and (assets / model / EMOCA_CKPT).is_file()
    assert _tree(assets) - _tree(synthetic_assets) <= {".dre-assets.json"}  # nothing else (no PDF, no PNG)
    assert set(read_manifest(assets)) == rels
    table = capsys.readouterr().out  # the check table closes the command: the added rows are valid
    for name in (FLAME_FILE, TEXTURE_FILE, DECA_FILE, model):
        assert re.search(rf"^{re.escape(name)}\s+yes\s+yes\s+yes\s+-$", table, re.M), (name, table)
    assert re.search(rf"^{TEMPLATE_FILE}\s+yes\s+NO\s+-\s+missing\s+`dre assets fetch deca-data", table, re.M)
    print(f"\n[timing] dre assets add, 4 synthetic archives (incl. the closing check table): {took:.2f} s")
    # again: a valid file is left untouched (not even rewritten)
    stamp = os.stat(assets / DECA_FILE).st_mtime_ns
    assert [p.action for p in add_one(assets, downloads["deca"], official=False)] == ["present"]
    assert os.stat(assets / DECA_FILE).st_mtime_ns == stamp


def test_recognised_by_content_not_name(tmp_path: Path, downloads: dict[str, Path], synthetic_assets: Path) -> None:
    """Renamed downloads, bare asset files and face-alignment weights all land under their right names."""
    dl = tmp_path / "dl"
    dl.mkdir()
    inputs = [downloads["deca"], synthetic_assets / TEXTURE_FILE, synthetic_assets / TEMPLATE_FILE,
              synthetic_assets / LANDMARK_FILE, *[dl / "fan" / n for n in fan_weights(dl / "fan")]]  # fmt: skip
    for i, src in enumerate(inputs):
        renamed = dl / f"download ({i}).bin"
        renamed.write_bytes(src.read_bytes())
        inputs[i] = renamed
    assets = synthetic_target(tmp_path / "assets")
    placed = {p.rel for src in inputs for p in add_one(assets, src, official=False)}
    assert placed == {DECA_FILE, TEXTURE_FILE, TEMPLATE_FILE, LANDMARK_FILE, f"{FAN_DIR}/{S3FD}", f"{FAN_DIR}/{FAN4}"}
    rows = {r.name: r for r in check_assets(assets, require=("deca", "fan"))}
    for name in (DECA_FILE, TEXTURE_FILE, LANDMARK_FILE, FAN_DIR):
        assert rows[name].ok, (name, rows[name].problem)


def test_wrong_files_are_named_and_refused(tmp_path: Path, synthetic_assets: Path) -> None:
    assets = synthetic_target(tmp_path / "assets")
    html = tmp_path / "deca_model.tar"
    html.write_bytes(b"<!DOCTYPE html><html>Google Drive - virus scan warning</html>")
    bfm = tmp_path / "FLAME_albedo_from_BFM.npz"
    import numpy as np

    np.savez(bfm, MU=np.zeros(3), PC=np.zeros((3, 2)))
    ckpt = tmp_path / "some.ckpt"
    torch.save({"state_dict": {"deca.E_expression.layers.0.weight": torch.zeros(1)}}, ckpt)
    for path, words in [(html, "HTML page"), (bfm, "FLAME texture space"), (ckpt, "model's zip")]:
        with pytest.raises(DreError) as ei:
            add_one(assets, path, official=False)
        assert str(path) in str(ei.value) and words in str(ei.value)
    assert _tree(assets) == {"SYNTHETIC"}


def test_foreign_invalid_file_is_never_overwritten(tmp_path: Path, downloads: dict[str, Path]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    (assets / FLAME_FILE).write_bytes(b"my own notes")
    with pytest.raises(DreError) as ei:
        add_one(assets, downloads["flame"], official=False)
    assert str(assets / FLAME_FILE) in str(ei.value) and "dre did not place it" in str(ei.value)
    assert (assets / FLAME_FILE).read_bytes() == b"my own notes" and _tree(assets) == {"SYNTHETIC", FLAME_FILE}


def test_an_input_adds_all_its_assets_or_none(tmp_path: Path, synthetic_assets: Path) -> None:
    """A valid FLAME model next to a broken DECA file in one archive: neither is placed."""
    bad = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.write(synthetic_assets / FLAME_FILE, "FLAME2020/generic_model.pkl")
        buf = io.BytesIO()
        torch.save({"E_flame": {"encoder.conv1.weight": torch.zeros(1)}}, buf)
        z.writestr("deca/deca_model.tar", buf.getvalue())
    assets = synthetic_target(tmp_path / "assets")
    with pytest.raises(DreError) as ei:
        add_one(assets, bad, official=False)
    assert "deca_model.tar" in str(ei.value)
    assert _tree(assets) == {"SYNTHETIC"}  # no FLAME either, and no staging folder left


# ------------------------------------------------------------------------------------------ hostile archives
def _zip(path: Path, members: dict[str, bytes], *, link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


def _lie_about_size(path: Path, member: str, delta: int) -> None:
    """Rewrite the declared uncompressed size of ``member`` (local header and central directory)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local = info.header_offset
    struct.pack_into("<I", raw, local + 22, info.file_size + delta)
    central = raw.find(b"PK\x01\x02")
    while central >= 0:
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46 : central + 46 + n].decode() == member:
            struct.pack_into("<I", raw, central + 24, info.file_size + delta)
            break
        central = raw.find(b"PK\x01\x02", central + 4)
    else:
        raise AssertionError(f"{member} not in the central directory")
    path.write_bytes(bytes(raw))


def _tar(path: Path, kind: str) -> Path:
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("data/generic_model.pkl")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            info.type, info.linkname = tarfile.LNKTYPE, "../../outside"
        t.addfile(info)
    return path


@pytest.fixture(scope="module")
def flame_bytes() -> bytes:
    """A small pickle standing for a FLAME model: every hostile archive must be refused before (or while)
    its members are read, whatever they hold."""
    return b"\x80\x02}q\x00." + bytes(range(256)) * 256


HOSTILE = ["traversal", "absolute", "zip-symlink", "tar-symlink", "tar-hardlink", "size-lie-short",
           "size-lie-long", "bomb-ratio", "tgz-bomb", "bomb-size"]  # fmt: skip


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_archive_refused_and_nothing_written(tmp_path: Path, flame_bytes: bytes, kind: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    a = src / "FLAME2020.zip"
    limits = Limits()
    words = {
        "traversal": "'..'", "absolute": "absolute path", "zip-symlink": "symbolic link", "tar-symlink": "symbolic link",
        "tar-hardlink": "hard link", "size-lie-short": "declared size lies", "size-lie-long": "declared size lies",
        "bomb-ratio": "compression bomb", "tgz-bomb": "compression bomb", "bomb-size": "cap",
    }[kind]  # fmt: skip
    if kind == "traversal":
        _zip(a, {"generic_model.pkl": flame_bytes, "../../evil.pkl": flame_bytes})
    elif kind == "absolute":
        _zip(a, {"generic_model.pkl": flame_bytes, str(tmp_path / "evil.pkl"): flame_bytes})
    elif kind == "zip-symlink":
        _zip(a, {"generic_model.pkl": flame_bytes}, link="female_model.pkl")
    elif kind in ("tar-symlink", "tar-hardlink"):
        a = _tar(src / "FLAME2020.tar", kind[4:])
    elif kind.startswith("size-lie"):
        _zip(a, {"generic_model.pkl": flame_bytes})
        _lie_about_size(a, "generic_model.pkl", -100 if kind.endswith("short") else 100)
    elif kind == "tgz-bomb":
        a = src / "FLAME2020.tar.gz"
        with tarfile.open(a, "w:gz") as t:
            info = tarfile.TarInfo("generic_model.pkl")
            info.size = 8 << 20
            t.addfile(info, io.BytesIO(b"\0" * info.size))
    elif kind == "bomb-ratio":
        _zip(a, {"generic_model.pkl": flame_bytes, "male_model.pkl": b"\0" * (8 << 20)})
    else:
        _zip(a, {"generic_model.pkl": flame_bytes})
        limits = Limits(member_bytes=len(flame_bytes) - 1)
    assets = synthetic_target(tmp_path / "assets")
    before = _tree(tmp_path)
    with pytest.raises(DreError) as ei:
        add_one(assets, a, limits=limits, official=False)
    assert str(a) in str(ei.value) and words in str(ei.value), str(ei.value)
    assert _tree(tmp_path) == before  # nothing written anywhere: not in the folder, not outside it
    assert not (tmp_path.parent / "evil.pkl").exists()


def test_cli_add_exit_codes(tmp_path: Path, downloads: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    left = assets / ".dre-add.k1ll3d00.tmp"  # the staging folder of a run that was killed
    (left / "emoca").mkdir(parents=True)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    assert main(["assets", "add", str(downloads["deca"]), str(junk), "--assets", str(assets)]) == 2
    cap = capsys.readouterr()
    assert "deca_model.tar" in cap.out and "1 of 2 input(s) not added" in cap.err and str(junk) in cap.err
    assert (assets / DECA_FILE).is_file()  # the good input was still added
    assert not left.exists() and not [p for p in assets.iterdir() if p.name.startswith(".dre-add")]


def test_two_commands_from_empty_folder_to_green_check(tmp_path: Path, downloads: dict[str, Path],
                                                        synthetic_assets: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The user's flow: `dre assets add ~/Downloads/*` then `dre assets fetch all`, then a green check
    (the loopback server stands in for the internet, behind the --mirror flag)."""
    for k in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    files = {f"/{n}": b for n, b in fan_weights(tmp_path / "fan").items()}
    files |= {f"/{n}": (synthetic_assets / n).read_bytes() for n in (TEMPLATE_FILE, LANDMARK_FILE)}
    assets = synthetic_target(tmp_path / "assets")
    t0 = time.perf_counter()
    assert main(["assets", "add", *map(str, downloads.values()), "--assets", str(assets)]) == 0
    t1 = time.perf_counter()
    with serve(Behaviour(files=files)) as base:
        assert main(["assets", "fetch", "all", "--assets", str(assets), "--mirror", base]) == 0
    t2 = time.perf_counter()
    capsys.readouterr()
    assert main(["assets", "check", "--assets", str(assets), "--require", "deca,emoca,fan"]) == 0
    t3 = time.perf_counter()
    assert "all required assets present and valid" in capsys.readouterr().err
    assert (assets / FAN_DIR / S3FD).is_file() and (assets / FAN_DIR / FAN4).is_file()
    print(f"\n[timing] add {t1 - t0:.2f} s, fetch {t2 - t1:.2f} s, check {t3 - t2:.2f} s")


def test_legacy_torch_format_deca_model_is_recognised(tmp_path: Path, synthetic_assets: Path) -> None:
    """DECA's release may predate torch's zip format: the legacy pickle-based file is recognised by content."""
    state = torch.load(synthetic_assets / DECA_FILE, weights_only=True)
    legacy = tmp_path / "deca_model.tar"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy)
    assets = synthetic_target(tmp_path / "assets")
    assert [(p.rel, p.action) for p in add_one(assets, legacy, official=False)] == [(DECA_FILE, "added")]


def test_emoca_model_name_from_folder_or_archive(tmp_path: Path) -> None:
    from dre.assets.add import _emoca_pieces
    from dre.assets.archive import Archive

    cfg = b"detail:\n  model: {deca_class: ExpDECA}\n"
    ck = "detail/checkpoints/deca-epoch=01-val_loss=0.5.ckpt"
    nested = _zip(tmp_path / "a.zip", {"EMOCA_v2_mp/cfg.yaml": cfg, f"EMOCA_v2_mp/{ck}": b"x",
                                       "EMOCA_v2_mp/detail/checkpoints/last.ckpt": b"y"})  # fmt: skip
    flat = _zip(tmp_path / "EMOCA_v2_lr_cos_1.5.zip", {"cfg.yaml": cfg, ck: b"x"})
    with Archive(nested) as a:
        assert [(n, c.name, k.name) for n, c, k in _emoca_pieces(a)] == [
            ("EMOCA_v2_mp", "EMOCA_v2_mp/cfg.yaml", f"EMOCA_v2_mp/{ck}")  # the best checkpoint, not last.ckpt
        ]
    with Archive(flat) as a:
        assert [n for n, _, _ in _emoca_pieces(a)] == ["EMOCA_v2_lr_cos_1.5"]  # not cut at its dot
