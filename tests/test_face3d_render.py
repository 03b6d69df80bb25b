"""Renderer, SH shading and texture space against closed forms, numpy and PyTorch3D's own texture path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dre.face3d.crop import crop_tforms
from dre.face3d.render import (
    SH_CONSTANTS,
    BufferRenderer,
    rasterize,
    sh_shading,
    vertex_normals,
)
from dre.face3d.texture import TextureSpace, face_uv_grid, nearest_indices


# ----------------------------------------------------------------------------------------------- helpers
def uv_sphere(n_lat: int = 12, n_lon: int = 16, radius: float = 0.12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed, outward-wound sphere (verts, faces) with per-vertex UVs (u = longitude, v = latitude)."""
    verts, uvs = [[0.0, radius, 0.0]], [[0.5, 1.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append([radius * math.sin(th) * math.sin(ph), radius * math.cos(th), radius * math.sin(th) * math.cos(ph)])
            uvs.append([0.02 + 0.96 * j / n_lon, 1 - i / n_lat])
    verts.append([0.0, -radius, 0.0])
    uvs.append([0.5, 0.0])
    last = len(verts) - 1

    def ring(i: int, j: int) -> int:
        return 1 + (i - 1) * n_lon + (j % n_lon)

    faces = []
    for j in range(n_lon):
        faces.append([0, ring(1, j), ring(1, j + 1)])
        faces.append([last, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, c, b], [b, c, d]]
    return np.array(verts, np.float32), np.array(faces, np.int64), np.array(uvs, np.float32)


def sh_numpy(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Independent SH shading: normals (..., 3), light (9, 3) → (..., 3), written from the formula."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    a0 = 1 / np.sqrt(4 * np.pi)
    a1 = 2 * np.pi / 3 * np.sqrt(3 / (4 * np.pi))
    a2 = np.pi / 4 * 3 * np.sqrt(5 / (12 * np.pi))
    a3 = np.pi / 4 * 1.5 * np.sqrt(5 / (12 * np.pi))
    a4 = np.pi / 4 * 0.5 * np.sqrt(5 / (4 * np.pi))
    basis = [a0 * np.ones_like(x), a1 * x, a1 * y, a1 * z, a2 * x * y, a2 * x * z, a2 * y * z, a3 * (x * x - y * y), a4 * (3 * z * z - 1)]
    return sum(basis[k][..., None] * light[k] for k in range(9))


def deca_ndc_numpy(verts: np.ndarray, cam: np.ndarray, tform: np.ndarray, size: int) -> np.ndarray:
    """DECA projection + transform_points + PyTorch3D flip, in float64 numpy (one face)."""
    s, tx, ty = cam
    p = np.stack([s * (verts[:, 0] + tx), -s * (verts[:, 1] + ty), -s * verts[:, 2]], axis=1)
    q = (p[:, :2] * 0.5 + 0.5) * 224
    img = np.concatenate([q, np.ones((len(q), 1))], axis=1) @ np.linalg.inv(tform).T
    xy = img[:, :2] / size * 2 - 1
    return np.concatenate([-xy, p[:, 2:3] + 10], axis=1)


def _scene(batch: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    verts, faces, uvs = uv_sphere()
    v = torch.from_numpy(verts)[None].repeat(batch, 1, 1)
    v = v + torch.from_numpy(rng.normal(0, 0.004, v.shape).astype(np.float32))  # bumpy, distinct per item
    cam = torch.tensor([[7.5, 0.01, -0.02], [8.5, -0.03, 0.01]][:batch], dtype=torch.float32)
    lms = torch.from_numpy(rng.uniform(70, 190, (batch, 68, 2)))
    tform = crop_tforms(lms).float()
    albedo = torch.from_numpy(rng.uniform(0.1, 0.9, (batch, 3, 32, 32)).astype(np.float32))
    light = torch.from_numpy(rng.normal(0, 0.4, (batch, 9, 3)).astype(np.float32))
    light[:, 0] += 2.0
    ft = torch.from_numpy(faces)  # one UV per vertex: uv faces = vertex faces
    return v, torch.from_numpy(faces), torch.from_numpy(uvs), ft, cam, tform, albedo, light


# ------------------------------------------------------------------------------------------------- tests
def test_sh_constants_are_decas() -> None:
    expect = [0.282095, 1.023327, 1.023327, 1.023327, 0.858086, 0.858086, 0.858086, 0.429043, 0.247708]
    np.testing.assert_allclose(SH_CONSTANTS, expect, atol=1e-6)


def test_sh_shading_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    n = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)  # deliberately not unit length
    light = rng.normal(size=(2, 9, 3)).astype(np.float32)
    ours = sh_shading(torch.from_numpy(n), torch.from_numpy(light)).numpy()
    for b in range(2):
        ref = sh_numpy(n[b].transpose(1, 2, 0), light[b]).transpose(2, 0, 1)
        np.testing.assert_allclose(ours[b], ref, rtol=1e-5, atol=1e-5)


def test_vertex_normals_match_pytorch3d() -> None:
    from pytorch3d.structures import Meshes

    v, faces, *_ = _scene()
    ref = Meshes(verts=list(v), faces=[faces] * v.shape[0]).verts_normals_padded()
    np.testing.assert_allclose(vertex_normals(v, faces).numpy(), ref.numpy(), atol=1e-5)


def test_front_facing_triangle_covers_expected_pixels() -> None:
    """Identity camera and crop: a triangle's coverage equals an exact half-plane test at pixel centres."""
    size = 224
    tri = torch.tensor([[[-0.5, -0.4, 0.0], [0.6, -0.3, 0.0], [-0.1, 0.7, 0.0]]])
    r = BufferRenderer(torch.tensor([[0, 1, 2]]), torch.zeros(1, 3, 2))
    out = r(tri, torch.tensor([[1.0, 0.0, 0.0]]), torch.eye(3)[None], torch.ones(1, 3, 4, 4), torch.zeros(1, 9, 3), size)
    c = (2 * np.arange(size) + 1) / size - 1  # DECA-normalised pixel centres
    x, y_img = np.meshgrid(c, c)
    y = -y_img  # DECA's projection flips y
    p = tri[0, :, :2].double().numpy()

    def edge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])

    e = np.stack([edge(p[0], p[1]), edge(p[1], p[2]), edge(p[2], p[0])])
    inside = (e > 0).all(0) | (e < 0).all(0)
    near_edge = (np.abs(e) < 1e-6).any(0)
    alpha = out.alpha[0, 0].numpy() > 0
    assert inside.sum() > 1000
    assert (alpha[~near_edge] == inside[~near_edge]).all()
    # flat triangle facing the camera: normal (0, 0, 1) everywhere it is covered
    np.testing.assert_allclose(out.normal[0, :, alpha].T.numpy(), np.tile([0, 0, 1.0], (alpha.sum(), 1)), atol=1e-6)


def test_flat_plane_has_constant_closed_form_shading() -> None:
    """A tilted plane: one normal n everywhere, so rendered = albedo · Σ_k c_k Y_k(n) l_k, constant."""
    n = np.array([0.3, -0.2, 0.9])
    n /= np.linalg.norm(n)
    u = np.cross(n, [0, 1, 0])
    u /= np.linalg.norm(u)
    w = np.cross(n, u)
    quad = np.stack([-u - w, u - w, u + w, -u + w]) * 0.08
    verts = torch.from_numpy(quad.astype(np.float32))[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rng = np.random.default_rng(5)
    light = rng.normal(0, 0.5, (1, 9, 3)).astype(np.float32)
    r = BufferRenderer(faces, torch.zeros(2, 3, 2))
    albedo = torch.full((1, 3, 8, 8), 0.6)
    tf = crop_tforms(torch.tensor([[[60.0, 60.0], [200.0, 200.0]]], dtype=torch.float64)).float()
    out = r(verts, torch.tensor([[8.0, 0.0, 0.0]]), tf, albedo, torch.from_numpy(light), 256)
    mask = out.alpha[0, 0] > 0
    assert mask.sum() > 500
    expect = 0.6 * sh_numpy(n, light[0])
    got = out.rendered[0][:, mask].T.numpy()
    np.testing.assert_allclose(got, np.tile(expect, (got.shape[0], 1)), atol=1e-5)
    assert (out.rendered[0][:, ~mask] == 0).all() and (out.albedo[0][:, ~mask] == 0).all()


def test_only_band0_light_gives_constant_c0_l0() -> None:
    v, faces, uvs, ft, cam, tform, _, _ = _scene()
    light = torch.zeros(2, 9, 3)
    light[:, 0] = torch.tensor([1.5, 0.7, 2.0])
    r = BufferRenderer(faces, face_uv_grid(uvs, ft))
    out = r(v, cam, tform, torch.ones(2, 3, 16, 16), light, 256)
    m = out.alpha[:, 0] > 0
    assert m.sum() > 2000
    expect = torch.tensor([1.5, 0.7, 2.0]) * SH_CONSTANTS[0]
    got = out.rendered.permute(0, 2, 3, 1)[m]
    albedo = out.albedo.permute(0, 2, 3, 1)[m]
    # shading is the constant c0·l0 at every covered pixel, whatever the albedo there
    np.testing.assert_allclose(got.numpy(), (albedo * expect).numpy(), atol=1e-5, rtol=1e-5)
    # an all-ones map samples to 1 except where bilinear sampling meets the zero padding at the UV border
    assert ((albedo - 1).abs() < 1e-6).all(-1).float().mean() > 0.9


def test_buffers_match_pytorch3d_texture_path() -> None:
    """Full scene vs a reference built from PyTorch3D's own pieces and a numpy projection.

    Reference: numpy DECA projection → PyTorch3D ``rasterize_meshes`` (direct, naive) → ``TexturesUV``
    sampling (its own UV convention) for albedo, ``interpolate_face_attributes`` of PyTorch3D's vertex
    normals for the normal buffer, numpy SH for the shading.
    """
    from pytorch3d.ops import interpolate_face_attributes
    from pytorch3d.renderer import TexturesUV
    from pytorch3d.renderer.mesh import rasterize_meshes
    from pytorch3d.renderer.mesh.rasterizer import Fragments
    from pytorch3d.structures import Meshes

    v, faces, uvs, ft, cam, tform, albedo, light = _scene()
    size = 128
    out = BufferRenderer(faces, face_uv_grid(uvs, ft))(v, cam, tform, albedo, light, size)

    ndc = [deca_ndc_numpy(v[b].double().numpy(), cam[b].double().numpy(), tform[b].double().numpy(), size) for b in range(2)]
    tex = TexturesUV(maps=albedo.permute(0, 2, 3, 1), faces_uvs=[ft] * 2, verts_uvs=[uvs] * 2, align_corners=False)
    meshes = Meshes(verts=[torch.from_numpy(x).float() for x in ndc], faces=[faces] * 2, textures=tex)
    p2f, zbuf, bary, dists = rasterize_meshes(meshes, image_size=size, blur_radius=0.0, faces_per_pixel=1, bin_size=0)
    frag = Fragments(pix_to_face=p2f, zbuf=zbuf, bary_coords=bary, dists=dists)
    albedo_ref = meshes.sample_textures(frag)[..., 0, :]  # (B, H, W, 3)
    world = Meshes(verts=list(v), faces=[faces] * 2)
    nrm_ref = interpolate_face_attributes(p2f, bary, world.verts_normals_packed()[world.faces_packed()])[..., 0, :]
    alpha_ref = p2f[..., 0] >= 0

    alpha = out.alpha[:, 0] > 0
    agree = alpha == alpha_ref
    assert alpha_ref.sum() > 3000
    assert (~agree).sum() <= 2  # float64-vs-float32 projection may flip a pixel on an exact edge
    both = alpha & alpha_ref
    got_alb = out.albedo.permute(0, 2, 3, 1)[both]
    got_nrm = out.normal.permute(0, 2, 3, 1)[both]
    # a pixel on an edge may pick the neighbouring face; values only differ there on the UV seam
    assert ((got_alb - albedo_ref[both]).abs().amax(-1) > 2e-3).sum() <= 5
    assert ((got_nrm - nrm_ref[both]).abs().amax(-1) > 2e-3).sum() <= 5
    # not re-normalised: interpolated unit normals are shorter than 1 inside faces
    assert got_nrm.norm(dim=-1).max() <= 1 + 1e-5 and got_nrm.norm(dim=-1).min() < 0.999
    for b in range(2):
        m = both[b]
        ref = albedo_ref[b][m].numpy() * sh_numpy(nrm_ref[b][m].numpy(), light[b].numpy())
        err = np.abs(out.rendered[b].permute(1, 2, 0)[m].numpy() - ref).max(-1)
        assert (err > 5e-3).sum() <= 5
    for buf in (out.rendered, out.normal, out.albedo):
        assert (buf.permute(0, 2, 3, 1)[~alpha] == 0).all()


def test_tiled_rasterizer_equals_direct() -> None:
    rng = np.random.default_rng(3)
    verts, faces, _ = uv_sphere(20, 28, radius=0.9)
    fv = torch.from_numpy(verts)[torch.from_numpy(faces)][None].repeat(2, 1, 1, 1)
    fv = fv + torch.from_numpy(rng.normal(0, 0.01, fv.shape).astype(np.float32))  # cracks + overlaps
    fv[1, ..., :2] *= 0.5
    fv[..., 2] += 5
    d_face, d_bary = rasterize(fv, 100, tile=0)
    for tile in (16, 30):
        t_face, t_bary = rasterize(fv, 100, tile=tile)
        same = d_face == t_face
        assert (~same).sum() <= 3
        np.testing.assert_allclose(t_bary[same].numpy(), d_bary[same].numpy(), atol=1e-4)


def test_texture_space_matches_deca_formula() -> None:
    rng = np.random.default_rng(4)
    for size, uv in ((16, 8), (12, 20)):
        mean = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
        basis = rng.normal(0, 20, (size, size, 3, 60)).astype(np.float32)
        tex = torch.from_numpy(rng.normal(size=(3, 50)).astype(np.float32))
        space = TextureSpace(mean, basis, n_tex=50, uv_size=uv)
        ref = torch.from_numpy(mean).reshape(1, -1) / 255 + tex @ (torch.from_numpy(basis).reshape(-1, 60)[:, :50] / 255).T
        ref = ref.reshape(3, size, size, 3).permute(0, 3, 1, 2)
        ref = F.interpolate(ref, [uv, uv])[:, [2, 1, 0]]
        np.testing.assert_allclose(space(tex).numpy(), ref.numpy(), atol=1e-4, rtol=1e-5)
        assert torch.equal(nearest_indices(size, uv), F.interpolate(torch.arange(size).float()[None, None], uv)[0, 0].long())


def test_renderer_rejects_bad_topology() -> None:
    with pytest.raises(ValueError):
        BufferRenderer(torch.zeros(4, 3, dtype=torch.long), torch.zeros(3, 3, 2))
