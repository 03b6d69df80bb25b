"""Asset loaders and validators: synthetic files through the real loaders, hostile and broken files."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from dre.assets.catalog import (
    DECA_FILE,
    DEFAULT_EMOCA_MODEL,
    EMOCA_DIR,
    FAN_DIR,
    FLAME_FILE,
    LANDMARK_FILE,
    TEMPLATE_FILE,
    TEXTURE_FILE,
    asset_checksums,
    emoca_path,
    locate_emoca_checkpoint,
)
from dre.assets.check import check_assets
from dre.errors import DreError
from dre.face3d.codes import FlameCodes
from dre.face3d.encoder_files import EmocaFlags, load_deca_checkpoint, load_emoca, torch_load_weights
from dre.face3d.encoders import (
    DECA_CODE_SIZE,
    build_deca_encoder,
    codes_from_outputs,
    expected_shapes,
    load_encoder,
    load_face_encoder,
)
from dre.face3d.face_model import load_head_template
from dre.face3d.flame import load_flame, load_landmark_embedding
from dre.face3d.texture import load_flame_texture
from dre.safety.unpickle import load_flame_pickle, load_npy


def test_loaders_on_synthetic_assets(synthetic_assets: Path) -> None:
    flame = load_flame(synthetic_assets / FLAME_FILE)
    v = flame.n_vertices
    assert flame.shapedirs.shape == (v, 3, 400) and flame.posedirs.shape == (v, 3, 36)
    assert flame.J_regressor.shape == (5, v) and np.allclose(flame.J_regressor.sum(1), 1.0)
    assert flame.parents.tolist() == [-1, 0, 1, 1, 1]
    tmpl = load_head_template(synthetic_assets / TEMPLATE_FILE)
    assert np.array_equal(tmpl.faces, flame.faces)
    assert tmpl.uv_faces.shape == tmpl.faces.shape and tmpl.uvs.min() >= 0 and tmpl.uvs.max() <= 1
    emb = load_landmark_embedding(synthetic_assets / LANDMARK_FILE, n_faces=len(flame.faces))
    assert emb.dynamic_faces.shape == (79, 17) and emb.full_faces.shape == (68,)
    tex = load_flame_texture(synthetic_assets / TEXTURE_FILE)
    assert tex.mean.shape[2] == 3 and tex.tex_dir.shape == tex.mean.shape + (50,)
    assert tex.mean.dtype == np.float32 and 0 <= tex.mean.min() and tex.mean.max() <= 255
    state = load_deca_checkpoint(synthetic_assets / DECA_FILE)
    assert tuple(state["layers.2.weight"].shape) == (DECA_CODE_SIZE, 1024)
    em = load_emoca(emoca_path(synthetic_assets))
    assert em.flags == EmocaFlags(global_pose=False, jaw_pose=True)
    assert tuple(em.e_expression["layers.2.weight"].shape) == (53, 1024)


def test_check_assets_all_valid(synthetic_assets: Path) -> None:
    rows = {r.name: r for r in check_assets(synthetic_assets)}
    required = [r for r in rows.values() if r.required]
    assert len(required) == 6 and all(r.ok for r in required), [(r.name, r.problem) for r in required]
    assert not rows[FAN_DIR].required


def test_missing_file_message_names_file_and_source(tmp_path: Path) -> None:
    with pytest.raises(DreError) as e:
        load_flame(tmp_path / FLAME_FILE)
    assert "generic_model.pkl" in str(e.value) and "flame.is.tue.mpg.de" in str(e.value)
    with pytest.raises(DreError) as e:
        load_deca_checkpoint(tmp_path / DECA_FILE)
    assert "deca_model.tar" in str(e.value) and "drive.google.com" in str(e.value)
    with pytest.raises(DreError) as e:
        load_emoca(emoca_path(tmp_path))
    assert "EMOCA_v2_lr_mse_20" in str(e.value) and "emoca.is.tue.mpg.de" in str(e.value)
    rows = {r.name: r for r in check_assets(tmp_path, require=["deca"])}
    assert not rows[TEMPLATE_FILE].found and "github.com/yfeng95/DECA" in rows[TEMPLATE_FILE].source
    assert rows[DECA_FILE].required and not rows[f"{EMOCA_DIR}/{DEFAULT_EMOCA_MODEL}"].required


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a crafted pickle does: call os.system on load
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / FLAME_FILE
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "x": _Evil(marker)}, protocol=2))
    with pytest.raises(DreError) as e:
        load_flame(bad)
    assert "posix.system" in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()
    # same payload inside an object .npy (landmark embedding path)
    npy = tmp_path / LANDMARK_FILE
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
    from dre.face3d.synth_head import HeadMesh, chumpy_standin, flame_dict

    ref = load_flame(synthetic_assets / FLAME_FILE)
    with chumpy_standin() as Ch:
        d = flame_dict(HeadMesh(), np.random.default_rng(0), Ch)
        blobs = {proto: pickle.dumps(d, protocol=proto) for proto in (0, 1, 2)}
    assert b"copy_reg" in blobs[1] and b"_reconstructor" in blobs[1]
    for proto, blob in blobs.items():
        (tmp_path / FLAME_FILE).write_bytes(blob)
        m = load_flame(tmp_path / FLAME_FILE, official=False)
        assert np.array_equal(m.v_template, ref.v_template) and np.array_equal(m.J_regressor, ref.J_regressor), proto


def test_html_instead_of_tar(tmp_path: Path) -> None:
    p = tmp_path / DECA_FILE
    p.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    with pytest.raises(DreError) as e:
        load_deca_checkpoint(p)
    assert "HTML page" in str(e.value) and "drive.google.com" in str(e.value)
    rows = {r.name: r for r in check_assets(tmp_path)}
    assert rows[DECA_FILE].found and not rows[DECA_FILE].valid and "HTML" in rows[DECA_FILE].problem


def test_truncated_checkpoint(tmp_path: Path, synthetic_assets: Path) -> None:
    p = tmp_path / DECA_FILE
    p.write_bytes((synthetic_assets / DECA_FILE).read_bytes()[:100_000])
    with pytest.raises(DreError, match="deca_model.tar"):
        load_deca_checkpoint(p)


def test_deca_checkpoint_strict_keys_and_shapes(tmp_path: Path, synthetic_assets: Path) -> None:
    """The file loader returns E_flame as stored; building the encoder checks keys and shapes, once."""
    state = load_deca_checkpoint(synthetic_assets / DECA_FILE)
    p = tmp_path / DECA_FILE
    broken = dict(state)
    del broken["encoder.layer3.2.conv2.weight"]
    torch.save({"E_flame": broken}, p)
    with pytest.raises(DreError, match="missing keys.*layer3.2.conv2.weight"):
        load_face_encoder(tmp_path, "deca")
    broken = dict(state)
    broken["layers.2.weight"] = torch.zeros(200, 1024)
    torch.save({"E_flame": broken}, p)
    with pytest.raises(DreError, match="mismatched.*layers.2.weight"):
        load_face_encoder(tmp_path, "deca")
    rows = {r.name: r for r in check_assets(tmp_path, require=["deca"])}
    assert rows[DECA_FILE].found and not rows[DECA_FILE].valid and "mismatched" in rows[DECA_FILE].problem
    torch.save({"E_detail": state}, p)
    with pytest.raises(DreError, match="no 'E_flame'"):
        load_deca_checkpoint(p)
    # BatchNorm counters may be absent (checkpoints from old torch)
    torch.save({"E_flame": {k: v for k, v in state.items() if "num_batches_tracked" not in k}}, p)
    enc = build_deca_encoder(load_deca_checkpoint(p))
    assert not any(t.is_meta for t in [*enc.parameters(), *enc.buffers()])
    torch.testing.assert_close(enc.E_flame.layers[2].weight, state["layers.2.weight"])


def test_state_dict_checked_once_per_encoder(monkeypatch: pytest.MonkeyPatch, synthetic_assets: Path) -> None:
    import dre.face3d.encoders as encoders

    calls: list[str] = []
    real = encoders.check_state_dict
    monkeypatch.setattr(encoders, "check_state_dict", lambda s, n, what: calls.append(what) or real(s, n, what))
    load_face_encoder(synthetic_assets, "deca")
    assert len(calls) == 1
    calls.clear()
    load_face_encoder(synthetic_assets, "emoca")
    assert len(calls) == 2 and "E_flame" in calls[0] and "E_expression" in calls[1]


@pytest.mark.parametrize("global_pose,jaw_pose,rows", [(False, False, 50), (True, True, 56), (True, False, 53)])
def test_emoca_flags_and_head_rows(tmp_path: Path, synthetic_assets: Path, global_pose, jaw_pose, rows) -> None:
    from dre.face3d.synth import write_emoca_model

    e_flame = load_deca_checkpoint(synthetic_assets / DECA_FILE)
    folder = tmp_path / "M"
    write_emoca_model(folder, OrderedDict(e_flame), global_pose=global_pose, jaw_pose=jaw_pose)
    em = load_emoca(folder)
    assert em.flags.out_size == rows and em.flags.global_pose == global_pose and em.flags.jaw_pose == jaw_pose
    # config claims another layout than the checkpoint holds → refused
    cfg = (folder / "cfg.yaml").read_text()
    flipped = cfg.replace(f"exp_deca_jaw_pose: {str(jaw_pose).lower()}", f"exp_deca_jaw_pose: {str(not jaw_pose).lower()}")
    (folder / "cfg.yaml").write_text(flipped)
    with pytest.raises(DreError, match=r"expression head has \d+ outputs"):
        load_emoca(folder)


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
    assert locate_emoca_checkpoint(tmp_path) == ck / names[2]
    shutil.rmtree(ck)
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"")
    with pytest.raises(DreError, match="no EMOCA checkpoint"):
        locate_emoca_checkpoint(tmp_path)


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
    out = torch_load_weights(p, EMOCA_DIR)
    assert torch.equal(out["state_dict"]["w"], torch.ones(2))
    assert type(out["hyper_parameters"]).__name__ == "DictConfig" and not isinstance(out["hyper_parameters"], DictConfig)


def test_official_sizes_required_without_marker(tmp_path: Path, synthetic_assets: Path) -> None:
    for name in (FLAME_FILE, TEMPLATE_FILE, TEXTURE_FILE):
        shutil.copy(synthetic_assets / name, tmp_path / name)
    with pytest.raises(DreError, match="FLAME 2020 has 5023"):
        load_flame(tmp_path / FLAME_FILE)
    with pytest.raises(DreError, match="DECA's template has 5023"):
        load_head_template(tmp_path / TEMPLATE_FILE)
    with pytest.raises(DreError, match="512x512x3 with 200"):
        load_flame_texture(tmp_path / TEXTURE_FILE)
    assert load_flame(tmp_path / FLAME_FILE, official=False).n_vertices > 0


def test_template_must_match_flame_topology(tmp_path: Path, synthetic_assets: Path) -> None:
    shutil.copytree(synthetic_assets, tmp_path / "a")
    obj = tmp_path / "a" / TEMPLATE_FILE
    lines = obj.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("f "))
    a, b, c = lines[i].split()[1:]
    lines[i] = f"f {b} {a} {c}"  # flip one triangle
    obj.write_text("\n".join(lines) + "\n")
    rows = {r.name: r for r in check_assets(tmp_path / "a")}
    assert not rows[TEMPLATE_FILE].valid and "faces differ" in rows[TEMPLATE_FILE].problem


def test_asset_checksums(synthetic_assets: Path) -> None:
    deca = asset_checksums(synthetic_assets, "deca")
    emoca = asset_checksums(synthetic_assets, "emoca")
    assert DECA_FILE in deca and FLAME_FILE in deca and all(len(v) == 64 for v in deca.values())
    assert any(k.endswith(".ckpt") for k in emoca) and DECA_FILE not in emoca


# --- encoders ------------------------------------------------------------------------------------


def _deca_resnet50_keys() -> dict[str, tuple[int, ...]]:
    """DECA's ``ResnetEncoder`` state-dict layout, written out from its description (not from our model):
    ResNet-50 trunk under ``encoder.`` (Bottleneck [3, 4, 6, 3], widths 64..512, ×4 expansion,
    ``downsample.0/1`` on each stage's first block), then ``layers.0`` = Linear(2048, 1024)."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(name: str, c: int) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{leaf}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    keys["encoder.conv1.weight"] = (64, 3, 7, 7)
    bn("encoder.bn1", 64)
    in_ch = 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for i in range(blocks):
            pre = f"encoder.layer{stage}.{i}"
            keys[f"{pre}.conv1.weight"] = (width, in_ch, 1, 1)
            bn(f"{pre}.bn1", width)
            keys[f"{pre}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{pre}.bn2", width)
            keys[f"{pre}.conv3.weight"] = (width * 4, width, 1, 1)
            bn(f"{pre}.bn3", width * 4)
            if i == 0:
                keys[f"{pre}.downsample.0.weight"] = (width * 4, in_ch, 1, 1)
                bn(f"{pre}.downsample.1", width * 4)
            in_ch = width * 4
    keys["layers.0.weight"], keys["layers.0.bias"] = (1024, 2048), (1024,)
    return keys


@pytest.mark.parametrize("out_size", [DECA_CODE_SIZE, 50, 53, 56])
def test_deca_and_emoca_checkpoint_keys_load_into_torchvision_resnet(out_size: int) -> None:
    """E_flame (236 outputs) and E_expression (50/53/56) key sets load strictly into the torchvision trunk."""
    want = _deca_resnet50_keys() | {"layers.2.weight": (out_size, 1024), "layers.2.bias": (out_size,)}
    assert expected_shapes(out_size) == want and list(expected_shapes(out_size)) == list(want)
    g = torch.Generator().manual_seed(out_size)
    state = {k: (torch.tensor(0) if not shape else torch.rand(shape, generator=g) + 0.5) for k, shape in want.items()}
    enc = load_encoder(state, out_size, "test")
    x = torch.rand(1, 3, 64, 64, generator=g)  # adaptive pool: any size
    with torch.no_grad():
        assert enc(x).shape == (1, out_size)
    torch.testing.assert_close(enc.encoder.layer4[2].bn3.running_var, state["encoder.layer4.2.bn3.running_var"])


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
