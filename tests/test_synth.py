"""`dre assets synth`: deterministic, in the official formats, a sane synthetic head."""

from __future__ import annotations

import pickletools
import subprocess
from pathlib import Path

import numpy as np
import torch

from dre.assets.catalog import (
    DECA_FILE,
    FLAME_FILE,
    LANDMARK_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
    emoca_path,
    locate_emoca_checkpoint,
)
from dre.face3d.face_model import load_head_template
from dre.face3d.flame import load_flame, load_landmark_embedding
from dre.face3d.synth import write_synthetic_assets
from dre.utils.synthetic import MARKER_NAME, is_synthetic_assets


def _globals_in_pickle(data: bytes) -> set[str]:
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
    return names


def test_flame_pickle_uses_chumpy_and_sparse_like_flame2020(synthetic_assets: Path) -> None:
    names = _globals_in_pickle((synthetic_assets / FLAME_FILE).read_bytes())
    assert "chumpy.ch.Ch" in names
    assert any(n.startswith("scipy.sparse") and n.endswith("csc_matrix") for n in names)
    names = _globals_in_pickle((synthetic_assets / LANDMARK_FILE).read_bytes()[128:])
    assert "torch._utils._rebuild_tensor_v2" in names


def test_synth_is_deterministic(tmp_path: Path, synthetic_assets: Path) -> None:
    a = write_synthetic_assets(tmp_path / "a", seed=0)
    for name in (FLAME_FILE, TEMPLATE_FILE, MARKER_NAME, "emoca/EMOCA_v2_lr_mse_20/cfg.yaml"):
        assert (a / name).read_bytes() == (synthetic_assets / name).read_bytes(), name
    # containers with torch-written parts carry per-save ids: compare contents
    e1, e2 = (load_landmark_embedding(d / LANDMARK_FILE) for d in (a, synthetic_assets))
    assert all(np.array_equal(getattr(e1, k), getattr(e2, k)) for k in vars(e1))
    with np.load(a / TEXTURE_FILE) as x, np.load(synthetic_assets / TEXTURE_FILE) as y:
        assert all(np.array_equal(x[k], y[k]) for k in ("mean", "tex_dir"))
    s1 = torch.load(a / DECA_FILE, weights_only=True)["E_flame"]
    s2 = torch.load(synthetic_assets / DECA_FILE, weights_only=True)["E_flame"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    c1 = locate_emoca_checkpoint(emoca_path(a))
    e1 = torch.load(c1, weights_only=True)["state_dict"]
    e2 = torch.load(locate_emoca_checkpoint(emoca_path(synthetic_assets)), weights_only=True)["state_dict"]
    assert all(torch.equal(e1[k], e2[k]) for k in e1)


def test_synthetic_head_is_sane(synthetic_assets: Path) -> None:
    assert is_synthetic_assets(synthetic_assets)
    m = load_flame(synthetic_assets / FLAME_FILE)
    v, f = m.v_template, m.faces
    # closed, consistently outward-oriented surface: every edge shared by exactly two faces, in opposite directions
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)
    assert {tuple(e) for e in edges.tolist()} == {tuple(e) for e in edges[:, ::-1].tolist()}
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (np.einsum("ij,ij->i", n, v[f].mean(1)) > 0).mean() > 0.98  # outward normals
    # joints: eyes in front and above the jaw joint, root and neck below
    j = m.J_regressor @ v
    assert j[3, 2] > 0.05 and j[4, 2] > 0.05 and j[3, 0] < 0 < j[4, 0]
    assert j[0, 1] < j[2, 1] < j[3, 1]
    tmpl = load_head_template(synthetic_assets / TEMPLATE_FILE)
    assert np.allclose(tmpl.vertices, v, atol=1e-6)
    # the face occupies the front: landmark bbox ≈ 0.13 m wide, centred on x = 0
    emb = load_landmark_embedding(synthetic_assets / LANDMARK_FILE, n_faces=len(f))
    lmk = np.einsum("lk,lkc->lc", emb.full_bary, v[f[emb.full_faces]])
    assert 0.11 < np.ptp(lmk[:, 0]) < 0.15 and abs(lmk[:, 0].mean()) < 0.005 and (lmk[:, 2] > 0.03).all()


def test_cli_assets_synth(tmp_path: Path, synthetic_assets: Path, dre_cmd, cli_env) -> None:
    out = tmp_path / "assets"
    r = subprocess.run([*dre_cmd, "assets", "synth", "--out", str(out), "--seed", "3"], capture_output=True, text=True, env=cli_env)
    assert r.returncode == 0, r.stderr
    assert is_synthetic_assets(out) and "SYNTHETIC" in r.stderr and (out / DECA_FILE).is_file()
    # another seed, other content (the fixture is seed 0)
    assert (out / FLAME_FILE).read_bytes() != (synthetic_assets / FLAME_FILE).read_bytes()
