"""The edit engine and `dre edit` end to end, with synthetic assets and a tiny random model.

What is checked: each mode changes exactly its codes and only the buffers it should (light keeps
normals and albedo, pose keeps the UV albedo, latent keeps every buffer), batching gives the same
pictures as one job at a time, the same seed gives the same bytes, and user mistakes give clear errors.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
for _mod in ("dre.model", "dre.diffusion", "dre.face3d.face_model", "dre.face3d.extractor", "dre.face3d.synth"):
    pytest.importorskip(_mod, reason=f"{_mod} has not landed yet")

from PIL import Image  # noqa: E402

from dre import edit  # noqa: E402
from dre.edit import engine, parse_modes  # noqa: E402
from dre.edit.inputs import codes_for_sources, list_sources, load_target, resolve_mean_shape  # noqa: E402
from dre.edit.runner import faces_to_tensor, tform_to_size  # noqa: E402
from dre.errors import DreError  # noqa: E402
from dre.tables import CODES, EDIT, EDIT_FILE  # noqa: E402

from _edit_helpers import (  # noqa: E402
    ALIGNED,
    MODEL_SIZE,
    STEPS,
    landmarks68,
    smooth_image,
    write_aligned,
    write_codes,
    crop_tforms_for,
    synthetic_codes,
    write_model,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

@pytest.fixture(scope="module")
def case(tmp_path_factory, synthetic_assets):
    root = tmp_path_factory.mktemp("edit_case")
    write_aligned(root / "album", ["b_photo", "a_photo", "c_photo"], seed=10)
    write_aligned(root / "target", ["smile"], seed=99)
    write_aligned(root / "noface", ["empty"], seed=5, status={"empty": "no_face"})
    faces = list_sources(root / "album")
    write_codes(root / "album.deca.parquet", faces, synthetic_codes(len(faces), 1), crop_tforms_for(faces), "deca")
    write_model(root / "model.pt")
    return {"root": root, "assets": synthetic_assets, "model": root / "model.pt", "album": root / "album",
            "codes": root / "album.deca.parquet", "target": root / "target", "noface": root / "noface"}


@pytest.fixture(scope="module")
def face_model(case):
    from dre.face3d.face_model import FaceModel

    return FaceModel.from_assets(case["assets"], torch.device("cpu"))


@pytest.fixture(scope="module")
def parts(case):
    """Source codes as the CLI reads them, and a target that differs clearly in every swappable code."""
    faces = list_sources(case["album"])
    faces, src, tform = codes_for_sources(faces, case["codes"], "deca", torch.device("cpu"))
    tgt = synthetic_codes(1, 2)
    tgt.pose[0] = torch.tensor([0.05, 0.35, 0.0, 0.25, 0.0, 0.0])  # turned head, open jaw
    tgt.light[0, 1] = torch.tensor([0.8, 0.8, 0.8])  # light from the side
    return faces, src, tform_to_size(tform, faces, MODEL_SIZE), load_target(case["target"]), tgt


def _cfg(case, out: Path, **kw) -> edit.Config:
    base = dict(model=case["model"], assets=case["assets"], source=case["album"], target=case["target"], out=out,
                modes=parse_modes("exp,light"), source_codes=case["codes"], steps=STEPS, seed=0, device="cpu")
    base.update(kw)
    return edit.Config(**base)


def _close(a, b) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ engine

MODES4 = "exp,pose,light,latent"


@pytest.fixture(scope="module")
def rendered(parts, face_model):
    faces, src, tform, _, tgt = parts
    plan = engine.plan_edits(face_model, src, tform, tgt, parse_modes(MODES4), [f.stem for f in faces])
    src_buf, edit_buf = engine.render_plan(face_model, plan, MODEL_SIZE, batch_size=8)
    return plan, src_buf, edit_buf


def test_modes_change_only_the_expected_buffers(parts, face_model, rendered):
    faces = parts[0]
    plan, src_buf, edit_buf = rendered
    assert plan.n_jobs == len(faces) * 4 and plan.job(5) == (1, 1)
    assert float(src_buf.alpha.mean()) > 0.05, "the synthetic head should cover part of the image"
    for i in range(len(faces)):
        k = {m.name: i * 4 + j for j, m in enumerate(plan.modes)}
        s = lambda name: getattr(src_buf, name)[i]  # noqa: E731
        e = lambda name, mode: getattr(edit_buf, name)[k[mode]]  # noqa: E731
        # light: geometry and albedo untouched, only the shading changes
        for name in ("normal", "albedo", "alpha"):
            assert _close(e(name, "light"), s(name)), name
        assert float((e("rendered", "light") - s("rendered")).abs().max()) > 0.05
        # latent: every buffer is the source's
        for name in ("rendered", "normal", "albedo", "alpha"):
            assert _close(e(name, "latent"), s(name)), name
        # pose and exp move the geometry
        assert float((e("normal", "pose") - s("normal")).abs().max()) > 0.05
        assert float((e("normal", "exp") - s("normal")).abs().max()) > 0.05
    # pose never touches the texture: the albedo in UV space is the very same map
    k_pose = [i * 4 + 1 for i in range(len(faces))]
    assert torch.equal(plan.edited.tex[k_pose], plan.source.tex)
    assert torch.equal(face_model.texture(plan.source.tex), face_model.texture(plan.edited.tex[k_pose]))


def test_recentring_puts_the_edited_head_on_the_source_centre(parts, face_model, rendered):
    plan = rendered[0]
    k_pose = [i * 4 + 1 for i in range(plan.n_sources)]
    moved = face_model.ffhq_center(plan.edited.index(k_pose))
    assert float((moved - plan.center).abs().max()) > 1e-4  # turning the head moves its FFHQ centre
    # rendering with center=source centre equals rendering a mesh translated by hand
    from dre.face3d.face_model import ffhq_center_from_landmarks  # noqa: F401  (same formula the renderer uses)

    re_buf = face_model.render(plan.edited.index(k_pose), plan.tform, image_size=MODEL_SIZE, center=plan.center)
    assert torch.allclose(re_buf.normal, rendered[2].normal[k_pose], atol=1e-5)
    free = face_model.render(plan.edited.index(k_pose), plan.tform, image_size=MODEL_SIZE)
    assert not torch.allclose(free.alpha, re_buf.alpha)  # without re-centring the head sits elsewhere


def test_mean_shape_is_used_for_every_source(parts, face_model):
    faces, src, tform, _, tgt = parts
    ms = torch.linspace(-0.5, 0.5, 100)
    plan = engine.plan_edits(face_model, src, tform, tgt, parse_modes("exp"), [f.stem for f in faces], ms)
    assert torch.equal(plan.source.shape, ms.expand(len(faces), -1))
    assert torch.equal(plan.edited.shape, ms.expand(len(faces), -1))
    assert torch.allclose(plan.center, face_model.ffhq_center(plan.source))


def _sample_all(case, parts, rendered, batch_size: int, seed: int = 0):
    from dre.diffusion import GaussianDiffusion
    from dre.model import load_model_file

    faces, _, _, target, _ = parts
    plan, _, edit_buf = rendered
    model, meta = load_model_file(case["model"])
    diffusion = GaussianDiffusion(meta["diffusion_config"])
    x0 = faces_to_tensor(faces, MODEL_SIZE)
    z_src = engine.encode_latents(model, x0, batch_size)
    z_tgt = engine.encode_latents(model, faces_to_tensor([target], MODEL_SIZE), 1)
    js = plan.job_sources()
    latent = torch.stack([z_tgt[0] if plan.modes[plan.job(k)[1]].swaps_latent else z_src[js[k]] for k in range(plan.n_jobs)])
    x_T = engine.source_noise(seed, plan.stems, (3, MODEL_SIZE, MODEL_SIZE))[js]
    return engine.sample_jobs(model, diffusion, x_T, engine.as_condition(edit_buf), latent, steps=STEPS, eta=0.0,
                              batch_size=batch_size, seed=seed)


def test_batched_equals_one_by_one(case, parts, rendered):
    batched = _sample_all(case, parts, rendered, batch_size=64)
    single = _sample_all(case, parts, rendered, batch_size=1)
    n = rendered[0].n_jobs
    assert batched.shape == (n, 3, MODEL_SIZE, MODEL_SIZE)
    assert torch.allclose(batched, single, atol=1e-4, rtol=0), float((batched - single).abs().max())
    # the geometric and latent edits give pictures of their own (light is subtle for a random model)
    assert float((batched[0] - batched[1]).abs().max()) > 1e-3
    assert float((batched[0] - batched[3]).abs().max()) > 1e-3


# ------------------------------------------------------------------------------------------ CLI


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_writes_the_folder_and_reruns_byte_identical(case, tmp_path, dre_cmd, cli_env):
    modes = "pose+exp,light"
    cmd = dre_cmd + ["edit", "--model", str(case["model"]), "--assets", str(case["assets"]),
                     "--source", str(case["album"]), "--source-codes", str(case["codes"]),
                     "--target", str(case["target"]), "--steps", str(STEPS), "--device", "cpu",
                     "--modes", modes, "--target-extractor", "emoca", "--seed", "3", "--grid-buffers",
                     "--batch-size", "4", "--out", str(tmp_path / "one")]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**cli_env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stderr
    # the rerun (here in-process: another interpreter, same flags) writes the very same bytes
    edit.run(_cfg(case, tmp_path / "two", modes=parse_modes(modes), target_extractor="emoca", seed=3,
                  grid_buffers=True, batch_size=4))
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one == two
    stems = ["a_photo", "b_photo", "c_photo"]
    names = [f"{s}_{m}.png" for s in stems for m in ("exp+pose", "light")]
    assert set(names) <= set(one) and "grid.png" in one and "edit.parquet" in one
    assert {f"buffers/{s}_source.npz" for s in stems} | {f"buffers/{n[:-4]}.npz" for n in names} <= set(one)
    table = EDIT.read(tmp_path / "one" / EDIT_FILE)[0]
    assert list(table["file"]) == names
    assert set(table["seed"]) == {3} and set(table["source_extractor"]) == {"deca"}
    assert set(table["target_extractor"]) == {"emoca"} and table["synthetic"].all()
    assert set(table["model"]) == {str(case["model"])} and set(table["target"]) == {str(case["target"] / "smile.png")}
    assert table.groupby("source_stem")["noise_seed"].nunique().eq(1).all()  # one noise per source
    assert table["noise_seed"].nunique() == 3
    # the recorded codes: light rows carry the target's light, exp rows keep each source's own light
    light = np.stack(table[table["mode"] == "light"]["light"].map(np.asarray))
    assert np.allclose(light, light[0])
    exp_light = np.stack(table[table["mode"] == "exp+pose"]["light"].map(np.asarray))
    assert not np.allclose(exp_light, light[0])
    grid = np.asarray(Image.open(tmp_path / "one" / "grid.png"))
    cell = max(MODEL_SIZE, 96)
    assert grid.shape[0] > 3 * cell and grid.shape[1] > (2 + 2 + 3) * cell  # 3 rows; source, target, 2 modes, 3 renders
    with np.load(tmp_path / "one" / "buffers" / "a_photo_light.npz") as z:
        assert z["rendered"].shape == (3, MODEL_SIZE, MODEL_SIZE) and z["rendered"].dtype == np.float16
        assert z["alpha"].shape == (1, MODEL_SIZE, MODEL_SIZE)
    assert np.asarray(Image.open(tmp_path / "one" / "a_photo_light.png")).shape == (MODEL_SIZE, MODEL_SIZE, 3)


def test_cli_target_without_face_is_a_clear_error(case, tmp_path, capsys):
    from dre.cli import main

    rc = main(["edit", "--model", str(case["model"]), "--assets", str(case["assets"]), "--source", str(case["album"]),
               "--target", str(case["noface"]), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "no face" in err and str(case["noface"]) in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_inversion_init_and_extractor_warning(case, tmp_path):
    # EMOCA source codes (same numbers, relabelled) for a model trained on DECA buffers: a warning
    table, meta = CODES.read(case["codes"])
    meta["extractor"] = "emoca"
    table["extractor"] = "emoca"
    CODES.write(tmp_path / "emoca.parquet", table.to_dict("records"), meta)
    cfg = _cfg(case, tmp_path / "inv", source_codes=tmp_path / "emoca.parquet", source_extractor="emoca",
               init="inversion", modes=parse_modes("light"))
    with pytest.warns(UserWarning, match="trained on deca buffers but --source-extractor is emoca"):
        out = edit.run(cfg)
    table = EDIT.read(out / EDIT_FILE)[0]
    assert set(table["init"]) == {"inversion"} and table["noise_seed"].isna().all()
    assert set(table["source_extractor"]) == {"emoca"}
    assert np.asarray(Image.open(out / "a_photo_light.png")).std() > 0


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
    df, meta = CODES.read(case["codes"])
    meta["extractor"] = "emoca"
    CODES.write(tmp_path / "c.parquet", df.to_dict("records"), meta)
    with pytest.raises(DreError, match="holds emoca codes but --source-extractor is deca"):
        codes_for_sources(faces, tmp_path / "c.parquet", "deca", torch.device("cpu"))


def test_sources_are_sorted_and_missing_targets_named(case, tmp_path):
    faces = list_sources(case["album"])
    assert [f.stem for f in faces] == ["a_photo", "b_photo", "c_photo"]
    assert faces[0].landmarks.shape == (68, 2) and faces[0].image.shape == (ALIGNED, ALIGNED, 3)
    one = list_sources(case["album"] / "b_photo.png")  # a single file of an aligned folder
    assert [f.stem for f in one] == ["b_photo"] and np.array_equal(one[0].landmarks, faces[1].landmarks)
    with pytest.raises(DreError, match="no face found"):
        load_target(case["noface"])
    bare = tmp_path / "bare.png"
    Image.fromarray(smooth_image(ALIGNED, 1)).save(bare)
    with pytest.raises(DreError, match="no landmarks"):
        load_target(bare)
    np.save(tmp_path / "bare.npy", landmarks68(ALIGNED))
    assert load_target(bare).landmarks.shape == (68, 2)


def test_mean_shape_file_must_match_its_lmdb(tmp_path):
    from _data_helpers import write_store

    ms = np.linspace(-1, 1, 100).astype(np.float32)
    img = np.zeros((8, 8, 3), np.uint8)
    cond = np.zeros((9, 8, 8), np.float16)
    write_store(tmp_path / "album.lmdb", [img], [cond], mean_shape=ms.tolist())
    np.save(tmp_path / "album.lmdb" / "mean_shape.npy", ms)
    plain = {"format": "dre-model/1", "stage": 2, "mean_shape": ms.tolist()}
    assert np.allclose(resolve_mean_shape(tmp_path / "album.lmdb" / "mean_shape.npy", plain, Path("m.pt")), ms)
    np.save(tmp_path / "album.lmdb" / "mean_shape.npy", ms * 2)  # a file copied in from another album
    with pytest.raises(DreError, match="does not match the mean shape recorded in the LMDB"):
        resolve_mean_shape(tmp_path / "album.lmdb" / "mean_shape.npy", {"mean_shape": None}, Path("m.pt"))


def test_edit_reads_photos_as_align_does(tmp_path):
    """Sources and targets are read by `dre align`'s loader: a 16-bit grey PNG becomes the same RGB array,
    a file that is not an image is a DreError naming it, and a missing one says so."""
    from PIL import Image

    from dre.align.imageio import load_rgb
    from dre.edit.inputs import read_image

    grey16 = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    got = read_image(tmp_path / "g16.png")
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    np.testing.assert_array_equal(got, load_rgb(tmp_path / "g16.png").array)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(DreError, match="notes.png is not a readable image"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(DreError, match="does not exist"):
        read_image(tmp_path / "gone.png")


def test_steps_the_model_schedule_cannot_take_are_refused_up_front(case, tmp_path, monkeypatch):
    """--steps N needs an integer stride giving exactly N of the model's T steps; the error names the flag, and
    comes before the face model, extraction and rendering (not from the sampler at the end)."""
    import dre.edit.runner as runner

    def no_face_model(*a, **k):
        raise AssertionError("the face model was loaded before --steps was checked")

    monkeypatch.setattr(runner.FaceModel, "from_assets", no_face_model)
    with pytest.raises(DreError, match=r"--steps 600: .*1000 diffusion steps"):
        edit.run(_cfg(case, tmp_path / "bad", steps=600))
    assert not (tmp_path / "bad").exists()


def test_an_empty_face_index_cell_reads_as_the_first_face():
    """A hand-made or older align.parquet may leave face_index empty on a one-face row: face 0, not a crash."""
    from dre.edit.inputs import _face_index

    assert _face_index({"face_index": float("nan")}) == 0
    assert _face_index({"face_index": None}) == 0
    assert _face_index({}) == 0
    assert _face_index({"face_index": 2}) == 2
