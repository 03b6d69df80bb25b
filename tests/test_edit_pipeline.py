"""The edit engine and `dre edit` end to end, with synthetic assets and a tiny random model.

What is checked: each mode changes exactly its codes and only the buffers it should (light keeps
normals and albedo, pose keeps the UV albedo, latent keeps every buffer), batching gives the same
pictures as one job at a time, the same seed gives the same bytes, and user mistakes give clear errors.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
for _mod in ("dre.model", "dre.diffusion", "dre.face3d.model", "dre.face3d.extractor", "dre.synth"):
    pytest.importorskip(_mod, reason=f"{_mod} has not landed yet")

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from dre.edit import engine, parse_modes  # noqa: E402
from dre.edit.inputs import codes_for_sources, extract_codes, list_sources, load_target, resolve_mean_shape  # noqa: E402
from dre.edit.run import EditConfig, faces_to_tensor, run_edit, tform_to_size  # noqa: E402
from dre.errors import DreError  # noqa: E402

from _edit_helpers import (  # noqa: E402
    ALIGNED,
    MODEL_SIZE,
    STEPS,
    landmarks68,
    smooth_image,
    write_aligned,
    write_codes,
    write_model,
)


@pytest.fixture(scope="module")
def case(tmp_path_factory, synthetic_assets):
    root = tmp_path_factory.mktemp("edit_case")
    write_aligned(root / "album", ["b_photo", "a_photo", "c_photo"], seed=10)
    write_aligned(root / "target", ["smile"], seed=99)
    write_aligned(root / "noface", ["empty"], seed=5, status={"empty": "no_face"})
    faces = list_sources(root / "album")
    codes, tform = extract_codes(faces, synthetic_assets, "deca", torch.device("cpu"), "EMOCA_v2_lr_mse_20", "--source")
    write_codes(root / "album.deca.parquet", faces, codes, tform, "deca")
    write_model(root / "model.pt")
    return {"root": root, "assets": synthetic_assets, "model": root / "model.pt", "album": root / "album",
            "codes": root / "album.deca.parquet", "target": root / "target", "noface": root / "noface"}


@pytest.fixture(scope="module")
def face_model(case):
    from dre.face3d.model import FaceModel

    return FaceModel.from_assets(case["assets"], torch.device("cpu"))


@pytest.fixture(scope="module")
def parts(case, face_model):
    """Source and target codes as the CLI would get them."""
    faces = list_sources(case["album"])
    faces, src, tform = codes_for_sources(faces, case["codes"], "deca", torch.device("cpu"))
    target = load_target(case["target"])
    tgt, _ = extract_codes([target], case["assets"], "emoca", torch.device("cpu"), "EMOCA_v2_lr_mse_20", "--target")
    return faces, src, tform_to_size(tform, faces, MODEL_SIZE), target, tgt


def _cfg(case, out: Path, **kw) -> EditConfig:
    base = dict(model=case["model"], assets=case["assets"], source=case["album"], target=case["target"], out=out,
                modes=parse_modes("exp,light"), source_codes=case["codes"], steps=STEPS, seed=0, device="cpu")
    base.update(kw)
    return EditConfig(**base)


def _close(a, b) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ engine


def test_modes_change_only_the_expected_buffers(parts, face_model):
    faces, src, tform, _, tgt = parts
    modes = parse_modes("exp,pose,light,latent")
    stems = [f.stem for f in faces]
    plan = engine.plan_edits(face_model, src, tform, tgt, modes, stems)
    assert plan.n_jobs == len(faces) * 4 and plan.job(5) == (1, 1)
    src_buf, edit_buf = engine.render_plan(face_model, plan, MODEL_SIZE, batch_size=5)
    assert float(src_buf.alpha.mean()) > 0.05, "the synthetic head should cover part of the image"
    for i in range(len(faces)):
        k = {m.name: i * 4 + j for j, m in enumerate(modes)}
        s = lambda name: getattr(src_buf, name)[i]  # noqa: E731
        e = lambda name, mode: getattr(edit_buf, name)[k[mode]]  # noqa: E731
        # light: geometry and albedo untouched, only the shading changes
        for name in ("normal", "albedo", "alpha"):
            assert _close(e(name, "light"), s(name)), name
        assert not _close(e("rendered", "light"), s("rendered"))
        # latent: every buffer is the source's
        for name in ("rendered", "normal", "albedo", "alpha"):
            assert _close(e(name, "latent"), s(name)), name
        # pose and exp move the geometry
        assert not _close(e("normal", "pose"), s("normal"))
        assert not _close(e("normal", "exp"), s("normal"))
    # pose never touches the texture: the albedo in UV space is the same map
    k_pose = [i * 4 + 1 for i in range(len(faces))]
    assert torch.equal(plan.edited.tex[k_pose], plan.source.tex)
    uv_src = face_model.texture(plan.source.tex)
    uv_pose = face_model.texture(plan.edited.tex[k_pose])
    assert torch.equal(uv_src, uv_pose)


def test_recentring_keeps_the_source_ffhq_centre(parts, face_model):
    faces, src, tform, _, tgt = parts
    plan = engine.plan_edits(face_model, src, tform, tgt, parse_modes("pose"), [f.stem for f in faces])
    moved = face_model.ffhq_center(plan.edited)
    # the swap itself moves the centre; re-rendering puts the edited head back on the source centre
    assert not torch.allclose(moved, plan.center, atol=1e-6)
    v = face_model.vertices(plan.edited) + (plan.center - moved)[:, None, :]
    assert torch.isfinite(v).all()


def test_mean_shape_is_used_for_every_source(parts, face_model):
    faces, src, tform, _, tgt = parts
    ms = torch.linspace(-0.5, 0.5, 100)
    plan = engine.plan_edits(face_model, src, tform, tgt, parse_modes("exp"), [f.stem for f in faces], ms)
    assert torch.equal(plan.source.shape, ms.expand(len(faces), -1))
    assert torch.equal(plan.edited.shape, ms.expand(len(faces), -1))
    assert torch.allclose(plan.center, face_model.ffhq_center(plan.source))


def _sample_all(case, parts, face_model, batch_size: int):
    from dre.model import load_model_file

    faces, src, tform, target, tgt = parts
    model, meta = load_model_file(case["model"])
    from dre.diffusion import GaussianDiffusion

    diffusion = GaussianDiffusion(meta["diffusion_config"])
    stems = [f.stem for f in faces]
    plan = engine.plan_edits(face_model, src, tform, tgt, parse_modes("exp,pose,latent"), stems)
    _, edit_buf = engine.render_plan(face_model, plan, MODEL_SIZE, batch_size)
    x0 = faces_to_tensor(faces, MODEL_SIZE)
    z_src = engine.encode_latents(model, x0, batch_size)
    z_tgt = engine.encode_latents(model, faces_to_tensor([target], MODEL_SIZE), 1)
    js = plan.job_sources()
    latent = torch.stack([z_tgt[0] if plan.modes[plan.job(k)[1]].swaps_latent else z_src[js[k]] for k in range(plan.n_jobs)])
    x_T = engine.source_noise(0, stems, (3, MODEL_SIZE, MODEL_SIZE))[js]
    return engine.sample_jobs(model, diffusion, x_T, engine.as_condition(edit_buf), latent, steps=STEPS, eta=0.0,
                              batch_size=batch_size, seed=0)


def test_batched_equals_one_by_one(case, parts, face_model):
    batched = _sample_all(case, parts, face_model, batch_size=64)
    single = _sample_all(case, parts, face_model, batch_size=1)
    assert batched.shape == (len(parts[0]) * 3, 3, MODEL_SIZE, MODEL_SIZE)
    assert torch.allclose(batched, single, atol=1e-4, rtol=0), float((batched - single).abs().max())
    # and the edits are not all the same picture
    assert float((batched[0] - batched[1]).abs().max()) > 1e-3


# ------------------------------------------------------------------------------------------ CLI


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(case, out: Path, dre_cmd, cli_env, *extra: str) -> subprocess.CompletedProcess:
    cmd = dre_cmd + ["edit", "--model", str(case["model"]), "--assets", str(case["assets"]),
                     "--source", str(case["album"]), "--source-codes", str(case["codes"]),
                     "--target", str(case["target"]), "--steps", str(STEPS), "--device", "cpu",
                     "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=600)


def test_cli_writes_the_folder_and_reruns_byte_identical(case, tmp_path, dre_cmd, cli_env):
    args = ("--modes", "exp,pose+exp,light", "--target-extractor", "emoca", "--seed", "3", "--save-buffers",
            "--batch-size", "4")
    r1 = _cli(case, tmp_path / "one", dre_cmd, cli_env, *args)
    assert r1.returncode == 0, r1.stderr
    assert "SYNTHETIC" in r1.stderr
    r2 = _cli(case, tmp_path / "two", dre_cmd, cli_env, *args)
    assert r2.returncode == 0, r2.stderr
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one == two  # same seed → same bytes, every file
    stems = ["a_photo", "b_photo", "c_photo"]
    pngs = {f"{s}_{m}.png" for s in stems for m in ("exp", "exp+pose", "light")}
    assert pngs <= set(one) and "grid.png" in one and "edit.parquet" in one
    assert {f"buffers/{s}_source.npz" for s in stems} <= set(one)
    table = pd.read_parquet(tmp_path / "one" / "edit.parquet")
    assert len(table) == 9
    assert list(table["file"]) == [f"{s}_{m}.png" for s in stems for m in ("exp", "exp+pose", "light")]
    assert set(table["seed"]) == {3} and set(table["source_extractor"]) == {"deca"}
    assert set(table["target_extractor"]) == {"emoca"} and table["synthetic"].all()
    assert table.groupby("source_stem")["noise_seed"].nunique().eq(1).all()  # one noise per source
    # the recorded codes: light rows carry the target's light, exp rows the source's light
    light = np.stack(table[table["mode"] == "light"]["light"].map(np.asarray))
    assert np.allclose(light, light[0])
    exp_rows = table[table["mode"] == "exp"]
    assert not np.allclose(np.stack(exp_rows["light"].map(np.asarray)), light[0])
    grid = np.asarray(Image.open(tmp_path / "one" / "grid.png"))
    assert grid.shape[0] >= 3 * MODEL_SIZE and grid.shape[1] >= (2 + 3 + 4) * MODEL_SIZE
    with np.load(tmp_path / "one" / "buffers" / "a_photo_light.npz") as z:
        assert z["rendered"].shape == (3, MODEL_SIZE, MODEL_SIZE) and z["rendered"].dtype == np.float16
    img = np.asarray(Image.open(tmp_path / "one" / "a_photo_exp.png"))
    assert img.shape == (MODEL_SIZE, MODEL_SIZE, 3)
    # another seed gives other pictures
    r3 = _cli(case, tmp_path / "three", dre_cmd, cli_env, *args[:-4], "--seed", "4", "--batch-size", "4")
    assert r3.returncode == 0, r3.stderr
    assert _files(tmp_path / "three")["a_photo_exp.png"] != one["a_photo_exp.png"]


def test_cli_target_without_face_is_a_clear_error(case, tmp_path, dre_cmd, cli_env):
    r = subprocess.run(dre_cmd + ["edit", "--model", str(case["model"]), "--assets", str(case["assets"]),
                                  "--source", str(case["album"]), "--target", str(case["noface"]),
                                  "--out", str(tmp_path / "x")], capture_output=True, text=True, env=cli_env)
    assert r.returncode == 2
    assert "no face" in r.stderr and str(case["noface"]) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_inversion_init_and_extractor_warning(case, tmp_path):
    other = case["root"] / "model_emoca.pt"
    write_model(other, extractor="emoca")
    with pytest.warns(UserWarning, match="trained on emoca buffers"):
        out = run_edit(_cfg(case, tmp_path / "inv", model=other, init="inversion", modes=parse_modes("light")))
    table = pd.read_parquet(out / "edit.parquet")
    assert set(table["init"]) == {"inversion"} and table["noise_seed"].isna().all()
    img = np.asarray(Image.open(out / "a_photo_light.png"))
    assert img.std() > 0


# ------------------------------------------------------------------------------------------ inputs


def test_mean_shape_checks(tmp_path):
    ms = np.linspace(-1, 1, 100).astype(np.float32)
    np.save(tmp_path / "mine.npy", ms)
    np.save(tmp_path / "other.npy", ms[::-1].copy())
    meta = {"format": "dre-model/1", "stage": 2, "mean_shape": ms.tolist()}
    assert np.array_equal(resolve_mean_shape(None, meta, Path("m.pt")), ms[None])  # from the model file
    assert np.array_equal(resolve_mean_shape(tmp_path / "mine.npy", meta, Path("m.pt")), ms[None])
    with pytest.raises(DreError, match="belongs to another album"):
        resolve_mean_shape(tmp_path / "other.npy", meta, Path("m.pt"))
    with pytest.raises(DreError, match="does not exist"):
        resolve_mean_shape(tmp_path / "missing.npy", meta, Path("m.pt"))
    plain = {"format": "dre-model/1", "stage": 2, "mean_shape": None}
    assert resolve_mean_shape(None, plain, Path("m.pt")) is None
    with pytest.warns(UserWarning, match="own shape"):
        resolve_mean_shape(tmp_path / "mine.npy", plain, Path("m.pt"))


def test_source_codes_of_another_extractor_is_an_error(case, tmp_path):
    faces = list_sources(case["album"])
    df = pq.read_table(case["codes"])
    meta = json.loads(df.schema.metadata[b"dre"])
    meta["extractor"] = "emoca"
    pq.write_table(df.replace_schema_metadata({b"dre": json.dumps(meta).encode()}), tmp_path / "c.parquet")
    with pytest.raises(DreError, match="holds emoca codes but --source-extractor is deca"):
        codes_for_sources(faces, tmp_path / "c.parquet", "deca", torch.device("cpu"))


def test_sources_are_sorted_and_missing_targets_named(case, tmp_path):
    faces = list_sources(case["album"])
    assert [f.stem for f in faces] == ["a_photo", "b_photo", "c_photo"]
    assert faces[0].landmarks.shape == (68, 2) and faces[0].image.shape == (ALIGNED, ALIGNED, 3)
    with pytest.raises(DreError, match="no face found"):
        load_target(case["noface"])
    bare = tmp_path / "bare.png"
    Image.fromarray(smooth_image(ALIGNED, 1)).save(bare)
    with pytest.raises(DreError, match="no landmarks"):
        load_target(bare)
    np.save(tmp_path / "bare.npy", landmarks68(ALIGNED))
    assert load_target(bare).landmarks.shape == (68, 2)
