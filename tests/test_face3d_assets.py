"""Asset loaders and validators: synthetic files through the real loaders, hostile and broken files."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from dre.errors import DreError
from dre.face3d import assets as A
from dre.face3d.codes import FlameCodes
from dre.face3d.encoders import (
    DECA_CODE_SIZE,
    EmocaFlags,
    ResnetEncoder,
    codes_from_outputs,
    expected_shapes,
    load_face_encoder,
)
from dre.safety.unpickle import load_flame_pickle, load_npy


def test_loaders_on_synthetic_assets(synthetic_assets: Path) -> None:
    flame = A.load_flame(synthetic_assets / A.FLAME_FILE)
    v = flame.n_vertices
    assert flame.shapedirs.shape == (v, 3, 400) and flame.posedirs.shape == (v, 3, 36)
    assert flame.J_regressor.shape == (5, v) and np.allclose(flame.J_regressor.sum(1), 1.0)
    assert flame.parents.tolist() == [-1, 0, 1, 1, 1]
    tmpl = A.load_head_template(synthetic_assets / A.TEMPLATE_FILE)
    assert np.array_equal(tmpl.faces, flame.faces)
    assert tmpl.uv_faces.shape == tmpl.faces.shape and tmpl.uvs.min() >= 0 and tmpl.uvs.max() <= 1
    emb = A.load_landmark_embedding(synthetic_assets / A.LANDMARK_FILE, n_faces=len(flame.faces))
    assert emb.dynamic_faces.shape == (79, 17) and emb.full_faces.shape == (68,)
    tex = A.load_flame_texture(synthetic_assets / A.TEXTURE_FILE)
    assert tex.mean.shape[2] == 3 and tex.tex_dir.shape == tex.mean.shape + (50,)
    assert tex.mean.dtype == np.float32 and 0 <= tex.mean.min() and tex.mean.max() <= 255
    state = A.load_deca_checkpoint(synthetic_assets / A.DECA_FILE)
    assert tuple(state["layers.2.weight"].shape) == (DECA_CODE_SIZE, 1024)
    em = A.load_emoca(A.emoca_path(synthetic_assets))
    assert em.flags == EmocaFlags(global_pose=False, jaw_pose=True)
    assert tuple(em.e_expression["layers.2.weight"].shape) == (53, 1024)


def test_check_assets_all_valid(synthetic_assets: Path) -> None:
    rows = {r.name: r for r in A.check_assets(synthetic_assets)}
    required = [r for r in rows.values() if r.required]
    assert len(required) == 6 and all(r.ok for r in required), [(r.name, r.problem) for r in required]
    assert not rows[A.FAN_DIR].required


def test_missing_file_message_names_file_and_source(tmp_path: Path) -> None:
    with pytest.raises(DreError) as e:
        A.load_flame(tmp_path / A.FLAME_FILE)
    assert "generic_model.pkl" in str(e.value) and "flame.is.tue.mpg.de" in str(e.value)
    with pytest.raises(DreError) as e:
        A.load_deca_checkpoint(tmp_path / A.DECA_FILE)
    assert "deca_model.tar" in str(e.value) and "drive.google.com" in str(e.value)
    with pytest.raises(DreError) as e:
        A.load_emoca(A.emoca_path(tmp_path))
    assert "EMOCA_v2_lr_mse_20" in str(e.value) and "emoca.is.tue.mpg.de" in str(e.value)
    rows = {r.name: r for r in A.check_assets(tmp_path, require=["deca"])}
    assert not rows[A.TEMPLATE_FILE].found and "github.com/yfeng95/DECA" in rows[A.TEMPLATE_FILE].source
    assert rows[A.DECA_FILE].required and not rows[f"{A.EMOCA_DIR}/{A.DEFAULT_EMOCA_MODEL}"].required


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a crafted pickle does: call os.system on load
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / A.FLAME_FILE
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "x": _Evil(marker)}, protocol=2))
    with pytest.raises(DreError) as e:
        A.load_flame(bad)
    assert "posix.system" in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()
    # same payload inside an object .npy (landmark embedding path)
    npy = tmp_path / A.LANDMARK_FILE
    with open(npy, "wb") as fh:
        np.save(fh, np.array({"a": _Evil(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(DreError, match="system"):
        load_npy(npy)
    assert not marker.exists()


def test_unpickler_converts_sparse_and_rejects_chumpy_expressions(tmp_path: Path) -> None:
    from scipy.sparse import csc_matrix, csr_matrix

    dense = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    p = tmp_path / "m.pkl"
    p.write_bytes(pickle.dumps({"a": csc_matrix(dense), "b": csr_matrix(dense), "c": [np.arange(3)]}, protocol=2))
    out = load_flame_pickle(p)
    assert np.array_equal(out["a"], dense) and np.array_equal(out["b"], dense)
    assert np.array_equal(out["c"][0], np.arange(3))
    # a pickle naming any other module is refused, naming the global
    p.write_bytes(pickle.dumps({"d": OrderedDict()}, protocol=2))
    with pytest.raises(DreError, match="collections.OrderedDict"):
        load_flame_pickle(p)


def test_flame_pickle_any_protocol(tmp_path: Path, synthetic_assets: Path) -> None:
    """FLAME 2020 was pickled by Python 2: old protocols use copy_reg._reconstructor and __builtin__ names."""
    from dre.face3d.synth import _chumpy_standin, _flame_dict, _Mesh

    ref = A.load_flame(synthetic_assets / A.FLAME_FILE)
    with _chumpy_standin() as Ch:
        d = _flame_dict(_Mesh(), np.random.default_rng(0), Ch)
        blobs = {proto: pickle.dumps(d, protocol=proto) for proto in (0, 1, 2)}
    assert b"copy_reg" in blobs[1] and b"_reconstructor" in blobs[1]
    for proto, blob in blobs.items():
        (tmp_path / A.FLAME_FILE).write_bytes(blob)
        m = A.load_flame(tmp_path / A.FLAME_FILE, official=False)
        assert np.array_equal(m.v_template, ref.v_template) and np.array_equal(m.J_regressor, ref.J_regressor), proto


def test_html_instead_of_tar(tmp_path: Path) -> None:
    p = tmp_path / A.DECA_FILE
    p.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    with pytest.raises(DreError) as e:
        A.load_deca_checkpoint(p)
    assert "HTML page" in str(e.value) and "drive.google.com" in str(e.value)
    rows = {r.name: r for r in A.check_assets(tmp_path)}
    assert rows[A.DECA_FILE].found and not rows[A.DECA_FILE].valid and "HTML" in rows[A.DECA_FILE].problem


def test_truncated_checkpoint(tmp_path: Path, synthetic_assets: Path) -> None:
    p = tmp_path / A.DECA_FILE
    p.write_bytes((synthetic_assets / A.DECA_FILE).read_bytes()[:100_000])
    with pytest.raises(DreError, match="deca_model.tar"):
        A.load_deca_checkpoint(p)


def test_deca_checkpoint_strict_keys_and_shapes(tmp_path: Path, synthetic_assets: Path) -> None:
    state = A.load_deca_checkpoint(synthetic_assets / A.DECA_FILE)
    p = tmp_path / A.DECA_FILE
    broken = dict(state)
    del broken["encoder.layer3.2.conv2.weight"]
    torch.save({"E_flame": broken}, p)
    with pytest.raises(DreError, match="missing keys.*layer3.2.conv2.weight"):
        A.load_deca_checkpoint(p)
    broken = dict(state)
    broken["layers.2.weight"] = torch.zeros(200, 1024)
    torch.save({"E_flame": broken}, p)
    with pytest.raises(DreError, match="mismatched.*layers.2.weight"):
        A.load_deca_checkpoint(p)
    torch.save({"E_detail": state}, p)
    with pytest.raises(DreError, match="no 'E_flame'"):
        A.load_deca_checkpoint(p)
    # BatchNorm counters may be absent (checkpoints from old torch)
    torch.save({"E_flame": {k: v for k, v in state.items() if "num_batches_tracked" not in k}}, p)
    assert "layers.0.weight" in A.load_deca_checkpoint(p)
    from dre.face3d.encoders import build_deca_encoder

    enc = build_deca_encoder(A.load_deca_checkpoint(p))
    assert not any(t.is_meta for t in [*enc.parameters(), *enc.buffers()])
    torch.testing.assert_close(enc.E_flame.layers[2].weight, state["layers.2.weight"])


@pytest.mark.parametrize("global_pose,jaw_pose,rows", [(False, False, 50), (True, True, 56), (True, False, 53)])
def test_emoca_flags_and_head_rows(tmp_path: Path, synthetic_assets: Path, global_pose, jaw_pose, rows) -> None:
    from dre.face3d.synth import write_emoca_model

    e_flame = A.load_deca_checkpoint(synthetic_assets / A.DECA_FILE)
    folder = tmp_path / "M"
    write_emoca_model(folder, OrderedDict(e_flame), global_pose=global_pose, jaw_pose=jaw_pose)
    em = A.load_emoca(folder)
    assert em.flags.out_size == rows and em.flags.global_pose == global_pose and em.flags.jaw_pose == jaw_pose
    # config claims another layout than the checkpoint holds → refused
    cfg = (folder / "cfg.yaml").read_text()
    flipped = cfg.replace(f"exp_deca_jaw_pose: {str(jaw_pose).lower()}", f"exp_deca_jaw_pose: {str(not jaw_pose).lower()}")
    (folder / "cfg.yaml").write_text(flipped)
    with pytest.raises(DreError, match=r"expression head has \d+ outputs"):
        A.load_emoca(folder)


def test_locate_emoca_checkpoint_as_emoca(tmp_path: Path) -> None:
    ck = tmp_path / "detail" / "checkpoints"
    names = [
        "deca-epoch=01-val_loss/dataloader_idx_0=9.9.ckpt",
        "deca-epoch=02-val_loss/dataloader_idx_0=9.1.ckpt",
        "deca-epoch=03-val_loss/dataloader_idx_0=9.1.ckpt",  # tie: the later path wins, as in EMOCA
        "last.ckpt",
        "weird.ckpt",
    ]
    for n in names:
        (ck / n).parent.mkdir(parents=True, exist_ok=True)
        (ck / n).write_bytes(b"")
    assert A.locate_emoca_checkpoint(tmp_path) == ck / names[2]
    shutil.rmtree(ck)
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"")
    with pytest.raises(DreError, match="no EMOCA checkpoint"):
        A.locate_emoca_checkpoint(tmp_path)


def test_lightning_checkpoint_with_foreign_objects_loads_without_importing_them(tmp_path: Path) -> None:
    import sys
    import types

    class DictConfig:  # stands for omegaconf's hyper-parameter container inside a Lightning checkpoint
        def __init__(self) -> None:
            self.content = {"lr": 1e-4}

    mod = types.ModuleType("fake_omegaconf_mod")
    DictConfig.__module__ = "fake_omegaconf_mod"
    DictConfig.__qualname__ = "DictConfig"
    mod.DictConfig = DictConfig
    sys.modules["fake_omegaconf_mod"] = mod
    try:
        p = tmp_path / "x.ckpt"
        torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": DictConfig()}, p)
    finally:
        del sys.modules["fake_omegaconf_mod"]
    out = A.torch_load_weights(p, A.EMOCA_DIR)
    assert torch.equal(out["state_dict"]["w"], torch.ones(2))
    assert type(out["hyper_parameters"]).__name__ == "DictConfig" and not isinstance(out["hyper_parameters"], DictConfig)


def test_official_sizes_required_without_marker(tmp_path: Path, synthetic_assets: Path) -> None:
    for name in (A.FLAME_FILE, A.TEMPLATE_FILE, A.TEXTURE_FILE):
        shutil.copy(synthetic_assets / name, tmp_path / name)
    with pytest.raises(DreError, match="FLAME 2020 has 5023"):
        A.load_flame(tmp_path / A.FLAME_FILE)
    with pytest.raises(DreError, match="DECA's template has 5023"):
        A.load_head_template(tmp_path / A.TEMPLATE_FILE)
    with pytest.raises(DreError, match="512x512x3 with 200"):
        A.load_flame_texture(tmp_path / A.TEXTURE_FILE)
    assert A.load_flame(tmp_path / A.FLAME_FILE, official=False).n_vertices > 0


def test_template_must_match_flame_topology(tmp_path: Path, synthetic_assets: Path) -> None:
    shutil.copytree(synthetic_assets, tmp_path / "a")
    obj = tmp_path / "a" / A.TEMPLATE_FILE
    lines = obj.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("f "))
    a, b, c = lines[i].split()[1:]
    lines[i] = f"f {b} {a} {c}"  # flip one triangle
    obj.write_text("\n".join(lines) + "\n")
    rows = {r.name: r for r in A.check_assets(tmp_path / "a")}
    assert not rows[A.TEMPLATE_FILE].valid and "faces differ" in rows[A.TEMPLATE_FILE].problem


def test_asset_checksums(synthetic_assets: Path) -> None:
    deca = A.asset_checksums(synthetic_assets, "deca")
    emoca = A.asset_checksums(synthetic_assets, "emoca")
    assert A.DECA_FILE in deca and A.FLAME_FILE in deca and all(len(v) == 64 for v in deca.values())
    assert any(k.endswith(".ckpt") for k in emoca) and A.DECA_FILE not in emoca


# --- encoders ------------------------------------------------------------------------------------


def test_resnet_trunk_matches_torchvision() -> None:
    tv = pytest.importorskip("torchvision")
    ours = ResnetEncoder(DECA_CODE_SIZE).eval()
    ref = tv.models.resnet50(weights=None)
    ref.fc = torch.nn.Identity()
    ref.eval()
    ref_keys = {f"encoder.{k}": tuple(v.shape) for k, v in ref.state_dict().items()}
    ours_keys = {k: v for k, v in expected_shapes(DECA_CODE_SIZE).items() if k.startswith("encoder.")}
    assert ours_keys == ref_keys
    ref.load_state_dict({k[len("encoder."):]: v for k, v in ours.state_dict().items() if k.startswith("encoder.")})
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))  # adaptive pool: any size
    with torch.no_grad():
        torch.testing.assert_close(ours.encoder(x), ref(x), rtol=1e-5, atol=1e-5)


def test_codes_from_outputs_layouts() -> None:
    g = torch.Generator().manual_seed(0)
    deca = torch.randn(2, DECA_CODE_SIZE, generator=g)
    c = codes_from_outputs(deca)
    assert torch.equal(c.shape, deca[:, :100]) and torch.equal(c.tex, deca[:, 100:150])
    assert torch.equal(c.exp, deca[:, 150:200]) and torch.equal(c.pose, deca[:, 200:206])
    assert torch.equal(c.cam, deca[:, 206:209]) and torch.equal(c.light, deca[:, 209:].reshape(2, 9, 3))
    exp56 = torch.randn(2, 56, generator=g)
    both = codes_from_outputs(deca, exp56, EmocaFlags(global_pose=True, jaw_pose=True))
    assert torch.equal(both.exp, exp56[:, :50]) and torch.equal(both.pose, exp56[:, 50:])
    assert torch.equal(both.shape, c.shape) and torch.equal(both.cam, c.cam)
    exp53 = torch.randn(2, 53, generator=g)
    jaw = codes_from_outputs(deca, exp53, EmocaFlags(jaw_pose=True))
    assert torch.equal(jaw.pose[:, :3], c.pose[:, :3]) and torch.equal(jaw.pose[:, 3:], exp53[:, 50:])
    glob = codes_from_outputs(deca, exp53, EmocaFlags(global_pose=True))
    assert torch.equal(glob.pose[:, :3], exp53[:, 50:]) and torch.equal(glob.pose[:, 3:], c.pose[:, 3:])
    exp50 = torch.randn(2, 50, generator=g)
    v1 = codes_from_outputs(deca, exp50, EmocaFlags())
    assert torch.equal(v1.exp, exp50) and torch.equal(v1.pose, c.pose)
    with pytest.raises(ValueError):
        codes_from_outputs(deca, exp50, EmocaFlags(jaw_pose=True))


def test_face_encoders_from_synthetic_assets(synthetic_assets: Path) -> None:
    crops = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))  # small: code paths, not accuracy
    deca = load_face_encoder(str(synthetic_assets), "deca")
    emoca = load_face_encoder(str(synthetic_assets), "emoca")
    assert deca.kind == "deca" and emoca.kind == "emoca"
    with torch.no_grad():
        a, b = deca(crops), emoca(crops)
    assert isinstance(a, FlameCodes) and a.batch_size == 2
    for codes in (a, b):
        assert all(torch.isfinite(t).all() for t in (codes.shape, codes.exp, codes.pose, codes.cam, codes.light))
        assert (codes.cam[:, 0] > 5).all()  # synthetic encoders are biased to a camera that frames the face
    # EMOCA's E_flame is DECA's: everything but exp and (jaw flag) jaw pose agrees
    torch.testing.assert_close(a.shape, b.shape)
    torch.testing.assert_close(a.pose[:, :3], b.pose[:, :3])
    assert not torch.allclose(a.exp, b.exp) and not torch.allclose(a.pose[:, 3:], b.pose[:, 3:])
    with pytest.raises(DreError, match="unknown extractor"):
        load_face_encoder(str(synthetic_assets), "spiga")


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_assets_check(synthetic_assets: Path, tmp_path: Path, dre_cmd, cli_env, capsys) -> None:
    from dre.cli import main

    ok = subprocess.run([*dre_cmd, "assets", "check", "--assets", str(synthetic_assets)], capture_output=True, text=True, env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert "generic_model.pkl" in ok.stdout and "SYNTHETIC" in ok.stderr
    # failure cases in-process (same code, no second interpreter start-up)
    (tmp_path / "a").mkdir()
    assert main(["assets", "check", "--assets", str(tmp_path / "a")]) == 1
    out = capsys.readouterr()
    assert "flame.is.tue.mpg.de" in out.out and "deca_model.tar" in out.err
    assert main(["assets", "check", "--assets", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["assets", "check", "--assets", str(synthetic_assets), "--require", "deca,dlib"]) == 2
    assert "unknown item" in capsys.readouterr().err
