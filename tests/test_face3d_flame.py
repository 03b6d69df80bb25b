"""FLAME layer: LBS against smplx's independent implementation, landmarks, dynamic contour lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dre.assets.catalog import FLAME_FILE
from dre.face3d.flame import Flame, batch_rodrigues, dynamic_contour_index, load_flame, vertices_to_landmarks


@pytest.fixture(scope="module")
def flame(synthetic_assets: Path) -> Flame:
    return Flame.from_assets(synthetic_assets)


def _codes(b: int, seed: int, pose_scale: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, 100, generator=g),
        torch.randn(b, 50, generator=g),
        torch.randn(b, 6, generator=g) * pose_scale,
    )


def test_vertices_agree_with_smplx_lbs(flame: Flame, synthetic_assets: Path) -> None:
    """smplx's FLAME class wants its own pickle layout, so we call its ``lbs`` function directly with the
    arrays our loader produced: an independent implementation of blend shapes + skinning."""
    smplx_lbs = pytest.importorskip("smplx.lbs")
    model = load_flame(synthetic_assets / FLAME_FILE)
    shape, exp, pose = _codes(4, 0)
    ours = flame(shape, exp, pose).vertices
    sd = np.concatenate([model.shapedirs[:, :, :100], model.shapedirs[:, :, 300:350]], axis=2)
    f64 = torch.float64
    ref, ref_joints = smplx_lbs.lbs(
        torch.cat([shape, exp], 1).to(f64),
        Flame.full_pose(pose).to(f64),
        torch.as_tensor(model.v_template, dtype=f64),
        torch.as_tensor(sd, dtype=f64),
        torch.as_tensor(model.posedirs.reshape(-1, 36).T.copy(), dtype=f64),
        torch.as_tensor(model.J_regressor, dtype=f64),
        torch.as_tensor(model.parents, dtype=torch.long),
        torch.as_tensor(model.weights, dtype=f64),
    )
    assert float((ours.double() - ref).abs().max()) < 1e-5
    torch.testing.assert_close(flame(shape, exp, pose).joints.double(), ref_joints, atol=1e-5, rtol=0)


def test_zero_codes_give_template_and_linearity(flame: Flame) -> None:
    z = torch.zeros(1, 100), torch.zeros(1, 50), torch.zeros(1, 6)
    torch.testing.assert_close(flame(*z).vertices[0], flame.v_template, atol=1e-7, rtol=0)
    shape, exp, _ = _codes(1, 1)
    d1 = flame(shape, z[1], z[2]).vertices - flame.v_template
    d2 = flame(2 * shape, z[1], z[2]).vertices - flame.v_template
    torch.testing.assert_close(d2, 2 * d1, atol=1e-6, rtol=1e-5)


def test_global_pose_is_rigid_rotation_about_root(flame: Flame) -> None:
    shape, exp, _ = _codes(1, 2)
    rest = flame(shape, exp, torch.zeros(1, 6))
    rvec = torch.tensor([[0.2, -0.4, 0.1]])
    posed = flame(shape, exp, torch.cat([rvec, torch.zeros(1, 3)], 1))
    root = rest.joints[:, 0]
    r = batch_rodrigues(rvec)[0]
    expect = (rest.vertices[0] - root) @ r.T + root
    torch.testing.assert_close(posed.vertices[0], expect, atol=1e-6, rtol=0)


def test_jaw_moves_only_the_jaw(flame: Flame) -> None:
    z = torch.zeros(1, 100), torch.zeros(1, 50)
    rest = flame(*z, torch.zeros(1, 6)).vertices[0]
    opened = flame(*z, torch.tensor([[0, 0, 0, 0.3, 0, 0]])).vertices[0]
    moved = (opened - rest).norm(dim=1)
    w = flame.lbs_weights[:, 2]
    assert moved[w > 0.9].min() > 5e-3 and moved[w.abs() < 1e-6].max() < 1e-3  # (pose correctives only)


def test_rodrigues_matches_scipy() -> None:
    from scipy.spatial.transform import Rotation

    r = torch.randn(16, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = torch.as_tensor(Rotation.from_rotvec(r.numpy()).as_matrix())
    torch.testing.assert_close(batch_rodrigues(r), ref, atol=1e-7, rtol=0)
    assert torch.allclose(batch_rodrigues(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))


def test_landmark_shapes_and_barycentric(flame: Flame) -> None:
    shape, exp, pose = _codes(3, 4, 0.1)
    out = flame(shape, exp, pose)
    assert out.landmarks2d.shape == (3, 68, 3) and out.landmarks3d.shape == (3, 68, 3)
    # static part of the 2D landmarks == landmarks 17..67 of the full set on the synthetic embedding
    torch.testing.assert_close(out.landmarks2d[:, 17:], out.landmarks3d[:, 17:])
    f = flame.faces[flame.full_faces[30]]
    manual = (flame.full_bary[30][:, None] * out.vertices[1, f]).sum(0)
    torch.testing.assert_close(out.landmarks3d[1, 30], manual)
    lm = out.landmarks3d[0]
    assert lm[36:48, 1].mean() > lm[48:68, 1].mean() > lm[8, 1]  # eyes above mouth above chin
    assert lm[36, 0] < lm[45, 0]  # iBUG order: 36 is on the image left


def test_dynamic_contour_index_table() -> None:
    yaw = torch.tensor([0.0, 10.2, 38.6, 45.0, -0.4, -0.6, -1.0, -39.0, -39.6, -80.0])
    assert dynamic_contour_index(yaw).tolist() == [0, 10, 39, 39, 0, 40, 40, 78, 78, 78]


def test_dynamic_contour_follows_yaw(flame: Flame) -> None:
    z = torch.zeros(2, 100), torch.zeros(2, 50)
    yaw = torch.tensor([[0, np.deg2rad(20), 0, 0, 0, 0], [0, np.deg2rad(-20), 0, 0, 0, 0]], dtype=torch.float32)
    out = flame(*z, yaw)
    rows = [20, 59]  # 20° → row 20; -20° → 39 + 20
    for b, row in enumerate(rows):
        expect = vertices_to_landmarks(
            out.vertices[b : b + 1], flame.faces, flame.dynamic_faces[row][None], flame.dynamic_bary[row][None]
        )
        torch.testing.assert_close(out.landmarks2d[b : b + 1, :17], expect)


def test_flame_batched_on_device_dtype(flame: Flame) -> None:
    shape, exp, pose = _codes(2, 5)
    out = flame(shape.double(), exp.double(), pose.double())
    assert out.vertices.dtype == torch.float32
